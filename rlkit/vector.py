"""Vectors of environments behind one interface, three backends.

Every backend steps N envs with auto-reset in the same step: after `step(actions)`,
`obs` holds the next observation (the reset one where an episode ended) and `final_obs`
the true last observation of an ended episode, which truncation bootstrapping needs.

- SerialEnvs: a loop in the calling thread.
- ThreadedEnvs (docs/design.md, "Threads"): the calling thread and T-1 persistent worker threads step T slices
  of E envs, each slice claimed by one thread per iteration and written only to its own rows of
  shared preallocated arrays; inference stays batched in the caller, so threads never run the
  model and never fight over the GIL with many small torch calls. When the envs mostly wait, all
  these threads move to one CPU core, so that GIL hand-overs stay on it (rlkit/affinity.py).
- ProcessEnvs: gymnasium's AsyncVectorEnv, for CPU-bound pure-Python envs.
"""
from __future__ import annotations

import itertools
import pickle
import threading
import time
import traceback

import gymnasium as gym
import numpy as np

from rlkit.affinity import OneCore
from rlkit.wrappers import TRUE_RETURN, TrueEpisode

PROBE_EVERY = 16  # ThreadedEnvs: rounds between wake-ups of owners that could not claim their slice


class EnvStepError(RuntimeError):
    """An environment raised; names the env index and carries the original traceback."""


class SerialEnvs:
    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, first_index=0, arrays=None, obs_dtype=np.float32):
        self.envs = [fn() for fn in env_fns]
        self.recorders = _recorders(self.envs)
        self.seeds = list(seeds)
        self.first_index = first_index
        self.discrete = action_is_discrete
        n = len(self.envs)
        self.arrays = arrays or allocate(n, obs_shape, obs_dtype)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self):
        obs, i = self.arrays["obs"], 0
        try:
            for i, env in enumerate(self.envs):
                obs[i] = env.reset(seed=self.seeds[i])[0]
                if self.recorders[i] is not None:
                    self.recorders[i].take()  # a game cut by this reset is nobody's episode
        except Exception as e:
            raise self._error(i, e) from e
        return obs

    def step(self, actions):
        a = self.arrays
        obs, rew, term, trunc, final = a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]
        true_return, recorders = a["true_return"], self.recorders
        if self.discrete and actions.ndim == 1:
            actions = actions.tolist()  # Python ints, converted once for all envs
        i = 0
        try:  # one try around the loop, not one per env: this loop is the collector's hot path
            for i, env in enumerate(self.envs):
                o, rew[i], te, tr, _ = env.step(actions[i])
                term[i], trunc[i] = te, tr
                if te or tr:
                    final[i] = o
                    o = env.reset()[0]
                    # the game's own score where this reset ended a game (rlkit.wrappers.TrueEpisode), else NaN
                    score = recorders[i].take() if recorders[i] is not None else None
                    true_return[i] = np.nan if score is None else score
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
        self.recorders = _recorders(self.envs)

    def close(self):
        for env in self.envs:
            env.close()


def allocate(n, obs_shape, obs_dtype=np.float32) -> dict:
    """The arrays every backend writes; observations in the space's storage dtype (uint8 images stay bytes).
    true_return[i] is meaningful where env i's episode ended this step: the score of the game that ended
    with it (NaN when the game goes on, or when no TrueEpisode layer records one)."""
    return {
        "obs": np.zeros((n, *obs_shape), obs_dtype),
        "final_obs": np.zeros((n, *obs_shape), obs_dtype),
        "reward": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
        "true_return": np.full(n, np.nan),
    }


def _recorders(envs) -> list:
    """Each env's TrueEpisode layer, or None."""
    out = []
    for env in envs:
        while isinstance(env, gym.Wrapper) and not isinstance(env, TrueEpisode):
            env = env.env
        out.append(env if isinstance(env, TrueEpisode) else None)
    return out


class ThreadedEnvs:
    """T workers; worker w owns envs [w*E, (w+1)*E), its slice, and writes only that slice.

    Workers 1..T-1 are persistent threads; worker 0 is the calling thread itself. Each iteration every
    slice is claimed once, atomically, by the first thread to ask: its owner, or the calling thread once
    it has stepped its own slice. Envs that release the GIL while they step (a simulator over a socket, a
    sleep, a C extension) let the owners wake and claim their slices while the caller's env waits, so
    the slices step in parallel. A CPU-bound Python env never releases the GIL, so the owners cannot run
    before the caller has claimed and stepped every slice itself: no iteration waits for a thread to be
    woken (on a 2-core VM each wake-up costs tens of microseconds, several per iteration when workers
    must run). Within an iteration a slice is stepped by one thread only, so no env is ever stepped
    twice at once and no locks guard the arrays.
    """

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, num_threads, one_core="auto", obs_dtype=np.float32):
        n = len(env_fns)
        per = n // num_threads
        self.arrays = allocate(n, obs_shape, obs_dtype)
        self.groups = []
        for w in range(num_threads):
            part = slice(w * per, (w + 1) * per)
            view = {k: v[part] for k, v in self.arrays.items()}  # numpy views: writes land in the shared arrays
            self.groups.append(SerialEnvs(env_fns[part], seeds[part], obs_shape, action_is_discrete,
                                          first_index=w * per, arrays=view))
        self._slices = [slice(w * per, (w + 1) * per) for w in range(num_threads)]
        self._round = None  # the iteration's work: task, actions, claims; replaced every iteration
        self._rounds = 0
        self._owners_ran = True  # did an owner claim a slice last round? (no: the envs hold the GIL)
        # Bare locks as binary semaphores (a lock is one C call; threading.Event is a Python Condition).
        self._wake = [_taken_lock() for _ in range(num_threads)]
        self._closing = False
        self._threads = [threading.current_thread()] + [
            threading.Thread(target=self._work, args=(w,), daemon=True, name=f"rlkit-env-{w}")
            for w in range(1, num_threads)]
        for t in self._threads[1:]:
            t.start()
        self.cores = OneCore(one_core)  # rlkit/affinity.py: one core for all these threads when the envs wait
        self.cores.start([t.native_id for t in self._threads[1:]])

    @property
    def num_envs(self) -> int:
        return len(self.arrays["reward"])

    def _work(self, w):
        while True:
            self._wake[w].acquire()
            if self._closing:
                return
            self._round.step_slice(w, self, owner=True)

    def _run(self, task, actions=None):
        if self.cores.measuring:
            wall, cpu = time.perf_counter(), time.process_time()
            self._step_slices(task, actions)
            self.cores.observe(self._owners_ran, time.perf_counter() - wall, time.process_time() - cpu)
        else:
            self._step_slices(task, actions)

    def _step_slices(self, task, actions) -> None:
        work = self._round = _Round(task, actions, len(self.groups))
        # Owners that could not claim a slice last round only cost wake-ups: let them sleep, and look
        # again every PROBE_EVERY rounds in case the envs have started to release the GIL.
        if self._owners_ran or self._rounds % PROBE_EVERY == 0:
            for wake in self._wake[1:]:
                if wake.locked():  # an idle owner: let it claim its slice; a busy one reads the new round next
                    wake.release()
        self._rounds += 1
        for w in range(len(self.groups)):  # own slice first, then every slice no owner has claimed yet
            work.step_slice(w, self)
        while not work.all_done.acquire(timeout=1.0):  # slices that owners claimed and still step
            if not all(t.is_alive() for t in self._threads):
                raise EnvStepError("an env worker thread died")
        if task == "step":  # resets hold the GIL in most envs: the caller often does them all, which says nothing
            self._owners_ran = bool(work.owner_claims)
        errors = [e for e in work.errors if e is not None]
        if errors:
            raise errors[0]

    def _do(self, task, w, actions):
        if task == "reset":
            self.groups[w].reset()
        else:
            self.groups[w].step(actions[self._slices[w]])

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
        if self._closing:  # closed already
            return
        self._closing = True
        for wake in self._wake[1:]:
            if wake.locked():  # an idle worker; a busy one sees _closing when it next waits
                wake.release()
        for t in self._threads[1:]:
            t.join(timeout=5)
        self.cores.release()
        for g in self.groups:
            g.close()


class _Round:
    """One iteration's work for ThreadedEnvs: who claimed which slice, how many are done, errors."""

    def __init__(self, task, actions, num_slices):
        self.task, self.actions, self.num_slices = task, actions, num_slices
        self.claims = [threading.Lock() for _ in range(num_slices)]
        self.finished = itertools.count(1)  # next() is atomic under the GIL: a race-free counter
        self.all_done = _taken_lock()
        self.errors = [None] * num_slices
        self.owner_claims = []  # slices their owner thread claimed (list.append is atomic)

    def step_slice(self, w, envs: ThreadedEnvs, owner: bool = False) -> None:
        if not self.claims[w].acquire(blocking=False):
            return  # another thread has it
        if owner:
            self.owner_claims.append(w)
        try:
            envs._do(self.task, w, self.actions)
        except BaseException as e:  # raised in the calling thread by _run, with the env index
            self.errors[w] = e
        if next(self.finished) == self.num_slices:
            self.all_done.release()


def _taken_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class ProcessEnvs:
    """gymnasium AsyncVectorEnv (one process per env), same-step auto-reset like the others."""

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, obs_dtype=np.float32):
        self.vec = gym.vector.AsyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                                             copy=False)
        self.seeds = list(seeds)
        self.discrete = action_is_discrete
        self.arrays = allocate(len(env_fns), obs_shape, obs_dtype)

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
        a["true_return"][:] = np.nan
        if TRUE_RETURN in info:  # the reset info of envs whose reset ended a game (rlkit.wrappers.TrueEpisode)
            scored = info["_" + TRUE_RETURN]
            a["true_return"][scored] = info[TRUE_RETURN][scored]
        return a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]

    def get_state(self):
        return None  # subprocess envs cannot be pickled from here; resume re-seeds them

    def set_state(self, state) -> None:
        pass

    def close(self):
        self.vec.close()


def make_vector(backend, env_fns, seeds, obs_shape, action_is_discrete, num_threads, one_core="auto",
                obs_dtype=np.float32):
    if backend == "process":
        return ProcessEnvs(env_fns, seeds, obs_shape, action_is_discrete, obs_dtype)
    if num_threads == 1:
        return SerialEnvs(env_fns, seeds, obs_shape, action_is_discrete, obs_dtype=obs_dtype)
    return ThreadedEnvs(env_fns, seeds, obs_shape, action_is_discrete, num_threads, one_core, obs_dtype)
