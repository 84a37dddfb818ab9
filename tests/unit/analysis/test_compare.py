"""The interactive comparison: one figure per environment whose lines are the report's own IQM on its grid."""
import numpy as np
import pandas as pd

from rlkit.analysis.compare import X_AXES, comparison_figures, figures_html
from rlkit.analysis.report import on_grid
from rlkit.analysis.scores import iqm


def fake_runs():
    rows = []
    for env_id, experiments in (("CartPole-v1", ("a", "b")), ("Pendulum-v1", ("c",))):
        for exp in experiments:
            for seed in range(3):
                for k, step in enumerate(range(1000, 11000, 1000)):
                    for metric, value in (("eval/return", k * 10 + seed + (exp == "b") * 5),
                                          ("episode/return", k * 8 + seed)):
                        rows.append(dict(env_id=env_id, experiment=exp, run=f"seed{seed}", policy_step=step,
                                         env_step=4 * step, gradient_step=step // 10, wall_time=step / 1e3,
                                         metric=metric, value=float(value)))
    return pd.DataFrame(rows)


def test_one_figure_per_env_with_a_menu_of_views_and_the_reports_iqm():
    runs = fake_runs()
    figures = comparison_figures(runs, reps=50)
    assert list(figures) == ["CartPole-v1", "Pendulum-v1"]
    fig = figures["CartPole-v1"]
    [menu] = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == [f"{m} vs {X_AXES[x]}" for m in ("eval/return", "episode/return")
                                               for x in X_AXES]
    visible = [t for t in fig.data if t.visible]
    lines = [t for t in visible if t.name]
    assert [t.name for t in lines] == ["a (n=3)", "b (n=3)"] and len(visible) == 6  # a line and its band each
    grid = on_grid(runs, "eval/return", "policy_step")
    table = grid[(grid.env_id == "CartPole-v1") & (grid.experiment == "b")].pivot(
        index="policy_step", columns="run", values="value")
    np.testing.assert_allclose(lines[1].y, iqm(table.to_numpy(), axis=1))
    # each button shows exactly its own view's traces
    for button in menu.buttons:
        shown = button.args[0]["visible"]
        assert sum(shown) == 6 and len(shown) == len(fig.data)
    assert figures_html(figures).count("class='interactive'") == 2


def test_no_runs_no_figures():
    assert comparison_figures(pd.DataFrame(columns=["env_id", "experiment", "run", "metric"])) == {}
