"""A loss named by import path in a params file, through the batch runner and the tuner with the real
train.ipynb: a sweep compares two losses, a study tunes around one, and a bad path stops the batch first."""
import os

import pytest

from conftest import ROOT, run_cli
from rlkit.runs.metrics import read_metrics

pytestmark = pytest.mark.timeout(300)
TINY = ["total_steps=256", "log_every=64", "parallel.envs_per_thread=4", "algo.batch_size=64",
        "algo.mini_batch_size=64", "algo.k_epochs=1", "eval.every=128", "eval.episodes=2"]


@pytest.fixture
def params(tmp_path, monkeypatch):
    """A params file naming tests/support/custom_parts.py's loss; the kernels import it from PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests" / "support"), str(ROOT)]))
    path = tmp_path / "parts.yaml"
    path.write_text("env: {id: CartPole-v1}\nalgo:\n  loss: {type: 'custom_parts:TaggedLoss'}\n")
    return path


def sets():
    return [arg for value in TINY for arg in ("--set", value)]


def test_a_grid_compares_two_losses_named_by_path(tmp_path, params):
    out = run_cli("run", str(params), "--grid", "algo.loss.type=custom_parts:TaggedLoss,custom_parts:kl_penalty_loss",
                  "--seeds", "0", "--jobs", "2", "--results", str(tmp_path / "results"), *sets())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    runs = sorted((tmp_path / "results").glob("parts__*/seed0"))
    assert len(runs) == 2, runs
    metrics = {run.parent.name: set(read_metrics(run / "metrics.csv").metric) for run in runs}
    tagged, kl = "parts__type=custom-parts-TaggedLoss", "parts__type=custom-parts-kl-penalty-loss"
    assert "custom/tag" in metrics[tagged] and "custom/kl" not in metrics[tagged]
    assert "custom/kl" in metrics[kl] and "custom/tag" not in metrics[kl]
    assert "eval/return" in metrics[kl]


def test_a_bad_loss_path_stops_the_batch_before_any_run(tmp_path, params):
    out = run_cli("run", str(params), "--grid", "algo.loss.type=custom_parts:TaggedLoss,custom_parts:NoSuchLoss",
                  "--seeds", "0", "--results", str(tmp_path / "results"), *sets())
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'algo.loss.type': module custom_parts has no NoSuchLoss" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("metrics.csv"))


def test_a_study_tunes_a_run_with_a_loss_named_by_path(tmp_path, params):
    out = run_cli("tune", str(params), "--space", "algo.actor_lr=log:1e-4:1e-3", "--trials", "1", "--seeds", "0",
                  "--results", str(tmp_path / "results"), "--pruner", "none", *sets())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    runs = list((tmp_path / "results" / "parts_tune").glob("trial*/seed0"))
    assert len(runs) == 1
    df = read_metrics(runs[0] / "metrics.csv")
    assert "custom/tag" in set(df.metric) and "eval/return" in set(df.metric)
