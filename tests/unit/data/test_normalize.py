"""The running statistics' fast paths give the plain formula's bits."""
import numpy as np
import pytest

from rlkit.data.normalize import ObsNormalizer, ReturnFilter, RunningMeanStd


def row_order_moments(batch):
    """The batch's mean and (biased) variance over axis 0, each a sum in row order, in Python floats."""
    rows = np.asarray(batch, np.float64).reshape(len(batch), -1)
    means = [sum(float(r) for r in rows[:, i]) / len(rows) for i in range(rows.shape[1])]
    var = [sum((float(r) - m) * (float(r) - m) for r in rows[:, i]) / len(rows) for i, m in enumerate(means)]
    shape = np.shape(batch)[1:]
    return np.reshape(means, shape), np.reshape(var, shape)


class PlainMeanStd:
    """Chan et al.'s merge written with numpy's array operations, each batch's moments summed in row order:
    what RunningMeanStd's compiled loop must equal bit for bit."""

    def __init__(self, shape):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, batch):
        b_mean, b_var = row_order_moments(batch)
        b_count = len(batch)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        self.var = (self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total) / total
        self.count = total


@pytest.mark.parametrize("shape", [(), (11,), (3, 4)])
def test_one_row_and_batch_updates_equal_the_plain_formula_bitwise(shape):
    rng = np.random.default_rng(0)
    fast, plain = RunningMeanStd(shape), PlainMeanStd(shape)
    for step in range(300):
        rows = 1 if step % 3 else int(rng.integers(2, 9))  # mostly one-row updates, some batches
        batch = (rng.normal(3.0, 5.0, (rows, *shape)) * rng.uniform(0.1, 10)).astype(np.float32)
        fast.update(batch)
        plain.update(batch)
        np.testing.assert_array_equal(fast.mean, plain.mean)
        np.testing.assert_array_equal(fast.var, plain.var)
        assert fast.count == plain.count
        np.testing.assert_array_equal(fast.std, np.sqrt(plain.var + 1e-8))


def test_statistics_are_those_of_all_samples():
    rng = np.random.default_rng(1)
    data = rng.normal(-2.0, 3.0, (500, 5))
    rms = RunningMeanStd((5,))
    for row in data:
        rms.update(row[None])
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)


def test_std_follows_updates_and_loaded_state():
    rms = RunningMeanStd((2,))
    before = rms.std.copy()
    rms.update(np.array([[10.0, -10.0]]))
    assert not np.allclose(rms.std, before)
    other = RunningMeanStd((2,))
    other.load_state_dict(rms.state_dict())
    np.testing.assert_array_equal(other.std, rms.std)
    rms.load_state_dict(RunningMeanStd((2,)).state_dict())
    np.testing.assert_array_equal(rms.std, before)


def test_obs_normalizer_equals_clip_of_the_standardised_obs():
    rng = np.random.default_rng(2)
    norm = ObsNormalizer((6,), clip=5.0)
    for _ in range(50):
        norm.update(rng.normal(0, 2, (1, 6)).astype(np.float32))
    obs = (rng.normal(0, 20, (4, 6))).astype(np.float32)  # some beyond the clip
    expected = np.clip((obs - norm.rms.mean) / norm.rms.std, -5.0, 5.0).astype(np.float32)
    out = norm(obs)
    assert out.dtype == np.float32 and np.abs(out).max() == 5.0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(obs, (obs * 1).astype(np.float32))  # the input is left alone


@pytest.mark.parametrize("num_envs", [1, 4])
def test_return_filter_equals_the_plain_filter(num_envs):
    rng = np.random.default_rng(3)
    f = ReturnFilter(num_envs, gamma=0.99)
    returns, plain = np.zeros(num_envs), PlainMeanStd(())
    for _ in range(200):
        rewards = rng.normal(1.0, 2.0, num_envs).astype(np.float32)
        dones = rng.random(num_envs) < 0.05
        returns = 0.99 * returns + rewards
        plain.update(returns)
        expected = (rewards / np.sqrt(plain.var + 1e-8)).astype(np.float32)
        returns[dones] = 0.0
        np.testing.assert_array_equal(f(rewards, dones), expected)
    np.testing.assert_array_equal(f.returns, returns)


def test_action_scaler_equals_the_affine_formula_bitwise():
    from rlkit.nn.networks import ActionScaler

    rng = np.random.default_rng(4)
    low, high = np.array([-1.0, -0.4, 0.0], np.float32), np.array([1.0, 2.0, 3.5], np.float32)
    scaler = ActionScaler(low, high)
    actions = rng.normal(0, 2, (1000, 3)).astype(np.float32)  # many outside [-1, 1]
    expected = low + (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
    out = scaler(actions)
    assert out.dtype == np.float32 and out is not actions
    np.testing.assert_array_equal(out, expected)
    assert out.min(0).tolist() == low.tolist() and out.max(0).tolist() == high.tolist()


def test_normalisers_write_into_a_given_row_as_they_would_return_it():
    """The trainer normalises straight into the rollout memory's row: the same numbers as a fresh array."""
    rng = np.random.default_rng(5)
    norm, filt, plain_filt = ObsNormalizer((3,)), ReturnFilter(2, gamma=0.9), ReturnFilter(2, gamma=0.9)
    memory_obs, memory_rewards = np.zeros((4, 2, 3), np.float32), np.zeros((4, 2), np.float32)
    for t in range(4):
        obs = rng.normal(0, 3, (2, 3))
        norm.update(obs)
        assert np.shares_memory(norm(obs, out=memory_obs[t]), memory_obs)
        np.testing.assert_array_equal(memory_obs[t], norm(obs))
        rewards, dones = rng.normal(0, 1, 2).astype(np.float32), np.array([False, t == 2])
        filt(rewards, dones, out=memory_rewards[t])
        np.testing.assert_array_equal(memory_rewards[t], plain_filt(rewards, dones))
    assert np.abs(memory_obs).sum() > 0 and np.abs(memory_rewards).sum() > 0
    with pytest.raises(ValueError, match="C-contiguous"):
        norm(obs, out=np.zeros((3, 2), np.float32).T)  # a transposed view: the result would be lost
