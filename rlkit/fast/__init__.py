"""The CPU fast path: compiled loops (numba) for the per-step and per-minibatch arithmetic."""
