import numpy as np

from rlkit.data.rollout import compute_gae
from reference import reference_gae


def test_gae_matches_reference_with_terminations_and_truncations():
    rng = np.random.default_rng(0)
    T, N, gamma, lam = 50, 6, 0.99, 0.95
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    last = rng.normal(size=N).astype(np.float32)
    terminated = rng.random((T, N)) < 0.08
    truncated = (rng.random((T, N)) < 0.08) & ~terminated
    final_values = np.where(truncated, rng.normal(size=(T, N)), 0).astype(np.float32)
    assert terminated.sum() > 5 and truncated.sum() > 5
    adv, ret = compute_gae(rewards, values, last, terminated | truncated, gamma, lam, final_values, truncated)
    expected = reference_gae(rewards, values, last, gamma, lam, terminated, truncated, final_values)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-5)


def test_truncation_is_bootstrapped_termination_is_not():
    r, v = np.array([[1.0]], np.float32), np.array([[0.0]], np.float32)
    last, fv = np.array([100.0], np.float32), np.array([[10.0]], np.float32)
    term = compute_gae(r, v, last, np.array([[True]]), 0.9, 1.0)[0]
    trunc = compute_gae(r, v, last, np.array([[True]]), 0.9, 1.0, fv, np.array([[True]]))[0]
    assert term[0, 0] == 1.0 and np.isclose(trunc[0, 0], 1.0 + 0.9 * 10.0)
