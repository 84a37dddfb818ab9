"""The report's layout (rlkit/analysis/layout.py): per environment, the answer first; and its statistics
unchanged by the redesign."""
import numpy as np
import pandas as pd
import yaml

from rlkit.analysis import layout, report
from test_report import write_run

from conftest import ROOT

GOLDEN = ROOT / "tests" / "support" / "report_summary_before_0_2.csv"  # summarise() of the runs below at 7fe9242


def two_envs(res):
    for exp, finals in {"fast": [100.0, 110.0, 120.0], "slow": [50.0, 60.0, 90.0]}.items():
        for seed, final in enumerate(finals):
            write_run(res, exp, seed, final, last_step=8000 if (exp, seed) == ("slow", 2) else 10_000)
    for exp, finals in {"a": [-200.0, -150.0, -180.0], "b": [-140.0, -130.0, -170.0]}.items():
        for seed, final in enumerate(finals):
            write_run(res, exp, seed, final, env_id="Pendulum-v1")
    return res


def test_the_statistics_are_those_of_the_report_before_its_redesign(tmp_path):
    rep = report.build(two_envs(tmp_path / "results"), tmp_path / "out", figures=False)
    golden = pd.read_csv(GOLDEN)
    mine = rep.summary.reset_index(drop=True)
    assert list(mine.experiment) == list(golden.experiment)
    numeric = [c for c in golden.columns if pd.api.types.is_numeric_dtype(golden[c])]
    np.testing.assert_allclose(mine[numeric].to_numpy(float), golden[numeric].to_numpy(float), rtol=1e-12,
                               equal_nan=True)
    assert list(mine.baseline) == list(golden.baseline)


def test_each_environment_has_its_headline_and_its_own_differences(tmp_path):
    res = two_envs(tmp_path / "results")
    for seed in range(3):  # every seed of b trained another actor_lr (one seed alone would be split off)
        (res / "b" / f"seed{seed}" / "config.yaml").write_text(yaml.safe_dump(
            {"seed": seed, "env": {"id": "Pendulum-v1"}, "algo": {"actor_lr": 0.01}}))
    rep = report.build(res, tmp_path / "out", figures=False)
    assert layout.environments(rep) == ["CartPole-v1", "Pendulum-v1"]
    headline = layout.headline_html(rep, "Pendulum-v1")
    assert "<th>experiment</th><th>seeds</th><th>final IQM [95% CI]</th>" in headline
    assert "-146.7 [-170, -130]" in headline and "baseline" in headline and "3 finished" in headline
    assert "algo" not in headline  # no config columns in the headline
    # env.id differs across environments, so across the whole results it is a "difference"; within one it is not
    assert "env.id" in rep.diff.columns
    assert list(layout.differences(rep, "Pendulum-v1").columns) == ["algo.actor_lr"]
    assert layout.differences(rep, "CartPole-v1").empty


def test_a_figure_with_nothing_to_draw_is_one_line(tmp_path):
    res = tmp_path / "results"
    write_run(res, "once", 0, 5.0, last_step=0)  # one evaluation only
    rep = report.build(res, tmp_path / "out")
    notes = layout.notes(rep, "CartPole-v1")
    assert any("one eval/return so far: nothing to draw" in n for n in notes)
    assert any("no probability of improvement" in n for n in notes)


def test_no_figure_title_is_clipped(tmp_path):
    """Every title of every static figure lies inside its PNG (a single experiment's per-seed figure was 420 px
    wide under a title twice that)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    res = tmp_path / "results"
    for seed, final in enumerate([10.0, 20.0, 30.0]):
        write_run(res, "a_single_experiment_with_a_long_name", seed, final, env_id="Pendulum-v1")
    drawn = []
    original = Figure.savefig

    def savefig(fig, path, *args, **kwargs):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer, box = canvas.get_renderer(), fig.bbox
        texts = [fig._suptitle] if fig._suptitle else []
        texts += [ax.title for ax in fig.axes if ax.get_title()]
        for text in texts:
            extent = text.get_window_extent(renderer)
            drawn.append((str(path), text.get_text(), box.x0 <= extent.x0 and extent.x1 <= box.x1))
        return original(fig, path, *args, **kwargs)

    import pytest
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Figure, "savefig", savefig)
        report.build(res, tmp_path / "out")
    assert drawn and all(inside for _, _, inside in drawn), [d for d in drawn if not d[2]]
