"""The numpy actor-critic (rlkit/fused.py) against the torch modules and autograd on the same weights."""
import itertools

import numpy as np
import pytest
import torch

from rlkit.config import load_config
from rlkit.ppo import PPO


def make_agent(continuous=False, **algo):
    algo = {"action_dim": 3 if continuous else 4, "observ_dim": 5, "has_continuous": continuous,
            "hidden_sizes": [16, 8], "log_std_init": -0.3, **algo}
    torch.manual_seed(0)
    return PPO(load_config({"env": {"id": "CartPole-v1"}, "algo": algo}).algo, 5, torch.device("cpu"))


def make_batch(agent, rows=64, heads=1):
    """Actions from the policy and old log-probs off by up to +-0.5, so some ratios fall outside the clip range;
    old values off the current ones by up to +-0.4, so clip_vloss clips some."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(rows, 5, generator=g)
    actions, logprobs, values = agent.act(obs.numpy(), g)
    shape = (rows,) if heads == 1 else (rows, heads)
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

    expected = agent._autograd_step(batch, torch.as_tensor(idx), aux=None)
    expected_grad = gradients(agent)
    arrays = {k: v.numpy() for k, v in batch.items()}
    if not continuous:
        arrays["actions"] = arrays["actions"].astype(np.int64)
    agent.optimizer.zero_grad()
    got = agent.arrays.ppo_step(agent.cfg, arrays, idx)

    assert 0 < expected["ppo/clipfrac"] < 1  # the clipped branch is exercised
    torch.testing.assert_close(gradients(agent), expected_grad, rtol=1e-4, atol=1e-6)
    assert gradients(agent).abs().sum() > 0
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), key


def test_fused_step_two_value_heads():
    """RND's critic shape (extrinsic, intrinsic): the value loss is summed over the heads."""
    agent = _with_two_heads()
    batch = make_batch(agent, heads=2)
    idx = np.arange(64)
    expected = agent._autograd_step(batch, torch.as_tensor(idx), aux=None)
    expected_grad = gradients(agent)
    arrays = {k: v.numpy() for k, v in batch.items()}
    arrays["actions"] = arrays["actions"].astype(np.int64)
    got = agent.arrays.ppo_step(agent.cfg, arrays, idx)
    torch.testing.assert_close(gradients(agent), expected_grad, rtol=1e-4, atol=1e-6)
    assert float(got["loss/value"]) == pytest.approx(float(expected["loss/value"]), rel=1e-5)


def _with_two_heads():
    torch.manual_seed(0)
    cfg = load_config({"env": {"id": "CartPole-v1"}, "algo": {"action_dim": 4, "observ_dim": 5,
                                                               "has_continuous": False, "hidden_sizes": [16, 8]}})
    return PPO(cfg.algo, 5, torch.device("cpu"), value_heads=2)


@pytest.mark.parametrize("continuous", [False, True])
def test_forward_passes_equal_the_torch_modules(continuous):
    agent = make_agent(continuous)
    obs = np.random.default_rng(0).standard_normal((10, 5), dtype=np.float32)
    with torch.no_grad():
        x = torch.as_tensor(obs)
        torch.testing.assert_close(torch.as_tensor(agent.value(obs)), agent.critic(x))
        torch.testing.assert_close(torch.as_tensor(agent.deterministic_action(obs)), agent.actor.mode(x))
        actions, logprobs, _ = agent.act(obs, torch.Generator().manual_seed(0))
        expected, _ = agent.actor.evaluate(x, torch.as_tensor(actions))
        torch.testing.assert_close(torch.as_tensor(logprobs), expected)


def test_categorical_samples_follow_the_policy():
    agent = make_agent()
    obs = np.repeat(np.random.default_rng(0).standard_normal((1, 5), dtype=np.float32), 20_000, 0)
    actions, _, _ = agent.act(obs, torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = agent.actor.net(torch.as_tensor(obs[:1])).softmax(-1)[0].numpy()
    freq = np.bincount(actions, minlength=4) / len(actions)
    assert np.abs(freq - probs).max() < 0.01  # 20k draws: standard error <= 0.0035


def test_update_paths_agree():
    """Twenty gradient steps, clipping and Adam included, on one batch: the numpy step, autograd with the numpy
    Adam, and the all-torch path that other devices (CUDA) take end on the same weights."""
    results = []
    for path in ("fused", "autograd", "torch"):
        agent = make_agent(fused_update=path == "fused", mini_batch_size=32, clip_vloss=True, ent_coef=0.01)
        batch = make_batch(agent)
        if path == "torch":  # what PPO does off the CPU: torch modules and FlatAdam's torch branch
            agent.arrays, agent.optimizer.use_numpy = None, False
        stats = agent.update(batch, 20, np.random.default_rng(0))
        results.append((torch.cat([g["weights"].clone() for g in agent.optimizer.param_groups]), stats))
    start = torch.cat([g["weights"] for g in make_agent().optimizer.param_groups])
    assert not torch.allclose(results[0][0], start, atol=1e-4)  # the weights moved
    for weights, stats in results[1:]:
        torch.testing.assert_close(weights, results[0][0], rtol=1e-4, atol=1e-5)
        assert stats == pytest.approx(results[0][1], rel=1e-3, abs=1e-5)
