import json

import pytest

from conftest import learned_rows
from rlkit import RunExistsError, train
from rlkit.runs.metrics import read_metrics


def test_same_seed_same_metrics(tmp_path, tiny):
    a = train("params/cartpole.yaml", tmp_path / "a", overrides=tiny, progress=False)
    b = train("params/cartpole.yaml", tmp_path / "b", overrides=tiny, progress=False)
    va, vb = learned_rows(a), learned_rows(b)
    assert len(va) > 20 and va.equals(vb)
    c = train("params/cartpole.yaml", tmp_path / "c", overrides={**tiny, "seed": 1}, progress=False)
    assert not learned_rows(c).equals(va)


def test_files_written(tmp_path, tiny):
    run = train("params/pendulum.yaml", tmp_path / "r", overrides={**tiny, "env.max_episode_steps": 50}, progress=False)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["policy_step"] == 512 and status["error"] is None
    assert status["versions"]["torch"].startswith("2.13.0")
    assert "has_continuous: true" in (run / "config.yaml").read_text()
    df = read_metrics(run / "metrics.csv")
    assert {"episode/return", "eval/return", "loss/policy", "ppo/approx_kl", "ppo/clipfrac",
            "ppo/explained_variance", "perf/sps", "steps/replay_ratio"} <= set(df.metric)
    assert df.policy_step.is_monotonic_increasing
    assert df.iloc[-1].policy_step == 512 and (run / "checkpoint.pt").exists()
    # one perf/update_seconds row per training phase, each a part of the run's wall time
    update_seconds = df[df.metric == "perf/update_seconds"]
    phases = df[df.metric == "steps/update"].value.max()  # the counter after the last phase
    assert len(update_seconds) == phases > 1
    assert (update_seconds.value > 0).all() and update_seconds.value.sum() < status["wall_time"]


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, tiny):
    full = train("params/cartpole.yaml", tmp_path / "full", overrides=tiny, progress=False)

    def stop_late(counters, metrics):
        if counters["policy_step"] >= 400:  # after the checkpoint at 256, mid-way through later rollouts
            raise Interrupt()

    cut = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train("params/cartpole.yaml", cut, overrides=tiny, progress=False, callbacks=[stop_late])
    assert json.loads((cut / "status.json").read_text())["state"] == "failed"
    with pytest.raises(RunExistsError, match="--resume"):
        train("params/cartpole.yaml", cut, overrides=tiny, progress=False)
    train("params/cartpole.yaml", cut, overrides=tiny, progress=False, resume=True)
    assert learned_rows(cut).equals(learned_rows(full))


def test_finished_run_is_not_overwritten(tmp_path, tiny):
    run = train("params/cartpole.yaml", tmp_path / "r", overrides=tiny, progress=False)
    before = (run / "metrics.csv").read_bytes()
    with pytest.raises(RunExistsError, match="--force"):
        train("params/cartpole.yaml", run, overrides=tiny, progress=False)
    with pytest.raises(RunExistsError):
        train("params/cartpole.yaml", run, overrides=tiny, progress=False, resume=True)
    assert (run / "metrics.csv").read_bytes() == before
    train("params/cartpole.yaml", run, overrides={**tiny, "seed": 5}, progress=False, force=True)
    assert (run / "metrics.csv").read_bytes() != before


def test_resume_with_a_different_config_is_refused(tmp_path, tiny):
    def stop(counters, metrics):
        if counters["policy_step"] >= 300:
            raise Interrupt()
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train("params/cartpole.yaml", run, overrides=tiny, progress=False, callbacks=[stop])
    from rlkit import ConfigError
    with pytest.raises(ConfigError, match="algo.k_epochs"):
        train("params/cartpole.yaml", run, overrides={**tiny, "algo.k_epochs": 3}, progress=False, resume=True)


@pytest.mark.slow
def test_cartpole_learns(tmp_path):
    """Fixed seed, the real env, the shipped params: CartPole is solved well inside 20k policy steps."""
    run = train("params/cartpole.yaml", tmp_path / "r", progress=False,
                overrides={"total_steps": 20_000, "eval.every": 5_000, "seed": 0})
    evals = read_metrics(run / "metrics.csv").query("metric == 'eval/return'").value
    assert evals.max() >= 475, evals.tolist()


def test_sampled_evaluation_leaves_training_alone(tmp_path, tiny):
    """eval.deterministic: false samples the evaluation's actions from a generator of its own: every training
    row is the greedy-evaluation run's, the evaluations differ, and they repeat exactly."""
    def split(run):
        df = learned_rows(run)
        evals = df.metric.str.startswith("eval/")
        return df[~evals].reset_index(drop=True), df[evals].reset_index(drop=True)

    over = {**tiny, "eval.every": 128}
    greedy = split(train("params/cartpole.yaml", tmp_path / "g", overrides=over, progress=False))
    sampled = split(train("params/cartpole.yaml", tmp_path / "s", overrides={**over, "eval.deterministic": False},
                          progress=False))
    again = split(train("params/cartpole.yaml", tmp_path / "a", overrides={**over, "eval.deterministic": False},
                        progress=False))
    assert len(greedy[0]) > 20 and greedy[0].equals(sampled[0])
    assert len(sampled[1]) >= 4 * 3 and not sampled[1].equals(greedy[1])
    assert sampled[1].equals(again[1])


@pytest.mark.parametrize("config, overrides", [
    ("params/cartpole.yaml", {}),  # the numpy critic, 8 envs
    ("params/minatar_breakout.yaml", {"algo.batch_size": 64, "algo.mini_batch_size": 64}),  # the torch CNN
])
def test_the_rollouts_values_are_those_each_step_would_have_had(tmp_path, monkeypatch, config, overrides):
    """The critic runs once per rollout over every stored observation, in chunks: each [t, env] value equals a
    pass over that step's observations alone (the weights do not move during collection)."""
    import time

    import numpy as np

    from rlkit.algos import onpolicy
    from rlkit.loop import trainer as trainer_module
    from rlkit.config import load_config

    monkeypatch.setattr(onpolicy, "VALUE_CHUNK", 24)  # chunks that cut across steps and envs
    cfg = load_config(config, {"total_steps": 64, "eval.every": 0, "learning_starts": 0, **overrides})
    (tmp_path / "run").mkdir()
    trainer = trainer_module.Trainer(cfg, tmp_path / "run", progress=False)
    trainer.start = time.perf_counter()  # as run() sets it: ended episodes are logged with the wall time
    try:
        while not trainer.learner.memory.full:
            trainer.collect_iteration()
        values = trainer.learner.rollout_values()
        per_step = np.stack([trainer.agent.value(trainer.learner.memory.obs[t]) for t in range(trainer.learner.memory.rollout_len)])
    finally:
        trainer.close()
    assert values.shape == (trainer.learner.memory.rollout_len, cfg.num_envs, 1) and np.ptp(values) > 0
    np.testing.assert_allclose(values, per_step, rtol=1e-5, atol=1e-6)
