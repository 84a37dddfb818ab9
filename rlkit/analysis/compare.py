"""Interactive comparison: one zoomable, hoverable figure per environment, in report.ipynb and in index.html.

Each figure holds every (metric, x axis) view of that environment's experiments, a menu picks the view, and
the legend picks the experiments (a click hides one, a double click keeps only it). A line is the IQM across
seeds on the same grid and with the same stratified-bootstrap band as the report's static figures
(rlkit.analysis.report.on_grid, rlkit.analysis.scores), so the two never disagree. Plotly draws it: the figure
is data and JavaScript, so it needs no kernel in index.html and stays interactive in JupyterLab.
"""
from __future__ import annotations

import pandas as pd

from rlkit.analysis.report import CI_LEVEL, _band, algos_of, on_grid, short_names
from rlkit.analysis.scores import iqm

METRICS = ("eval/return", "episode/return")
X_AXES = {"policy_step": "policy steps", "env_step": "env steps (frames)",
          "wall_time": "wall time of the training loop (s)"}


def views(runs: pd.DataFrame, metrics=METRICS) -> list[tuple[str, str]]:
    """The (metric, x) pairs the runs have data for, metric by metric."""
    have = set(runs.metric.unique()) if not runs.empty else set()
    return [(m, x) for m in metrics if m in have for x in X_AXES]


def comparison_figures(runs: pd.DataFrame, metrics=METRICS, ci=CI_LEVEL, points=100, reps=500, seed=0) -> dict:
    """env_id -> plotly Figure with a view menu (metric and x axis) and a legend of experiments."""
    import plotly.graph_objects as go

    figures, pairs = {}, views(runs, metrics)
    grids = {(m, x): on_grid(runs, m, x, points) for m, x in pairs}
    for env_id in sorted(runs.env_id.unique()) if not runs.empty else []:
        fig, owner = go.Figure(), []  # owner[i]: the view trace i belongs to
        experiments, algos = sorted(runs[runs.env_id == env_id].experiment.unique()), algos_of(runs)
        names = short_names(experiments, algos)
        for view_index, (m, x) in enumerate(pairs):
            grid = grids[(m, x)]
            if grid.empty or env_id not in set(grid.env_id):
                continue
            grid = grid[grid.env_id == env_id]
            labels = short_names(experiments, algos, grid.groupby("experiment").run.nunique().to_dict())
            for exp, g in grid.groupby("experiment"):
                table = g.pivot(index=x, columns="run", values="value")
                band, line = _band(table, iqm, ci, reps, seed), iqm(table.to_numpy(), axis=1)
                # a fixed color per experiment across views, even one where another experiment has no data
                color = f"hsl({(experiments.index(exp) * 137) % 360},65%,45%)"
                steps = table.index.to_numpy()
                fig.add_trace(go.Scatter(x=steps, y=band[:, 1], mode="lines", line=dict(width=0, shape="hv"),
                                         legendgroup=exp, showlegend=False, hoverinfo="skip"))
                fig.add_trace(go.Scatter(x=steps, y=band[:, 0], mode="lines", line=dict(width=0, shape="hv"),
                                         fill="tonexty", fillcolor=color.replace("hsl", "hsla").replace(")", ",0.2)"),
                                         legendgroup=exp, showlegend=False, hoverinfo="skip"))
                fig.add_trace(go.Scatter(x=steps, y=line, mode="lines", name=labels[exp], legendgroup=exp,
                                         line=dict(color=color, width=2, shape="hv"),
                                         hovertemplate=f"{names[exp]}<br>{X_AXES[x]}: %{{x:,.0f}}<br>IQM {m}: "
                                                       "%{y:.4g}<extra></extra>"))
                owner += [view_index] * 3
        present = sorted(set(owner))
        if not present:
            continue
        buttons = []
        for view_index in present:
            m, x = pairs[view_index]
            buttons.append(dict(label=f"{m} vs {X_AXES[x]}", method="update",
                                args=[{"visible": [o == view_index for o in owner]},
                                      {"xaxis.title.text": X_AXES[x], "yaxis.title.text": f"IQM of {m}"}]))
        first = pairs[present[0]]
        for trace, o in zip(fig.data, owner):
            trace.visible = o == present[0]
        fig.update_layout(
            title=dict(text=f"{env_id}: IQM across seeds, {ci:.0%} CI", x=0.01, xanchor="left", font=dict(size=14)),
            xaxis_title=X_AXES[first[1]], yaxis_title=f"IQM of {first[0]}", template="plotly_white",
            height=420, margin=dict(l=60, r=20, t=80, b=50), hovermode="x unified",
            legend=dict(orientation="h", yanchor="top", y=-0.18, x=0, font=dict(size=11)),
            updatemenus=[dict(buttons=buttons, direction="down", x=1, xanchor="right", y=1.16, yanchor="top",
                              showactive=True)])
        figures[env_id] = fig
    return figures


def figures_html(figures: dict) -> str:
    """The figures as <div>s for index.html; the page loads plotly.min.js once (write_plotly_js)."""
    return "\n".join(f"<div class='interactive'>{fig.to_html(full_html=False, include_plotlyjs=False)}</div>"
                     for fig in figures.values())


def write_plotly_js(out_dir) -> str:
    """plotly.min.js beside index.html (from the installed package: no network), once; its file name."""
    from pathlib import Path

    from plotly.offline import get_plotlyjs

    path = Path(out_dir) / "plotly.min.js"
    if not path.exists():
        path.write_text(get_plotlyjs())
    return path.name
