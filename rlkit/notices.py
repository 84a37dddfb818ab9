"""The kit's one warning channel: a line on stderr for what is accepted but does not do what it looks like
(a key that does nothing, a fast path that stepped aside, a network too large to be quick)."""
from __future__ import annotations

import sys


def warn(message: str) -> None:
    print(f"rlkit: warning: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """A line on stderr for a choice the kit made that changes speed, not results (which update path runs)."""
    print(f"rlkit: {message}", file=sys.stderr, flush=True)
