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
# the small panels under the return, the algorithm's own: one quantity each, so an early spike of one cannot
# flatten another. The first two are its losses. Value losses span orders of magnitude (hundreds at the start,
# under one later), and so do SAC's temperature and DQN's TD loss: their axes are logarithmic
DIAGNOSTICS = {
    "ppo": {"policy loss": ("loss/policy",), "value loss": ("loss/value",), "approx. KL": ("ppo/approx_kl",),
            "entropy": ("loss/entropy",)},
    "sac": {"critic loss": ("loss/critic",), "actor loss": ("loss/actor",), "alpha": ("sac/alpha",),
            "entropy": ("sac/entropy",)},
    "dqn": {"TD loss": ("loss/q",), "mean Q": ("dqn/q",), "epsilon": ("dqn/epsilon",)},
}
LOG_SCALE = {"value loss", "critic loss", "alpha", "TD loss"}
PLOTTED = (RETURN, EVAL, *{m for panels in DIAGNOSTICS.values() for ms in panels.values() for m in ms})


def panels_for(series: dict) -> dict:
    """The diagnostic panels of the algorithm whose metrics the series hold (PPO's, A2C's: the on-policy ones)."""
    for algo in ("sac", "dqn"):
        if any(name.startswith(f"{algo}/") and len(series.get(name, ((), ()))[0]) for name in series):
            return DIAGNOSTICS[algo]
    return DIAGNOSTICS["ppo"]
SMOOTH = 20  # episodes in the trailing mean of the plotted episode/return


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (a ZMQ shell), where display handles reach a frontend."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def steps_label(value, _position=None) -> str:
    """Tick labels that fit a small panel: 0, 500, 50k, 1.5M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def learning_curves(series: dict, x: str = "policy_step", title: str | None = None):
    """Figure: smoothed episode/return with eval/return markers on top; one small panel per diagnostic below.

    ``series``: metric -> (xs, ys). A matplotlib Figure (no pyplot: nothing is shown by side effect)."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = Figure(figsize=(9, 5.2), dpi=90, layout="constrained")
    diagnostics = panels_for(series)
    grid = fig.add_gridspec(2, len(diagnostics), height_ratios=[1.7, 1])
    top = fig.add_subplot(grid[0, :])
    xs, ys = (np.asarray(v, dtype=float) for v in series.get(RETURN, ([], [])))
    if len(xs):
        window = min(SMOOTH, len(ys))
        smooth = np.convolve(ys, np.ones(window) / window, mode="valid")
        top.plot(xs, ys, lw=0.6, alpha=0.35, color="C0", marker=".", ms=2.5, label=f"{RETURN} (training)")
        top.plot(xs[len(xs) - len(smooth):], smooth, lw=1.6, color="C0", label=f"mean of last {window} episodes")
    ex, ey = series.get(EVAL, ([], []))
    if len(ex):
        top.plot(ex, ey, "D", ms=5, color="C3", label=f"{EVAL} (evaluation)")
    top.set_ylabel("return", fontsize=8)
    if top.lines:
        top.legend(fontsize=7, loc="lower right")
    if title:
        top.set_title(title, fontsize=9, wrap=True)
    for i, (name, metrics) in enumerate(diagnostics.items()):
        ax = fig.add_subplot(grid[1, i], sharex=top)
        for m in metrics:
            mx, my = series.get(m, ([], []))
            if len(mx):
                ax.plot(mx, my, lw=1, color=f"C{i + 1}")
                if name in LOG_SCALE and np.min(my) > 0:
                    ax.set_yscale("log")
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged yet", ha="center", va="center", fontsize=7, color="0.5",
                    transform=ax.transAxes)
        ax.set_title(name + (" (log)" if ax.get_yscale() == "log" else ""), fontsize=8)
        ax.set_xlabel(x, fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
    top.xaxis.set_major_formatter(FuncFormatter(steps_label))  # shared: every panel's ticks read 50k, 1M
    for ax in fig.axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    return fig


DRAWN: set = set()  # run directories whose curves a LivePlot showed in this kernel (show_run does not repeat them)


class LivePlot:
    """Callback `(counters, metrics)` that keeps the learning curves of a run drawn while it trains.

    With run_dir, a resumed run's plot starts from the history already in its metrics.csv (read at the first
    row, after the trainer has cut the file back to the checkpoint), so it shows the whole run. Nothing is
    displayed until there is a curve and a training phase's losses, or an evaluation (never a frame of one dot
    and empty panels). Redraws at most every `every_s` seconds: drawing the PNG takes ~0.1 s, far longer than
    a training step on a small env, so throttling keeps the plot from slowing training down.
    """

    def __init__(self, x: str = "policy_step", every_s: float = 2.0, title: str | None = None, run_dir=None):
        self.x, self.every_s, self.title = x, every_s, title
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.series: dict[str, tuple[list, list]] = {m: ([], []) for m in PLOTTED}
        self.live = in_jupyter()
        self._handle = None  # IPython DisplayHandle, created on the first draw
        self._last_draw = float("-inf")
        self._started = False

    def __call__(self, counters: dict, metrics: dict) -> None:
        if not self._started:
            self._started = True
            if self._load_history():  # the file already holds this row too
                return self._maybe_draw()
        for name in PLOTTED:
            if name in metrics:
                xs, ys = self.series[name]
                xs.append(counters[self.x])
                ys.append(float(metrics[name]))
        self._maybe_draw()

    def _load_history(self) -> bool:
        path = self.run_dir / "metrics.csv" if self.run_dir is not None else None
        if path is None or not path.exists():
            return False
        from rlkit.runs.metrics import read_metrics

        history = read_metrics(path)
        for name, rows in history[history.metric.isin(PLOTTED)].groupby("metric"):
            self.series[name] = (rows[self.x].tolist(), rows.value.astype(float).tolist())
        return True

    def _maybe_draw(self) -> None:
        if self.live and self.has_returns() and time.monotonic() - self._last_draw >= self.every_s:
            self.draw()

    def has_returns(self) -> bool:
        """Enough to draw: two episode returns and one training phase's losses, or an evaluation."""
        losses = any(self.series[m][0] for panels in DIAGNOSTICS.values() for ms in list(panels.values())[:2]
                     for m in ms)
        return (len(self.series[RETURN][0]) >= 2 and losses) or bool(self.series[EVAL][0])

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
        if self.run_dir is not None:
            DRAWN.add(self.run_dir.resolve())

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
    if status.get("update_path"):
        out["update path"] = status["update_path"]
    if (Path(run_dir) / "metrics.csv").exists():
        metrics = read_metrics(Path(run_dir) / "metrics.csv")
        if (metrics.metric == EVAL).any():
            out[f"{EVAL} (last evaluation)"] = float(metrics[metrics.metric == EVAL].value.iloc[-1])
        returns = metrics[metrics.metric == RETURN].value
        if len(returns):
            out[f"{RETURN} (mean of last {min(SMOOTH, len(returns))})"] = float(returns.tail(SMOOTH).mean())
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

    summary = run_summary(run_dir)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_with_unit(k, v))}</td></tr>"
                   for k, v in summary.items())
    display(HTML(f"<table>{rows}</table>"))
    if (Path(run_dir) / "metrics.csv").exists() and Path(run_dir).resolve() not in DRAWN:  # the live plot showed it
        display(png(run_curves(run_dir)))


UNITS = {"wall_time": "s (the training loop)", "policy_step": "policy steps", "env_step": "frames",
         "gradient_step": "updates"}


def _with_unit(key: str, value) -> str:
    from rlkit.analysis.report import readable

    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    return f"{readable(value)} {UNITS[key]}" if key in UNITS else readable(value)
