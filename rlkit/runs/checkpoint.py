"""Checkpoints: everything a run needs to continue exactly, written atomically and verified on load.

File layout: one JSON header line, then the torch.save payload.

    {"format": "rlkit-checkpoint", "version": 2, "bytes": N, "sha256": "...", "metrics_rows": R}\\n<payload>

The header's sha256 and byte count cover the payload, so a flipped byte or a truncated file is refused
with a line naming the file instead of loading changed weights or ending in an EOFError. `metrics_rows`
is how many metrics.csv rows the checkpoint covers: a resume checks that metrics.csv still has them.
Files from before the header (a bare torch.save zip) still load, unverified.

The payload is a pickle, so loading it can run code: only resuming reads it, and it says so first. Loading
a policy to act reads policy.pt instead (rlkit/runs/policy_file.py), weights only.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import torch

MAGIC = "rlkit-checkpoint"
VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or read; the message names the file and what to do."""


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file and rename, so a crash mid-save never leaves a torn checkpoint; a failed
    write (a full disk) removes the temporary and keeps the previous checkpoint."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    header = {"format": MAGIC, "version": VERSION, "bytes": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest(), "metrics_rows": state.get("metrics_rows"),
              "policy_step": (state.get("counter") or {}).get("policy_step")}  # read without the payload
    tmp = path.with_suffix(".pt.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())  # the rename below must never publish a file whose bytes are not on disk
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_header(path: Path) -> dict:
    """The header of a checkpoint ({} for one from before headers); the payload is not read."""
    with open(path, "rb") as f:
        first = f.read(1)
        if first != b"{":
            return {}
        f.seek(0)
        return _parse_header(path, f.readline(4096))


def _parse_header(path: Path, line: bytes) -> dict:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != MAGIC:
        raise CheckpointError(f"{path}: not an rlkit checkpoint (unreadable header); "
                              "start the run over with --force, or restore the file from a backup")
    return header


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's state, verified. It is a pickle (envs, random states), so loading it can run code:
    once the file is known whole, one line on stderr says so before anything is unpickled. Acting needs
    only policy.pt (rlkit.load)."""
    path = Path(path)
    fix = "start the run over with --force, or restore the file from a backup"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror}); {fix}") from None
    if data[:1] == b"{":
        end = data.find(b"\n")
        header = _parse_header(path, data[:end + 1] if end >= 0 else data)
        payload = memoryview(data)[end + 1:]
        if len(payload) != header["bytes"]:
            raise CheckpointError(f"{path}: truncated ({len(payload)} of {header['bytes']} bytes); {fix}")
        if hashlib.sha256(payload).hexdigest() != header["sha256"]:
            raise CheckpointError(f"{path}: checksum mismatch, the file was changed or corrupted after it was "
                                  f"written; {fix}")
    else:
        payload = data
    if bytes(payload[:4]) != b"PK\x03\x04" and payload[:1] != b"\x80":  # neither torch's zip nor a bare pickle
        raise CheckpointError(f"{path}: cannot be loaded (not a file torch.save wrote); {fix}")
    # a whole, unchanged file: only now is anything unpickled, and that is said first
    print(f"{path}: loading a checkpoint unpickles it, which can run code; resume only runs you trust "
          "(rlkit.load reads policy.pt, weights only)", file=sys.stderr, flush=True)
    try:
        # weights_only=False: the checkpoint holds numpy RNG states and pickled envs the run wrote itself
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: EOFError, RuntimeError, UnpicklingError, ...
        raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              f"{fix}") from None
