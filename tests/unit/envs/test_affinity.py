"""parallel.one_core: the threaded collector moves to one core when its envs wait, and only then."""
import hashlib
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from rlkit.envs.affinity import ONE_CORE_BELOW, WARMUP_STEPS, WINDOW_STEPS, can_pin
from rlkit.config import load_config
from rlkit.envs.latency import LatencyCartPole
from rlkit.loop.trainer import Trainer
from rlkit.envs.vector import SerialEnvs, ThreadedEnvs

pytestmark = pytest.mark.skipif(not can_pin(), reason="needs Linux thread affinity and more than one core")
DECIDED = WARMUP_STEPS + WINDOW_STEPS  # vector steps after which auto has decided


class HashingCartPole(CartPoleEnv):
    """CartPole whose step also hashes 2 MB: about a millisecond of C work with the GIL released."""
    blob = bytes(2_000_000)

    def step(self, action):
        hashlib.sha256(self.blob).digest()
        return super().step(action)


def step_n(envs, n, num_envs):
    actions = np.random.default_rng(0).integers(0, 2, (n, num_envs))
    envs.reset()
    return [envs.step(a)[0].copy() for a in actions]


def affinities(envs):
    return [os.sched_getaffinity(t.native_id) for t in envs._threads[1:]] + [os.sched_getaffinity(0)]


@pytest.fixture
def closing():
    """Collectors to close whatever the test's outcome: a pinned calling thread must get its cores back."""
    opened = []
    yield opened.append
    for envs in opened:
        envs.close()


def test_auto_moves_envs_that_wait_to_one_core_and_gives_the_core_back(closing):
    before = os.sched_getaffinity(0)
    fns = [lambda: LatencyCartPole(delay_s=0.001)] * 4
    envs = ThreadedEnvs(fns, range(4), (4,), True, num_threads=4)
    closing(envs)
    assert envs.cores.pinned_core is None  # auto measures first
    trace = step_n(envs, DECIDED + 10, 4)
    assert envs.cores.cores_used < ONE_CORE_BELOW
    core = envs.cores.pinned_core
    assert core is not None and affinities(envs) == [{core}] * 4  # 3 workers and the calling thread
    envs.close()
    assert os.sched_getaffinity(0) == before
    serial = SerialEnvs(fns, range(4), (4,), True)  # placement changes speed, never results
    assert all(np.array_equal(a, b) for a, b in zip(trace, step_n(serial, DECIDED + 10, 4)))
    serial.close()


def test_auto_leaves_envs_that_compute_without_the_gil_on_every_core(closing):
    before = os.sched_getaffinity(0)
    envs = ThreadedEnvs([HashingCartPole] * 4, range(4), (4,), True, num_threads=4)
    closing(envs)
    step_n(envs, DECIDED + 2, 4)
    assert envs.cores.cores_used > ONE_CORE_BELOW and envs.cores.pinned_core is None
    assert affinities(envs) == [before] * 4
    envs.close()


def test_auto_leaves_envs_that_hold_the_gil_alone(closing):
    """CPU-bound Python envs: the calling thread steps every slice itself, the workers never run."""
    before = os.sched_getaffinity(0)
    envs = ThreadedEnvs([lambda: gym.make("CartPole-v1")] * 4, range(4), (4,), True, num_threads=2)
    closing(envs)
    step_n(envs, DECIDED + 2, 4)
    assert envs.cores.pinned_core is None and affinities(envs) == [before] * 2
    envs.close()


@pytest.mark.parametrize("mode", [True, False])
def test_one_core_true_pins_at_once_and_false_never(mode, closing):
    before = os.sched_getaffinity(0)
    envs = ThreadedEnvs([lambda: LatencyCartPole(delay_s=0.001)] * 2, range(2), (4,), True, 2, one_core=mode)
    closing(envs)
    if mode:
        assert affinities(envs) == [{envs.cores.pinned_core}] * 2
    step_n(envs, DECIDED + 2, 2)
    assert (envs.cores.pinned_core is not None) == mode and envs.cores.cores_used is None  # nothing measured
    envs.close()
    assert os.sched_getaffinity(0) == before


@pytest.mark.parametrize("torch_threads, expected", [(1, "auto"), (2, False), (None, False)])
def test_auto_only_with_one_torch_thread(tmp_path, torch_threads, expected):
    """Threads torch or BLAS start later inherit the calling thread's core: auto stays off unless they are one."""
    threads = torch.get_num_threads()
    cfg = load_config({"torch_threads": torch_threads, "env": {"id": "rlkit.envs.latency:LatencyCartPole-v1"},
                       "parallel": {"num_threads": 2, "envs_per_thread": 1}, "algo": {"batch_size": 64, "mini_batch_size": 64}})
    trainer = Trainer(cfg, tmp_path, progress=False)
    try:
        assert trainer.envs.cores.mode == expected
    finally:
        trainer.close()
        torch.set_num_threads(threads)
