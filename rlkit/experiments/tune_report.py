"""The tuning report: optimisation history, parameter importances, intermediate values, the best trials'
learning curves and a table of every trial, in RESULTS/<name>_tune/tuning/index.html. (`rlkit report
RESULTS/<name>_tune` writes the usual report over the trials beside it, in report/.)"""
from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlkit.analysis.report import load_runs, plot_experiments, readable

TOP = 3  # trials whose learning curves the report shows


def trials_frame(study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "experiment": t.user_attrs.get("experiment"), "state": t.state.name,
                     "value": t.value if t.value is not None else np.nan,
                     "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                     **{k: v for k, v in t.params.items()}})
    return pd.DataFrame(rows)


def plot_history(study, path: Path) -> Path:
    trials = study.get_trials(deepcopy=False)
    fig = Figure(figsize=(7, 3.6), dpi=100)
    ax = fig.add_subplot()
    done = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE"]
    if done:
        n, v = np.array(done).T
        ax.plot(n, v, "o", color="C0", label="complete: IQM final score")
        ax.plot(n, np.maximum.accumulate(v), "-", color="C1", drawstyle="steps-post", label="best so far")
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state.name == "PRUNED" and t.intermediate_values]
    if pruned:
        n, v = np.array(pruned).T
        ax.plot(n, v, "x", color="0.5", label="pruned: last intermediate value")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{study.study_name}: optimisation history", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_importances(study, path: Path) -> Path | None:
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():  # "too few trials": the figure's title and the trial count say so
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):  # fewer than two complete trials, or nothing varied
        return None
    if not importances:
        return None
    fig = Figure(figsize=(6, 0.9 + 0.4 * len(importances)), dpi=100)
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[k] for k in names], color="C0")
    ax.set_xlabel("importance (Optuna's default evaluator, sums to 1)")
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    ax.set_title(f"{study.study_name}: parameter importances over {done} complete trials", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_intermediate(study, path: Path) -> Path | None:
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    fig = Figure(figsize=(7, 3.6), dpi=100)
    ax = fig.add_subplot()
    for t in trials:
        steps = sorted(t.intermediate_values)
        pruned = t.state.name == "PRUNED"
        ax.plot(steps, [t.intermediate_values[s] for s in steps], marker="." if not pruned else "x", lw=1,
                color="0.6" if pruned else None, alpha=0.8)
    ax.set_xlabel("policy steps")
    ax.set_ylabel("IQM over seeds of eval/return")
    ax.set_title(f"{study.study_name}: intermediate values (grey x: pruned)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_tune_report(study, tune_dir: Path) -> Path:
    out = Path(tune_dir) / "tuning"  # report/ is for `rlkit report` over the trials
    out.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study)
    frame.to_csv(out / "trials.csv", index=False)
    figures = [plot_history(study, out / "history.png"), plot_importances(study, out / "importances.png"),
               plot_intermediate(study, out / "intermediate.png")]
    best = frame[frame.state == "COMPLETE"].sort_values("value", ascending=False).head(TOP)
    try:
        runs = load_runs(tune_dir)
    except ValueError:
        runs = pd.DataFrame()
    if not runs.empty and len(best):
        top = runs[runs.experiment.isin(set(best.experiment))]
        figures += [p.rename(out / "best_trials.png") for p in plot_experiments(top, out_dir=out)[:1]]
    esc = html.escape
    shown = frame.assign(value=frame.value.map(readable))
    for key in [c for c in frame.columns if c not in ("trial", "experiment", "state", "value", "last_step")]:
        shown[key] = frame[key].map(lambda v: readable(v) if isinstance(v, (int, float)) else str(v))
    imgs = "".join(f'<p><img src="{esc(os.path.relpath(f, out))}" alt="{esc(Path(f).name)}"></p>'
                   for f in figures if f)
    b = study.best_trial
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>tuning report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{padding:3px 7px;border:1px solid #ccc}img{max-width:100%}</style></head><body>"
            f"<h1>Tuning: {esc(study.study_name)}</h1><p>Objective: IQM over seeds of each run's final score "
            f"(rlkit/analysis/scores.py), maximised. Best: trial {b.number} ({esc(str(b.user_attrs.get('experiment')))}), "
            f"{esc(readable(b.value))}, {esc(str(b.params))}; written to <a href='../best.yaml'>best.yaml</a>.</p>"
            f"<h2>Figures</h2>{imgs}<h2>Trials</h2>{shown.to_html(index=False)}</body></html>\n")
    (out / "index.html").write_text(page)
    return out / "index.html"
