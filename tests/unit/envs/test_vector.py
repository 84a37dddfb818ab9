import signal
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv

from conftest import learned_rows
from rlkit import train
from rlkit.envs.vector import EnvStepError, ProcessEnvs, SerialEnvs, ThreadedEnvs


class FaultyEnv(gym.Env):
    """CartPole-shaped env whose step raises after `fail_after` steps."""
    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fail_after=None):
        self.fail_after, self.t = fail_after, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.fail_after is not None and self.t > self.fail_after:
            raise ValueError("sensor unplugged")
        return np.full(4, self.t / 100, np.float32), 1.0, False, self.t % 7 == 0, {}


def make_faulty(index_to_fail):
    return [lambda i=i: FaultyEnv(3 if i == index_to_fail else None) for i in range(6)]


def test_worker_exception_reaches_caller_fast_with_env_index_and_traceback():
    envs = ThreadedEnvs(make_faulty(4), range(6), (4,), True, num_threads=3)
    envs.reset()
    for _ in range(3):
        envs.step(np.zeros(6, np.int64))
    start = time.perf_counter()
    with pytest.raises(EnvStepError) as e:
        envs.step(np.zeros(6, np.int64))
    assert time.perf_counter() - start < 5
    assert "environment 4 raised ValueError: sensor unplugged" in str(e.value)
    assert "original traceback" in str(e.value) and "in step" in str(e.value)
    envs.close()


def test_backends_agree_step_by_step():
    fns = [lambda: gym.make("CartPole-v1") for _ in range(4)]
    actions = np.random.default_rng(0).integers(0, 2, (300, 4))
    outputs = []
    for vec in (SerialEnvs(fns, range(4), (4,), True), ThreadedEnvs(fns, range(4), (4,), True, 2),
                ProcessEnvs(fns, range(4), (4,), True)):
        trace = [vec.reset().copy()]
        for a in actions:
            obs, rew, term, trunc, final = vec.step(a)
            trace += [obs.copy(), rew.copy(), term.copy(), np.where((term | trunc)[:, None], final, 0)]
        vec.close()
        outputs.append(trace)
    for other in outputs[1:]:
        for x, y in zip(outputs[0], other):
            np.testing.assert_array_equal(x, y)


def test_three_threads_identical_metrics(tmp_path, tiny):
    overrides = {**tiny, "parallel.num_threads": 3, "parallel.envs_per_thread": 2, "algo.batch_size": 96}
    runs = [train("params/cartpole.yaml", tmp_path / f"r{k}", overrides=overrides, progress=False) for k in (0, 1)]
    a, b = (learned_rows(r) for r in runs)
    assert len(a) > 20 and a.equals(b)


def test_workers_step_the_first_step_after_a_reset():
    """A reset that the calling thread did alone (the envs' resets hold the GIL) must not make it step every
    slice itself afterwards: waiting envs need their worker threads from the first step on."""
    from rlkit.envs.latency import LatencyCartPole

    envs = ThreadedEnvs([lambda: LatencyCartPole(delay_s=0.002)] * 4, range(4), (4,), True, num_threads=4)
    try:
        for _ in range(3):
            envs.reset()
            time.sleep(0.01)  # workers woken for the reset find it done and wait again, as while the policy acts
            envs.step(np.zeros(4, np.int64))
            assert envs._round.owner_claims  # worker threads claimed slices in this step
    finally:
        envs.close()


class _SignalMaskRecorder(CartPoleEnv):
    """Sleeps in step() (releasing the GIL, so the worker threads claim their slices) and records, per stepping
    thread, whether that thread blocks Ctrl-C."""
    seen: dict = {}

    def step(self, action):
        time.sleep(0.002)
        blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        _SignalMaskRecorder.seen[threading.get_ident()] = blocked
        return super().step(action)


def test_worker_threads_leave_ctrl_c_to_the_main_thread():
    """A Ctrl-C sent to the process must reach the main thread even while it waits inside an env: only the
    main thread runs Python's handler, so every worker thread blocks SIGINT and SIGTERM."""
    _SignalMaskRecorder.seen = {}
    envs = ThreadedEnvs([_SignalMaskRecorder] * 4, range(4), (4,), True, num_threads=2, one_core=False)
    try:
        envs.reset()
        for _ in range(50):
            envs.step(np.zeros(4, np.int64))
    finally:
        envs.close()
    main = threading.main_thread().ident
    workers = {t: blocked for t, blocked in _SignalMaskRecorder.seen.items() if t != main}
    assert workers and all(workers.values()), _SignalMaskRecorder.seen  # a worker stepped, and it blocks Ctrl-C
    assert _SignalMaskRecorder.seen[main] is False  # the main thread still takes it
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
