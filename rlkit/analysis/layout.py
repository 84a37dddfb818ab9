"""The report read at a glance: one section per environment, the answer first.

Each section opens with a headline table that fits a notebook's column (experiment, seeds, final IQM with its
CI, median, probability of improvement over the baseline, the runs' states), then what differs between that
environment's experiments (keys that differ only because the environments differ are not differences), the
interactive comparison (rlkit/analysis/compare.py), and the static figures that show something the interactive
one does not (each seed's curve, the IQM against policy steps and wall time side by side, the final scores'
intervals, the probability of improvement). A figure with nothing to draw is one line saying why. report.ipynb
and index.html render the same sections.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rlkit.analysis.report import (_slug, algos_of, config_diff, few_seeds_note, readable, seeds_for_ci,
                                   seeds_for_improvement, short_names, with_ci)

HEADLINE_STYLE = ("<style>.rlkit-headline td,.rlkit-headline th{padding:3px 8px;border-bottom:1px solid #ddd;"
                  "text-align:left}.rlkit-headline .score{white-space:nowrap;font-weight:600}"
                  ".rlkit-headline{border-collapse:collapse;font-size:13px;max-width:100%}"
                  ".rlkit-note{color:#555;font-style:italic}</style>")


def environments(rep) -> list[str]:
    return sorted(rep.summary.env_id.unique()) if not rep.summary.empty else []


def _states(info: pd.DataFrame, experiment: str) -> str:
    counts = info[info.experiment == experiment].state.value_counts()
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def headline_html(rep, env_id: str) -> str:
    """The answer for one environment, narrow enough for a notebook: no config columns. A CI that rests on fewer
    runs than its level needs is marked \u2020, with the note under the table (rlkit.analysis.report.seeds_for_ci)."""
    s = rep.summary[rep.summary.env_id == env_id]
    names = short_names(s.experiment, algos_of(s))
    need, need_poi = seeds_for_ci(rep.ci), seeds_for_improvement(rep.ci)
    seeds = dict(zip(s.experiment, s.n_seeds))
    rows, marked = [], False
    for r in s.to_dict("records"):
        few = "\u2020" if r["n_seeds"] < need and np.isfinite(r["final_iqm"]) else ""
        if r["baseline"] == r["experiment"]:
            poi = "baseline"
        elif np.isfinite(r["poi"]):
            poi = with_ci(r["poi"], r["poi_low"], r["poi_high"])
            poi += "\u2020" if min(seeds[r["experiment"]], seeds.get(r["baseline"], 0)) < need_poi else ""
        else:
            poi = ""
        marked = marked or bool(few) or poi.endswith("\u2020")
        cells = [html.escape(names[r["experiment"]]), str(r["n_seeds"]),
                 f"<span class='score'>{with_ci(r['final_iqm'], r['final_iqm_low'], r['final_iqm_high'])}{few}</span>",
                 readable(r["final_median"]), poi, readable(r.get("train_final_iqm", np.nan)),
                 html.escape(_states(rep.info, r["experiment"]))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    # the training episodes' return (sampled actions) beside the evaluation's: a gap shows at once (a greedy
    # evaluation that scores 0 while training succeeds)
    head = "".join(f"<th>{h}</th>" for h in ("experiment", "seeds", f"final IQM [{rep.ci:.0%} CI]", "median",
                                             "P(> baseline) [CI]", "training return (IQM)", "runs"))
    note = f"<p class='rlkit-note'>{html.escape(few_seeds_note(rep.ci))}</p>" if marked else ""
    return f"{HEADLINE_STYLE}<table class='rlkit-headline'><tr>{head}</tr>{''.join(rows)}</table>{note}"


def differences(rep, env_id: str) -> pd.DataFrame:
    """The config keys that differ between this environment's experiments (within it, what the env implies,
    action_dim, observ_dim, env.id, is the same everywhere and drops out)."""
    experiments = set(rep.summary[rep.summary.env_id == env_id].experiment)
    configs = {e: c for e, c in rep.configs.items() if e in experiments}
    return config_diff(configs) if len(configs) > 1 else pd.DataFrame()


def differences_html(rep, env_id: str) -> str:
    diff = differences(rep, env_id)
    if diff.empty:
        n = int((rep.summary.env_id == env_id).sum())
        return ("<p class='rlkit-note'>One experiment on this environment.</p>" if n == 1 else
                "<p class='rlkit-note'>The experiments' resolved configs do not differ (apart from the seed).</p>")
    return "<p><b>What differs</b></p>" + diff.to_html(escape=True)


# the static figures that add to the interactive one: each seed, the IQM against steps and wall time side by side
# (the interactive one shows one x axis at a time), the final intervals, the improvement
SHOWN = re.compile(r"__(.+__seeds|.+__wall_time|intervals|improvement)\.png$")


def figures_of(rep, env_id: str) -> list[Path]:
    prefix = _slug(env_id) + "__"
    return [Path(f) for f in rep.figures if Path(f).name.startswith(prefix) and SHOWN.search(Path(f).name)]


def notes(rep, env_id: str) -> list[str]:
    """One line for each figure there is nothing to draw for."""
    out = []
    runs = rep.runs[(rep.runs.env_id == env_id) & (rep.runs.metric == rep.metric)]
    evaluations = runs.groupby("run").size()
    if runs.empty:
        out.append(f"No run has logged {rep.metric} yet: no curves.")
    elif evaluations.max() < 2:
        out.append(f"Each run has one {rep.metric} so far: nothing to draw a curve from (its value is in the table).")
    s = rep.summary[rep.summary.env_id == env_id]
    if len(s) < 2:
        out.append("One experiment: no probability of improvement to show (it needs a baseline and another "
                   "experiment on the same environment).")
    return out


def section_html(rep, env_id: str, interactive: str, out_dir: Path) -> str:
    """One environment's section of index.html: headline, differences, interactive figure, static figures."""
    esc = html.escape
    images = "".join(f'<p><img src="{esc(os.path.relpath(f, out_dir))}" alt="{esc(f.name)}"></p>'
                     for f in figures_of(rep, env_id))
    lines = "".join(f"<p class='rlkit-note'>{esc(n)}</p>" for n in notes(rep, env_id))
    return (f"<section><h2>{esc(env_id)}</h2>{headline_html(rep, env_id)}{differences_html(rep, env_id)}"
            f"{interactive}{lines}{images}</section>")


def show(rep) -> None:
    """report.ipynb's body: each environment's section, the interactive figure live in JupyterLab."""
    from IPython.display import HTML, Image, display

    for env_id in environments(rep):
        display(HTML(f"<h2>{html.escape(env_id)}</h2>{headline_html(rep, env_id)}{differences_html(rep, env_id)}"))
        if env_id in rep.interactive:
            display(rep.interactive[env_id])
        for line in notes(rep, env_id):
            display(HTML(f"<p class='rlkit-note'>{html.escape(line)}</p>"))
        for figure in figures_of(rep, env_id):
            display(Image(filename=figure))
