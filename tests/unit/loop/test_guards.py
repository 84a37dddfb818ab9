"""The guards around a run: a nan or inf from an env, a loss or the weights stops it in one line and keeps the
last good checkpoint; networks too large for memory are refused at once; values that would do nothing are refused
or warned about."""
import time

import pytest
import torch

import faultenvs  # noqa: F401 - registers the misbehaving envs
from rlkit import ConfigError, load_config, train
from rlkit.loop.guards import NonFiniteError, check_memory, check_replay_disk, estimate_memory
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.metrics import read_metrics
from rundirs import CARTPOLE, cli, one_line, status  # noqa: F401 (cli is a fixture)


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



def test_a_memory_mapped_replay_memory_counts_against_the_disk_not_the_ram(tmp_path, monkeypatch):
    """algo.kwargs.replay_memory_map: RAM counts only what stays in memory; the files (and their undo journal)
    must fit in the free space of the run directory's filesystem, where files an earlier attempt left in
    <run_dir>/replay count as free (a resume reuses them, --force deletes them)."""
    from collections import namedtuple

    from rlkit.algos.base import check_config, learner_class
    from rlkit.envs.make import probe_env, resolve_env_fields
    mapped = {"algo": {"name": "dqn", "buffer_size": 10**13, "kwargs": {"replay_memory_map": True}}, "total_steps": 100}
    with pytest.raises(ConfigError) as e:
        train(mapped, tmp_path / "r", progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()
    assert str(e.value).startswith("'algo.kwargs.replay_memory_map': the replay memory's files would take about ")
    assert "lower algo.buffer_size" in str(e.value)

    cfg = load_config({**mapped, "algo": {**mapped["algo"], "buffer_size": 10**8}})
    info = probe_env(cfg.env)
    resolve_env_fields(cfg, info)
    check_config(cfg)
    check_memory(cfg, info, available=2**30)  # 10^8 CartPole transitions (3.6 GiB) on disk: no RAM of their own
    in_ram = load_config({**mapped, "algo": {"name": "dqn", "buffer_size": 10**8}})
    resolve_env_fields(in_ram, info)
    with pytest.raises(ConfigError, match="keep the memory on disk with algo.kwargs.replay_memory_map: true"):
        check_memory(in_ram, info, available=2**30)
    check_replay_disk(in_ram, info, tmp_path / "r", free=0)  # in RAM: no files
    need = 10**8 * (4 * 4 + 8 + 4 + 1 + 1 + 4)  # obs, action, reward, flags, final index (finals, journal on top)
    check_replay_disk(cfg, info, tmp_path / "r", free=2 * need)
    with pytest.raises(ConfigError, match=r"would take about 3.2 GiB in .*replay, more than the 3.2 GiB free there"):
        check_replay_disk(cfg, info, tmp_path / "r", free=need)
    with pytest.raises(ConfigError):  # two ranks: twice the files
        check_replay_disk(cfg, info, tmp_path / "r", world_size=2, free=int(1.5 * need))
    exact = learner_class("dqn").replay_file_bytes(cfg, info, 1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("rlkit.loop.guards.shutil.disk_usage", lambda path: usage(0, 0, exact - 2**20))
    with pytest.raises(ConfigError):
        check_replay_disk(cfg, info, tmp_path / "r")
    (tmp_path / "r" / "replay" / "rank0").mkdir(parents=True)
    (tmp_path / "r" / "replay" / "rank0" / "obs.npy").write_bytes(b"\1" * 2**21)  # an earlier attempt's: free
    check_replay_disk(cfg, info, tmp_path / "r")


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
