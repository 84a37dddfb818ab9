"""The replay memory in files (algo.kwargs.replay_memory_map), for memories larger than RAM.

The arrays of rlkit.data.replay.ReplayMemory are .npy files memory-mapped in `<run_dir>/replay/rank<r>/`, one
folder per rank: the operating system keeps the pages in use in RAM and the rest on disk. Writing and sampling
are the in-RAM memory's own code, on plain views of the maps. The files are created (at full size, so a full
disk is met before the run and not as a crash mid-run) at the first write of a run that starts, and opened by
a resume.

A checkpoint must not copy the arrays, yet a resume must see them exactly as they were at the checkpoint while
the run goes on writing them. The checkpoint stores the ring's small state (pos, full, final_pos) with the
files' identity (`token`, made when they are created) and a generation number, and flushes the maps. From
then on an undo journal, `undo/<generation>/`, holds the checkpoint-time contents of every slot the ring
writes. The ring writes its slots in order from pos, so the journal copies ahead of it, a chunk of the next
slots at a time (one checkpoint interval's worth, `chunk`); each chunk is written and fsynced, then renamed
into place, before any slot in it changes. So whenever the process or the machine stops, every slot changed
since the checkpoint has its old contents in a whole chunk (an unfinished chunk is a `.tmp` folder, and none
of its slots had changed yet). A finals entry is written at most once per slot, so each chunk also copies the
finals entries the same distance ahead of each env's final_pos. A slot is copied once per generation at most:
the journal of one interval never exceeds the ring.

A resume applies the journals from the newest generation back to the checkpoint's, each chunk newest first:
every slot ends with its oldest copy, its contents at the checkpoint. Applying is idempotent, so a crash
during it is repaired by resuming again; only then are the journals emptied.

Slots that were empty at the checkpoint (a ring not yet full: those after pos) are not copied. `sample` draws
slots before pos only and reads a next observation at pos at most; the resumed run writes each slot after
pos before pos passes it. So the crashed run's leftovers there are never read
(tests/unit/data/test_replay_map.py checks it).

Several checkpoints: `state_dict` starts a new generation after the flush; `state.json` (replaced atomically)
names the newest one. A crash before checkpoint.pt is replaced leaves the previous checkpoint, whose journal is
still there: a resume applies the generations from state.json's down to the checkpoint's. The journals older
than the previous checkpoint's are deleted at the first write after a checkpoint, when the previous checkpoint
is on disk on every rank (the save's collectives have passed), so the journals hold at most about two
checkpoint intervals.

A resume refuses, in one line, files that are missing, belong to another run (token), do not fit this run's
sizes, or miss a generation the checkpoint needs; `--force` deletes the folder, and a run that starts over
recreates it.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from rlkit.data.replay import ReplayMemory

FIX = "start the run over with --force"


def journal_bytes(arrays: dict, chunk: int, generations: int = 2) -> int:
    """The most the undo journal of a MappedReplayMemory of these arrays takes (one rank): two generations (the
    module's docstring says why) of at most `chunk` slots and finals rows each, with their int64 indices."""
    per_generation = 0
    for shape, dtype in arrays.values():
        rows = min(chunk, shape[0])
        per_generation += rows * math.prod(shape[1:]) * dtype.itemsize + rows * 8 * shape[1]
    return generations * per_generation


class MappedReplayMemory(ReplayMemory):
    """ReplayMemory with its arrays in files under `path` (one rank's folder); `chunk`: slots the undo journal
    copies at a time, about one checkpoint interval (see the module's docstring)."""

    def __init__(self, *args, path, chunk: int, **kwargs):
        self.path, self.chunk = Path(path), max(1, chunk)
        self.token = None  # the files' identity: None until they are created or opened
        self.gen = None  # the generation of the last checkpoint: None before the first, nothing to undo
        self.maps = {}
        super().__init__(*args, **kwargs)
        self.restart(prune=None)

    def allocate(self, arrays: dict) -> None:
        self.arrays = arrays  # created at the first write, or opened by load_state_dict
        for name in arrays:
            setattr(self, name, None)

    # ------------------------------------------------------------------ writing
    def set_obs(self, obs: np.ndarray) -> None:
        if self.token is None:
            self.create_files()
        self.cover(1)
        super().set_obs(obs)

    def add(self, *args) -> None:
        self.cover(2)  # this slot and the next one's observation
        super().add(*args)
        self.since += 1

    def cover(self, ahead: int) -> None:
        """Make sure the journal holds the slots up to `ahead` past the ones written since the checkpoint."""
        if self.gen is not None and self.covered < min(self.since + ahead, self.slots):
            self.journal(self.since + ahead)

    # ------------------------------------------------------------------ the files
    def create_files(self) -> None:
        """A run that starts: new files (an earlier attempt's are deleted), at their full size."""
        shutil.rmtree(self.path, ignore_errors=True)
        (self.path / "undo").mkdir(parents=True)
        for name, (shape, dtype) in self.arrays.items():
            file = self.path / f"{name}.npy"
            self.attach(name, np.lib.format.open_memmap(file, "w+", dtype, shape))
            reserve(file)
        self.final_index.fill(-1)
        self.token, self.gen = uuid.uuid4().hex, None
        self.write_marker()

    def open_files(self, state: dict) -> int:
        """A resume: the files of the checkpoint's run, checked; returns the newest generation of their journal."""
        try:
            marker = json.loads((self.path / "state.json").read_text())
        except (OSError, ValueError):
            raise ValueError(f"{self.path}: the replay memory's files are missing or unreadable, and the checkpoint "
                             f"needs them (algo.kwargs.replay_memory_map); restore the folder, or {FIX}") from None
        if marker.get("token") != state["token"]:
            raise ValueError(f"{self.path} holds another run's replay memory, not the one this checkpoint was taken "
                             f"with; restore this run's folder, or {FIX}")
        if marker.get("gen") is None or marker["gen"] < state["gen"]:
            raise ValueError(f"{self.path}: the replay memory's files are older than the checkpoint (generation "
                             f"{marker.get('gen')} < {state['gen']}); restore this run's folder, or {FIX}")
        for name, (shape, dtype) in self.arrays.items():
            try:
                array = np.lib.format.open_memmap(self.path / f"{name}.npy", "r+")
            except (OSError, ValueError) as e:
                raise ValueError(f"{self.path / name}.npy: cannot be opened ({e}); {FIX}") from None
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"{self.path / name}.npy holds {array.dtype}{list(array.shape)}, this run needs "
                                 f"{dtype}{list(shape)}; resume with the same algo.buffer_size and env, or {FIX}")
            self.attach(name, array)
        self.token = state["token"]
        return marker["gen"]

    def attach(self, name: str, array: np.memmap) -> None:
        self.maps[name] = array  # kept to flush it
        setattr(self, name, array.view(np.ndarray))  # sample and add index a plain array

    def flush(self) -> None:
        for array in self.maps.values():
            array.flush()

    def write_marker(self) -> None:
        write_atomic(self.path / "state.json", json.dumps({"token": self.token, "gen": self.gen}))

    # ------------------------------------------------------------------ the undo journal
    def generation(self, gen: int) -> Path:
        return self.path / "undo" / str(gen)

    def generations(self) -> list[int]:
        return sorted(int(p.name) for p in (self.path / "undo").iterdir() if p.name.isdigit())

    def journal(self, need: int) -> None:
        """Copy the next chunk of slots (and of each env's finals entries) before the ring writes any of them."""
        if self.prune is not None:  # the checkpoint before the last one is on disk: older journals go
            for gen in self.generations():
                if gen < self.prune:
                    shutil.rmtree(self.generation(gen))
            self.prune = None
        pos, full, final_pos = self.base
        a = self.covered
        b = min(self.slots, max(need, a + self.chunk))
        d = np.arange(a, b)
        if not full:  # only the slots written by the checkpoint, pos and those before it (see above)
            d = d[(d == 0) | (d >= self.slots - pos)]
        slots = (pos + d) % self.slots
        rows = np.arange(a, min(b, len(self.finals)))
        rows = (final_pos[:, None] + rows) % len(self.finals)  # [env, distance]
        tmp = self.generation(self.gen) / f"{a:012d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write_npy(tmp / "slots.npy", slots.dtype, slots.shape, [slots])
        for name in self.arrays:
            if name != "finals":
                array = getattr(self, name)
                write_npy(tmp / f"{name}.npy", array.dtype, (len(slots), *array.shape[1:]),
                          [array[s:e] for s, e in runs(slots)])
        write_npy(tmp / "finals_rows.npy", rows.dtype, rows.shape, [rows])
        write_npy(tmp / "finals.npy", self.finals.dtype, (*rows.shape, *self.finals.shape[2:]),
                  [self.finals[s:e, env] for env in range(self.num_envs) for s, e in runs(rows[env])])
        sync_dir(tmp)
        os.rename(tmp, tmp.with_suffix(""))
        sync_dir(tmp.parent)  # published: only now may the ring change these slots
        self.covered = b

    def undo(self, gen: int) -> None:
        """Apply generation gen's journal, its newest chunk first."""
        folder = self.generation(gen)
        if not folder.is_dir():
            raise ValueError(f"{folder}: the replay memory's undo journal for checkpoint generation {gen} is "
                             f"missing, so the memory cannot be brought back to the checkpoint; {FIX}")
        for chunk in sorted((p for p in folder.iterdir() if p.name.isdigit()), reverse=True):
            load = lambda name: np.load(chunk / f"{name}.npy", mmap_mode="r")  # noqa: E731
            slots = load("slots")
            for name in self.arrays:
                if name != "finals":
                    getattr(self, name)[slots] = load(name)
            rows, finals = load("finals_rows"), load("finals")
            for env in range(self.num_envs):
                self.finals[rows[env], env] = finals[env]

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """The small state; the maps are flushed and a new generation of the journal starts."""
        if self.token is None:
            self.create_files()
        self.flush()  # the files now hold the memory as it is at this checkpoint
        gen = 0 if self.gen is None else self.gen + 1
        shutil.rmtree(self.generation(gen), ignore_errors=True)  # never named by state.json yet: nothing to keep
        self.generation(gen).mkdir()
        sync_dir(self.path / "undo")
        self.gen = gen
        self.write_marker()
        self.restart(prune=gen - 1)
        return {"mapped": True, "token": self.token, "gen": gen, "pos": self.pos, "full": self.full,
                "final_pos": self.final_pos.copy(), "slots": self.slots, "final_slots": len(self.finals)}

    def restart(self, prune: int | None) -> None:
        """The journal of the generation just begun: empty, relative to the ring as it is now."""
        self.base = (self.pos, self.full, self.final_pos.copy())
        self.since = self.covered = 0
        self.prune = prune

    def load_state_dict(self, state: dict) -> None:
        if not state.get("mapped"):
            raise ValueError("the checkpoint holds the replay memory itself, not in files; resume with "
                             "algo.kwargs.replay_memory_map: false")
        if state["slots"] != self.slots or state["final_slots"] != self.arrays["finals"][0][0]:
            raise ValueError(f"the checkpoint's replay memory has {state['slots']} slots per env, this run's "
                             f"{self.slots}; resume with the same algo.buffer_size and env")
        newest = self.open_files(state)
        for gen in range(newest, state["gen"] - 1, -1):
            self.undo(gen)
        self.flush()  # the files are the checkpoint's again: the journals can go
        self.gen = state["gen"]
        self.write_marker()
        for gen in self.generations():
            if gen != self.gen:
                shutil.rmtree(self.generation(gen))
        for chunk in self.generation(self.gen).iterdir():
            shutil.rmtree(chunk)  # applied (applying one again would be harmless)
        self.final_pos[:], self.pos, self.full = state["final_pos"], state["pos"], state["full"]
        self.restart(prune=None)


def runs(index: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive values in index (a ring's range: at most two)."""
    if not len(index):
        return []
    cuts = np.flatnonzero(np.diff(index) != 1) + 1
    return [(int(part[0]), int(part[-1]) + 1) for part in np.split(index, cuts)]


def write_npy(path: Path, dtype, shape, pieces) -> None:
    """An .npy file written piece by piece (views of the maps: nothing as large as the file is assembled in
    RAM), then fsynced."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
        for piece in pieces:
            f.write(np.ascontiguousarray(piece).data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def sync_dir(path: Path) -> None:
    """fsync a folder, so a rename in it survives the machine stopping."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reserve(file: Path) -> None:
    """Allocate the file's blocks now: a full disk then stops the run here in one line, not later with SIGBUS
    when a page of the map cannot be written. Filesystems without fallocate keep a sparse file."""
    fd = os.open(file, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OSError(e.errno, f"{file.parent}: no space left for the replay memory's files "
                                   f"(algo.kwargs.replay_memory_map); free disk space or lower algo.buffer_size") \
                from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)
