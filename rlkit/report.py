"""Report helpers: load every run's metrics.csv, put runs on a common grid,
aggregate across seeds (IQM / mean with stratified bootstrap CIs), plot, and
write ``summary.csv`` + ``index.html``. ``notebooks/report.ipynb`` drives these;
``run_report`` executes that notebook with papermill (``rlkit report``).
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure  # no pyplot: Agg rendering, no global figure state

from rlkit.metrics import COLUMNS, read_metrics

X_LABELS = {"policy_step": "policy steps", "env_step": "environment steps",
            "gradient_step": "gradient steps", "wall_time": "wall time (s)"}
NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "report.ipynb"


# ---------------------------------------------------------------- loading
def find_runs(results_dir) -> list[Path]:
    """Run directories ``results_dir/<experiment>/<run>/`` holding a metrics.csv."""
    return sorted(p.parent for p in Path(results_dir).glob("*/*/metrics.csv"))


def _run_meta(run_dir: Path) -> dict:
    cfg_path = run_dir / "config.yaml"
    cfg = (yaml.safe_load(cfg_path.read_text()) or {}) if cfg_path.exists() else {}
    env = cfg.get("env")
    env_id = env.get("id") if isinstance(env, dict) else env
    seed = cfg.get("seed")
    if seed is None:  # fall back to the run name, e.g. "seed3"
        m = re.search(r"(\d+)$", run_dir.name)
        seed = int(m.group(1)) if m else None
    return {"experiment": run_dir.parent.name, "run": run_dir.name,
            "env_id": str(env_id) if env_id else "unknown", "seed": seed}


def load_runs(results_dir="results") -> pd.DataFrame:
    """All runs' metrics as one tidy frame: the metrics.csv columns plus
    ``experiment, run, env_id, seed``. Raises ValueError when there are no runs."""
    runs = find_runs(results_dir)
    if not runs:
        raise ValueError(f"no runs found under {Path(results_dir).resolve()} "
                         "(expected <experiment>/<run>/metrics.csv): run `rlkit run` first")
    frames = [read_metrics(r / "metrics.csv").assign(**_run_meta(r)) for r in runs]
    return pd.concat(frames, ignore_index=True)


def load_run_info(results_dir="results") -> pd.DataFrame:
    """One row per run: identity, status.json state and last counters, error."""
    rows = []
    for r in find_runs(results_dir):
        try:
            st = json.loads((r / "status.json").read_text())
        except (OSError, ValueError):  # missing, or caught mid-write
            st = {}
        rows.append({**_run_meta(r), "state": st.get("state", "unknown"),
                     **{k: st.get(k) for k in COLUMNS[:4]}, "error": st.get("error")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- statistics
def iqm(x, axis=None):
    """Interquartile mean with ``scipy.stats.trim_mean(x, 0.25)`` semantics (as
    rliable): sort, drop ``floor(n/4)`` values at each end, average the rest.
    So n<4 gives the plain mean, n=5..7 drops one value per end."""
    x = np.asarray(x, dtype=float)
    if axis is None:
        x, axis = x.ravel(), 0
    x = np.sort(np.moveaxis(x, axis, -1), axis=-1)
    k = x.shape[-1] // 4
    return np.mean(x[..., k: x.shape[-1] - k], axis=-1)


def mean(x, axis=None):
    """Arithmetic mean (same call convention as ``iqm``)."""
    return np.mean(np.asarray(x, dtype=float), axis=axis)


STATISTICS = {"iqm": iqm, "mean": mean}


def stratified_bootstrap_ci(scores, statistic=iqm, level=0.95, reps=2000, seed=0):
    """Percentile bootstrap CI ``(low, high)`` of ``statistic`` over all scores.

    ``scores``: an array [runs x tasks] (1-D: one task), or a list of per-task
    1-D arrays (tasks may have different run counts). Each replicate resamples
    runs with replacement within every task independently (the strata), pools
    them and applies ``statistic(samples, axis=-1)``; the interval is the
    ``(1-level)/2`` and ``(1+level)/2`` quantiles. Deterministic given ``seed``."""
    if isinstance(scores, (list, tuple)):
        tasks = [np.asarray(t, dtype=float).ravel() for t in scores]
    else:  # an array: [runs] for one task or [runs x tasks]
        arr = np.asarray(scores, dtype=float)
        tasks = list(arr.reshape(len(arr), -1).T)
    rng = np.random.default_rng(seed)
    boot = np.concatenate([t[rng.integers(0, len(t), size=(reps, len(t)))] for t in tasks], axis=1)
    stats = statistic(boot, axis=-1)
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


# ---------------------------------------------------------------- grid
def on_grid(runs: pd.DataFrame, metric: str, x="policy_step", points=100, smooth=1) -> pd.DataFrame:
    """Each run's ``metric`` on a common grid of ``x`` per (env_id, experiment).

    Value at grid point g = the last logged value at x <= g (a step-function hold):
    it is what the run had reported by then, never a value from its future, and it
    does not invent values between sparse evaluations as interpolation would.
    Values logged at the same x (episodes ending together) are averaged first; then
    ``smooth`` > 1 takes a trailing mean over the last ``smooth`` logged values.
    The grid spans from the latest first point to the earliest last point across
    the group's runs, so every run has a value everywhere (no extrapolation).
    Returns long rows: env_id, experiment, run, <x>, value."""
    out = []
    for (env_id, exp), g in runs[runs.metric == metric].groupby(["env_id", "experiment"]):
        curves = {run: d.groupby(x)["value"].mean().rolling(smooth, min_periods=1).mean()
                  for run, d in g.groupby("run")}
        lo = max(c.index[0] for c in curves.values())
        hi = min(c.index[-1] for c in curves.values())
        grid = np.linspace(lo, hi, points) if hi > lo else np.array([hi])
        for run, c in curves.items():
            idx = np.searchsorted(c.index.to_numpy(), grid, side="right") - 1
            out.append(pd.DataFrame({"env_id": env_id, "experiment": exp, "run": run,
                                     x: grid, "value": c.to_numpy()[idx]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# ---------------------------------------------------------------- summary
def summarise(runs: pd.DataFrame, metric="eval/return", aggregate="iqm", ci=0.95,
              last=5, reps=2000, seed=0) -> pd.DataFrame:
    """One row per (experiment, env_id). A run's final score is the mean of its
    last ``last`` logged values of ``metric`` (one value is too noisy). Reports
    final IQM and mean across runs, the bootstrap CI of ``aggregate``, seed count,
    median final policy step across runs and median ``perf/sps`` over all rows."""
    rows = []
    for (exp, env_id), g in runs.groupby(["experiment", "env_id"]):
        m = g[g.metric == metric]
        if m.empty:
            continue
        final = m.groupby("run")["value"].apply(lambda v: v.tail(last).mean()).to_numpy()
        low, high = stratified_bootstrap_ci([final], STATISTICS[aggregate], ci, reps, seed)
        rows.append({"experiment": exp, "env_id": env_id, "metric": metric,
                     "final_iqm": iqm(final), "final_mean": mean(final), "aggregate": aggregate,
                     "ci_low": low, "ci_high": high, "n_seeds": len(final),
                     "final_policy_step": int(g.groupby("run")["policy_step"].max().median()),
                     "median_sps": g.loc[g.metric == "perf/sps", "value"].median()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- plots and page
def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")


def plot_metric(runs, metric="eval/return", x="policy_step", aggregate="iqm", ci=0.95,
                out_dir="results/report", points=100, smooth=1, reps=1000, seed=0) -> list[Path]:
    """One PNG per environment: ``aggregate`` across seeds of ``metric`` vs ``x``,
    one line per experiment with its bootstrap CI band. Returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid, stat, paths = on_grid(runs, metric, x, points, smooth), STATISTICS[aggregate], []
    if grid.empty:
        return paths
    for env_id, ge in grid.groupby("env_id"):
        fig = Figure(figsize=(6, 4), dpi=120)
        ax = fig.add_subplot()
        for exp, g in ge.groupby("experiment"):
            table = g.pivot(index=x, columns="run", values="value")  # grid x runs
            vals = table.to_numpy()
            band = np.array([stratified_bootstrap_ci([v], stat, ci, reps, seed) for v in vals])
            (line,) = ax.plot(table.index, stat(vals, axis=1), drawstyle="steps-post",  # the hold
                              label=f"{exp} (n={vals.shape[1]})")
            ax.fill_between(table.index, band[:, 0], band[:, 1], step="post",
                            color=line.get_color(), alpha=0.2)
        ax.set_xlabel(X_LABELS.get(x, x))
        ax.set_ylabel(metric)
        ax.set_title(f"{env_id}: {aggregate.upper() if aggregate == 'iqm' else aggregate} "
                     f"of {metric} across seeds, {ci:.0%} CI", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / f"{_slug(env_id)}__{_slug(metric)}__{x}.png")
        fig.savefig(paths[-1])
    return paths


def write_index(out_dir, summary: pd.DataFrame, figures, title="rlkit report") -> Path:
    """Write ``summary.csv`` and a self-contained ``index.html`` (figures by
    relative path, the summary as a table) into ``out_dir``; return index.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_dir / "summary.csv", index=False)
    esc, names = html.escape, [Path(f).name for f in figures]  # same folder: relative src
    imgs = "\n".join(f'<p><img src="{esc(n)}" alt="{esc(n)}"></p>' for n in names)
    page = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{padding:4px 8px;border:1px solid #ccc}img{max-width:100%}</style></head>"
            f"<body><h1>{esc(title)}</h1>\n<h2>Summary</h2>\n"
            f"{summary.to_html(index=False, float_format=lambda v: f'{v:.4g}')}\n"
            f"<h2>Figures</h2>\n{imgs}\n</body></html>\n")
    (out_dir / "index.html").write_text(page)
    return out_dir / "index.html"


def write_report(results_dir="results", out_dir=None, metric="eval/return", x="policy_step",
                 aggregate="iqm", ci=0.95) -> Path:
    """The whole report in-process (what the notebook does): summary.csv, one
    figure per env vs ``x`` and one vs wall time, index.html. Returns index.html."""
    runs = load_runs(results_dir)
    out_dir = Path(out_dir) if out_dir else Path(results_dir) / "report"
    figures = plot_metric(runs, metric, x, aggregate, ci, out_dir)
    if x != "wall_time":
        figures += plot_metric(runs, metric, "wall_time", aggregate, ci, out_dir)
    return write_index(out_dir, summarise(runs, metric, aggregate, ci), figures)


def run_report(results_dir="results", out_dir=None, metric="eval/return", x="policy_step",
               aggregate="iqm", ci=0.95, kernel_name=None) -> Path:
    """Execute notebooks/report.ipynb with papermill on ``results_dir``; the
    executed notebook goes to ``out_dir/report.ipynb``. Returns ``out_dir/index.html``."""
    import papermill as pm

    from rlkit.runner import IPCKernelManager, default_kernel_name

    results_dir = Path(results_dir).resolve()
    if not find_runs(results_dir):  # fail here, clearly, not deep inside the kernel
        raise ValueError(f"no runs found under {results_dir} "
                         "(expected <experiment>/<run>/metrics.csv): run `rlkit run` first")
    out_dir = Path(out_dir).resolve() if out_dir else results_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(results_dir=str(results_dir), out_dir=str(out_dir), metric=metric,
                  x=x, aggregate=aggregate, ci=ci)
    # cwd = project root, so the kernel imports this rlkit even when not pip-installed
    pm.execute_notebook(str(NOTEBOOK), str(out_dir / "report.ipynb"), parameters=params,
                        kernel_name=kernel_name or default_kernel_name(), progress_bar=False,
                        kernel_manager_class=IPCKernelManager,
                        cwd=str(NOTEBOOK.parent.parent))
    return out_dir / "index.html"
