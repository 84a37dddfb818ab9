"""RND (rlkit/algos/rnd.py): the return filter, two-head GAE, the predictor, the exploration phase, counters, resume."""
import json

import numpy as np
import pytest
import torch

from conftest import learned_rows
from rlkit import ConfigError, load_config, train
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.config import AlgoConfig
from rlkit.data.rollout import RolloutMemory
from rlkit.runs.metrics import read_metrics
from rlkit.data.normalize import ReturnFilter
from rlkit.nn.optim import FlatAdam
from rlkit.algos.rnd import MEMORY_FIELDS, RND, PredictorLoss, two_head_gae
from reference import reference_gae

RND_ON = {"algo.use_RND": True, "learning_starts": 64, "exploration_steps": 192}


def test_return_filter_runs_over_time_for_each_env():
    f = ReturnFilter(2, gamma=0.5, episodic=False)
    rewards = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 2.0]])
    # By hand, per env along its own time axis, never reset: R <- 0.5 R + r
    #   env 0: 1, 0.5, 1.25, 0.625      env 1: 0, 2, 1, 2.5
    # std over every return seen so far (both envs, all steps up to t):
    #   t=0 {1, 0}                      mean 0.5       var 0.25      std 0.5
    #   t=1 {.., 0.5, 2}                mean 0.875     var 0.546875  std 0.739510
    #   t=2 {.., 1.25, 1}               mean 0.958333  var 0.383681  std 0.619420
    #   t=3 {.., 0.625, 2.5}            mean 1.109375  var 0.575928  std 0.758899
    expected_std = [0.5, 0.739510, 0.619420, 0.758899]
    for t in range(4):
        scaled = f(rewards[t], dones=np.array([True, True]))  # non-episodic: dones change nothing
        np.testing.assert_allclose(scaled, rewards[t] / expected_std[t], rtol=1e-3)
    np.testing.assert_allclose(f.returns, [0.625, 2.5])


def test_two_head_gae_matches_reference_loops():
    rng = np.random.default_rng(0)
    T, N, gamma, gamma_int, lam = 40, 5, 0.99, 0.9, 0.95
    mem = RolloutMemory(T, N, (3,), (), extra_fields=MEMORY_FIELDS)
    terminated = rng.random((T, N)) < 0.08
    truncated = (rng.random((T, N)) < 0.08) & ~terminated
    assert terminated.sum() > 5 and truncated.sum() > 5
    mem.rewards[:], mem.values[:] = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    mem.dones[:], mem.truncated[:] = terminated | truncated, truncated
    mem.final_values[:] = np.where(truncated, rng.normal(size=(T, N)), 0.0)
    mem.extra["int_rewards"][:], mem.extra["int_values"][:] = rng.random((T, N)), rng.normal(size=(T, N))
    last = rng.normal(size=(N, 2)).astype(np.float32)

    two_head_gae(mem, last, gamma, gamma_int, lam)
    ext = reference_gae(mem.rewards, mem.values, last[:, 0], gamma, lam, terminated, truncated, mem.final_values)
    intr = reference_gae(mem.extra["int_rewards"], mem.extra["int_values"], last[:, 1], gamma_int, lam)
    np.testing.assert_allclose(mem.advantages, ext, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mem.returns, ext + mem.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mem.extra["int_advantages"], intr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mem.extra["int_returns"], intr + mem.extra["int_values"], rtol=1e-5, atol=1e-5)
    # the intrinsic stream crosses episode ends: cutting it at dones would give something else
    cut = reference_gae(mem.extra["int_rewards"], mem.extra["int_values"], last[:, 1], gamma_int, lam, mem.dones)
    assert not np.allclose(intr, cut)


@pytest.mark.parametrize("obs_shape", [(8,), (4, 12, 12), (40, 40, 3)])
def test_predictor_error_falls_on_seen_states_and_stays_high_on_novel_ones(obs_shape):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rnd = RND(obs_shape, AlgoConfig(update_proportion=0.5), num_envs=1, device="cpu")
    rnd.obs_norm.update(rng.normal(size=(500, *obs_shape)))
    seen = rng.normal(size=(32, *obs_shape)).astype(np.float32)
    before = rnd.intrinsic_reward(seen)
    assert before.shape == (32,) and (before > 0).all()
    batch = torch.as_tensor(rnd.obs_norm(seen))
    features = rnd.target_features(batch)
    optimizer = torch.optim.Adam(rnd.predictor.parameters(), lr=1e-3)
    for _ in range(200 if len(obs_shape) == 1 else 120):
        sample = rnd.sample(torch.randperm(len(batch)))  # PPO's minibatches are random permutations
        optimizer.zero_grad()
        rnd.predictor_loss(batch[sample], features[sample]).backward()
        optimizer.step()
    after = rnd.intrinsic_reward(seen).mean()
    novel = rnd.intrinsic_reward(rng.normal(size=(32, *obs_shape)).astype(np.float32)).mean()
    assert after < 0.2 * before.mean(), (before.mean(), after)
    assert novel > 2.5 * after, (novel, after)
    assert all(p.grad is None for p in rnd.target.parameters())  # the target never trains


def test_predictor_trains_on_update_proportion_of_each_minibatch():
    rnd = RND((3,), AlgoConfig(update_proportion=0.25), num_envs=1, device="cpu")
    obs = torch.randn(128, 3)
    minibatch = torch.randperm(128)
    sample = rnd.sample(minibatch)
    assert torch.equal(sample, minibatch[:32])  # 0.25 x 128 indices of a random permutation
    loss = rnd.predictor_loss(obs[sample], rnd.target_features(obs[sample]))
    assert torch.allclose(loss, rnd.errors(obs[sample]).mean())
    loss.backward()
    assert all(p.grad is None for p in rnd.target.parameters())  # the target never trains


def test_predictor_loss_written_out_equals_autograd():
    """On the CPU with vector observations the predictor's loss and gradient are computed in numpy
    (PredictorLoss.numpy_gradient) inside PPO's numpy step; they must be autograd's."""
    torch.manual_seed(0)
    rnd = RND((6,), AlgoConfig(update_proportion=0.25), num_envs=1, device="cpu")
    group = FlatAdam().add_param_group(rnd.predictor.parameters(), 1e-4)  # as the agent's Adam packs it
    obs = torch.randn(128, 6)
    loss_term = PredictorLoss(rnd, obs, rnd.target_features(obs))
    idx = np.random.default_rng(0).permutation(128)
    expected_loss, _ = loss_term(torch.as_tensor(idx))
    expected_loss.backward()
    expected = group["grad"].clone()
    group["grad"].fill_(float("nan"))  # the written-out gradient overwrites every element
    got = loss_term.numpy_gradient(idx)
    assert got["rnd/predictor_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)
    torch.testing.assert_close(group["grad"], expected, rtol=1e-4, atol=1e-7)
    assert expected.abs().sum() > 0
    # image observations: a conv predictor, autograd only
    assert RND((4, 12, 12), AlgoConfig(), num_envs=1, device="cpu").predictor_arrays() is None


def test_rollout_intrinsic_rewards_are_the_per_step_definition():
    """One forward per rollout gives what stepping through it would: raw errors under the statistics
    from before the rollout, divided step by step by the std of each env's own intrinsic return."""
    rng = np.random.default_rng(1)
    T, N = 6, 4
    algo = AlgoConfig(gamma_int=0.9)
    rnd = RND((3,), algo, num_envs=N, device="cpu")
    rnd.obs_norm.update(rng.normal(size=(100, 3)))
    next_obs = rng.normal(size=(T, N, 3)).astype(np.float32)
    expected_raw = np.stack([rnd.intrinsic_reward(next_obs[t]) for t in range(T)])
    reference = ReturnFilter(N, 0.9, episodic=False)
    expected_scaled = np.stack([reference(expected_raw[t]) for t in range(T)])
    count = rnd.obs_norm.rms.count

    raw, scaled = rnd.intrinsic_rewards(next_obs)
    np.testing.assert_allclose(raw, expected_raw, rtol=1e-5)
    np.testing.assert_allclose(scaled, expected_scaled, rtol=1e-5)
    np.testing.assert_allclose(rnd.return_filter.returns, reference.returns)
    assert rnd.obs_norm.rms.count == pytest.approx(count + T * N)  # statistics take the rollout in afterwards


def test_exploration_phase_switches_at_the_right_policy_step(tmp_path, tiny):
    # 4 envs, batch 64: random actions up to 64, then phases at 128, 192, ..., 512
    run = train("params/cartpole.yaml", tmp_path / "r", overrides={**tiny, **RND_ON}, progress=False)
    df = read_metrics(run / "metrics.csv")
    exploring = df[df.metric == "rnd/exploring"].set_index("policy_step").value
    assert exploring.to_dict() == {128: 1.0, 192: 1.0, 256: 0.0, 320: 0.0, 384: 0.0, 448: 0.0, 512: 0.0}
    assert df[df.metric == "rnd/phase_switch"].policy_step.tolist() == [256]
    assert {"rnd/intrinsic_reward", "rnd/intrinsic_reward_norm", "rnd/predictor_loss", "value/extrinsic",
            "value/intrinsic", "return/extrinsic", "return/intrinsic", "rnd/obs_mean", "rnd/obs_std",
            "rnd/return_std", "ppo/explained_variance_int"} <= set(df.metric)
    state = load_checkpoint(run / "checkpoint.pt")["rnd"]
    # the RND normaliser saw every policy step's next observation, the random warm-up included
    assert round(state["obs_norm"]["count"]) == 512


def test_rnd_on_and_off_count_steps_identically(tmp_path, tiny):
    off = train("params/cartpole.yaml", tmp_path / "off", overrides=tiny, progress=False)
    on = train("params/cartpole.yaml", tmp_path / "on", overrides={**tiny, "algo.use_RND": True}, progress=False)
    counters = ["policy_step", "env_step", "gradient_step"]
    s_off, s_on = (json.loads((r / "status.json").read_text()) for r in (off, on))
    assert [s_off[k] for k in counters] == [s_on[k] for k in counters] == [512, 512, 32]
    df_off, df_on = read_metrics(off / "metrics.csv"), read_metrics(on / "metrics.csv")
    for metric in ("loss/policy", "steps/replay_ratio", "steps/update", "eval/return", "perf/sps"):
        rows_off, rows_on = (df[df.metric == metric][counters].reset_index(drop=True) for df in (df_off, df_on))
        assert len(rows_off) > 0 and rows_off.equals(rows_on), metric
    assert load_checkpoint(off / "checkpoint.pt")["rnd"] is None


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_equals_uninterrupted_with_rnd(tmp_path, tiny):
    overrides = {**tiny, **RND_ON}
    full = train("params/cartpole.yaml", tmp_path / "full", overrides=overrides, progress=False)

    def stop_late(counters, metrics):
        if counters["policy_step"] >= 400:  # after the checkpoint at 256 and the phase switch
            raise Interrupt()

    cut = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train("params/cartpole.yaml", cut, overrides=overrides, progress=False, callbacks=[stop_late])
    train("params/cartpole.yaml", cut, overrides=overrides, progress=False, resume=True)
    a, b = learned_rows(cut), learned_rows(full)
    assert "rnd/predictor_loss" in set(b.metric) and a.equals(b)


@pytest.mark.parametrize("key, value, expected", [
    ("gamma_int", 1.0, "'algo.gamma_int' must be in [0, 1)"),
    ("ext_coef", -1, "'algo.ext_coef' must be >= 0"),
    ("rnd_lr", 0, "'algo.rnd_lr' must be > 0"),
    ("update_proportion", 0, "'algo.update_proportion' must be in (0, 1]"),
    ("update_proportion", 1.5, "'algo.update_proportion' must be in (0, 1]"),
    ("rnd_hidden_sizes", [64, 0], "'algo.rnd_hidden_sizes' must be a list of positive ints"),
    ("rnd_output_dim", 0, "'algo.rnd_output_dim' must be >= 1"),
])
def test_bad_rnd_keys_name_the_key(key, value, expected):
    with pytest.raises(ConfigError) as e:
        load_config({"algo": {"use_RND": True, key: value}})
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_sparse_mountaincar_pays_only_at_the_flag():
    from rlkit.envs.make import make_env

    env = make_env(load_config("params/sparse_mountaincar.yaml").env)
    obs, _ = env.reset(seed=0)
    rewards = []
    for _ in range(200):  # push along the velocity: the energy-pumping policy that reaches the flag
        obs, reward, terminated, truncated, _ = env.step(2 if obs[1] >= 0 else 0)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and rewards[-1] == 1.0 and sum(rewards) == 1.0
    obs, _ = env.reset(seed=0)
    for _ in range(200):  # standing still never gets there: 0 every step, then the time limit
        obs, reward, terminated, truncated, _ = env.step(1)
        assert reward == 0.0 and not terminated
    assert truncated
    env.close()
