"""Vectors of environments behind one interface, three backends.

Every backend steps N envs with auto-reset in the same step: after `step(actions)`,
`obs` holds the next observation (the reset one where an episode ended) and `final_obs`
the true last observation of an ended episode, which truncation bootstrapping needs.

- SerialEnvs: a loop in the calling thread.
- ThreadedEnvs (DESIGN §3): T persistent worker threads, each owning E envs and writing only
  its own slice of shared preallocated arrays; inference stays batched in the caller, so
  threads never run the model and never fight over the GIL with many small torch calls.
- ProcessEnvs: gymnasium's AsyncVectorEnv, for CPU-bound pure-Python envs.
"""
from __future__ import annotations

import pickle
import threading
import traceback

import gymnasium as gym
import numpy as np


class EnvStepError(RuntimeError):
    """An environment raised; names the env index and carries the original traceback."""


class SerialEnvs:
    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, first_index=0, arrays=None):
        self.envs = [fn() for fn in env_fns]
        self.seeds = list(seeds)
        self.first_index = first_index
        self.discrete = action_is_discrete
        n = len(self.envs)
        self.arrays = arrays or allocate(n, obs_shape)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self):
        obs, i = self.arrays["obs"], 0
        try:
            for i, env in enumerate(self.envs):
                obs[i] = env.reset(seed=self.seeds[i])[0]
        except Exception as e:
            raise self._error(i, e) from e
        return obs

    def step(self, actions):
        a = self.arrays
        obs, rew, term, trunc, final = a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]
        if self.discrete:
            actions = actions.tolist()  # Python ints, converted once for all envs
        i = 0
        try:  # one try around the loop, not one per env: this loop is the collector's hot path
            for i, env in enumerate(self.envs):
                o, rew[i], te, tr, _ = env.step(actions[i])
                term[i], trunc[i] = te, tr
                if te or tr:
                    final[i] = o
                    o = env.reset()[0]
                obs[i] = o
        except Exception as e:
            raise self._error(i, e) from e
        return obs, rew, term, trunc, final

    def _error(self, i, e) -> EnvStepError:
        return EnvStepError(f"environment {self.first_index + i} raised {type(e).__name__}: {e}\n"
                            f"original traceback:\n{traceback.format_exc()}")

    def get_state(self) -> bytes:
        return pickle.dumps(self.envs)

    def set_state(self, state: bytes) -> None:
        for env in self.envs:
            env.close()
        self.envs = pickle.loads(state)

    def close(self):
        for env in self.envs:
            env.close()


def allocate(n, obs_shape) -> dict:
    return {
        "obs": np.zeros((n, *obs_shape), np.float32),
        "final_obs": np.zeros((n, *obs_shape), np.float32),
        "reward": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }


class ThreadedEnvs:
    """T workers; worker w steps envs [w*E, (w+1)*E) and writes only that slice.

    Workers 1..T-1 are persistent threads; worker 0 is the calling thread itself.
    """

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, num_threads):
        n = len(env_fns)
        per = n // num_threads
        self.arrays = allocate(n, obs_shape)
        self.groups = []
        for w in range(num_threads):
            part = slice(w * per, (w + 1) * per)
            view = {k: v[part] for k, v in self.arrays.items()}  # numpy views: writes land in the shared arrays
            self.groups.append(SerialEnvs(env_fns[part], seeds[part], obs_shape, action_is_discrete,
                                          first_index=w * per, arrays=view))
        self._slices = [slice(w * per, (w + 1) * per) for w in range(num_threads)]
        self._actions = None
        self._task = None
        self._errors: list = [None] * num_threads
        # Bare locks as binary semaphores: released = "go" / "done". threading.Event is a Condition in
        # Python (several lock operations per set and wait); a lock is one C call, and this handoff
        # happens twice per worker per iteration.
        self._go = [_taken_lock() for _ in range(num_threads)]
        self._done = [_taken_lock() for _ in range(num_threads)]
        self._closing = False
        self._threads = [threading.current_thread()] + [
            threading.Thread(target=self._work, args=(w,), daemon=True, name=f"rlkit-env-{w}")
            for w in range(1, num_threads)]
        for t in self._threads[1:]:
            t.start()

    @property
    def num_envs(self) -> int:
        return len(self.arrays["reward"])

    def _work(self, w):
        while True:
            self._go[w].acquire()
            if self._closing:
                return
            try:
                self._do(w)
            except BaseException as e:  # surfaced in the caller by _run
                self._errors[w] = e
            self._done[w].release()

    def _run(self, task, actions=None):
        self._task, self._actions = task, actions
        for go in self._go[1:]:
            go.release()
        try:  # the calling thread is worker 0: one handoff fewer per step, and it would only wait anyway
            self._do(0)
        except BaseException as e:
            self._errors[0] = e
        for w in range(1, len(self.groups)):
            while not self._done[w].acquire(timeout=1.0):
                if not self._threads[w].is_alive():
                    raise EnvStepError(f"worker thread {w} died")
        errors = [e for e in self._errors if e is not None]
        if errors:
            self._errors = [None] * len(self._errors)
            raise errors[0]

    def _do(self, w):
        if self._task == "reset":
            self.groups[w].reset()
        else:
            self.groups[w].step(self._actions[self._slices[w]])

    def reset(self):
        self._run("reset")
        return self.arrays["obs"]

    def step(self, actions):
        self._run("step", actions)
        a = self.arrays
        return a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]

    def get_state(self) -> list:
        return [g.get_state() for g in self.groups]

    def set_state(self, state) -> None:
        for g, s in zip(self.groups, state):
            g.set_state(s)

    def close(self):
        self._closing = True
        for go in self._go[1:]:
            if go.locked():  # a worker waiting for work; one that is not has been released already
                go.release()
        for t in self._threads[1:]:
            t.join(timeout=5)
        for g in self.groups:
            g.close()


def _taken_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class ProcessEnvs:
    """gymnasium AsyncVectorEnv (one process per env), same-step auto-reset like the others."""

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete):
        self.vec = gym.vector.AsyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                                             copy=False)
        self.seeds = list(seeds)
        self.discrete = action_is_discrete
        self.arrays = allocate(len(env_fns), obs_shape)

    @property
    def num_envs(self) -> int:
        return len(self.seeds)

    def reset(self):
        obs, _ = self.vec.reset(seed=self.seeds)
        self.arrays["obs"][:] = obs
        return self.arrays["obs"]

    def step(self, actions):
        a = self.arrays
        obs, rew, term, trunc, info = self.vec.step(actions.astype(np.int64) if self.discrete else actions)
        a["obs"][:], a["reward"][:], a["terminated"][:], a["truncated"][:] = obs, rew, term, trunc
        if "_final_obs" in info:
            ended = info["_final_obs"]
            a["final_obs"][ended] = np.stack(info["final_obs"][ended])
        return a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]

    def get_state(self):
        return None  # subprocess envs cannot be pickled from here; resume re-seeds them

    def set_state(self, state) -> None:
        pass

    def close(self):
        self.vec.close()


def make_vector(backend, env_fns, seeds, obs_shape, action_is_discrete, num_threads):
    if backend == "process":
        return ProcessEnvs(env_fns, seeds, obs_shape, action_is_discrete)
    if num_threads == 1:
        return SerialEnvs(env_fns, seeds, obs_shape, action_is_discrete)
    return ThreadedEnvs(env_fns, seeds, obs_shape, action_is_discrete, num_threads)
