"""SAC and DQN runs load as PPO's do: policy.pt holds the network the learner acts with (rebuilt by the learner's
own acting_network), so the loaded policy acts, evaluates and records exactly as the trained learner did."""
import imageio.v3 as iio
import numpy as np
import pytest
import torch

import rlkit
from conftest import TINY
from rlkit import load_config
from rlkit.algos.base import learner_class
from rlkit.envs.make import probe_env
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.metrics import read_metrics
from rlkit.trained.evaluate import evaluate
from rlkit.trained.export import export, sample_observations
from rlkit.trained.video import record_video
from trained_runs import OFF_POLICY, trained_runs  # noqa: F401 (the fixture)


def trained_learner(run):
    """The learner of the run's last checkpoint, rebuilt as the trainer builds it (our own run: trusted)."""
    cfg = load_config(run / "config.yaml")
    learner = learner_class(cfg.algo.name)(cfg, probe_env(cfg.env), "cpu", np.random.default_rng(0),
                                           torch.Generator().manual_seed(0))
    learner.load_state_dict(load_checkpoint(run / "checkpoint.pt"))
    return learner


@pytest.mark.parametrize("case", ["sac", "dqn"])
def test_the_loaded_policy_acts_as_the_learner_that_trained_it(trained_runs, case):
    run = trained_runs[case]
    policy, learner = rlkit.load(run), trained_learner(run)
    state = torch.load(run / "policy.pt", weights_only=True)
    assert state["algo"] == case and not state["obs_norm"]["enabled"] and policy.policy_step == 512
    obs = sample_observations(policy, 1000, seed=5)
    greedy = policy.act(obs)
    assert len(np.unique(greedy, axis=0)) > 1  # a trained network tells observations apart; no constant passes
    np.testing.assert_array_equal(greedy, learner.policy(obs))  # its weights, its map onto the env's actions
    # sampled: SAC's Gaussian draw, DQN epsilon-greedy at epsilon_end, from the same random numbers
    draws = [policy.act(obs, deterministic=False, generator=torch.Generator().manual_seed(7)),
             learner.policy(obs, torch.Generator().manual_seed(7))]
    np.testing.assert_array_equal(*draws)
    assert (draws[0] != greedy).any()


def test_dqn_samples_epsilon_greedy_at_epsilon_end(trained_runs):
    policy = rlkit.load(trained_runs["dqn"])
    obs = sample_observations(policy, 4000, seed=6)
    other = policy.act(obs, deterministic=False, generator=torch.Generator().manual_seed(1)) != policy.act(obs)
    # a random action (1 in 2 on CartPole) in a fraction epsilon_end = 0.05 of the steps
    assert policy.actor.epsilon == 0.05 and other.mean() == pytest.approx(0.05 / 2, abs=0.01)


@pytest.mark.parametrize("case", ["sac", "dqn"])
def test_evaluate_replays_the_runs_last_evaluation(trained_runs, case):
    run = trained_runs[case]
    policy = rlkit.load(run)
    last = read_metrics(run / "metrics.csv").query("metric == 'eval/return'").value.iloc[-1]
    table = evaluate(policy, policy.cfg.eval.episodes)  # the evaluation's own reset seeds
    # the trainer evaluated both episodes in one batch, this one at a time: equal to float32 rounding
    assert table["return"].mean() == pytest.approx(last, rel=1e-5)


@pytest.mark.parametrize("case", ["sac", "dqn"])
def test_a_video_of_the_loaded_policy(trained_runs, case, tmp_path):
    frames = iio.imread(record_video(rlkit.load(trained_runs[case]), tmp_path / "play.mp4", steps=20))
    assert frames.shape[0] >= 21 and frames.shape[-1] == 3 and frames.std() > 0  # CartPole: a new game adds a frame


def test_video_every_records_a_dqn_run_while_it_trains(trained_runs):
    assert iio.imread(trained_runs["dqn"] / "videos" / "512.mp4").shape[0] > 1


def test_dqn_actions_that_count_from_a_start(tmp_path):
    """Discrete(3, start=-1): the Q-network's indices 0..2 shifted onto the env's -1..1, in act and the export."""
    import gymnasium as gym
    from gymnasium import spaces

    from toy_envs import SpaceEnv

    gym.register("ToyOffsetActions-v0", entry_point=SpaceEnv,
                 kwargs={"action_space": spaces.Discrete(3, start=-1), "length": 20})
    overrides = {**TINY, **OFF_POLICY, "algo.kwargs.learning_rate": 1e-2}
    run = rlkit.train({"env": {"id": "ToyOffsetActions-v0"}, "algo": {"name": "dqn"}}, tmp_path / "run",
                      overrides=overrides, progress=False)  # SpaceEnv refuses an action outside its space
    policy = rlkit.load(run)
    obs = sample_observations(policy, 1000, seed=2)
    actions = policy.act(obs)
    assert set(np.unique(actions)) <= {-1, 0, 1} and (actions == -1).any()
    np.testing.assert_array_equal(actions, trained_learner(run).policy(obs))
    module = torch.jit.load(str(export(policy, tmp_path / "policy.ts")))
    with torch.no_grad():
        np.testing.assert_array_equal(module(torch.as_tensor(obs)).numpy(), actions)
