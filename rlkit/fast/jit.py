"""Compiled loops for the CPU's per-step and per-minibatch arithmetic, with numba.

At one env a training step is a few dozen operations on arrays of a handful of numbers (normalise an
observation, sample an action, scale it, filter a reward); numpy spends about a microsecond of
dispatch on each, which adds up to more than the arithmetic and, at one env, to a large share of the
env's own step. A compiled loop does the same arithmetic in one call. The loops live beside the code that
uses them (normalize, numpy_mlp, optim, memory, networks, envs); each is the only implementation of its
formula (no numpy twin to drift from), written element by element in the
same order of IEEE operations as the formula they state, and without fastmath, so that they give the
plain formula's bits where a test says so.

`compiled` is numba.njit with the kit's options: cache=True keeps the machine code in __pycache__
beside the module (or numba's user cache where that is read-only), so only the first process after an
install compiles (about 5 s for all of them on the dev VM, measured with a first short Pendulum run);
error_model="numpy" makes x / 0 give inf or nan as numpy does instead of raising.

The first call of any compiled function in a process sets numba's machinery up (about 0.2 s on the
dev VM, even with every loop cached); it is made here, at import, so that it counts with the imports
and not in a run's first training steps.
"""
from __future__ import annotations

import numba


def compiled(fn):
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)


@compiled
def _ready() -> int:
    return 0


_ready()
