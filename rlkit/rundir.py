"""Run directories: layout, status.json, and the rule that finished work is never overwritten silently."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

OWNED_FILES = ("config.yaml", "metrics.csv", "status.json", "checkpoint.pt")  # train.ipynb belongs to the runner


class RunExistsError(RuntimeError):
    """The run directory already holds a run that would be overwritten."""


def default_run_dir(config_source, seed: int, results: str | Path = "results") -> Path:
    experiment = Path(config_source).stem if isinstance(config_source, (str, Path)) else "run"
    return Path(results) / experiment / f"seed{seed}"


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(run_dir: Path, **fields) -> dict:
    """Merge fields into status.json, written atomically (tmp file + rename)."""
    status = read_status(run_dir)
    status.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    tmp = Path(run_dir) / "status.json.tmp"
    tmp.write_text(json.dumps(status, indent=2, default=str) + "\n")
    os.replace(tmp, Path(run_dir) / "status.json")
    return status


def prepare(run_dir: Path, resume: bool, force: bool) -> bool:
    """Create run_dir; return True when the run should resume from its checkpoint."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_checkpoint = (run_dir / "checkpoint.pt").exists()
    state = read_status(run_dir).get("state")
    if force:
        for name in OWNED_FILES:
            (run_dir / name).unlink(missing_ok=True)
        return False
    if state == "finished":
        raise RunExistsError(f"{run_dir} holds a finished run; pass --force (force=True) to overwrite it, "
                             "or choose another --out directory")
    if resume:
        return has_checkpoint
    if has_checkpoint or (run_dir / "metrics.csv").exists():
        raise RunExistsError(f"{run_dir} holds an unfinished run; pass --resume {run_dir} to continue it, "
                             "or --force to start over")
    return False


def versions() -> dict:
    import gymnasium
    import numpy
    import torch

    import rlkit
    return {"python": platform.python_version(), "rlkit": rlkit.__version__, "torch": torch.__version__,
            "gymnasium": gymnasium.__version__, "numpy": numpy.__version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
