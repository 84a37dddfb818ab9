"""rlkit.load: a run's policy from policy.pt (weights only) and config.yaml, acting in the env's own spaces."""
import numpy as np
import pytest
import torch
import yaml

import rlkit
from rlkit.cli import main
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.policy_file import PolicyFileError, read_policy
from trained_runs import trained_runs  # noqa: F401 (the fixture)


@pytest.mark.parametrize("case", ["vector", "image", "dict", "multidiscrete"])
def test_load_holds_the_checkpoints_actor_and_normaliser(trained_runs, case):
    run = trained_runs[case]
    policy = rlkit.load(run)
    saved = load_checkpoint(run / "checkpoint.pt")  # our own run: trusted, to compare with
    for name, tensor in policy.actor.state_dict().items():
        assert torch.equal(tensor, saved["agent"]["actor"][name]), name
    np.testing.assert_array_equal(policy.obs_norm.rms.mean, saved["obs_norm"]["mean"])
    np.testing.assert_array_equal(policy.obs_norm.rms.var, saved["obs_norm"]["var"])
    assert policy.obs_norm.enabled == (case == "vector")
    assert policy.policy_step == 512
    # policy.pt holds nothing that needs unpickling
    state = torch.load(run / "policy.pt", weights_only=True)
    assert state["format"] == "rlkit-policy" and state["policy_step"] == 512


@pytest.mark.parametrize("case", ["vector", "image", "dict", "multidiscrete", "sac", "dqn"])
def test_act_one_observation_or_a_batch_in_the_envs_spaces(trained_runs, case):
    policy = rlkit.load(trained_runs[case])
    env = policy.make_env()
    obs, _ = env.reset(seed=1)
    batch = []
    for _ in range(5):
        action = policy.act(obs)
        assert env.action_space.contains(action), (action, env.action_space)
        batch.append(obs)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    actions = policy.act(np.stack(batch))
    assert len(actions) == 5
    # a batch's matmul may round differently from one row's: equal to float32 precision
    np.testing.assert_allclose(actions, np.stack([policy.act(o) for o in batch]), rtol=1e-5, atol=1e-6)
    sampled = policy.act(np.stack(batch), deterministic=False, generator=torch.Generator().manual_seed(0))
    assert all(env.action_space.contains(a) for a in sampled)
    env.close()


def test_a_dict_observation_raw_or_packed_gives_the_same_action(trained_runs):
    policy = rlkit.load(trained_runs["dict"])
    raw = [policy.obs_space.sample() for _ in range(4)]
    packed = np.stack([policy.layout.pack(o) for o in raw])
    batch = {k: np.stack([o[k] for o in raw]) for k in raw[0]}
    np.testing.assert_array_equal(policy.act(packed), [policy.act(o) for o in raw])
    np.testing.assert_array_equal(policy.act(batch), policy.act(packed))


def test_make_env_is_the_env_as_trained(trained_runs):
    policy = rlkit.load(trained_runs["image"])
    env = policy.make_env()
    assert env.spec.max_episode_steps == policy.cfg.env.max_episode_steps  # the kit's TimeLimit, in policy steps
    assert env.observation_space.shape == tuple(policy.info.obs_shape)
    env.close()


def test_the_policy_acts_as_it_did_in_the_runs_evaluation(trained_runs):
    """The final eval/return in metrics.csv, recomputed from the loaded policy on the evaluation's seeds."""
    from rlkit.runs.metrics import read_metrics
    from rlkit.trained.evaluate import evaluate

    run = trained_runs["multidiscrete"]
    policy = rlkit.load(run)
    metrics = read_metrics(run / "metrics.csv")
    last = metrics[metrics.metric == "eval/return"].value.iloc[-1]
    table = evaluate(policy, policy.cfg.eval.episodes)
    assert table["return"].mean() == pytest.approx(last)


def test_missing_or_foreign_policy_files_are_one_line(trained_runs, tmp_path, capsys):
    with pytest.raises(PolicyFileError, match="not a run directory"):
        rlkit.load(tmp_path)
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text((trained_runs["vector"] / "config.yaml").read_text())
    (run / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(PolicyFileError, match="did not write policy.pt"):
        rlkit.load(run)
    state = torch.load(trained_runs["vector"] / "policy.pt", weights_only=True)
    torch.save({**state, "version": 99}, run / "policy.pt")
    with pytest.raises(PolicyFileError, match="version 99"):
        read_policy(run / "policy.pt")
    for command in ("eval", "video", "export"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "policy file version 99" in err, err


def test_a_policy_file_from_before_algo_was_recorded_loads(trained_runs, tmp_path):
    import shutil

    run = tmp_path / "older"
    shutil.copytree(trained_runs["vector"], run)
    state = torch.load(run / "policy.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "algo"}, run / "policy.pt")
    obs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(rlkit.load(run).act(obs), rlkit.load(trained_runs["vector"]).act(obs))


def test_another_algorithms_policy_file_is_one_line(trained_runs):
    with pytest.raises(PolicyFileError, match="the policy file is a sac run's and config.yaml's algo.name is ppo"):
        rlkit.load(trained_runs["vector"], policy_file=trained_runs["sac"] / "policy.pt")


def test_a_changed_network_is_one_line(trained_runs, tmp_path):
    import shutil

    run = tmp_path / "changed"
    shutil.copytree(trained_runs["vector"], run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["algo"]["hidden_sizes"] = [32, 32]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(PolicyFileError, match="do not fit the network"):
        rlkit.load(run)


def test_a_discrete_observation_as_an_int_or_packed(tmp_path):
    import gymnasium as gym
    from gymnasium import spaces

    from conftest import TINY
    from toy_envs import SpaceEnv

    gym.register("ToyDiscreteObs-v0", entry_point=SpaceEnv,
                 kwargs={"observation_space": spaces.Discrete(5, start=2), "action_space": spaces.Discrete(3)})
    policy = rlkit.load(rlkit.train({"env": {"id": "ToyDiscreteObs-v0"}}, tmp_path / "run", overrides=TINY,
                                    progress=False))
    env = policy.make_env()
    packed, _ = env.reset(seed=0)  # the env as trained packs the index: value - start, in one slot
    raw = int(packed[0]) + 2
    assert policy.act(raw) == policy.act(packed)
    np.testing.assert_array_equal(policy.act(np.arange(2, 7)), [policy.act(v) for v in range(2, 7)])
    with torch.no_grad():  # the network on the packed indices 0..4 (values 2..6 less start)
        logits = policy.actor.net(torch.arange(5, dtype=torch.uint8)[:, None])
    np.testing.assert_array_equal(policy.act(np.arange(2, 7)), logits.argmax(-1).numpy())
