"""The numpy actor-critic (rlkit/nn/numpy_mlp.py) against the torch modules and autograd on the same weights,
and the guard that keeps the written-out gradient from ever training a loss it is not a copy of."""
import itertools
import logging

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.config import load_config
from rlkit.algos.ppo_numpy import PackedBatch, ppo_gradient
from rlkit.algos.ppo import PPO, PPOLoss

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)


def make_agent(continuous=False, value_heads=1, loss=None, **algo):
    algo = {"hidden_sizes": [16, 8], "log_std_init": -0.3, **algo}
    torch.manual_seed(0)
    action_space = gym.spaces.Box(-1, 1, (3,)) if continuous else gym.spaces.Discrete(4)
    return PPO(load_config({"env": {"id": "CartPole-v1"}, "algo": algo}).algo, OBS_SPACE, action_space,
               torch.device("cpu"), value_heads=value_heads, loss=loss)


def make_batch(agent, rows=64, heads=1):
    """Actions from the policy and old log-probs off by up to +-0.5, so some ratios fall outside the clip range;
    old values off the current ones by up to +-0.4, so clip_vloss clips some."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(rows, 5, generator=g)
    actions, logprobs = agent.act(obs.numpy(), g)
    values = agent.value(obs.numpy())
    shape = (rows, heads)
    return {"obs": obs, "actions": torch.as_tensor(actions, dtype=torch.float32),
            "logprobs": torch.as_tensor(logprobs) + torch.rand(rows, generator=g) - 0.5,
            "advantages": torch.randn(rows, generator=g), "returns": torch.randn(shape, generator=g),
            "values": torch.as_tensor(values) + 0.8 * torch.rand(shape, generator=g) - 0.4}


def gradients(agent):
    return torch.cat([g["grad"].clone() for g in agent.optimizer.param_groups])


CASES = list(itertools.product([False, True], ["tanh", "relu"], [False, True], [0.0, 0.05], [True, False]))


@pytest.mark.parametrize("continuous, activation, clip_vloss, ent_coef, norm_adv", CASES)
def test_fused_step_equals_autograd(continuous, activation, clip_vloss, ent_coef, norm_adv):
    agent = make_agent(continuous, activation=activation, clip_vloss=clip_vloss, ent_coef=ent_coef,
                       norm_adv=norm_adv, vf_coef=0.7)
    batch = make_batch(agent)
    idx = np.random.default_rng(0).permutation(64)[:48]

    expected = agent._autograd_step(batch, torch.as_tensor(idx), ())
    expected_grad = gradients(agent)
    agent.optimizer.zero_grad()
    got = ppo_gradient(agent.numpy, agent.cfg, PackedBatch(batch).rows(idx))

    assert 0 < expected["ppo/clipfrac"] < 1  # the clipped branch is exercised
    torch.testing.assert_close(gradients(agent), expected_grad, rtol=1e-4, atol=1e-6)
    assert gradients(agent).abs().sum() > 0
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), key


def test_fused_step_two_value_heads():
    """RND's critic shape (extrinsic, intrinsic): the value loss is summed over the heads."""
    agent = make_agent(value_heads=2)
    batch = make_batch(agent, heads=2)
    idx = np.arange(64)
    expected = agent._autograd_step(batch, torch.as_tensor(idx), ())
    expected_grad = gradients(agent)
    got = ppo_gradient(agent.numpy, agent.cfg, PackedBatch(batch).rows(idx))
    torch.testing.assert_close(gradients(agent), expected_grad, rtol=1e-4, atol=1e-6)
    assert float(got["loss/value"]) == pytest.approx(float(expected["loss/value"]), rel=1e-5)


@pytest.mark.parametrize("continuous", [False, True])
def test_forward_passes_equal_the_torch_modules(continuous):
    agent = make_agent(continuous)
    obs = np.random.default_rng(0).standard_normal((10, 5), dtype=np.float32)
    with torch.no_grad():
        x = torch.as_tensor(obs)
        torch.testing.assert_close(torch.as_tensor(agent.value(obs)), agent.critic(x))
        torch.testing.assert_close(torch.as_tensor(agent.deterministic_action(obs)), agent.actor.mode(x))
        actions, logprobs = agent.act(obs, torch.Generator().manual_seed(0))
        expected, _ = agent.actor.evaluate(x, torch.as_tensor(actions))
        torch.testing.assert_close(torch.as_tensor(logprobs), expected)


def test_categorical_samples_follow_the_policy():
    agent = make_agent()
    obs = np.repeat(np.random.default_rng(0).standard_normal((1, 5), dtype=np.float32), 20_000, 0)
    actions, _ = agent.act(obs, torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = agent.actor.net(torch.as_tensor(obs[:1])).softmax(-1)[0].numpy()
    freq = np.bincount(actions, minlength=4) / len(actions)
    assert np.abs(freq - probs).max() < 0.01  # 20k draws: standard error <= 0.0035


def test_update_paths_agree(monkeypatch):
    """Twenty gradient steps, clipping and Adam included, on one batch: the numpy step, autograd with the numpy
    Adam, and the all-torch path that other devices (CUDA) take end on the same weights. (The batch's old
    log-probs are moved off the policy on purpose, which the check of the collector would take for a forward
    that is not the network's: it is told the collector was fine.)"""
    monkeypatch.setattr(PPO, "_collector_matches", lambda self, batch, idx: True)
    results = []
    for path in ("fused", "autograd", "torch"):
        agent = make_agent(numpy_gradient=path == "fused", mini_batch_size=32, clip_vloss=True, ent_coef=0.01)
        batch = make_batch(agent)
        if path == "torch":  # what PPO does off the CPU: torch modules and FlatAdam's torch branch
            agent.numpy, agent.numpy_gradient, agent.optimizer.use_numpy = None, False, False
        stats = agent.update(batch, 20, np.random.default_rng(0))
        stats.pop("ppo/numpy_gradient", None)  # which path ran, by construction different
        results.append((torch.cat([g["weights"].clone() for g in agent.optimizer.param_groups]), stats))
    start = torch.cat([g["weights"] for g in make_agent().optimizer.param_groups])
    assert not torch.allclose(results[0][0], start, atol=1e-4)  # the weights moved
    for weights, stats in results[1:]:
        torch.testing.assert_close(weights, results[0][0], rtol=1e-4, atol=1e-5)
        assert stats == pytest.approx(results[0][1], rel=1e-3, abs=1e-5)


class NoValueLoss(PPOLoss):
    """An edit of the loss in one place: the critic's term is dropped."""

    def value_loss(self, new_values, returns, old_values):
        return 0.0 * new_values.sum()


def _weights(module):
    return torch.cat([p.detach().clone().reshape(-1) for p in module.parameters()])


def test_a_subclassed_loss_trains_through_autograd_on_the_cpu():
    """No flag: a loss that is not PPOLoss itself never takes the written-out gradient."""
    agent = make_agent(loss=NoValueLoss)
    assert agent.numpy is not None and not agent.numpy_gradient  # numpy still samples for the collector
    critic_before, actor_before = _weights(agent.critic), _weights(agent.actor)
    stats = agent.update(make_batch(agent), 10, np.random.default_rng(0))
    assert torch.equal(_weights(agent.critic), critic_before)  # the edit took effect: the critic has no loss
    assert not torch.allclose(_weights(agent.actor), actor_before)
    assert stats["ppo/numpy_gradient"] == 0.0 and stats["loss/value"] == 0.0
