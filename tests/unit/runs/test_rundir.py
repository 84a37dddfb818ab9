"""One run directory, one history: --force checks before it deletes, a resume without a checkpoint starts a clean
history, one process at a time holds the directory, and a finished run is extended only by total_steps."""
import os

import pytest
import torch

import faultenvs  # noqa: F401 - registers the misbehaving envs
from conftest import learned_rows
from rlkit import ConfigError, RunExistsError, train
from rlkit.runs.rundir import RunLock, RunLockedError
from rundirs import CARTPOLE, Interrupt, cli, one_line, snapshot, status, stop_at  # noqa: F401 (cli is a fixture)


@pytest.fixture
def finished(tmp_path, tiny):
    return train(CARTPOLE, tmp_path / "done", overrides=tiny, progress=False)


@pytest.mark.parametrize("override", [
    {"env.id": "CartPoel-v1"},
    {"env.kwargs": {"no_such_kwarg": 1}},
    {"env.id": "faultenvs:TextObservation-v0"},
    {"algo.hidden_sizes": [64, 100_000_000_000]},
    {"device": "cuda:0"},
], ids=["env-id", "env-kwargs", "spaces", "network-size", "device"])
def test_force_with_a_bad_config_deletes_nothing(finished, tiny, override):
    if "device" in override and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device cuda:0 is valid here")
    before = snapshot(finished)
    with pytest.raises(ConfigError):
        train(CARTPOLE, finished, overrides={**tiny, **override}, force=True, progress=False)
    assert snapshot(finished) == before


def test_resume_without_checkpoint_starts_a_clean_history(tmp_path, tiny, capfd):
    overrides = {**tiny, "checkpoint_every": 0}  # only at the end: a crash leaves rows and no checkpoint
    reference = train(CARTPOLE, tmp_path / "ref", overrides=overrides, progress=False)
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=overrides, progress=False, callbacks=[stop_at(300)])
    old = (run / "metrics.csv").read_bytes()
    assert not (run / "checkpoint.pt").exists() and len(old) > 100
    capfd.readouterr()
    train(CARTPOLE, run, overrides=overrides, progress=False, resume=True)
    lines = [line for line in capfd.readouterr().err.splitlines() if "no checkpoint" in line]
    assert len(lines) == 1 and "metrics.csv.1" in lines[0]
    assert (run / "metrics.csv.1").read_bytes() == old  # the earlier attempt's rows, apart
    assert learned_rows(run).equals(learned_rows(reference))  # one history, not two glued together
    assert status(run)["state"] == "finished"


def test_a_locked_run_directory_is_refused_naming_the_holder(tmp_path, tiny):
    run = tmp_path / "r"
    with RunLock(run):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            train(CARTPOLE, run, overrides=tiny, progress=False)
        assert RunLock.holder(run) == str(os.getpid())
        assert not (run / "metrics.csv").exists() and not (run / "status.json").exists()
    assert RunLock.holder(run) is None
    train(CARTPOLE, run, overrides=tiny, progress=False)  # released: the run goes ahead


def test_a_finished_run_can_be_extended_by_total_steps(tmp_path, tiny, cli):
    long = train(CARTPOLE, tmp_path / "long", overrides={**tiny, "total_steps": 768}, progress=False)
    short = train(CARTPOLE, tmp_path / "short", overrides=tiny, progress=False)
    with pytest.raises(RunExistsError, match="finished at policy_step 512; to train it further"):
        train(CARTPOLE, short, overrides=tiny, progress=False, resume=True)
    out = cli("train", "--resume", str(short), "--force")
    assert out.returncode == 2 and one_line(out) and "pass one of them" in out.stderr
    train(short / "config.yaml", short, overrides={"total_steps": 768}, progress=False, resume=True)
    assert status(short)["state"] == "finished" and status(short)["policy_step"] == 768
    # the same learning as a run that had 768 steps from the start (the finished run's closing
    # perf/steps rows at 512 are extra, as they are in any run's last rows)
    learning = ~learned_rows(long).metric.str.startswith("steps/")
    a, b = learned_rows(long)[learning], learned_rows(short)
    b = b[~b.metric.str.startswith("steps/")]
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))


def test_cli_extends_a_finished_run(tmp_path, tiny, cli):
    sets = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    run = tmp_path / "r"
    assert cli("train", CARTPOLE, "--out", str(run), "--no-progress", *sets).returncode == 0
    out = cli("train", "--resume", str(run), "--set", "total_steps=768", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert status(run)["policy_step"] == 768
    out = cli("train", "--resume", str(run), "--set", "algo.k_epochs=9", "--set", "total_steps=1024")
    assert out.returncode == 2 and "only total_steps may change" in out.stderr
