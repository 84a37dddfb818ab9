"""The notebook side of a run: a live learning curve for JupyterLab, and the helpers train.ipynb calls.

    plot = LivePlot("episode/return")
    rlkit.train(cfg, callbacks=[plot])
    plot.figure()          # the whole curve, also outside Jupyter

LivePlot's figure is rendered to PNG and pushed through an IPython display handle, so it works with any
matplotlib backend and never pops up a window. Outside a Jupyter kernel the callback only collects
points (cheap), and `.figure()` draws them at the end.
"""
from __future__ import annotations

import io
import time
from pathlib import Path


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (a ZMQ shell), where display handles reach a frontend."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LivePlot:
    """Callback `(counters, metrics)` that plots `metric` against the counter `x`.

    Redraws at most every `every_s` seconds: drawing the PNG takes ~0.1 s here, far longer than a
    training step on a small env, so throttling keeps the plot from slowing training down.
    """

    def __init__(self, metric: str = "episode/return", x: str = "policy_step", every_s: float = 2.0):
        self.metric, self.x, self.every_s = metric, x, every_s
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.live = in_jupyter()
        self._handle = None  # IPython DisplayHandle, created on the first draw
        self._last_draw = float("-inf")

    def __call__(self, counters: dict, metrics: dict) -> None:
        if self.metric not in metrics:
            return
        self.xs.append(counters[self.x])
        self.ys.append(float(metrics[self.metric]))
        if self.live and time.monotonic() - self._last_draw >= self.every_s:
            self.draw()

    def figure(self):
        """A matplotlib Figure of the points so far (no pyplot: nothing is shown by side effect)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3), dpi=90, layout="tight")
        ax = fig.add_subplot()
        ax.plot(self.xs, self.ys, lw=1.2)
        ax.set_xlabel(self.x)
        ax.set_ylabel(self.metric)
        ax.grid(alpha=0.3)
        if not self.xs:
            ax.set_title(f"waiting for {self.metric} ...", fontsize=9)
        return fig

    def draw(self) -> None:
        """Render now and update the displayed image in place (the first call creates it)."""
        from IPython.display import Image, display

        buf = io.BytesIO()
        self.figure().savefig(buf, format="png")
        image = Image(data=buf.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self._last_draw = time.monotonic()

    def close(self) -> None:
        """Final redraw, so the curve shows the points logged after the last throttled update."""
        if self.live:
            self.draw()


def resolve_run(config: str | Path, seed: int, overrides=None, run_dir=None):
    """For the notebook: load the params file with overrides and seed -> (Config, run_dir).

    A relative `config` that does not exist from the cwd (JupyterLab started in notebooks/) is
    looked up from the repo root; without a run_dir the run goes to <repo>/results/<stem>/seed<k>,
    where `rlkit run` puts it too, so a notebook run and a batch run resume each other.
    """
    import rlkit
    from rlkit.runner import with_seed

    path, root = Path(config), Path(__file__).resolve().parents[1]
    if not path.exists() and not path.is_absolute() and (root / path).exists():
        path = root / path
    cfg = rlkit.load_config(path, with_seed(overrides, seed))
    return cfg, Path(run_dir) if run_dir else root / "results" / path.stem / f"seed{seed}"


def run_summary(run_dir: str | Path) -> dict:
    """Final state and counters from status.json plus the last value of each return metric."""
    from rlkit.metrics import read_metrics
    from rlkit.rundir import read_status

    status = read_status(Path(run_dir))
    out = {k: status.get(k) for k in ("state", "policy_step", "env_step", "gradient_step", "wall_time")}
    if (Path(run_dir) / "metrics.csv").exists():
        last = read_metrics(Path(run_dir) / "metrics.csv").groupby("metric")["value"].last()
        out.update({m: float(last[m]) for m in ("eval/return", "episode/return") if m in last})
    return out
