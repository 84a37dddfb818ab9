"""Run directories: layout, status.json, the lock, and the rule that finished work is never overwritten silently.

One process at a time trains in a run directory: `RunLock` holds an exclusive OS file lock (flock) on
`run_dir/.lock` for the run's lifetime and removes the file at the end. The kernel drops the lock when
the process ends however it ends, so a kill -9 leaves at most the file, never a held lock; a second
process stops at once, naming the holder's PID.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

OWNED_FILES = ("config.yaml", "metrics.csv", "status.json", "checkpoint.pt")  # train.ipynb belongs to the runner
OWNED_DIRS = ("replay",)  # a memory-mapped replay memory's files (rlkit/data/replay_map.py)
LOCK_FILE = ".lock"


class RunExistsError(RuntimeError):
    """The run directory already holds a run that would be overwritten."""


class RunLockedError(RuntimeError):
    """Another process is training in this run directory."""


_held_locks: set[int] = set()  # lock fds of this process, closed in forked children (see RunLock)


def _close_locks_in_child() -> None:
    # A forked child (the process backend's env workers) shares the lock's open file: it must not keep
    # the run locked after this process has died.
    for fd in list(_held_locks):
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


class RunLock:
    """Exclusive lock on a run directory for as long as this process trains in it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: held by another process
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunLockedError(f"{self.run_dir} is in use by another training process (pid {holder}); "
                                     "wait for it to end or stop it, or choose another --out directory") from None
            # The holder removes the file when it is done: a lock taken on a file that has just been
            # removed (or replaced) locks nothing, so check that the path still names this file.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        _held_locks.add(fd)

    @staticmethod
    def holder(run_dir: Path) -> str | None:
        """The pid of the process that holds run_dir's lock, or None when none does (nothing is changed)."""
        try:
            fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except OSError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            _held_locks.discard(self.fd)
            try:  # removed while still locked, so no other process can lock this file after us
                os.unlink(self.run_dir / LOCK_FILE)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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
    """Merge fields into status.json, written atomically (tmp file + rename).

    On a full disk the temporary is removed and status.json is rewritten in place instead: it is smaller
    than a disk block, so the blocks it already has take the new text and a failed run can still say why."""
    status = read_status(run_dir)
    status.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    text = json.dumps(status, indent=2, default=str) + "\n"
    path, tmp = Path(run_dir) / "status.json", Path(run_dir) / "status.json.tmp"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        if not path.exists():
            raise
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()
    return status


def prepare(run_dir: Path, resume: bool, force: bool, total_steps: int | None = None, say=print) -> bool:
    """Decide what to do with run_dir (locked by the caller, the config already validated); return True when
    the run should resume from its checkpoint.

    - force: delete the run's files (and its replay/ folder) and start over (resume is ignored).
    - resume: continue from checkpoint.pt; a finished run continues only to a larger total_steps. Without a
      checkpoint the run starts over, and rows an earlier attempt wrote are moved to metrics.csv.1 (.2, ...)
      so that metrics.csv never mixes two histories; `say` is told so in one line.
    - neither: refuse a directory that holds a run.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_checkpoint = (run_dir / "checkpoint.pt").exists()
    status = read_status(run_dir)
    if force:
        for name in OWNED_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for name in OWNED_DIRS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
        return False
    if status.get("state") == "finished":
        done = status.get("policy_step")
        if not resume:
            raise RunExistsError(f"{run_dir} holds a finished run; pass --force (force=True) to overwrite it, "
                                 f"--resume {run_dir} --set total_steps=N to train it further, or choose another --out")
        if total_steps is not None and done is not None and total_steps <= done:
            raise RunExistsError(f"{run_dir} finished at policy_step {done}; to train it further pass "
                                 f"--resume {run_dir} --set total_steps=N with N > {done}, or --force to start over")
    if resume:
        if not has_checkpoint and (run_dir / "metrics.csv").exists():
            kept = _move_aside(run_dir / "metrics.csv")
            say(f"rlkit: {run_dir} has no checkpoint to resume from; starting over at step 0 "
                f"(the earlier attempt's metrics were moved to {kept.name})")
        return has_checkpoint
    if has_checkpoint or (run_dir / "metrics.csv").exists():
        raise RunExistsError(f"{run_dir} holds an unfinished run; pass --resume {run_dir} to continue it, "
                             "or --force to start over")
    return False


def _move_aside(path: Path) -> Path:
    """path -> path.1 (or .2, ...: the first free number), never replacing an earlier one."""
    for k in range(1, 10_000):
        target = path.with_name(f"{path.name}.{k}")
        if not target.exists():
            os.rename(path, target)
            return target
    raise RunExistsError(f"{path.parent} holds too many earlier metrics files; remove some of them")


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
