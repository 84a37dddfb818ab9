"""Checkpoints: everything a run needs to continue exactly, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file and rename, so a crash mid-save never leaves a torn checkpoint."""
    path = Path(path)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    # weights_only=False: the checkpoint holds numpy RNG states and pickled envs the run wrote itself
    return torch.load(path, map_location="cpu", weights_only=False)
