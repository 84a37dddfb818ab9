"""The report over a results directory: every run's final score, aggregates over seeds with their
uncertainty, what differs between experiments, every run's state, and figures; written as
``summary.csv``, ``runs.csv`` and ``index.html``.

    rep = build("results")          # loads every results/<experiment>/<run>/metrics.csv
    rep.summary                     # one row per experiment: final IQM / mean / median with CIs, PoI
    write_index(rep)                # results/report/index.html

``notebooks/report.ipynb`` drives these; ``run_report`` executes that notebook with papermill
(``rlkit report``). Scores and statistics come from rlkit/analysis/scores.py, where "final" is defined.
"""
from __future__ import annotations

import html
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure  # no pyplot: Agg rendering, no global figure state

from rlkit.config import AlgoConfig
from rlkit.analysis.runcheck import differences, flatten, metrics_problem, read_config, without_seed  # noqa: F401 (flatten re-exported)
from rlkit.runs.metrics import COLUMNS, read_metrics
from rlkit.analysis.scores import (FINAL_METRIC, FINAL_WINDOW, STATISTICS, iqm, mean, median,  # noqa: F401 (re-exported)
                          final_score, probability_of_improvement, probability_of_improvement_ci,
                          stratified_bootstrap_ci)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "notebooks" / "report.ipynb"
# wall_time in metrics.csv counts the training loop (collection, updates, evaluations) from its first step;
# the kernel's start, imports and building the envs and networks come before it and are not in it
X_LABELS = {"policy_step": "policy steps", "env_step": "environment steps",
            "gradient_step": "gradient steps", "wall_time": "wall time of the training loop (s; start-up excluded)"}
MIN_SEEDS = 3  # below this an experiment's CI says little; the report warns
CI_LEVEL = 0.95
TRAIN_METRIC = "episode/return"  # the return of the training episodes (sampled actions), beside the evaluation


def repo_path(path) -> Path:
    """A relative path means one inside the repository, whatever the kernel's working directory is."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


# ---------------------------------------------------------------- how many runs a CI needs
def seeds_for_ci(ci=CI_LEVEL) -> int:
    """The fewest runs whose percentile-bootstrap CI can reach its stated level.

    A bootstrap statistic of n runs never leaves the runs' range [min, max], and that range holds the
    median of the runs' distribution only with probability 1 - 2^(1-n) (75% for 3 runs): below this n
    a "95% CI" is narrower than it says, whatever the data (the stratified bootstrap's known limit)."""
    n = 2
    while 1 - 2.0 ** (1 - n) < ci:
        n += 1
    return n


def seeds_for_improvement(ci=CI_LEVEL) -> int:
    """The fewest runs per side for which a probability of improvement can differ from 0.5 at level ``ci``
    at all: even when every run of one beats every run of the other (P = 0 or 1), the chance of that order
    without any difference is 2 / C(2n, n), 0.1 for 3 vs 3."""
    from math import comb

    n = 1
    while 2 / comb(2 * n, n) > 1 - ci:
        n += 1
    return n


def few_seeds_note(ci=CI_LEVEL) -> str:
    return (f"† rests on fewer runs than a {ci:.0%} CI needs: a bootstrap CI of n runs cannot be wider than "
            f"their range, which holds the median only 1 - 2^(1-n) of the time (75% for 3 runs); "
            f"{seeds_for_ci(ci)} seeds are the fewest for a {ci:.0%} CI, and {seeds_for_improvement(ci)} per side "
            "for a probability of improvement to show a difference at all")


# ---------------------------------------------------------------- loading
def find_runs(results_dir) -> list[Path]:
    """Run directories ``results_dir/<experiment>/<run>/`` holding a metrics.csv."""
    return sorted(p.parent for p in Path(results_dir).glob("*/*/metrics.csv"))


def _no_runs(results_dir) -> ValueError:
    return ValueError(f"no runs found under {Path(results_dir).resolve()} "
                      "(expected <experiment>/<run>/metrics.csv): run `rlkit run` first")


def _read_config(run_dir: Path) -> dict:
    return read_config(run_dir)[0]  # unreadable: {} here; experiment_labels names the reason


def experiment_labels(results_dir) -> tuple[dict, list[str]]:
    """Each run directory -> the experiment it is reported under, and a sentence per split.

    The runs of one experiment directory are seeds of one experiment only if they trained the same config
    (the seed aside); runs of other configs or envs in the same directory (another --set, an edited params
    file) are reported as experiments of their own, "<name> (config 2)", never aggregated with the others.
    A run whose config.yaml cannot be read is kept apart too; one without a config.yaml (an old layout) goes
    with the others, since nothing says it differs."""
    labels, notes, groups = {}, [], {}
    for r in find_runs(results_dir):
        config, problem = read_config(r)
        key = (f"unreadable: {problem}" if problem else None if not (r / "config.yaml").exists()
               else json.dumps(without_seed(config), sort_keys=True, default=str))
        groups.setdefault(r.parent.name, {}).setdefault(key, []).append(r)
    for name, by_config in groups.items():
        unknown = by_config.pop(None, [])
        if not by_config:
            by_config = {None: unknown}
        elif unknown:
            biggest = max(by_config, key=lambda k: len(by_config[k]))
            by_config[biggest] = sorted(by_config[biggest] + unknown)
        if len(by_config) == 1:
            labels.update({r: name for r in next(iter(by_config.values()))})
            continue
        ordered = sorted(by_config.items(), key=lambda kv: (-len(kv[1]), kv[1][0].name))
        names = []
        for k, (key, runs) in enumerate(ordered, 1):
            names.append(f"{name} (config {k})")
            labels.update({r: names[-1] for r in runs})
        first = read_config(ordered[0][1][0])[0]
        what = [d.split(":")[0] for d in differences(first, read_config(ordered[1][1][0])[0])][:3]
        unreadable = [key.removeprefix("unreadable: ") for key, _ in ordered if key.startswith("unreadable")]
        why = f"one's {unreadable[0]}" if unreadable else f"they differ in {', '.join(what)}"
        notes.append(f"{name}: its runs trained {len(ordered)} different configs ({why}); reported apart as "
                     f"{', '.join(names)}, never aggregated as one experiment")
    return labels, notes


def _run_meta(run_dir: Path, labels: dict | None = None) -> dict:
    cfg = _read_config(run_dir)
    env = cfg.get("env")
    env_id = env.get("id") if isinstance(env, dict) else env
    seed = cfg.get("seed")
    if seed is None:  # fall back to the run name, e.g. "seed3"
        m = re.search(r"(\d+)$", run_dir.name)
        seed = int(m.group(1)) if m else None
    algo = cfg.get("algo") if isinstance(cfg.get("algo"), dict) else {}
    # a config.yaml without algo.name trained the default algorithm (written before there were others)
    return {"experiment": (labels or {}).get(run_dir, run_dir.parent.name), "run": run_dir.name,
            "env_id": str(env_id) if env_id else "unknown", "seed": seed,
            "algo": str(algo.get("name", AlgoConfig.name)) if cfg else None}


def load_runs(results_dir="results", labels: dict | None = None) -> pd.DataFrame:
    """All runs' metrics as one tidy frame: the metrics.csv columns plus ``experiment, run, env_id, seed, algo``
    (algo.name of the run's config.yaml; None without one).
    Raises ValueError when there are no runs. labels: experiment_labels(results_dir)[0], if already read."""
    runs = find_runs(results_dir)
    if not runs:
        raise _no_runs(results_dir)
    labels = experiment_labels(results_dir)[0] if labels is None else labels
    frames = [read_metrics(r / "metrics.csv").assign(**_run_meta(r, labels)) for r in runs]
    return pd.concat(frames, ignore_index=True)


def load_run_info(results_dir="results", runs: pd.DataFrame | None = None, metric=FINAL_METRIC,
                  window=FINAL_WINDOW, labels: dict | None = None) -> pd.DataFrame:
    """One row per run: identity, status.json state, last counters, error, final score, median SPS and
    the paths of its executed notebook, config.yaml and metrics.csv."""
    labels = experiment_labels(results_dir)[0] if labels is None else labels
    runs = load_runs(results_dir, labels) if runs is None else runs
    rows = []
    for r in find_runs(results_dir):
        try:
            st = json.loads((r / "status.json").read_text())
        except (OSError, ValueError):  # missing, or caught mid-write
            st = {}
        meta = _run_meta(r, labels)
        m = runs[(runs.experiment == meta["experiment"]) & (runs.run == meta["run"])]
        sps = m.loc[m.metric == "perf/sps", "value"]
        rows.append({**meta, "state": st.get("state", "unknown"), **{k: st.get(k) for k in COLUMNS[:4]},
                     "final": final_score(m, metric, window), "train_final": final_score(m, TRAIN_METRIC, window),
                     "sps": float(sps.median()) if len(sps) else np.nan,
                     "error": st.get("error"), "metrics_problem": metrics_problem(r / "metrics.csv"),
                     **{name: str(r / name) if (r / name).exists() else None
                        for name in ("train.ipynb", "config.yaml", "metrics.csv")}})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- what differs between experiments
def config_diff(configs: dict[str, dict], ignore=("seed",)) -> pd.DataFrame:
    """Experiments x the config keys whose values differ between them (missing keys count as differing).

    ``configs``: experiment -> its resolved config (nested or flat). One experiment: nothing differs."""
    flat = {exp: {k: v for k, v in flatten(c).items() if k not in ignore} for exp, c in configs.items()}
    keys = sorted({k for c in flat.values() for k in c})
    differ = [k for k in keys if len({_text(c.get(k, "(unset)")) for c in flat.values()}) > 1]
    frame = pd.DataFrame({k: [_text(flat[e].get(k, "(unset)")) for e in flat] for k in differ}, index=list(flat))
    frame.index.name = "experiment"
    return frame


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return readable(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def experiment_configs(results_dir, labels: dict | None = None) -> dict[str, dict]:
    """Each experiment's resolved config, read from its first run's config.yaml (an experiment directory
    whose runs differ is split first: see experiment_labels)."""
    labels, configs = experiment_labels(results_dir)[0] if labels is None else labels, {}
    for r in find_runs(results_dir):
        configs.setdefault(labels.get(r, r.parent.name), _read_config(r))
    return configs


# ---------------------------------------------------------------- summary
def summarise(runs: pd.DataFrame, metric=FINAL_METRIC, window=FINAL_WINDOW, ci=CI_LEVEL, reps=2000, seed=0,
              baseline: str | None = None) -> pd.DataFrame:
    """One row per experiment: its algorithm, seeds, final IQM / mean / median over seeds with
    stratified-bootstrap CIs, and the probability of improvement over the baseline with its CI.

    The baseline is ``baseline`` for the experiments on its environment; without one, each environment's
    first experiment (sorted by name). PoI compares only experiments on the same environment."""
    finals, algos = final_scores(runs, metric, window), algos_of(runs)
    if baseline is not None and baseline not in set(finals.experiment):
        raise ValueError(f"--baseline {baseline}: no such experiment; choose one of "
                         f"{', '.join(sorted(set(finals.experiment)))}")
    rows = []
    for (exp, env_id), g in finals.groupby(["experiment", "env_id"], sort=True):
        scores = g.final.dropna().to_numpy()
        row = {"experiment": exp, "env_id": env_id, "algo": algos.get(exp), "metric": metric,
               "n_seeds": len(scores)}
        for name, stat in STATISTICS.items():
            row[f"final_{name}"] = float(stat(scores)) if len(scores) else np.nan
            row[f"final_{name}_low"], row[f"final_{name}_high"] = (
                stratified_bootstrap_ci([scores], stat, ci, reps, seed) if len(scores) else (np.nan, np.nan))
        train = np.array([final_score(d, TRAIN_METRIC, window) for _, d in runs[runs.experiment == exp].groupby("run")])
        train = train[np.isfinite(train)]
        row["train_final_iqm"] = float(iqm(train)) if len(train) else np.nan
        steps = runs[runs.experiment == exp].groupby("run")["policy_step"].max()
        sps = runs.loc[(runs.experiment == exp) & (runs.metric == "perf/sps"), "value"]
        row.update(final_policy_step=int(steps.median()), median_sps=float(sps.median()) if len(sps) else np.nan)
        rows.append(row)
    summary = pd.DataFrame(rows)
    return _with_improvement(summary, finals, baseline, ci, reps, seed)


def final_scores(runs: pd.DataFrame, metric=FINAL_METRIC, window=FINAL_WINDOW) -> pd.DataFrame:
    """One row per run: experiment, env_id, run, seed, final (rlkit/analysis/scores.py's final_score)."""
    rows = [{"experiment": exp, "env_id": env_id, "run": run, "seed": g.seed.iloc[0],
             "final": final_score(g, metric, window)}
            for (exp, env_id, run), g in runs.groupby(["experiment", "env_id", "run"], sort=True)]
    return pd.DataFrame(rows, columns=["experiment", "env_id", "run", "seed", "final"])


def _with_improvement(summary, finals, baseline, ci, reps, seed) -> pd.DataFrame:
    summary = summary.assign(baseline=None, poi=np.nan, poi_low=np.nan, poi_high=np.nan)
    if summary.empty:
        return summary
    scores = {e: g.final.dropna().to_numpy() for e, g in finals.groupby("experiment")}
    for env_id, g in summary.groupby("env_id"):
        base = baseline if baseline is not None else g.experiment.iloc[0]
        if base not in set(g.experiment) or not len(scores[base]):
            continue
        for i in g.index:
            exp = summary.at[i, "experiment"]
            summary.at[i, "baseline"] = base
            if exp == base or not len(scores[exp]):
                continue
            summary.at[i, "poi"] = probability_of_improvement([scores[exp]], [scores[base]])
            summary.at[i, "poi_low"], summary.at[i, "poi_high"] = probability_of_improvement_ci(
                [scores[exp]], [scores[base]], ci, reps, seed)
    return summary


def warnings_for(summary: pd.DataFrame, info: pd.DataFrame, metric=FINAL_METRIC, ci=CI_LEVEL) -> list[str]:
    """Plain sentences: experiments with too few seeds, failed runs, runs without evaluations (or with a
    metrics.csv that cannot be read, named with the reason)."""
    out = [f"{r.experiment}: only {r.n_seeds} seed{'s' if r.n_seeds != 1 else ''} with a final score; "
           f"its confidence intervals say little (use at least {MIN_SEEDS})"
           for r in summary.itertuples() if r.n_seeds < MIN_SEEDS]
    few = [r.experiment for r in summary.itertuples() if MIN_SEEDS <= r.n_seeds < seeds_for_ci(ci)]
    if few:
        out.append(f"{', '.join(few)}: {few_seeds_note(ci).removeprefix(chr(0x2020) + ' ')}")
    problem = info.get("metrics_problem", pd.Series([None] * len(info), index=info.index))
    out += [f"{r.experiment}/{r.run} failed: {r.error}" for r in info.itertuples() if r.state == "failed"]
    out += [f"{r.experiment}/{r.run}: {p}, so no final score" for r, p in zip(info.itertuples(), problem)
            if r.state != "failed" and isinstance(p, str)]
    out += [f"{r.experiment}/{r.run} has no {metric} yet, so no final score"
            for r, p in zip(info.itertuples(), problem)
            if r.state != "failed" and not isinstance(p, str) and not np.isfinite(r.final)]
    return out


# ---------------------------------------------------------------- numbers people read
def readable(value) -> str:
    """A number as a person reads it: 16,020 not 1.602e+04; 0.0003 not 3e-04; 4 significant digits."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "" if value is None or np.isnan(value) else str(value)
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)) or float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    v = float(value)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return np.format_float_positional(v, precision=4, unique=False, fractional=False, trim="-")


def with_ci(point, low, high) -> str:
    return "" if not np.isfinite(point) else f"{readable(point)} [{readable(low)}, {readable(high)}]"


# ---------------------------------------------------------------- grid
def on_grid(runs: pd.DataFrame, metric: str, x="policy_step", points=100, smooth=1) -> pd.DataFrame:
    """Each run's ``metric`` on a common grid of ``x`` per (env_id, experiment).

    Value at grid point g = the last logged value at x <= g (a step-function hold): it is what the run had
    reported by then, never a value from its future, and it does not invent values between sparse
    evaluations as interpolation would. Values logged at the same x (episodes ending together) are
    averaged first; then ``smooth`` > 1 takes a trailing mean over the last ``smooth`` logged values.
    The grid spans from the latest first point to the earliest last point across the group's runs, so
    every run has a value everywhere (no extrapolation); a group whose runs share no range (one run's wall time
    all after another's) has no grid. Returns long rows: env_id, experiment, run, <x>, value."""
    out = []
    for (env_id, exp), g in runs[runs.metric == metric].groupby(["env_id", "experiment"]):
        curves = {run: d.groupby(x)["value"].mean().rolling(smooth, min_periods=1).mean()
                  for run, d in g.groupby("run")}
        lo = max(c.index[0] for c in curves.values())
        hi = min(c.index[-1] for c in curves.values())
        if hi < lo:  # a run that starts after another ends has no value there: nothing to aggregate
            continue
        grid = np.linspace(lo, hi, points) if hi > lo else np.array([hi])
        for run, c in curves.items():
            idx = np.searchsorted(c.index.to_numpy(), grid, side="right") - 1
            out.append(pd.DataFrame({"env_id": env_id, "experiment": exp, "run": run,
                                     x: grid, "value": c.to_numpy()[idx]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# ---------------------------------------------------------------- figures
def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")


def _band(table: pd.DataFrame, stat, ci, reps, seed) -> np.ndarray:
    return np.array([stratified_bootstrap_ci([v], stat, ci, reps, seed) for v in table.to_numpy()])


def plot_metric(runs, metric=FINAL_METRIC, x="policy_step", aggregate="iqm", ci=CI_LEVEL,
                out_dir="results/report", points=100, smooth=1, reps=1000, seed=0) -> list[Path]:
    """One PNG per environment (metric_figures): ``aggregate`` across seeds of ``metric``, one panel per x axis
    in ``x`` (a name, or several: ``("policy_step", "wall_time")`` side by side). Returns the paths."""
    xs = [x] if isinstance(x, str) else list(x)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for env_id, fig in metric_figures(runs, metric, xs, aggregate, ci, points, smooth, reps, seed).items():
        paths.append(out_dir / f"{_slug(env_id)}__{_slug(metric)}__{'__'.join(xs)}.png")
        fig.savefig(paths[-1])
    return paths


def metric_figures(runs, metric=FINAL_METRIC, xs=("policy_step", "wall_time"), aggregate="iqm", ci=CI_LEVEL,
                   points=100, smooth=1, reps=1000, seed=0) -> dict:
    """env_id -> a Figure with one panel per x in ``xs``: a line per experiment (the same colour in every
    panel) with its bootstrap CI band, and one legend under the panels for all of them."""
    grids, stat, figures = {x: on_grid(runs, metric, x, points, smooth) for x in xs}, STATISTICS[aggregate], {}
    envs = sorted({e for g in grids.values() if not g.empty for e in g.env_id})
    algos = algos_of(runs)
    for env_id in envs:
        experiments = sorted({e for g in grids.values() if not g.empty for e in g[g.env_id == env_id].experiment})
        seeds = {e: runs[(runs.experiment == e) & (runs.metric == metric)].run.nunique() for e in experiments}
        names = short_names(experiments, algos, seeds)
        fig = Figure(figsize=(4.6 * len(xs) + 0.6, 4.2), dpi=110, layout="constrained")
        axes = fig.subplots(1, len(xs), squeeze=False, sharey=True).ravel()
        for ax, x in zip(axes, xs):
            grid, missing = grids[x], []
            for k, exp in enumerate(experiments):
                g = grid[(grid.env_id == env_id) & (grid.experiment == exp)] if not grid.empty else grid
                if g.empty:
                    missing.append(names[exp])
                    continue
                table = g.pivot(index=x, columns="run", values="value")  # grid x runs
                band, color = _band(table, stat, ci, reps, seed), f"C{k % 10}"
                ax.plot(table.index, stat(table.to_numpy(), axis=1), drawstyle="steps-post", color=color,  # the hold
                        label=names[exp])
                ax.fill_between(table.index, band[:, 0], band[:, 1], step="post", color=color, alpha=0.2)
            if missing:  # say why a line of the legend is not in this panel (above it: no curve covered)
                ax.set_title(f"not drawn, its runs' ranges do not overlap: {', '.join(missing)}", fontsize=7,
                             color="0.35")
            _finish_axes(ax, x, metric)
        for ax in axes[1:]:
            ax.set_ylabel("")
        lines = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
        # one legend under the panels, not on them: no curve is covered, however many experiments there are
        # (above them, constrained layout puts it over the title)
        fig.legend([lines[names[e]] for e in experiments if names[e] in lines],
                   [names[e] for e in experiments if names[e] in lines], loc="outside lower center",
                   ncols=min(len(lines), 3) or 1, fontsize=8, frameon=False)
        fig.suptitle(f"{env_id}: {_stat_label(aggregate)} of {metric} across seeds, {ci:.0%} CI", fontsize=10)
        _note_few_runs(fig, list(seeds.values()), ci)
        figures[env_id] = fig
    return figures


def plot_experiments(runs, metric=FINAL_METRIC, x="policy_step", ci=CI_LEVEL, out_dir="results/report",
                     points=100, reps=1000, seed=0) -> list[Path]:
    """One PNG per environment, one panel per experiment: each seed's ``metric`` as a thin line with
    its evaluation points marked, under the IQM across seeds and its stratified-bootstrap band."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data, grid, paths = runs[runs.metric == metric], on_grid(runs, metric, x, points), []
    if grid.empty:
        return paths
    for env_id, ge in data.groupby("env_id"):
        experiments = sorted(ge.experiment.unique())
        names = short_names(experiments, algos_of(ge), {e: ge[ge.experiment == e].run.nunique() for e in experiments})
        cols = min(3, len(experiments))
        rows = -(-len(experiments) // cols)
        fig = Figure(figsize=(max(4.2 * cols, 7.5), 3.2 * rows + 0.4), dpi=100, layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
        for ax, exp in zip(axes, experiments):
            for run, d in ge[ge.experiment == exp].groupby("run"):
                d = d.groupby(x)["value"].mean()
                ax.plot(d.index, d.to_numpy(), lw=0.7, alpha=0.55, color="0.45", marker="o", ms=2.2)
            g = grid[(grid.env_id == env_id) & (grid.experiment == exp)]
            table = g.pivot(index=x, columns="run", values="value")
            band = _band(table, iqm, ci, reps, seed)
            ax.plot(table.index, iqm(table.to_numpy(), axis=1), color="C0", lw=2, drawstyle="steps-post",
                    label="IQM")
            ax.fill_between(table.index, band[:, 0], band[:, 1], step="post", color="C0", alpha=0.25,
                            label=f"{ci:.0%} CI")
            ax.set_title(names[exp], fontsize=8)
            _finish_axes(ax, x, metric)
        for ax in axes[len(experiments):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"{env_id}: {metric} of each seed (grey, dots: evaluations), IQM across seeds (blue)",
                     fontsize=10, wrap=True)
        _note_few_runs(fig, [ge[ge.experiment == e].run.nunique() for e in experiments], ci)
        paths.append(out_dir / f"{_slug(env_id)}__{_slug(metric)}__seeds.png")
        fig.savefig(paths[-1])
    return paths


def plot_intervals(summary: pd.DataFrame, out_dir="results/report", ci=CI_LEVEL) -> list[Path]:
    """One PNG per environment: IQM, mean and median of the final scores with their CIs, a row per experiment."""
    out_dir, paths = Path(out_dir), []
    out_dir.mkdir(parents=True, exist_ok=True)
    for env_id, g in summary.groupby("env_id"):
        g = g.iloc[::-1]  # the first experiment on top
        fig = Figure(figsize=(9, 0.9 + 0.42 * len(g)), dpi=100)
        axes = fig.subplots(1, len(STATISTICS), sharey=True)
        for ax, name in zip(axes, STATISTICS):
            point = g[f"final_{name}"].to_numpy()
            err = np.abs(np.vstack([point - g[f"final_{name}_low"], g[f"final_{name}_high"] - point]))
            ax.errorbar(point, np.arange(len(g)), xerr=err, fmt="o", color="C0", ecolor="C0", capsize=3, lw=2)
            ax.set_title(_stat_label(name), fontsize=9)
            ax.set_xlabel("final score", fontsize=8)
            ax.grid(alpha=0.3, axis="x")
            ax.tick_params(labelsize=7)
        names = short_names(g.experiment, algos_of(g))
        axes[0].set_yticks(np.arange(len(g)), g.experiment.map(names), fontsize=7)
        fig.suptitle(f"{env_id}: final scores across seeds, {ci:.0%} stratified-bootstrap CIs", fontsize=10)
        fig.tight_layout()
        _note_few_runs(fig, list(g.n_seeds), ci)
        paths.append(out_dir / f"{_slug(env_id)}__intervals.png")
        fig.savefig(paths[-1])
    return paths


def plot_improvement(summary: pd.DataFrame, out_dir="results/report", ci=CI_LEVEL) -> list[Path]:
    """One PNG per environment with a baseline: P(experiment > baseline) with its CI, a row per experiment."""
    out_dir, paths = Path(out_dir), []
    out_dir.mkdir(parents=True, exist_ok=True)
    for env_id, g in summary[summary.poi.notna()].groupby("env_id"):
        g = g.iloc[::-1]
        names = short_names(summary[summary.env_id == env_id].experiment, algos_of(summary))
        fig = Figure(figsize=(8, 1.6 + 0.45 * len(g)), dpi=100)
        ax = fig.add_subplot()
        err = np.abs(np.vstack([g.poi - g.poi_low, g.poi_high - g.poi]).astype(float))
        ax.errorbar(g.poi.astype(float), np.arange(len(g)), xerr=err, fmt="o", color="C2", capsize=3, lw=2)
        ax.axvline(0.5, color="0.5", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.6, len(g) - 0.4)
        ax.set_yticks(np.arange(len(g)), g.experiment.map(names), fontsize=7)
        ax.set_xlabel(f"P(experiment > baseline), baseline: {names[g.baseline.iloc[0]]}", fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        ax.set_title(f"{env_id}: probability of improvement over the baseline, {ci:.0%} CI\n"
                     f"(0.5: no better, no worse)", fontsize=9)
        fig.tight_layout()
        n = dict(zip(summary.experiment, summary.n_seeds))
        _note_few_runs(fig, [min(n[e], n[b]) for e, b in zip(g.experiment, g.baseline)], ci, seeds_for_improvement(ci),
                       "seeds on each side")
        paths.append(out_dir / f"{_slug(env_id)}__improvement.png")
        fig.savefig(paths[-1])
    return paths


def _note_few_runs(fig, counts, ci, need=None, unit="seeds") -> None:
    """Under a figure whose CIs rest on fewer runs than they need: say so on the figure itself."""
    need = need or seeds_for_ci(ci)
    if counts and min(counts) < need:
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):  # keep a strip at the bottom for the note
            fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
        fig.text(0.01, 0.005, f"\u2020 CIs from {min(counts)} runs are narrower than {ci:.0%}: "
                              f"a {ci:.0%} CI needs at least {need} {unit}", fontsize=7, color="#a05000")


def short_names(names, algos: dict | None = None, seeds: dict | None = None) -> dict:
    """Plot labels: a sweep's variants share "<stem>__"; drop that prefix so the swept values stand out.

    algos (experiment -> algorithm, algos_of): when the experiments trained different algorithms, each label
    names its own, "pendulum (ppo)" beside "pendulum_sac (sac)"; seeds (experiment -> runs): "(n=3)"."""
    names = list(names)
    stems = {n.split("__", 1)[0] for n in names}
    if len(stems) == 1 and all("__" in n for n in names):
        short = {n: n.split("__", 1)[1].replace("__", ", ") for n in names}
    else:
        short = {n: n for n in names}
    algos = algos if algos and len({algos.get(n) for n in names}) > 1 else {}
    for n in names:
        extra = ([str(algos.get(n) or "unknown")] if algos else []) + ([f"n={seeds[n]}"] if n in (seeds or {}) else [])
        short[n] += f" ({', '.join(extra)})" if extra else ""
    return short


def algos_of(frame: pd.DataFrame) -> dict:
    """experiment -> its algorithm, from load_runs' or summarise's frame ({} for a frame without them)."""
    if "algo" not in frame or frame.empty:
        return {}
    return {e: a for e, a in frame.groupby("experiment")["algo"].first().items() if isinstance(a, str)}


def _stat_label(name: str) -> str:
    return {"iqm": "IQM", "mean": "Mean", "median": "Median"}.get(name, name)


def _finish_axes(ax, x, metric) -> None:
    ax.set_xlabel(X_LABELS.get(x, x), fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------- the whole report
@dataclass
class Report:
    results_dir: Path
    out_dir: Path
    metric: str
    window: float
    ci: float
    runs: pd.DataFrame
    info: pd.DataFrame  # one row per run
    summary: pd.DataFrame  # one row per experiment
    diff: pd.DataFrame  # experiments x the config keys that differ
    warnings: list[str]
    figures: list[Path] = field(default_factory=list)
    configs: dict = field(default_factory=dict)  # experiment -> its resolved config (differences per environment)
    interactive: dict = field(default_factory=dict)  # env_id -> plotly figure (rlkit/analysis/compare.py)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))

    @property
    def final_definition(self) -> str:
        return (f"A run's final score is the mean of its {self.metric} over the last {self.window:.0%} of its "
                "policy steps (its last evaluation if none falls there). Aggregates over seeds: IQM, mean and "
                f"median with {self.ci:.0%} stratified-bootstrap CIs; probability of improvement P(X > baseline) "
                "as Agarwal et al. (2021) define it.")

    def header_html(self) -> str:
        import rlkit
        from rlkit.runs.rundir import git_commit

        esc = html.escape
        warn = "".join(f"<li>{esc(w)}</li>" for w in self.warnings)
        return (f"<p>{esc(self.created)} · rlkit {esc(rlkit.__version__)} · commit {esc(git_commit() or 'unknown')}"
                f" · {esc(str(self.results_dir))}</p><p>{esc(self.final_definition)}</p>"
                + (f"<div class='warn'><b>Warnings</b><ul>{warn}</ul></div>" if warn else ""))

    def evaluations_html(self) -> str:
        """rlkit eval's files beside the training's final scores: a row per run x evaluation (evals/<name>.csv),
        so the same policies under changed env parameters read as a robustness table."""
        table = evaluations(self.results_dir, self.ci)
        if table.empty:
            return "<p>No evaluations (<code>rlkit eval RUN</code> writes RUN/evals/&lt;name&gt;.csv).</p>"
        finals = {(r["experiment"], r["run"]): r["final"] for r in self.info.to_dict("records")}
        table.insert(3, "training's final score", [readable(finals.get((e, r))) for e, r in zip(table.experiment, table.run)])
        return table.to_html(index=False, escape=True)

    def videos_html(self) -> str:
        """Each experiment's final policy playing: the latest videos/<policy_step>.mp4 of its first run that has one
        (eval.video_every, or rlkit video), by relative path like the runs' other files."""
        esc = html.escape
        cells = []
        for experiment, path in final_videos(self.results_dir).items():
            src = esc(os.path.relpath(path, self.out_dir))
            cells.append(f"<figure><video src='{src}' controls muted loop preload='metadata' width='360'></video>"
                         f"<figcaption>{esc(experiment)}: {esc(path.parent.parent.name)}, policy step "
                         f"{readable(int(path.stem))}</figcaption></figure>")
        if not cells:
            return "<p>No videos (set eval.video_every, or run <code>rlkit video RUN</code>).</p>"
        return f"<div class='videos'>{''.join(cells)}</div>"

    def runs_html(self) -> str:
        esc = html.escape
        if self.info.empty:
            return "<p>No runs.</p>"

        def link(path, label):
            if not isinstance(path, str):  # the file does not exist (None, NaN in the frame)
                return ""
            return f'<a href="{esc(os.path.relpath(path, self.out_dir))}">{esc(label)}</a>'

        rows = []
        for r in self.info.to_dict("records"):
            state = r["state"] if r["state"] != "failed" else f"failed: {r['error']}"
            files = " ".join(link(r[name], name) for name in ("train.ipynb", "config.yaml", "metrics.csv"))
            rows.append(f"<tr><td>{esc(r['experiment'])}</td><td>{esc(r['run'])}</td><td>{esc(str(r['seed']))}</td>"
                        f"<td class='{esc(r['state'])}'>{esc(state)}</td><td>{readable(r['policy_step'])}</td>"
                        f"<td>{readable(r['final'])}</td><td>{readable(r.get('train_final'))}</td>"
                        f"<td>{readable(r['sps'])}</td><td>{files}</td></tr>")
        head = "".join(f"<th>{h}</th>" for h in ("experiment", "run", "seed", "state", "policy steps",
                                                  "final score", f"final {TRAIN_METRIC} (training)", "median SPS",
                                                  "files"))
        return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def build(results_dir="results", out_dir=None, metric=FINAL_METRIC, x="policy_step", window=FINAL_WINDOW,
          baseline=None, ci=CI_LEVEL, figures=True) -> Report:
    """Load every run under ``results_dir``, score and summarise them, draw the figures into ``out_dir``
    (default ``results_dir/report``). A relative ``results_dir`` is inside the repository."""
    results_dir = repo_path(results_dir).resolve()
    out_dir = repo_path(out_dir).resolve() if out_dir else results_dir / "report"
    if not find_runs(results_dir):  # a fresh checkout: say what to do, in the report itself
        empty = pd.DataFrame()
        return Report(results_dir, out_dir, metric, window, ci, empty, empty, empty, empty, [str(_no_runs(results_dir))])
    labels, notes = experiment_labels(results_dir)  # every run's config.yaml read once for the whole report
    runs = load_runs(results_dir, labels)
    info = load_run_info(results_dir, runs, metric, window, labels)
    summary = summarise(runs, metric, window, ci, baseline=baseline)
    configs = experiment_configs(results_dir, labels)
    diff = config_diff(configs)
    rep = Report(results_dir, out_dir, metric, window, ci, runs, info, summary, diff,
                 notes + warnings_for(summary, info, metric, ci), configs=configs)
    if figures:
        from rlkit.analysis.compare import comparison_figures

        rep.interactive = comparison_figures(runs, ci=ci)
        # the comparison: the same experiments against steps (x) and against the training loop's wall time
        steps = x if x != "wall_time" else "policy_step"
        rep.figures = (plot_experiments(runs, metric, x, ci, out_dir)
                       + plot_metric(runs, metric, (steps, "wall_time"), "iqm", ci, out_dir)
                       + plot_intervals(summary, out_dir, ci) + plot_improvement(summary, out_dir, ci))
    return rep


def evaluations(results_dir, ci=CI_LEVEL) -> pd.DataFrame:
    """One row per evals/<name>.csv of every run: episodes, mean and IQM of the returns with their CIs."""
    rows = []
    for run in find_runs(results_dir):
        for path in sorted((run / "evals").glob("*.csv")):
            try:
                returns = pd.read_csv(path)["return"].dropna().to_numpy(float)
            except (OSError, ValueError, KeyError):  # not an evaluation file
                continue
            if not len(returns):
                continue
            row = {"experiment": run.parent.name, "run": run.name, "evaluation": path.stem, "episodes": len(returns)}
            for name, stat in (("mean", mean), ("IQM", iqm)):
                low, high = stratified_bootstrap_ci([returns], stat, ci)
                row[f"{name} [{ci:.0%} CI]"] = with_ci(float(stat(returns)), low, high)
            rows.append(row)
    return pd.DataFrame(rows)


def final_videos(results_dir) -> dict:
    """{experiment: the latest numbered video of its first run (by directory name) that has videos}."""
    videos = {}
    for run in find_runs(results_dir):
        numbered = [p for p in (run / "videos").glob("*.mp4") if p.stem.isdigit()]
        if numbered and run.parent.name not in videos:
            videos[run.parent.name] = max(numbered, key=lambda p: int(p.stem))
    return videos


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
         "td,th{padding:3px 7px;border:1px solid #ccc;text-align:left}img{max-width:100%}"
         ".warn{background:#fff4e0;border:1px solid #e0a040;padding:0.3em 1em}.failed{color:#b00}"
         ".videos{display:flex;flex-wrap:wrap;gap:1em}")


def write_index(rep: Report, title="rlkit report") -> Path:
    """Write ``summary.csv``, ``runs.csv`` and ``index.html`` into the report's out_dir: the header, one section
    per environment (rlkit/analysis/layout.py: the answer first), every run. Figures by relative path; the
    interactive ones load plotly.min.js from beside the page (no network, no kernel). Returns index.html."""
    from rlkit.analysis import layout
    from rlkit.analysis.compare import figures_html, write_plotly_js

    out = rep.out_dir
    out.mkdir(parents=True, exist_ok=True)
    rep.summary.to_csv(out / "summary.csv", index=False)
    rep.info.to_csv(out / "runs.csv", index=False)  # every run: state, error, final score, SPS, files
    esc = html.escape
    script = f"<script src='{write_plotly_js(out)}'></script>" if rep.interactive else ""
    sections = "\n".join(layout.section_html(rep, env_id, figures_html({env_id: rep.interactive[env_id]})
                                             if env_id in rep.interactive else "", out)
                         for env_id in layout.environments(rep))
    page = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style>{script}</head><body><h1>{esc(title)}</h1>\n{rep.header_html()}\n"
            f"{sections}\n<h2>The final policies playing</h2>\n{rep.videos_html()}\n"
            f"<h2>Evaluations anew</h2>\n{rep.evaluations_html()}\n<h2>Runs</h2>\n{rep.runs_html()}\n</body></html>\n")
    (out / "index.html").write_text(page)
    return out / "index.html"


def write_report(results_dir="results", out_dir=None, metric=FINAL_METRIC, x="policy_step",
                 window=FINAL_WINDOW, baseline=None, ci=CI_LEVEL) -> Path:
    """The whole report in-process (what the notebook does). Returns index.html."""
    return write_index(build(results_dir, out_dir, metric, x, window, baseline, ci))


def check_metric(runs: list[Path], metric: str) -> None:
    """ValueError naming the metrics there are, when no run logged ``metric`` (a typo gives an empty report)."""
    seen = set()
    for r in runs:
        try:
            with open(r / "metrics.csv", errors="replace") as f:
                for line in f:
                    parts = line.rstrip("\n").split(",")
                    if len(parts) == len(COLUMNS):
                        if parts[4] == metric:
                            return
                        seen.add(parts[4])
        except OSError:
            continue
    seen.discard("metric")
    raise ValueError(f"--metric {metric}: no run logged it; choose one of {', '.join(sorted(seen)) or '(none)'}")


def run_report(results_dir="results", out_dir=None, metric=FINAL_METRIC, x="policy_step", window=FINAL_WINDOW,
               baseline=None, ci=CI_LEVEL, kernel_name=None) -> Path:
    """Execute notebooks/report.ipynb with papermill on ``results_dir``; the executed notebook goes to
    ``out_dir/report.ipynb``. Returns ``out_dir/index.html``."""
    import papermill as pm

    from rlkit.runs.kernels import IPCKernelManager, default_kernel_name

    results_dir = Path(results_dir).resolve()
    runs = find_runs(results_dir)
    if not runs:  # fail here, clearly, not deep inside the kernel
        raise _no_runs(results_dir)
    experiments = sorted({r.parent.name for r in runs})
    if baseline is not None and baseline not in experiments:
        raise ValueError(f"--baseline {baseline}: no such experiment; choose one of {', '.join(experiments)}")
    if not 0 < window <= 1:
        raise ValueError(f"--window {window} must be in (0, 1]: the fraction of a run's policy steps in its final score")
    check_metric(runs, metric)
    out_dir = Path(out_dir).resolve() if out_dir else results_dir / "report"
    if any(out_dir.glob("*/metrics.csv")):
        raise ValueError(f"{out_dir} holds the runs of an experiment named '{out_dir.name}', where the report "
                         "would be written; rename that experiment's folder (and its params file)")
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(results_dir=str(results_dir), out_dir=str(out_dir), metric=metric, x=x, window=window,
                  baseline=baseline, ci=ci)
    # cwd = the repository, so the kernel imports this rlkit even when not pip-installed
    pm.execute_notebook(str(NOTEBOOK), str(out_dir / "report.ipynb"), parameters=params,
                        kernel_name=kernel_name or default_kernel_name(), progress_bar=False,
                        kernel_manager_class=IPCKernelManager, cwd=str(REPO_ROOT))
    return out_dir / "index.html"
