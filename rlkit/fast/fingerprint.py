"""Fingerprints of source code: whether the functions a fast path was derived from are still the ones that run.

A hand-written fast path (rlkit/algos/ppo_numpy.py: PPO's gradient written out) is a second copy of a
definition. It may run only while the definition is the one it was derived from, so the fast path records the
fingerprint of that definition's source, and the caller compares it with the fingerprint of the functions that
are bound *now*. Editing the file, monkeypatching a method on the class, or defining it anew in a notebook all
change the fingerprint, and the fast path steps aside. The fingerprint reads the source's tokens without
comments or blank lines, so reformatting a comment does not switch a fast path off; anything else does.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import textwrap
import tokenize

_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
            tokenize.ENDMARKER}


def source_tokens(function) -> str:
    """The function's source as its tokens joined by spaces (comments and layout dropped); '' if it has none."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):  # built in C, or made by exec without a file: nothing to compare, never equal
        return ""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        return " ".join(t.string for t in tokens if t.type not in _SKIPPED)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return ""


def fingerprint(functions: dict) -> str:
    """sha256 over name -> source of each function; a function without source makes it unmatchable."""
    digest = hashlib.sha256()
    for name in sorted(functions):
        tokens = source_tokens(functions[name])
        if not tokens:
            return f"unverifiable: {name} has no source"
        digest.update(f"{name}\0{tokens}\0".encode())
    return digest.hexdigest()


def class_functions(cls) -> dict:
    """Every function the class defines or inherits from rlkit's own classes, as the class holds it now (a
    method replaced on the class is the replacement), keyed 'Class.name'. torch's and Python's base classes
    are left out: they are pinned with the install, not edited in a research copy."""
    out = {}
    for klass in reversed(cls.__mro__):  # a subclass's override wins
        if klass.__module__.split(".")[0] != "rlkit":
            continue
        for name, value in vars(klass).items():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value):
                out[f"{cls.__name__}.{name}"] = value
    return out
