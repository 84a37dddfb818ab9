"""A run directory that cannot be lost, duplicated or silently corrupted; bad input that gets one line.

In-process tests, one per guarantee of the README's "Bad input" and "Checkpoint and resume" sections;
tests/test_faults.py injects the faults into real `rlkit train` processes.
"""
import json
import os
import time

import pytest
import torch

import faultenvs  # noqa: F401 - registers the misbehaving envs
from conftest import ROOT, learned_rows, run_cli
from rlkit import ConfigError, RunExistsError, load_config, train
from rlkit.runs.checkpoint import CheckpointError, load_checkpoint
from rlkit.loop.guards import NonFiniteError, check_memory, estimate_memory
from rlkit.runs.metrics import read_metrics
from rlkit.runs.rundir import RunLock, RunLockedError
from rlkit.envs.vector import EnvStepTimeout

CARTPOLE = "params/cartpole.yaml"


class Interrupt(Exception):
    pass


def stop_at(step):
    def callback(counters, metrics):
        if counters["policy_step"] >= step:
            raise Interrupt()
    return callback


def status(run):
    return json.loads((run / "status.json").read_text())


def snapshot(run):
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and p.name != ".lock"}


def one_line(out):
    lines = out.stderr.strip().splitlines()
    return len(lines) == 1 and "Traceback" not in out.stderr


class CliResult:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def cli(capsys):
    """`rlkit ARGS` in this process (a subprocess costs seconds of imports): exit code and stderr; an
    exception escaping main() is what would have been a traceback, and fails the test."""
    from rlkit.cli import main

    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return CliResult(code, capsys.readouterr().err)
    return call


@pytest.fixture
def finished(tmp_path, tiny):
    return train(CARTPOLE, tmp_path / "done", overrides=tiny, progress=False)


# ---------------------------------------------------------------- 1. --force validates before it deletes

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


# ---------------------------------------------------------------- 2. resume without a checkpoint

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


# ---------------------------------------------------------------- 3. one process per run directory

def test_a_locked_run_directory_is_refused_naming_the_holder(tmp_path, tiny):
    run = tmp_path / "r"
    with RunLock(run):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            train(CARTPOLE, run, overrides=tiny, progress=False)
        assert RunLock.holder(run) == str(os.getpid())
        assert not (run / "metrics.csv").exists() and not (run / "status.json").exists()
    assert RunLock.holder(run) is None
    train(CARTPOLE, run, overrides=tiny, progress=False)  # released: the run goes ahead


# ---------------------------------------------------------------- 4. nan and inf

def test_nan_reward_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
    overrides = {**tiny, "checkpoint_every": 128, "env.id": "faultenvs:NonFinite-v0",
                 "env.kwargs": {"at_step": 90, "env_index": 1}}
    run = tmp_path / "r"
    with pytest.raises(NonFiniteError, match=r"non-finite reward \(nan\) from environment 1 at policy step 360"):
        train(CARTPOLE, run, overrides=overrides, progress=False)
    s = status(run)
    assert s["state"] == "failed" and "NonFiniteError" in s["error"]
    good = load_checkpoint(run / "checkpoint.pt")
    assert good["counter"]["policy_step"] == 256  # the checkpoint before the nan, not one after it
    assert all(torch.isfinite(t).all() for t in good["agent"]["actor"].values())
    assert read_metrics(run / "metrics.csv").value.notna().all()
    assert "nan" not in (run / "metrics.csv").read_text()


def test_nan_stops_the_cli_with_one_line(tmp_path, tiny, cli):
    sets = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    out = cli("train", CARTPOLE, "--out", tmp_path / "r", "--no-progress", *sets,
              "--set", "env.id=faultenvs:NonFinite-v0", "--set", "env.kwargs={at_step: 10}")
    assert out.returncode == 1 and one_line(out), out.stderr
    assert "non-finite reward (nan) from environment 0 at policy step 40" in out.stderr


def test_inf_observation_is_caught(tmp_path, tiny):
    overrides = {**tiny, "env.id": "faultenvs:NonFinite-v0",
                 "env.kwargs": {"at_step": 5, "what": "obs", "value": float("inf"), "env_index": 3}}
    with pytest.raises(NonFiniteError, match=r"non-finite observation \(inf\) from environment 3 at policy step 20"):
        train(CARTPOLE, tmp_path / "r", overrides=overrides, progress=False)


def test_diverging_weights_stop_the_run(tmp_path, tiny):
    overrides = {**tiny, "algo.actor_lr": 1e38, "algo.critic_lr": 1e38, "algo.max_grad_norm": 1e38}
    with pytest.raises(NonFiniteError, match=r"non-finite .* at policy step \d+"):
        train(CARTPOLE, tmp_path / "r", overrides=overrides, progress=False)
    assert status(tmp_path / "r")["state"] == "failed"


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_float_keys_are_refused(value):
    with pytest.raises(ConfigError, match="'algo.actor_lr' must be a finite number"):
        load_config({}, [f"algo.actor_lr={value}"])
    with pytest.raises(ConfigError, match="'algo.gamma' must be a finite number"):
        load_config({}, [f"algo.gamma={value}"])


# ---------------------------------------------------------------- 5. resume verifies its files

def _cut_run(tmp_path, tiny):
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=tiny, progress=False, callbacks=[stop_at(400)])
    return run


def test_metrics_shorter_than_the_checkpoint_covers_is_refused(tmp_path, tiny):
    run = _cut_run(tmp_path, tiny)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:20]))
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"metrics.csv has 19 complete rows but checkpoint.pt covers \d+"):
        train(CARTPOLE, run, overrides=tiny, progress=False, resume=True)
    assert snapshot(run) == before


def test_flipped_bytes_in_the_checkpoint_are_refused(tmp_path, tiny):
    run = _cut_run(tmp_path, tiny)
    data = bytearray((run / "checkpoint.pt").read_bytes())
    for k in range(100):
        data[len(data) // 2 + 7 * k] ^= 0xFF
    (run / "checkpoint.pt").write_bytes(bytes(data))
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="checkpoint.pt: checksum mismatch"):
        train(CARTPOLE, run, overrides=tiny, progress=False, resume=True)
    assert snapshot(run) == before


def test_truncated_checkpoint_is_one_line_naming_the_file(tmp_path, tiny, cli):
    run = _cut_run(tmp_path, tiny)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    out = run_cli("train", "--resume", str(run), "--no-progress")  # a real process: no traceback printed
    assert out.returncode == 1 and one_line(out), out.stderr
    assert "checkpoint.pt: truncated" in out.stderr and "--force" in out.stderr
    (run / "checkpoint.pt").write_bytes(b"\x00garbage" * 10)
    out = cli("train", "--resume", str(run), "--no-progress")
    assert out.returncode == 1 and one_line(out) and "checkpoint.pt: cannot be loaded" in out.stderr, out.stderr


# ---------------------------------------------------------------- 6. envs that cannot be pickled

def test_unpicklable_envs_resume_from_reseeded_envs(tmp_path, tiny, capfd):
    overrides = {**tiny, "env.id": "faultenvs:Unpicklable-v0"}
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=overrides, progress=False, callbacks=[stop_at(400)])
    assert "envs cannot be pickled" in capfd.readouterr().err
    assert load_checkpoint(run / "checkpoint.pt")["envs"] is None
    train(CARTPOLE, run, overrides=overrides, progress=False, resume=True)
    s = status(run)
    assert s["state"] == "finished" and s["envs_restored"] is False and s["policy_step"] == 512


def test_lambda_registered_env_is_checkpointed_with_cloudpickle(tmp_path, tiny):
    overrides = {**tiny, "env.id": "faultenvs:LambdaCartPole-v0"}
    full = train(CARTPOLE, tmp_path / "full", overrides=overrides, progress=False)
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=overrides, progress=False, callbacks=[stop_at(400)])
    train(CARTPOLE, run, overrides=overrides, progress=False, resume=True)
    assert status(run)["envs_restored"] is True
    assert learned_rows(run).equals(learned_rows(full))


# ---------------------------------------------------------------- 7. hung envs

@pytest.mark.parametrize("backend, threads, index", [("thread", 1, 2), ("thread", 2, 0), ("thread", 2, 3),
                                                     ("process", 1, 1)])
def test_hung_env_step_fails_naming_the_env(tmp_path, tiny, backend, threads, index):
    envs = 4 // threads
    overrides = {**tiny, "env.id": "faultenvs:Hang-v0", "env.kwargs": {"at_step": 8, "env_index": index},
                 "env.step_timeout": 0.5, "parallel.backend": backend, "parallel.num_threads": threads,
                 "parallel.envs_per_thread": envs, "eval.every": 0}
    t0 = time.monotonic()
    with pytest.raises(EnvStepTimeout, match=f"environment {index} did not return from step"):
        train(CARTPOLE, tmp_path / "r", overrides=overrides, progress=False)
    assert time.monotonic() - t0 < 30
    s = status(tmp_path / "r")
    assert s["state"] == "failed" and "env.step_timeout=0.5" in s["error"]


def test_step_timeout_in_an_owner_thread_off_the_main_thread(tiny):
    """Off the main thread no alarm can interrupt the caller, but a hung worker thread is still timed."""
    import threading

    import numpy as np

    from rlkit.config import load_config
    from rlkit.envs.make import make_env
    from rlkit.envs.vector import ThreadedEnvs
    cfg = load_config({"env": {"id": "faultenvs:Hang-v0", "kwargs": {"at_step": 3, "env_index": 3,
                                                                      "every_step": 0.02}}})
    outcome = {}

    def collect():
        envs = ThreadedEnvs([lambda: make_env(cfg.env)] * 4, list(range(4)), (4,), True, 2, one_core=False,
                            step_timeout=0.5)
        envs._owners_ran = True
        envs.reset()
        try:
            for _ in range(5):
                envs.step(np.zeros(4, np.int64))
        except EnvStepTimeout as e:
            outcome["error"] = str(e)
        finally:
            envs.close()

    thread = threading.Thread(target=collect)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert "environment 3 did not return from step()" in outcome.get("error", ""), outcome


def test_step_timeout_survives_a_reset_sigalrm_handler():
    """pytest-timeout (and other code) resets SIGALRM to its default action, which ends the process: the
    next vector installs the watchdog's handler again, and an alarm is never sent to another handler."""
    import signal

    import numpy as np

    from rlkit.envs.make import make_env
    from rlkit.envs.vector import SerialEnvs
    cfg = load_config({"env": {"id": "faultenvs:Hang-v0", "kwargs": {"at_step": 2, "env_index": 1, "seconds": 5}}})
    SerialEnvs([lambda: make_env(cfg.env)], [0], (4,), True, step_timeout=0.3).close()
    previous = signal.signal(signal.SIGALRM, signal.SIG_DFL)
    try:
        envs = SerialEnvs([lambda: make_env(cfg.env)] * 2, [0, 1], (4,), True, step_timeout=0.3)
        envs.reset()
        with pytest.raises(EnvStepTimeout, match="environment 1 did not return from step"):
            for _ in range(3):
                envs.step(np.zeros(2, np.int64))
    finally:
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- 8. write errors leave no temporaries

def test_a_failed_checkpoint_write_keeps_the_old_one_and_no_tmp(tmp_path, tiny, monkeypatch):
    from rlkit.runs import checkpoint
    run = _cut_run(tmp_path, tiny)
    before = (run / "checkpoint.pt").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(CARTPOLE, run, overrides=tiny, progress=False, resume=True)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob("*.tmp"))
    assert "No space left on device" in status(run)["error"] and status(run)["state"] == "failed"


# ---------------------------------------------------------------- 9-11. YAML numbers, duplicate keys, files

def test_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("total_steps: 1e5\nalgo:\n  actor_lr: 3e-4\n  critic_lr: 1.0e-3\n  k_epochs: 4.0\n")
    cfg = load_config(path, ["log_every=2.048e3"])
    assert (cfg.total_steps, cfg.algo.actor_lr, cfg.algo.critic_lr, cfg.algo.k_epochs, cfg.log_every) == \
        (100_000, 3e-4, 1e-3, 4, 2048)
    assert isinstance(cfg.total_steps, int) and isinstance(cfg.algo.k_epochs, int)
    with pytest.raises(ConfigError, match="'algo.k_epochs' must be int"):
        load_config({}, ["algo.k_epochs=2.5"])


def test_duplicate_keys_are_refused_naming_key_and_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 1\nalgo:\n  batch_size: 64\n  gamma: 0.9\n  batch_size: 128\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: duplicate key 'batch_size' at line 5 \(first given at line 3\)"):
        load_config(path)


def test_unreadable_configs_are_one_line(tmp_path, cli):
    binary = tmp_path / "model.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("env: {id: 'Caf\xe9'}\n".encode("latin-1"))
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"seed: 1\x00\n")
    for path, expected in [(binary, "not a UTF-8 text file"), (latin, "not a UTF-8 text file"),
                           (nul, "malformed YAML"), (tmp_path, "is a directory")]:
        out = cli("train", str(path), "--out", str(tmp_path / "out"))
        assert out.returncode == 2 and one_line(out) and expected in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_env_module_that_raises_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "brokenenvs.py").write_text("raise RuntimeError('simulator library missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from rlkit.envs.make import make_env
    with pytest.raises(ConfigError, match="importing 'brokenenvs' .* raised RuntimeError: simulator library missing"):
        make_env(load_config({"env": {"id": "brokenenvs:Sim-v0"}}).env)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(ConfigError, match=r"'seed' must be in \[0, 4294967295\]"):
        load_config({"seed": seed})


def test_cli_seed_errors_are_one_line(tmp_path, cli):
    out = cli("train", CARTPOLE, "--set", "seed=-3", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and one_line(out) and "'seed' must be in" in out.stderr, out.stderr


# ---------------------------------------------------------------- 12. extending a finished run

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


# ---------------------------------------------------------------- 13. rlkit run

def test_run_names_the_params_file_with_the_bad_key(tmp_path):
    from rlkit.experiments.runner import run_batch
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo:\n  bach_size: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'algo.bach_size'"):
        run_batch([ROOT / CARTPOLE, bad], [0], results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_run_jobs_must_be_positive(tmp_path, jobs, cli):
    out = cli("run", CARTPOLE, "--jobs", jobs, "--results", str(tmp_path / "results"))
    assert out.returncode == 2 and one_line(out) and "--jobs" in out.stderr and ">= 1" in out.stderr, out.stderr


def test_interrupted_batch_says_how_to_resume(monkeypatch, capsys):
    from rlkit import cli
    from rlkit.experiments import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "run_batch", interrupted)
    assert cli.main(["run", CARTPOLE]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "re-run the same command" in err


# ---------------------------------------------------------------- 14-15. sizes and values that do nothing

def test_networks_too_large_for_memory_are_refused_at_once(tmp_path, cli, capsys):
    from rlkit.envs.make import inspect_env, make_env
    cfg = load_config({"algo": {"hidden_sizes": [64, 1_000_000]}})
    info = inspect_env(make_env(cfg.env))
    assert estimate_memory(cfg, info) > 2 * 2**30  # 131 M parameters, half a GiB each for weights alone
    with pytest.raises(ConfigError, match=r"'algo.hidden_sizes' \[64, 1000000\]: the networks would need about"):
        check_memory(cfg, info, available=2**30)
    check_memory(cfg, info, available=64 * 2**30)  # fits: one line says it will be slow
    assert "'algo.hidden_sizes' [64, 1000000]: the networks need about 10.1 GiB" in capsys.readouterr().err
    t0 = time.monotonic()
    out = cli("train", CARTPOLE, "--set", "algo.hidden_sizes=[64, 100000000000]", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and one_line(out) and "'algo.hidden_sizes'" in out.stderr, out.stderr
    assert time.monotonic() - t0 < 60 and not (tmp_path / "r").exists()


def test_values_that_do_nothing(tmp_path, tiny, capfd):
    with pytest.raises(ConfigError, match="'torch_threads' must be >= 1, got 0; use null"):
        load_config({"torch_threads": 0})
    with pytest.raises(ConfigError, match=r"'total_steps' \(100\) is smaller than learning_starts \+ one rollout"):
        train(CARTPOLE, tmp_path / "short", overrides={**tiny, "total_steps": 100, "algo.batch_size": 128},
              progress=False)
    assert not (tmp_path / "short").exists()
    train(CARTPOLE, tmp_path / "r", overrides={**tiny, "algo.log_std_init": -0.5}, progress=False)
    warnings = [line for line in capfd.readouterr().err.splitlines() if "log_std_init" in line]
    assert len(warnings) == 1 and "discrete actions" in warnings[0]
