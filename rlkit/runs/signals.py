"""SIGTERM as Ctrl-C: `timeout`, Slurm and Kubernetes stop a process with SIGTERM, whose default is to die at
once, leaving runs marked `running`. Within `stop_on_sigterm()` it raises `Terminated`, a KeyboardInterrupt,
so every path that handles Ctrl-C (runs killed and marked failed, resumable) handles it too.

Here, below the trainer, and free of torch: a command installs it before its heavy imports, so a SIGTERM
that comes while they load is handled as well.
"""
from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C stops (a KeyboardInterrupt, so every Ctrl-C path handles it)."""


@contextlib.contextmanager
def stop_on_sigterm():
    """Within: SIGTERM raises Terminated in the main thread (elsewhere signals cannot be handled: a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
