"""Fault injection on real runs: `python -m rlkit train` subprocesses, real signals, a real full disk.

Every test asserts what docs/runs.md, "Checkpoints and resume", promises: nothing is deleted, no
metric row is duplicated or missing, status.json says what happened, and a resumed run has the same
metrics as one that was never interrupted.

The runs step faultenvs' Hang-v0 (CartPole that sleeps 3 ms per step), slow enough that a signal lands
between the first checkpoint and the end. Faults go into subprocesses; resumes run in this process
(the same code path as `rlkit train --resume`, without another interpreter start: torch's import alone
takes seconds on a busy machine).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import faultenvs  # noqa: F401 - registers Hang-v0 for the resumes in this process
from conftest import ROOT, learned_rows
from rlkit import train
from rlkit.runs.rundir import RunLock

CARTPOLE = "params/cartpole.yaml"
SLOW = {"total_steps": 1024, "log_every": 128, "checkpoint_every": 256, "eval.every": 512, "eval.episodes": 1,
        "parallel.num_threads": 2, "parallel.envs_per_thread": 2, "algo.batch_size": 64,
        "algo.mini_batch_size": 32, "algo.k_epochs": 2, "env.id": "faultenvs:Hang-v0",
        "env.kwargs": {"every_step": 0.003}}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "support"), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def sets(overrides):
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]


def start(run, *args, overrides=SLOW):
    cmd = [sys.executable, "-m", "rlkit", "train", *args, "--no-progress"]
    if "--resume" not in args:
        cmd += [CARTPOLE, "--out", str(run), *sets(overrides)]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_take_ctrl_c)


def _take_ctrl_c():
    """In the child before it execs: SIGINT back to its default, as in a terminal. A suite started as a
    background job of a non-interactive shell inherits SIGINT ignored, and Python then never installs its
    Ctrl-C handler, so the Ctrl-C tests would time out."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def status(run):
    try:
        return json.loads((run / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def wait_until(predicate, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.01)


def after_first_checkpoint(run):
    return lambda: status(run).get("policy_step", 0) >= 256 and (run / "checkpoint.pt").exists()


def assert_clean(run):
    """No temporaries, and metrics.csv has whole rows only, each (step, metric) at most where expected."""
    assert not list(run.glob("*.tmp")), list(run.glob("*"))
    assert (run / "metrics.csv").read_bytes().endswith(b"\n")
    assert learned_rows(run).policy_step.is_monotonic_increasing


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must equal after its resume."""
    return learned_rows(train(CARTPOLE, tmp_path_factory.mktemp("ref") / "run", overrides=SLOW, progress=False))


def resume(run):
    return train(run / "config.yaml", run, resume=True, progress=False)


def test_kill_9_then_resume_is_identical_and_leaves_no_stale_lock(tmp_path, reference):
    run = tmp_path / "r"
    proc = start(run)
    wait_until(after_first_checkpoint(run), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunLock.holder(run) is None  # the kernel dropped the lock with the process
    resume(run)
    assert status(run)["state"] == "finished" and status(run)["envs_restored"] is True
    assert_clean(run)
    assert learned_rows(run).equals(reference)


def test_sigterm_marks_the_run_failed_and_it_resumes_identically(tmp_path, reference):
    run = tmp_path / "r"
    proc = start(run)
    wait_until(after_first_checkpoint(run), proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc, timeout=30)
    assert code == 143 and err.strip().splitlines() == ["rlkit train: terminated (SIGTERM); resume with --resume RUN_DIR"]
    s = status(run)
    assert s["state"] == "failed" and s["error"].startswith("terminated (SIGTERM)")
    assert_clean(run)
    resume(run)
    assert learned_rows(run).equals(reference)


def test_a_second_process_stops_at_once_and_ctrl_c_stops_a_hung_threaded_run(tmp_path):
    run = tmp_path / "r"
    hung = {**SLOW, "env.kwargs": {"at_step": 40, "every_step": 0.003}, "env.step_timeout": 0}  # every env hangs
    first = start(run, overrides=hung)
    wait_until(lambda: status(run).get("state") == "running" and (run / "metrics.csv").exists(), first)
    time.sleep(1.0)  # by now every env sleeps in its 40th step, in the caller and in the worker thread
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, err = finish(start(run, "--resume", str(run)), timeout=60)
    assert code == 2 and err.strip().splitlines() == [
        f"rlkit train: error: {run} is in use by another training process (pid {first.pid}); "
        "wait for it to end or stop it, or choose another --out directory"]
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # not a byte written
    t0 = time.monotonic()
    first.send_signal(signal.SIGINT)
    code, err = finish(first, timeout=30)
    assert time.monotonic() - t0 < 10, "the first Ctrl-C must stop the run"
    assert code == 130 and err.strip().splitlines() == ["rlkit train: interrupted; resume with --resume RUN_DIR"]
    assert status(run)["state"] == "failed" and status(run)["error"].startswith("interrupted")
    assert RunLock.holder(run) is None


def test_a_hung_env_fails_the_run_after_step_timeout(tmp_path):
    run = tmp_path / "r"
    hung = {**SLOW, "env.kwargs": {"at_step": 30, "env_index": 2}, "env.step_timeout": 1}
    code, err = finish(start(run, overrides=hung), timeout=60)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "environment 2 did not return from step() within env.step_timeout=1 s" in err
    assert status(run)["state"] == "failed" and "EnvStepTimeout" in status(run)["error"]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_marks_the_run_failed_leaves_no_tmp_and_resumes_identically(small_disk, reference):
    run = small_disk / "r"
    proc = start(run)
    wait_until(after_first_checkpoint(run), proc)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # take every free block: the run's next write fails
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    code, err = finish(proc, timeout=60)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "No space left on device" in err, err
    s = status(run)
    assert s["state"] == "failed" and "No space left on device" in s["error"]
    assert not list(run.glob("*.tmp"))
    filler.unlink()
    resume(run)
    assert_clean(run)
    assert learned_rows(run).equals(reference)


def test_batch_rerun_after_a_crash_before_the_first_checkpoint(tmp_path):
    """`rlkit run` resumes by re-running: a run that died before its first checkpoint starts a clean history."""
    from rlkit.experiments.runner import run_batch
    tiny = ["total_steps=256", "log_every=64", "eval.every=0", "checkpoint_every=0", "parallel.envs_per_thread=4",
            "algo.batch_size=64", "algo.mini_batch_size=64", "algo.k_epochs=1"]
    results = tmp_path / "results"
    run = results / "cartpole" / "seed0"

    class Crash(Exception):
        pass

    def crash(counters, metrics):
        if counters["policy_step"] >= 128:
            raise Crash()
    with pytest.raises(Crash):
        train(CARTPOLE, run, overrides=tiny, progress=False, callbacks=[crash])
    partial = (run / "metrics.csv").read_bytes()
    [result] = run_batch([ROOT / CARTPOLE], [0], results_dir=results, overrides=tiny, log=lambda line: None)
    assert result.state == "finished", result.error
    assert (run / "metrics.csv.1").read_bytes() == partial
    fresh = train(CARTPOLE, tmp_path / "fresh", overrides=tiny, progress=False)
    assert learned_rows(run).equals(learned_rows(fresh))


def test_batch_leaves_a_locked_run_alone(tmp_path):
    from rlkit.experiments.runner import run_batch
    results = tmp_path / "results"
    run = results / "cartpole" / "seed0"
    with RunLock(run):
        assert (run / ".lock").read_text() == f"{os.getpid()}\n"
        (run / "status.json").write_text('{"state": "running"}\n')
        lines = []
        [result] = run_batch([ROOT / CARTPOLE], [0], results_dir=results, overrides=["total_steps=256"], log=lines.append)
    assert result.state == "failed" and result.error.startswith("RunLockedError") and f"pid {os.getpid()}" in result.error
    assert json.loads((run / "status.json").read_text()) == {"state": "running"}  # the holder's, untouched
    assert not (run / "runner.log").exists()
    assert any("RunLockedError" in line for line in lines)
