"""The replay memory: each observation stored once, the next observation of a slot its successor's unless the
episode ended, a truncated episode's true final observation kept for its bootstrap, n-step sums, the ring's
wrap, and a state that restores the same samples."""
import numpy as np
import pytest

from rlkit.data.replay import ReplayMemory, final_slots, replay_bytes


def fill(memory, steps, num_envs, end=None, obs_dtype=np.float32):
    """Observation of env e at step t: 100 t + e. end: {(t, e): 'term' | 'trunc'}; a truncated step's true final
    observation is -(100 t + e), and the reset observation after an end is 100 (t + 1) + e like any other."""
    end = end or {}
    obs = lambda t: (100 * t + np.arange(num_envs)).astype(obs_dtype)[:, None]  # noqa: E731
    for t in range(steps):
        memory.set_obs(obs(t))
        term = np.array([end.get((t, e)) == "term" for e in range(num_envs)])
        trunc = np.array([end.get((t, e)) == "trunc" for e in range(num_envs)])
        final = np.where(trunc[:, None], -obs(t + 1).astype(np.float64), 0).astype(obs_dtype)
        memory.add(np.full(num_envs, t), np.full(num_envs, float(t), np.float32), term, trunc, final, obs(t + 1))


def test_next_observations_episode_ends_and_the_truncation_bootstrap():
    m = ReplayMemory(100, 2, (1,), (), action_dtype=np.int64, episode_limit=4)
    fill(m, 10, 2, end={(3, 0): "term", (5, 1): "trunc"})
    assert m.obs.shape == (50, 2, 1) and len(m) == 20  # every stored step can be drawn at once
    b = m.sample(4000, np.random.default_rng(0), gamma=0.9)
    t = b["actions"]
    env = (b["obs"][:, 0] - 100 * t).astype(int)
    assert set(t.tolist()) == set(range(10)) and set(env.tolist()) == {0, 1}
    plain = ~(((t == 3) & (env == 0)) | ((t == 5) & (env == 1)))
    assert np.array_equal(b["next_obs"][plain, 0], 100 * (t[plain] + 1) + env[plain])  # the following slot
    assert np.allclose(b["discounts"][plain], 0.9) and np.array_equal(b["rewards"], t.astype(np.float32))
    term = (t == 3) & (env == 0)
    assert term.any() and (b["discounts"][term] == 0).all()  # terminated: no bootstrap
    trunc = (t == 5) & (env == 1)
    assert trunc.any() and (b["next_obs"][trunc, 0] == -601).all() and np.allclose(b["discounts"][trunc], 0.9)


def test_n_step_sums_stop_where_the_episode_ends():
    m = ReplayMemory(100, 1, (1,), (), action_dtype=np.int64)
    fill(m, 10, 1, end={(4, 0): "term"})
    b = m.sample(2000, np.random.default_rng(1), gamma=0.5, n_step=3)
    t = b["actions"]
    assert t.max() == 7  # the last two steps have no 3 successors yet
    for ti in range(8):
        rows = t == ti
        n = min(3, 5 - ti) if ti <= 4 else 3  # the sum stops at the termination at step 4
        want = sum(0.5 ** j * (ti + j) for j in range(n))
        assert np.allclose(b["rewards"][rows], want)
        if ti <= 4 and ti + 3 > 4:
            assert (b["discounts"][rows] == 0).all()
        else:
            assert np.allclose(b["discounts"][rows], 0.125) and (b["next_obs"][rows, 0] == 100 * (ti + 3)).all()


def test_the_ring_wraps_and_leaves_out_the_slot_being_written():
    m = ReplayMemory(8, 2, (1,), (), action_dtype=np.int64, episode_limit=3)  # 4 slots per env
    fill(m, 11, 2, end={(9, 0): "trunc"})
    assert m.full and len(m) == 2 * 3
    b = m.sample(3000, np.random.default_rng(2), gamma=1.0)
    assert sorted(set(b["actions"].tolist())) == [8, 9, 10]  # slot of step 7 now holds step 11's observation
    t, env = b["actions"], (b["obs"][:, 0] - 100 * b["actions"]).astype(int)
    rows = (t == 9) & (env == 0)
    assert (b["next_obs"][rows, 0] == -1000).all()
    assert final_slots(4, 3) == 3 and final_slots(4, None) == 4


def test_images_stay_bytes_and_the_size_is_known_before():
    m = ReplayMemory(64, 4, (10, 10, 4), (), obs_dtype=np.uint8, action_dtype=np.int64, episode_limit=1000)
    assert m.obs.dtype == np.uint8 and m.finals.dtype == np.uint8
    allocated = sum(a.nbytes for a in (m.obs, m.actions, m.rewards, m.terminated, m.truncated, m.final_index,
                                       m.finals))
    assert replay_bytes(64, 4, (10, 10, 4), np.uint8, (), np.int64, 1000) == allocated


@pytest.mark.parametrize("steps", [6, 30])  # partly filled, and wrapped
def test_state_restores_the_same_samples(steps):
    m = ReplayMemory(40, 2, (1,), (), action_dtype=np.int64, episode_limit=5)
    fill(m, steps, 2, end={(2, 1): "trunc", (4, 0): "term", (17, 0): "trunc"})
    other = ReplayMemory(40, 2, (1,), (), action_dtype=np.int64, episode_limit=5)
    other.load_state_dict(m.state_dict())
    a, b = m.sample(500, np.random.default_rng(3), 0.9, 2), other.sample(500, np.random.default_rng(3), 0.9, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="same algo.buffer_size"):
        ReplayMemory(80, 2, (1,), (), episode_limit=5).load_state_dict(m.state_dict())


@pytest.mark.parametrize("slots_written", [5, 30, 47])  # not full, wrapping during the phase, full
def test_a_view_reads_nothing_the_envs_write_while_a_phase_samples(slots_written):
    """What a phase samples from its view is the same whether or not the envs wrote `ahead` more slots."""
    memory, rng = ReplayMemory(40, 2, (3,), (1,), episode_limit=7), np.random.default_rng(0)
    current = np.zeros((2, 3), np.float32)
    def add(i, next_value):  # the loop's order: act on the current observation, step, store
        nonlocal current
        memory.set_obs(current)
        done = np.array([i % 7 == 6, i % 5 == 4])
        current = np.full((2, 3), next_value, np.float32)
        memory.add(np.full((2, 1), i, np.float32), np.full(2, i, np.float32), done & [False, True],
                   done & [True, False], -current, current)
    for i in range(slots_written):
        add(i, i + 1)
    ahead = 4
    view = memory.view(ahead)
    before = memory.sample(256, np.random.default_rng(1), 0.9, 2, view)
    for i in range(slots_written, slots_written + ahead):
        add(1000 + i, 1000 + i)  # what the envs write meanwhile
    after = memory.sample(256, np.random.default_rng(1), 0.9, 2, view)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert before["obs"].max() < 1000 and before["actions"].max() < 1000
    serial = memory.view()  # after the writes: the newest transitions are there to sample
    assert memory.sample(512, rng, 0.9, 1, serial)["actions"].max() >= 1000
