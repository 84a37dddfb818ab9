"""rlkit eval (evals/<name>.csv, metrics.csv untouched), videos (rlkit video, eval.video_every), live TensorBoard."""
import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

import rlkit
from conftest import TINY
from rlkit.cli import main
from rlkit.runs.metrics import read_metrics
from rlkit.trained.evaluate import default_seeds
from rlkit.trained.video import VideoError, record_video
from trained_runs import trained_runs  # noqa: F401 (the fixture)


def test_eval_writes_its_own_file_and_never_touches_metrics(trained_runs, capsys):
    run = trained_runs["multidiscrete"]
    before = (run / "metrics.csv").read_bytes()
    assert main(["eval", str(run), "--episodes", "6"]) == 0
    assert main(["eval", str(run), "--episodes", "6"]) == 0  # a second evaluation of that name is kept beside
    out = capsys.readouterr().out
    assert (run / "metrics.csv").read_bytes() == before
    first, second = pd.read_csv(run / "evals" / "final.csv"), pd.read_csv(run / "evals" / "final_2.csv")
    assert list(first.columns) == ["episode", "seed", "return", "length", "policy_step", "deterministic"]
    assert len(first) == 6 and first.seed.tolist() == default_seeds(rlkit.load(run).cfg, 6)
    pd.testing.assert_frame_equal(first, second)  # the same seeds, the greedy policy: the same episodes
    mean = first["return"].mean()
    assert f"6 episodes: mean {mean:,.1f} [95% CI " in out and "; IQM " in out
    last = read_metrics(run / "metrics.csv").query("metric == 'eval/return'").value.iloc[-1]
    assert f"the run's last evaluation: {last:,.1f} at policy step 512" in out


def test_eval_on_a_changed_env_and_chosen_seeds(trained_runs, capsys):
    run = trained_runs["multidiscrete"]
    assert main(["eval", str(run), "--seeds", "0-3", "--set", "env.kwargs.length=7", "--sample"]) == 0
    table = pd.read_csv(run / "evals" / "env.kwargs.length=7__sampled.csv")
    assert table.seed.tolist() == [0, 1, 2, 3] and (table.length == 7).all()  # the changed env: 7-step episodes
    assert not table.deterministic.any()
    assert main(["eval", str(run), "--set", "env.kwargs.nope=1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_record_video_writes_every_step(trained_runs, tmp_path):
    policy = rlkit.load(trained_runs["vector"])
    path = record_video(policy, tmp_path / "play.mp4", steps=30)
    frames = iio.imread(path)
    assert frames.shape[0] == 31 and frames.shape[-1] == 3  # the reset's frame and one per policy step
    assert frames.std() > 0  # an image, not a blank
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_a_video_of_n_steps_plays_game_after_game(trained_runs, tmp_path):
    policy = rlkit.load(trained_runs["vector"])  # Pendulum: 200-step episodes
    frames = iio.imread(record_video(policy, tmp_path / "long.mp4", steps=250))
    assert len(frames) == 1 + 250 + 1  # two resets' frames and one per policy step


def test_an_env_that_cannot_render_is_one_line(trained_runs, capsys):
    run = trained_runs["multidiscrete"]  # toy_envs' SpaceEnv has no render()
    with pytest.raises(VideoError, match="cannot render frames"):
        record_video(rlkit.load(run), run / "x.mp4", steps=3)
    assert main(["video", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlkit video: error: toy_envs:ToyMultiDiscrete-v0 cannot render"), err
    assert not (run / "videos").exists() or not list((run / "videos").glob("*"))


def test_video_every_records_during_training_and_the_final_policy(tmp_path):
    run = rlkit.train("params/cartpole.yaml", tmp_path / "run", progress=False,
                      overrides={**TINY, "total_steps": 640, "eval.video_every": 512})
    assert sorted(p.name for p in (run / "videos").iterdir()) == ["512.mp4", "640.mp4"]
    assert iio.imread(run / "videos" / "640.mp4").shape[0] > 1


def test_video_every_on_an_env_that_cannot_render_never_fails_the_run(tmp_path, capsys):
    from rlkit.runs.rundir import read_status

    run = rlkit.train({"env": {"id": "toy_envs:ToyMultiDiscrete-v0"}}, tmp_path / "run", progress=False,
                      overrides={**TINY, "eval.video_every": 256})
    assert read_status(run)["state"] == "finished"
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("videos:")]
    assert len(lines) == 1 and "cannot render" in lines[0]


def test_live_tensorboard_holds_the_rows_of_metrics_csv(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = rlkit.train("params/cartpole.yaml", tmp_path / "run", progress=False,
                      overrides={**TINY, "log.tensorboard": True})
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    metrics = read_metrics(run / "metrics.csv")
    assert sorted(acc.Tags()["scalars"]) == sorted(metrics.metric.unique())
    for name, rows in metrics.groupby("metric"):
        events = acc.Scalars(name)
        assert [e.step for e in events] == rows.policy_step.tolist(), name
        np.testing.assert_allclose([e.value for e in events], rows.value.to_numpy(), rtol=1e-6)


def test_the_report_shows_evaluations_beside_the_training(trained_runs, tmp_path):
    import shutil

    from rlkit.analysis.report import build, write_index

    run = tmp_path / "results" / "toy" / "seed0"
    shutil.copytree(trained_runs["multidiscrete"], run)
    shutil.rmtree(run / "evals", ignore_errors=True)
    for length in (5, 9):
        assert main(["eval", str(run), "--episodes", "4", "--set", f"env.kwargs.length={length}"]) == 0
    page = write_index(build(tmp_path / "results", figures=False)).read_text()
    table = page.split("<h2>Evaluations anew</h2>")[1].split("<h2>")[0]
    assert "env.kwargs.length=5" in table and "env.kwargs.length=9" in table
    assert "<td>5 [5, 5]</td>" in table and "<td>9 [9, 9]</td>" in table  # SpaceEnv pays 1 a step: return = length


def test_live_tensorboard_after_a_resume_holds_each_step_once(tmp_path):
    """The interrupted session wrote steps past its checkpoint; the resumed one writes them again from there."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlkit.runs.events import LiveEvents

    first = LiveEvents(tmp_path / "tb")
    for step in (100, 200, 300, 400):  # checkpoint at 200, killed after 400
        first({"policy_step": step}, {"eval/return": step / 100})
    first.close()
    resumed = LiveEvents(tmp_path / "tb")
    for step in (300, 400, 500):
        resumed({"policy_step": step}, {"eval/return": step / 10})
    resumed.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("eval/return")] == [(100, 1), (200, 2), (300, 30), (400, 40), (500, 50)]


def test_an_episode_with_lives_is_the_whole_game(tmp_path):
    """With env.wrappers (a lost life ends the learner's episode, rewards clipped) eval and video play the game:
    3 lives x 4 steps, 5 a step unclipped, as the trainer's Evaluator scores it."""
    from rlkit.trained.evaluate import evaluate

    wrappers = [{"type": "rlkit.envs.wrappers.EpisodicLife"},
                {"type": "gymnasium.wrappers.ClipReward", "kwargs": {"min_reward": -1, "max_reward": 1}}]
    run = rlkit.train({"env": {"id": "toy_envs:ToyLives-v0", "wrappers": wrappers}}, tmp_path / "run",
                      overrides=TINY, progress=False)
    table = evaluate(rlkit.load(run), 2)
    metrics = read_metrics(run / "metrics.csv")
    assert table["return"].tolist() == [60.0] * 2
    assert metrics.query("metric == 'eval/return'").value.iloc[-1] == 60.0
    # the game's policy steps, over its lives (EpisodicLife's no-op after a lost life is no policy step)
    assert table["length"].mean() == metrics.query("metric == 'eval/length'").value.iloc[-1] < 12
