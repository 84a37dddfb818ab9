"""A run's curves in a notebook: the live learning-curve plot for JupyterLab, and a finished run's summary.

    show_run(run_dir)                 # its summary and final learning curves, from metrics.csv

LivePlot's figure is rendered to PNG and pushed through an IPython display handle, so it works with any
matplotlib backend and never pops up a window. Outside a Jupyter kernel the callback only collects
points (cheap), and `.figure()` draws them at the end.
"""
from __future__ import annotations

import html
import io
import time
from pathlib import Path

RETURN, EVAL = "episode/return", "eval/return"
DIAGNOSTICS = {"losses": ("loss/policy", "loss/value"), "approx. KL": ("ppo/approx_kl",),
               "entropy": ("loss/entropy",)}
PLOTTED = (RETURN, EVAL, *(m for ms in DIAGNOSTICS.values() for m in ms))
SMOOTH = 20  # episodes in the trailing mean of the plotted episode/return


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (a ZMQ shell), where display handles reach a frontend."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def learning_curves(series: dict, x: str = "policy_step", title: str | None = None):
    """Figure: smoothed episode/return with eval/return markers on top; losses, approx-KL and entropy below.

    ``series``: metric -> (xs, ys). A matplotlib Figure (no pyplot: nothing is shown by side effect)."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=90, layout="constrained")
    grid = fig.add_gridspec(2, len(DIAGNOSTICS), height_ratios=[1.6, 1])
    top = fig.add_subplot(grid[0, :])
    xs, ys = (np.asarray(v, dtype=float) for v in series.get(RETURN, ([], [])))
    if len(xs):
        smooth = np.convolve(ys, np.ones(min(SMOOTH, len(ys))) / min(SMOOTH, len(ys)), mode="valid")
        top.plot(xs, ys, lw=0.6, alpha=0.35, color="C0", marker=".", ms=2.5)  # dots: a lone point shows too
        top.plot(xs[len(xs) - len(smooth):], smooth, lw=1.6, color="C0",
                 label=f"{RETURN} (mean of last {min(SMOOTH, len(ys))})")
    ex, ey = series.get(EVAL, ([], []))
    if len(ex):
        top.plot(ex, ey, "D", ms=5, color="C3", label=EVAL)
    top.set_ylabel("return", fontsize=8)
    if top.lines:
        top.legend(fontsize=7, loc="lower right")
    if title:
        top.set_title(title, fontsize=9)
    for i, (name, metrics) in enumerate(DIAGNOSTICS.items()):
        ax = fig.add_subplot(grid[1, i], sharex=top)
        for m in metrics:
            mx, my = series.get(m, ([], []))
            if len(mx):
                ax.plot(mx, my, lw=1, label=m)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(x, fontsize=8)
        if len(ax.lines) > 1:
            ax.legend(fontsize=6)
    for ax in fig.axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    return fig


class LivePlot:
    """Callback `(counters, metrics)` that keeps the learning curves of a run drawn while it trains.

    Nothing is displayed until two episode/return points or an eval/return arrive (never an empty frame).
    Redraws at most every `every_s` seconds: drawing the PNG takes ~0.1 s, far longer than a training
    step on a small env, so throttling keeps the plot from slowing training down.
    """

    def __init__(self, x: str = "policy_step", every_s: float = 2.0, title: str | None = None):
        self.x, self.every_s, self.title = x, every_s, title
        self.series: dict[str, tuple[list, list]] = {m: ([], []) for m in PLOTTED}
        self.live = in_jupyter()
        self._handle = None  # IPython DisplayHandle, created on the first draw
        self._last_draw = float("-inf")

    def __call__(self, counters: dict, metrics: dict) -> None:
        for name in PLOTTED:
            if name in metrics:
                xs, ys = self.series[name]
                xs.append(counters[self.x])
                ys.append(float(metrics[name]))
        if self.live and self.has_returns() and time.monotonic() - self._last_draw >= self.every_s:
            self.draw()

    def has_returns(self) -> bool:
        """Enough to draw a curve: two episode returns, or an evaluation."""
        return len(self.series[RETURN][0]) >= 2 or bool(self.series[EVAL][0])

    def figure(self):
        return learning_curves(self.series, self.x, self.title)

    def draw(self) -> None:
        """Render now and update the displayed image in place (the first call creates it)."""
        from IPython.display import display

        image = png(self.figure())
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self._last_draw = time.monotonic()

    def close(self) -> None:
        """Final redraw, so the curve shows the points logged after the last throttled update."""
        if self.live and self.has_returns():
            self.draw()


def png(fig):
    """An IPython Image of a matplotlib Figure."""
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image(data=buf.getvalue(), format="png")


def run_summary(run_dir: str | Path) -> dict:
    """Final state and counters from status.json, the final score, the last value of each return metric."""
    from rlkit.runs.metrics import read_metrics
    from rlkit.runs.rundir import read_status
    from rlkit.analysis.scores import final_score

    status = read_status(Path(run_dir))
    out = {k: status.get(k) for k in ("state", "policy_step", "env_step", "gradient_step", "wall_time")}
    if status.get("error"):
        out["error"] = status["error"]
    if (Path(run_dir) / "metrics.csv").exists():
        metrics = read_metrics(Path(run_dir) / "metrics.csv")
        last = metrics.groupby("metric")["value"].last()
        out.update({m: float(last[m]) for m in (EVAL, RETURN) if m in last})
        out["final score"] = final_score(metrics)
    return out


def run_curves(run_dir: str | Path, x: str = "policy_step"):
    """The run's learning curves (the live plot's figure) from its metrics.csv."""
    from rlkit.runs.metrics import read_metrics

    metrics = read_metrics(Path(run_dir) / "metrics.csv")
    series = {m: (g[x].to_numpy(), g.value.to_numpy()) for m, g in metrics.groupby("metric") if m in PLOTTED}
    return learning_curves(series, x, title=str(Path(run_dir).relative_to(Path(run_dir).parents[1])))


def show_run(run_dir: str | Path) -> None:
    """Display the run's summary and its final learning curves, so an executed notebook stands alone."""
    from IPython.display import HTML, display

    from rlkit.analysis.report import readable

    summary = run_summary(run_dir)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(readable(v) if isinstance(v, (int, float)) else str(v))}"
                   "</td></tr>" for k, v in summary.items())
    display(HTML(f"<table>{rows}</table>"))
    if (Path(run_dir) / "metrics.csv").exists():
        display(png(run_curves(run_dir)))
