"""One CPU core for the threaded collector when its envs mostly wait (`parallel.one_core`).

Only one thread runs Python at a time (the GIL). A thread that wants it sleeps until the holder lets
go, and is then woken. When the collector's threads sit on different cores, each of those hand-overs
wakes another core; on a VM an idle virtual CPU takes tens of microseconds to wake, and an iteration
of 8 threads x 2 waiting envs has some 20 hand-overs. Envs that wait (a sleep, a socket, a robot)
leave the collector needing less than one core anyway, so all its threads, the calling thread
included, can share the calling thread's core: every hand-over becomes a switch on that core.

Envs that compute without the GIL (MuJoCo, other C extensions) keep several cores busy at once and
must not be squeezed onto one. `auto` tells the two apart by measuring: over a window of steps in
which the worker threads stepped envs, the process's CPU time divided by the wall time of those
steps is the number of cores the collector keeps busy. Below ONE_CORE_BELOW it moves to one core;
otherwise it stays as it is. Results do not change either way: placement decides only speed.
"""
from __future__ import annotations

import ctypes
import os

ONE_CORE_BELOW = 0.9  # cores in use while stepping, below which `auto` moves the collector to one core
WARMUP_STEPS = 16  # vector steps left out of the measurement (first episodes, caches)
WINDOW_STEPS = 64  # vector steps measured before `auto` decides


def current_core() -> int | None:
    """The CPU the calling thread runs on (glibc's sched_getcpu), or None where that cannot be asked."""
    try:
        core = ctypes.CDLL(None).sched_getcpu()
    except (OSError, AttributeError):
        return None
    return core if core >= 0 else None


def can_pin() -> bool:
    """Linux with more than one core to choose from: elsewhere one_core does nothing."""
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1


class OneCore:
    """Keeps, or decides whether to keep, the calling thread and the worker threads on one core.

    mode: True (from the start), False (never) or "auto" (measure, then decide once). `observe(owners_ran,
    seconds, cpu_seconds)` is called after every vector step; `pinned_core` is the core in use, or None."""

    def __init__(self, mode):
        self.mode = mode if can_pin() else False
        self.pinned_core = None
        self.cores_used = None  # what auto measured: the process's CPU seconds per wall second of stepping
        self._caller_mask = None
        self._thread_ids = []
        self._steps = self._owner_steps = 0
        self._wall = self._cpu = 0.0

    def start(self, worker_thread_ids) -> None:
        """Call in the collector's calling thread once the worker threads run."""
        self._thread_ids = list(worker_thread_ids)
        if self.mode is True:
            self._pin()

    @property
    def measuring(self) -> bool:
        return self.mode == "auto" and self.cores_used is None

    def observe(self, owners_ran: bool, seconds: float, cpu_seconds: float) -> None:
        self._steps += 1
        if self._steps <= WARMUP_STEPS:
            return
        self._wall += seconds
        self._cpu += cpu_seconds
        self._owner_steps += owners_ran
        if self._steps < WARMUP_STEPS + WINDOW_STEPS:
            return
        self.cores_used = self._cpu / max(self._wall, 1e-9)
        # Worker threads that never stepped (envs that hold the GIL) gain nothing from sharing a core
        if self._owner_steps >= WINDOW_STEPS // 2 and self.cores_used < ONE_CORE_BELOW:
            self._pin()

    def _pin(self) -> None:
        core = current_core()
        mask = os.sched_getaffinity(0)
        if core not in mask:
            core = min(mask)
        self._caller_mask = mask
        for tid in [0, *self._thread_ids]:  # 0: the calling thread; Linux sets affinity per thread
            try:
                os.sched_setaffinity(tid, {core})
            except OSError:  # a worker that has already exited
                pass
        self.pinned_core = core

    def release(self) -> None:
        """Give the calling thread its cores back (the worker threads end with the collector)."""
        if self._caller_mask is not None:
            os.sched_setaffinity(0, self._caller_mask)
            self._caller_mask = None
