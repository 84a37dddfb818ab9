"""PPO beside SAC on one environment, from real runs: the report's comparison figure (policy steps and wall time
side by side), labels that name the algorithm, the summary's algo column, the interactive figure's wall-time view."""
import numpy as np
import pandas as pd
import pytest

from rlkit.analysis import layout, report
from rlkit.analysis.compare import comparison_figures

EVERY = {"total_steps": 400, "log_every": 100, "checkpoint_every": 400, "eval": {"every": 100, "episodes": 1},
         "env": {"id": "Pendulum-v1"}}
PPO = {**EVERY, "parallel": {"num_threads": 1, "envs_per_thread": 2},
       "algo": {"batch_size": 100, "mini_batch_size": 50, "k_epochs": 1, "hidden_sizes": [16]}}
SAC = {**EVERY, "parallel": {"num_threads": 1, "envs_per_thread": 1}, "learning_starts": 50, "train_every": 4,
       "algo": {"name": "sac", "hidden_sizes": [16], "mini_batch_size": 16, "buffer_size": 1000}}
PANELS = ["policy steps", report.X_LABELS["wall_time"]]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """results/pendulum (PPO) and results/pendulum_sac (SAC), 2 seeds each, 400 policy steps, evaluated every 100."""
    import rlkit

    root = tmp_path_factory.mktemp("algos")
    # compile the fast paths first: otherwise the first run's wall time holds the compilation and no longer
    # overlaps its other seed's
    rlkit.train({**PPO, "total_steps": 100}, root / "warm-up", progress=False)
    for name, cfg in (("pendulum", PPO), ("pendulum_sac", SAC)):
        for seed in (0, 1):
            rlkit.train({**cfg, "seed": seed}, root / "results" / name / f"seed{seed}", progress=False)
    return root / "results"


def evaluations(results):
    """Per run: its first and last evaluation's policy step and wall time, read from metrics.csv."""
    runs = report.load_runs(results)
    return runs[runs.metric == "eval/return"].groupby(["experiment", "run"]).agg(
        first_step=("policy_step", "min"), last_step=("policy_step", "max"),
        first_time=("wall_time", "min"), last_time=("wall_time", "max"))


def test_summary_and_labels_name_the_algorithm(results):
    rep = report.build(results, figures=False)
    assert dict(zip(rep.summary.experiment, rep.summary.algo)) == {"pendulum": "ppo", "pendulum_sac": "sac"}
    assert set(rep.info.algo) == {"ppo", "sac"}  # runs.csv too
    headline = layout.headline_html(rep, "Pendulum-v1")
    assert "<td>pendulum (ppo)</td>" in headline and "<td>pendulum_sac (sac)</td>" in headline
    # one algorithm: nothing to tell apart, the labels stay the experiments' names
    assert report.short_names(["a", "b"], {"a": "ppo", "b": "ppo"}) == {"a": "a", "b": "b"}
    assert report.short_names(["a", "b"], {"a": "ppo", "b": "sac"}, {"a": 3}) == {"a": "a (ppo, n=3)", "b": "b (sac)"}


def test_one_figure_with_steps_and_wall_time_side_by_side(results):
    runs = report.load_runs(results)
    [(env_id, fig)] = report.metric_figures(runs, reps=50).items()
    assert env_id == "Pendulum-v1"
    [legend] = fig.legends  # one legend for both panels
    assert [t.get_text() for t in legend.get_texts()] == ["pendulum (ppo, n=2)", "pendulum_sac (sac, n=2)"]
    colours = {t.get_text(): h.get_color() for t, h in zip(legend.texts, legend.legend_handles)}
    left, right = fig.axes
    assert [left.get_xlabel(), right.get_xlabel()] == PANELS and left.get_legend() is right.get_legend() is None
    ev = evaluations(results)
    for ax, first, last in ((left, "first_step", "last_step"), (right, "first_time", "last_time")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        drawn = 0
        for exp, e in ev.groupby(level="experiment"):
            label = f"{exp} ({'sac' if 'sac' in exp else 'ppo'}, n=2)"
            lo, hi = e[first].max(), e[last].min()  # the range every seed reached
            if hi < lo:  # one seed's whole run before the other's first evaluation: said, not drawn
                assert label not in lines and label in ax.get_title()
                continue
            x = lines[label].get_xdata()
            assert x[0] == pytest.approx(lo) and x[-1] == pytest.approx(hi)
            assert lines[label].get_color() == colours[label]  # the legend's colour in both panels
            drawn += 1
        assert drawn >= 1
        # the panel spans the longest run's reach: 400 policy steps on the left, seconds of wall time on the right
        reach = max(line.get_xdata()[-1] for line in ax.get_lines())
        assert ax.get_xlim()[0] < reach <= ax.get_xlim()[1]
    assert max(line.get_xdata()[-1] for line in left.get_lines()) == ev.last_step.max() == 400
    assert max(line.get_xdata()[-1] for line in right.get_lines()) <= ev.last_time.max() < 400


def test_a_line_that_cannot_be_drawn_is_named_on_its_panel():
    from test_report import tidy

    # the same policy steps, but seed 1's wall time all after seed 0's: no wall time both reached
    runs = pd.concat([tidy("s0", [0, 100], [1.0, 2.0]).assign(wall_time=[0.0, 1.0]),
                      tidy("s1", [0, 100], [3.0, 4.0]).assign(wall_time=[5.0, 6.0])])
    left, right = report.metric_figures(runs, reps=20)["Env-v0"].axes
    assert [line.get_label() for line in left.get_lines()] == ["e (n=2)"] and not right.get_lines()
    assert right.get_title() == "not drawn, its runs' ranges do not overlap: e (n=2)"


def test_the_report_shows_the_comparison(results, tmp_path):
    rep = report.build(results, tmp_path / "out")
    figure = tmp_path / "out" / "Pendulum-v1__eval-return__policy_step__wall_time.png"
    assert figure in rep.figures and figure.stat().st_size > 10_000
    assert not any(p.name.endswith(("__policy_step.png", "__wall_time.png")) and p != figure for p in rep.figures)
    assert figure in layout.figures_of(rep, "Pendulum-v1")  # the notebook shows what figures_of lists
    page = report.write_index(rep).read_text()
    assert f'<img src="{figure.name}"' in page
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary.algo) == ["ppo", "sac"]


def test_the_interactive_comparison_puts_wall_time_on_x(results):
    runs = report.load_runs(results)
    fig = comparison_figures(runs, reps=20)["Pendulum-v1"]
    [menu] = fig.layout.updatemenus
    [button] = [b for b in menu.buttons if b.label == "eval/return vs wall time of the training loop (s)"]
    shown = [t for t, visible in zip(fig.data, button.args[0]["visible"]) if visible and t.name]
    assert {t.name for t in shown} <= {"pendulum (ppo, n=2)", "pendulum_sac (sac, n=2)"} and shown
    assert button.args[1]["xaxis.title.text"] == "wall time of the training loop (s)"
    ev = evaluations(results)
    for trace in shown:
        assert np.max(trace.x) <= ev.last_time.max() and np.min(trace.x) >= ev.first_time.min()
