"""The progress bar: a callback on the rows a run logs, so the loop itself knows nothing of terminals or notebooks.

One speed on it, rlkit's own (`perf/sps`: policy steps per second over the training loop since the last log
row), never tqdm's rate, which would count a resumed run's jump to its checkpoint as speed; and the mean
return of the last episodes, as the live plot draws it, not one episode's.
"""
from __future__ import annotations

from collections import deque

SMOOTH = 20  # episodes in the mean on the bar (the live plot's smoothing, rlkit.analysis.live.SMOOTH)
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class ProgressBar:
    """Callback `(counters, metrics)`; the bar is made at the first row, starting at that row's policy step."""

    def __init__(self, total_steps: int):
        self.total, self.bar = total_steps, None
        self.returns = deque(maxlen=SMOOTH)
        self.sps = None

    def __call__(self, counters: dict, metrics: dict) -> None:
        step = counters["policy_step"]
        if self.bar is None:  # a resumed run's first row is past its checkpoint: that is where the bar starts
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=step, unit="step", desc="policy steps", dynamic_ncols=True,
                            bar_format=BAR_FORMAT)
        if "episode/return" in metrics:
            self.returns.append(float(metrics["episode/return"]))
        if "perf/sps" not in metrics:  # the bar moves once per log row, not per episode
            return
        self.sps = float(metrics["perf/sps"])
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix_str(self.postfix(), refresh=True)

    def postfix(self) -> str:
        parts = [f"{self.sps:,.0f} steps/s"] if self.sps is not None else []
        if self.returns:
            parts.append(f"return {sum(self.returns) / len(self.returns):.1f} (last {len(self.returns)})")
        return ", ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
