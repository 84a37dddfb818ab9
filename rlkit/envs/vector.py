"""Vectors of environments behind one interface, three backends.

Every backend steps N envs with auto-reset in the same step: after `step(actions)`,
`obs` holds the next observation (the reset one where an episode ended) and `final_obs`
the true last observation of an ended episode, which truncation bootstrapping needs.

- SerialEnvs: a loop in the calling thread.
- ThreadedEnvs (docs/design.md, "Threads"): the calling thread and T-1 persistent worker threads step T slices
  of E envs, each slice claimed by one thread per iteration and written only to its own rows of
  shared preallocated arrays; inference stays batched in the caller, so threads never run the
  model and never fight over the GIL with many small torch calls. When the envs mostly wait, all
  these threads move to one CPU core, so that GIL hand-overs stay on it (rlkit/envs/affinity.py).
- ProcessEnvs: gymnasium's AsyncVectorEnv, for CPU-bound pure-Python envs.

Step timeout (`step_timeout` seconds, 0: none): a vector step or reset that takes longer fails with
EnvStepTimeout naming the env that hangs. In the main thread a watchdog's SIGALRM interrupts an env
that hangs in the calling thread (in Python code or a blocking call; a C loop that never returns to
Python cannot be interrupted); ThreadedEnvs' caller also stops waiting for a worker thread's slice, and
ProcessEnvs for a subprocess, after that long.

Env state for checkpoints: the envs themselves, pickled with cloudpickle (lambdas, local classes);
envs that cannot be pickled at all (sockets, emulators, locks) give no state, and a resume re-seeds them.
"""
from __future__ import annotations

import itertools
import multiprocessing
import signal
import sys
import threading
import time
import traceback

import cloudpickle
import gymnasium as gym
import numpy as np

from rlkit.envs.affinity import OneCore
from rlkit.envs.wrappers import TRUE_RETURN, TrueEpisode

PROBE_EVERY = 16  # ThreadedEnvs: rounds between wake-ups of owners that could not claim their slice
_get_ident, _monotonic = threading.get_ident, time.monotonic  # module globals: looked up once per step


class _StepTimeoutSetting:
    """`step_timeout` of a vector: setting it starts the watchdog when steps from this thread can be timed."""

    def __get__(self, envs, owner=None):
        return self if envs is None else envs._step_timeout

    def __set__(self, envs, seconds):
        envs._step_timeout = seconds
        envs._timed = _Watchdog.usable(seconds)


class EnvStepError(RuntimeError):
    """An environment raised or hung; names the env index and carries the original traceback."""


class EnvStepTimeout(EnvStepError):
    """An environment did not return within step_timeout."""


class StepTimeout(Exception):
    """Raised by the watchdog's SIGALRM inside the env call that exceeded step_timeout (args: the timeout)."""


class _Watchdog:
    """Times the main thread's vector steps. A step records (start, timeout) and clears it, a few hundred
    nanoseconds on the collector's hot path; a daemon thread that wakes every quarter of the shortest
    timeout sends SIGALRM to the main thread when a step has run past its timeout, and the handler raises
    StepTimeout inside the env call that hangs. No signal is sent unless a step is late.

    Signals are delivered to the main thread only, so steps taken in other threads are not timed here.
    The handler is installed when a vector with a timeout is made; an alarm it did not cause goes to the
    handler that was there before, and while another handler has replaced it no alarm is sent."""

    main = threading.main_thread().ident if hasattr(signal, "pthread_kill") else None
    step: tuple | None = None  # (monotonic start, timeout) of the main thread's current step, or None
    shortest = float("inf")
    previous = None
    thread: threading.Thread | None = None
    wake = threading.Event()

    @classmethod
    def usable(cls, seconds: float) -> bool:
        """Start the watchdog (once per process) if steps of this length can be timed from this thread."""
        if not seconds or threading.get_ident() != cls.main:
            return False
        if seconds < cls.shortest:
            cls.shortest = seconds
            cls.wake.set()  # it may be asleep for a quarter of a longer timeout
        # (Re)install the handler for every new vector: other code may have replaced it since (pytest-timeout
        # resets SIGALRM to its default action, which would end the process on our next alarm)
        if signal.getsignal(signal.SIGALRM) != cls._handler:
            cls.previous = signal.signal(signal.SIGALRM, cls._handler)
        if cls.thread is None:
            cls.thread = threading.Thread(target=cls._watch, daemon=True, name="rlkit-step-watchdog")
            cls.thread.start()
        return True

    @classmethod
    def _handler(cls, signum, frame):
        step = cls.step
        if step is not None and time.monotonic() - step[0] >= step[1]:
            cls.step = None
            raise StepTimeout(step[1])
        if callable(cls.previous):
            cls.previous(signum, frame)

    @classmethod
    def _watch(cls) -> None:
        _leave_stop_signals_to_the_main_thread()
        fired = None
        while True:
            step, period = cls.step, min(60.0, max(0.01, cls.shortest / 4))
            wait = period
            if step is not None and step is not fired:
                late = time.monotonic() - step[0] - step[1]
                if late >= 0:
                    fired = step  # one alarm per late step
                    # never while another handler has replaced ours: SIGALRM's default action ends the process
                    if signal.getsignal(signal.SIGALRM) == cls._handler:
                        signal.pthread_kill(cls.main, signal.SIGALRM)
                else:
                    wait = min(-late, period)
            cls.wake.wait(wait)
            cls.wake.clear()


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _leave_stop_signals_to_the_main_thread() -> None:
    """Block Ctrl-C and SIGTERM in the calling (worker) thread. The kernel hands a signal sent to the process
    to any thread that does not block it, and Python runs its handler only in the main thread: delivered to a
    worker, the signal would leave a main thread that waits inside an env's C call (a sleep, a socket read)
    waiting on. Blocked here, it can only interrupt the main thread's wait."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _timeout_error(index: int, seconds: float, what: str = "step") -> EnvStepTimeout:
    return EnvStepTimeout(f"environment {index} did not return from {what}() within env.step_timeout={seconds:g} s; "
                        "fix the env, or raise env.step_timeout (0 disables it) if its steps are that slow")


class SerialEnvs:
    step_timeout = _StepTimeoutSetting()

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, first_index=0, arrays=None, step_timeout=0.0,
                 obs_dtype=np.float32):
        self.envs = [fn() for fn in env_fns]
        self.recorders = _recorders(self.envs)
        self.seeds = list(seeds)
        self.first_index = first_index
        self.discrete = action_is_discrete
        self.step_timeout = step_timeout  # ThreadedEnvs times its slices itself and leaves this 0
        n = len(self.envs)
        self.arrays = arrays or allocate(n, obs_shape, obs_dtype)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def reset(self):
        obs, i = self.arrays["obs"], 0
        timed = self._timed and _get_ident() == _Watchdog.main
        if timed:
            _Watchdog.step = (_monotonic(), self.step_timeout)
        try:
            for i, env in enumerate(self.envs):
                obs[i] = env.reset(seed=self.seeds[i])[0]
                if self.recorders[i] is not None:
                    self.recorders[i].take()  # a game cut by this reset is nobody's episode
        except Exception as e:
            raise self._error(i, e, "reset") from e
        finally:
            if timed:
                _Watchdog.step = None
        return obs

    def step(self, actions):
        a = self.arrays
        obs, rew, term, trunc, final = a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]
        true_return, recorders = a["true_return"], self.recorders
        if self.discrete and actions.ndim == 1:
            actions = actions.tolist()  # Python ints, converted once for all envs
        i = 0
        timed = self._timed and _get_ident() == _Watchdog.main  # the watchdog times the main thread only
        if timed:
            _Watchdog.step = (_monotonic(), self.step_timeout)
        try:  # one try around the loop, not one per env: this loop is the collector's hot path
            for i, env in enumerate(self.envs):
                o, rew[i], te, tr, _ = env.step(actions[i])
                term[i], trunc[i] = te, tr
                if te or tr:
                    final[i] = o
                    o = env.reset()[0]
                    # the game's own score where this reset ended a game (rlkit.envs.wrappers.TrueEpisode), else NaN
                    score = recorders[i].take() if recorders[i] is not None else None
                    true_return[i] = np.nan if score is None else score
                obs[i] = o
        except Exception as e:
            raise self._error(i, e) from e
        finally:
            if timed:
                _Watchdog.step = None
        return obs, rew, term, trunc, final

    def _error(self, i, e, what="step") -> EnvStepError:
        if isinstance(e, StepTimeout):
            return _timeout_error(self.first_index + i, e.args[0], what)
        return EnvStepError(f"environment {self.first_index + i} raised {type(e).__name__}: {e}\n"
                            f"original traceback:\n{traceback.format_exc()}")

    def get_state(self) -> bytes | None:
        """The envs pickled (cloudpickle: lambdas and local classes too); None when they cannot be."""
        try:
            return cloudpickle.dumps(self.envs)
        except Exception as e:  # PicklingError, TypeError ("cannot pickle '_thread.lock'"), ...
            _warn_unpicklable(e)
            return None

    def set_state(self, state: bytes) -> None:
        for env in self.envs:
            env.close()
        self.envs = cloudpickle.loads(state)
        self.recorders = _recorders(self.envs)

    def close(self):
        for env in self.envs:
            env.close()


_warned_unpicklable = False


def _warn_unpicklable(e: Exception) -> None:
    global _warned_unpicklable
    if not _warned_unpicklable:
        _warned_unpicklable = True
        print(f"rlkit: warning: the envs cannot be pickled ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
              "checkpoints hold no env state and a resume re-seeds the envs (it continues, not bit-identically)",
              file=sys.stderr, flush=True)


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

    step_timeout = _StepTimeoutSetting()

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, num_threads, one_core="auto", step_timeout=0.0,
                 obs_dtype=np.float32):
        self.step_timeout = step_timeout
        self._abandoned = False  # a round that never completed (timeout, Ctrl-C): some thread may still be in an env
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
        self.cores = OneCore(one_core)  # rlkit/envs/affinity.py: one core for all these threads when the envs wait
        self.cores.start([t.native_id for t in self._threads[1:]])

    @property
    def num_envs(self) -> int:
        return len(self.arrays["reward"])

    def _work(self, w):
        _leave_stop_signals_to_the_main_thread()
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
        timed = self._timed and _get_ident() == _Watchdog.main
        if timed:
            _Watchdog.step = (_monotonic(), self.step_timeout)
        self._abandoned = True  # until this round completes
        try:
            self._step_round(work, task)
        except StepTimeout:  # the alarm went off while the caller waited for an owner's slice
            raise self._hung(work, task) from None
        finally:
            if timed:
                _Watchdog.step = None
        self._abandoned = False
        errors = [e for e in work.errors if e is not None]
        if errors:
            raise errors[0]

    def _step_round(self, work, task) -> None:
        # Owners that could not claim a slice last round only cost wake-ups: let them sleep, and look
        # again every PROBE_EVERY rounds in case the envs have started to release the GIL.
        if self._owners_ran or self._rounds % PROBE_EVERY == 0:
            for wake in self._wake[1:]:
                if wake.locked():  # an idle owner: let it claim its slice; a busy one reads the new round next
                    wake.release()
        self._rounds += 1
        for w in range(len(self.groups)):  # own slice first, then every slice no owner has claimed yet
            work.step_slice(w, self)
        wait = min(1.0, self.step_timeout) if self.step_timeout else 1.0
        deadline = None
        while not work.all_done.acquire(timeout=wait):  # slices that owners claimed and still step
            if not all(t.is_alive() for t in self._threads):
                raise EnvStepError("an env worker thread died")
            if self.step_timeout:  # off the main thread no alarm is possible: this bounds the wait instead
                now = time.monotonic()
                deadline = deadline or now - wait + self.step_timeout
                if now >= deadline:
                    raise self._hung(work, task)
        if task == "step":  # resets hold the GIL in most envs: the caller often does them all, which says nothing
            self._owners_ran = bool(work.owner_claims)

    def _hung(self, work, task) -> EnvStepError:
        """The EnvStepError for the first slice still stepping, naming the env its thread is inside."""
        frames = sys._current_frames()  # read-only introspection, only on this error path
        codes = (SerialEnvs.step.__code__, SerialEnvs.reset.__code__)
        for w, group in enumerate(self.groups):
            if work.done[w]:
                continue
            index = group.first_index
            frame = frames.get(work.stepper[w])
            while frame is not None and frame.f_code not in codes:
                frame = frame.f_back
            if frame is not None and isinstance(frame.f_locals.get("i"), int):
                index += frame.f_locals["i"]
            return _timeout_error(index, self.step_timeout, task)
        return EnvStepError(f"a vector {task} did not complete within env.step_timeout={self.step_timeout:g} s")

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

    def get_state(self) -> list | None:
        states = [g.get_state() for g in self.groups]
        return None if any(s is None for s in states) else states

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
        # After a timeout or Ctrl-C a thread may be stuck in an env: do not wait for it (the threads are
        # daemons), and leave the envs of unfinished slices alone (closing an env mid-step is unsafe).
        wait = 0.1 if self._abandoned else 5
        for t in self._threads[1:]:
            t.join(timeout=wait)
        self.cores.release()
        work = self._round
        for w, g in enumerate(self.groups):
            if not (self._abandoned and work is not None and not work.done[w]):
                g.close()


class _Round:
    """One iteration's work for ThreadedEnvs: who claimed which slice, how many are done, errors."""

    def __init__(self, task, actions, num_slices):
        self.task, self.actions, self.num_slices = task, actions, num_slices
        self.claims = [threading.Lock() for _ in range(num_slices)]
        self.finished = itertools.count(1)  # next() is atomic under the GIL: a race-free counter
        self.all_done = _taken_lock()
        self.errors = [None] * num_slices
        self.done = [False] * num_slices
        self.stepper = [None] * num_slices  # the thread stepping each slice: a hung one is named by its frames
        self.owner_claims = []  # slices their owner thread claimed (list.append is atomic)

    def step_slice(self, w, envs: ThreadedEnvs, owner: bool = False) -> None:
        if not self.claims[w].acquire(blocking=False):
            return  # another thread has it
        if owner:
            self.owner_claims.append(w)
        self.stepper[w] = threading.get_ident()
        try:
            envs._do(self.task, w, self.actions)
        except EnvStepTimeout:  # the caller's own slice hung (the alarm fires in the caller only): stop at once
            raise
        except StepTimeout:  # the alarm went off between two envs' calls
            raise envs._hung(self, self.task) from None
        except Exception as e:  # raised in the calling thread by _run, with the env index
            self.errors[w] = e
        # Ctrl-C and SIGTERM (BaseException) leave the caller at once: the round is abandoned, not awaited
        self.done[w] = True
        if next(self.finished) == self.num_slices:
            self.all_done.release()


def _taken_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class ProcessEnvs:
    """gymnasium AsyncVectorEnv (one process per env), same-step auto-reset like the others."""

    def __init__(self, env_fns, seeds, obs_shape, action_is_discrete, step_timeout=0.0, obs_dtype=np.float32):
        self.vec = gym.vector.AsyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                                             copy=False)
        self.step_timeout = step_timeout
        self._hung = False
        self.seeds = list(seeds)
        self.discrete = action_is_discrete
        self.arrays = allocate(len(env_fns), obs_shape, obs_dtype)

    @property
    def num_envs(self) -> int:
        return len(self.seeds)

    def _wait(self, wait, what):
        try:
            return wait(timeout=self.step_timeout or None)
        except multiprocessing.TimeoutError:
            self._hung = True
            waiting = [i for i, pipe in enumerate(self.vec.parent_pipes) if not pipe.poll()]
            raise _timeout_error(waiting[0] if waiting else 0, self.step_timeout, what) from None

    def reset(self):
        self.vec.reset_async(seed=self.seeds)
        obs, _ = self._wait(self.vec.reset_wait, "reset")
        self.arrays["obs"][:] = obs
        return self.arrays["obs"]

    def step(self, actions):
        a = self.arrays
        self.vec.step_async(actions.astype(np.int64) if self.discrete else actions)
        obs, rew, term, trunc, info = self._wait(self.vec.step_wait, "step")
        a["obs"][:], a["reward"][:], a["terminated"][:], a["truncated"][:] = obs, rew, term, trunc
        if "_final_obs" in info:
            ended = info["_final_obs"]
            a["final_obs"][ended] = np.stack(info["final_obs"][ended])
        a["true_return"][:] = np.nan
        if TRUE_RETURN in info:  # the reset info of envs whose reset ended a game (rlkit.envs.wrappers.TrueEpisode)
            scored = info["_" + TRUE_RETURN]
            a["true_return"][scored] = info[TRUE_RETURN][scored]
        return a["obs"], a["reward"], a["terminated"], a["truncated"], a["final_obs"]

    def get_state(self):
        return None  # subprocess envs cannot be pickled from here; resume re-seeds them

    def set_state(self, state) -> None:
        pass

    def close(self):
        self.vec.close(terminate=self._hung)  # a hung worker never answers a polite close


def make_vector(backend, env_fns, seeds, obs_shape, action_is_discrete, num_threads, one_core="auto",
                step_timeout=0.0, obs_dtype=np.float32):
    if backend == "process":
        return ProcessEnvs(env_fns, seeds, obs_shape, action_is_discrete, step_timeout, obs_dtype)
    if num_threads == 1:
        return SerialEnvs(env_fns, seeds, obs_shape, action_is_discrete, step_timeout=step_timeout, obs_dtype=obs_dtype)
    return ThreadedEnvs(env_fns, seeds, obs_shape, action_is_discrete, num_threads, one_core, step_timeout, obs_dtype)
