"""The memory-mapped replay memory against the in-RAM one: the same adds give the same arrays and samples; a
checkpoint's small state plus the undo journal bring the files back exactly to the checkpoint after the run went
on writing (wrapped rings, truncated episodes' finals, several checkpoints, a crash before checkpoint.pt or
during the undo); the slots a not-full ring leaves out are never sampled; files that cannot be trusted are
refused in one line."""
import json
import shutil

import numpy as np
import pytest

from rlkit.data.replay import ReplayMemory
from rlkit.data.replay_map import MappedReplayMemory

ENVS, OBS = 3, (2,)
SIZES = dict(capacity=24, num_envs=ENVS, obs_shape=OBS, action_shape=(), action_dtype=np.int64, episode_limit=4)
SLOTS = 8  # 24 transitions over 3 envs
NAMES = ("obs", "actions", "rewards", "terminated", "truncated", "final_index", "finals")


def mapped(path, chunk=3):
    return MappedReplayMemory(**SIZES, path=path, chunk=chunk)


def steps(seed, n):
    """n random iterations: (obs the policy acts on, what add takes), with episodes that end often, many of
    them by a time limit (so finals entries are written and overwritten)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(ENVS, *OBS)).astype(np.float32)
    for _ in range(n):
        nxt = rng.normal(size=(ENVS, *OBS)).astype(np.float32)
        trunc, term = rng.random(ENVS) < 0.3, rng.random(ENVS) < 0.1
        final = rng.normal(size=(ENVS, *OBS)).astype(np.float32)
        yield obs, (rng.integers(0, 5, ENVS), rng.normal(size=ENVS).astype(np.float32), term, trunc, final, nxt)
        obs = nxt


def feed(memories, seed, n):
    for obs, step in steps(seed, n):
        for m in memories:
            m.set_obs(obs)
            m.add(*step)


def arrays(m):
    return {name: np.array(getattr(m, name)) for name in NAMES}


def assert_same_samples(a, b, seed=0):
    for n_step in (1, 3):
        x, y = (m.sample(300, np.random.default_rng(seed), 0.9, n_step) for m in (a, b))
        assert all(np.array_equal(x[k], y[k]) for k in x)


def assert_checkpoint_memory(m, snapshot, pos, full):
    """m holds the checkpoint's memory: every slot written by then (all of them once full), and every finals
    entry."""
    written = slice(None) if full else slice(0, pos + 1)
    for name in NAMES:
        got, want = getattr(m, name), snapshot[name]
        if name != "finals":
            got, want = got[written], want[written]
        assert np.array_equal(got, want), name


@pytest.mark.parametrize("n", [5, 30])  # not full yet, and wrapped more than three times
def test_the_same_adds_give_the_same_arrays_and_samples(tmp_path, n):
    ram, disk = ReplayMemory(**SIZES), mapped(tmp_path / "m")
    feed([ram, disk], 1, n)
    assert ram.full == (n > SLOTS) and (ram.pos, ram.full) == (disk.pos, disk.full)
    assert all(np.array_equal(v, arrays(disk)[k]) for k, v in arrays(ram).items())
    assert_same_samples(ram, disk)
    assert isinstance(np.load(tmp_path / "m" / "obs.npy", mmap_mode="r"), np.memmap)  # the files are the memory
    assert np.array_equal(np.load(tmp_path / "m" / "obs.npy"), ram.obs)


@pytest.mark.parametrize("before, after", [(4, 2), (4, 30), (11, 3), (11, 5), (11, 40)])
def test_a_resume_sees_the_memory_of_the_checkpoint(tmp_path, before, after):
    """The run writes `after` more iterations past the checkpoint (a few slots, or round the ring several
    times), then dies; a new memory loading the checkpoint's state holds the checkpoint's memory, and goes on
    exactly as one that never stopped."""
    disk, ram = mapped(tmp_path / "m"), ReplayMemory(**SIZES)
    feed([disk, ram], 2, before)
    state, snapshot, pos, full = disk.state_dict(), arrays(disk), disk.pos, disk.full
    ram_state = ram.state_dict()
    feed([disk], 3, after)  # what the crashed run wrote after the checkpoint
    assert any(not np.array_equal(getattr(disk, k), snapshot[k]) for k in NAMES)
    resumed = mapped(tmp_path / "m")
    resumed.load_state_dict(state)
    assert_checkpoint_memory(resumed, snapshot, pos, full)
    assert not (tmp_path / "m" / "undo" / "0").exists() or not list((tmp_path / "m" / "undo" / "0").iterdir())
    ram.load_state_dict(ram_state)
    feed([resumed, ram], 4, 13)  # the resumed run: the same transitions as the uninterrupted one
    assert_same_samples(ram, resumed, seed=5)


def test_only_the_slots_written_by_the_checkpoint_are_journaled(tmp_path):
    """A ring not yet full: the journal holds pos's slot, and the slots before it only once the ring wraps onto
    them; the slots after pos were empty."""
    disk = mapped(tmp_path / "m", chunk=SLOTS)
    feed([disk], 2, 5)
    disk.state_dict()
    feed([disk], 3, 1)
    chunk = tmp_path / "m" / "undo" / "0" / f"{0:012d}"
    assert np.load(chunk / "slots.npy").tolist() == [5, 0, 1, 2, 3, 4]  # ahead of the ring: all it may reach


def test_slots_after_pos_of_a_ring_not_full_are_never_sampled():
    """What lets the journal leave them out: sample draws slots before pos and reads a next observation at pos
    at most, and add writes each slot after pos before pos passes it. Leftovers of a crashed run (here -1e9
    everywhere after pos, and in every finals entry no slot before pos points at) never show."""
    m = ReplayMemory(**SIZES)
    feed([m], 6, 4)
    for step, (obs, args) in enumerate(steps(7, SLOTS - 5)):
        for name in ("obs", "rewards", "actions", "final_index"):
            getattr(m, name)[m.pos + 1:] = -10**9 if name != "final_index" else 0
        m.terminated[m.pos + 1:], m.truncated[m.pos + 1:] = False, True
        used = set(m.final_index[:m.pos][m.truncated[:m.pos] & ~m.terminated[:m.pos]].tolist())
        m.finals[[k for k in range(len(m.finals)) if k not in used]] = -10**9
        for n_step in (1, 2, 3):
            if m.pos >= n_step:
                b = m.sample(2000, np.random.default_rng(step), 0.9, n_step)
                assert all((np.abs(v) < 10**8).all() for v in b.values()), (step, n_step)
        m.set_obs(obs)
        m.add(*args)
    assert not m.full


def test_checkpoints_in_a_row_and_a_crash_before_checkpoint_pt_is_replaced(tmp_path):
    """Checkpoint A, writes, checkpoint B whose file never made it to disk (the crash came first), writes: a
    resume from A undoes both generations; a resume from B undoes the last. The journals of checkpoints
    before the previous one are deleted as the run goes on."""
    disk = mapped(tmp_path / "m")
    feed([disk], 8, 11)
    state_a, snap_a, pos_a = disk.state_dict(), arrays(disk), disk.pos
    feed([disk], 9, 6)
    state_b, snap_b, pos_b = disk.state_dict(), arrays(disk), disk.pos
    feed([disk], 10, 7)
    shutil.copytree(tmp_path / "m", tmp_path / "copy")
    from_a = mapped(tmp_path / "m")
    from_a.load_state_dict(state_a)
    assert_checkpoint_memory(from_a, snap_a, pos_a, True)
    from_b = mapped(tmp_path / "copy")
    from_b.load_state_dict(state_b)
    assert_checkpoint_memory(from_b, snap_b, pos_b, True)
    for _ in range(3):
        from_b.state_dict()
        feed([from_b], 11, 2)
    assert sorted(p.name for p in (tmp_path / "copy" / "undo").iterdir()) == ["3", "4"]


def test_a_crash_during_the_undo_is_repaired_by_resuming_again(tmp_path):
    disk = mapped(tmp_path / "m")
    feed([disk], 12, 10)
    state, snapshot, pos = disk.state_dict(), arrays(disk), disk.pos
    feed([disk], 13, 5)
    disk.state_dict()  # a checkpoint whose file was not written
    feed([disk], 14, 6)
    partial = mapped(tmp_path / "m")
    partial.open_files(state)
    partial.undo(1)  # the newest generation applied, then the process died
    resumed = mapped(tmp_path / "m")
    resumed.load_state_dict(state)
    assert_checkpoint_memory(resumed, snapshot, pos, True)


def test_an_unfinished_chunk_is_ignored(tmp_path):
    """A crash while a chunk was written: it is a .tmp folder, and none of its slots had changed."""
    disk = mapped(tmp_path / "m")
    feed([disk], 15, 10)
    state, snapshot, pos = disk.state_dict(), arrays(disk), disk.pos
    feed([disk], 16, 2)
    torn = tmp_path / "m" / "undo" / "0" / f"{99:012d}.tmp"
    torn.mkdir()
    (torn / "slots.npy").write_bytes(b"\x93NUMPY torn")
    resumed = mapped(tmp_path / "m")
    resumed.load_state_dict(state)
    assert_checkpoint_memory(resumed, snapshot, pos, True)
    assert not torn.exists()


def test_files_that_cannot_be_trusted_are_refused_in_one_line(tmp_path):
    disk = mapped(tmp_path / "m")
    feed([disk], 17, 10)
    state = disk.state_dict()
    feed([disk], 18, 3)
    shutil.copytree(tmp_path / "m", tmp_path / "keep")

    def refused(path, state, match):
        with pytest.raises(ValueError, match=match) as e:
            mapped(path).load_state_dict(state)
        assert "\n" not in str(e.value) and "--force" in str(e.value)

    refused(tmp_path / "none", state, "files are missing")
    other = mapped(tmp_path / "other")
    feed([other], 17, 10)
    other.state_dict()
    refused(tmp_path / "other", state, "another run's replay memory")
    refused(tmp_path / "m", {**state, "gen": 5}, "older than the checkpoint")
    shutil.rmtree(tmp_path / "m" / "undo" / "0")
    refused(tmp_path / "m", state, "undo journal for checkpoint generation 0 is missing")
    (tmp_path / "keep" / "rewards.npy").unlink()
    refused(tmp_path / "keep", state, "rewards.npy: cannot be opened")
    with pytest.raises(ValueError, match="replay_memory_map: false"):
        mapped(tmp_path / "m").load_state_dict(ReplayMemory(**SIZES).state_dict())


def test_a_run_that_starts_over_makes_new_files(tmp_path):
    first = mapped(tmp_path / "m")
    feed([first], 19, 10)
    first.state_dict()
    token = json.loads((tmp_path / "m" / "state.json").read_text())["token"]
    again = mapped(tmp_path / "m")
    feed([again], 20, 1)  # no checkpoint loaded: a new run
    assert json.loads((tmp_path / "m" / "state.json").read_text()) == {"token": again.token, "gen": None}
    assert again.token != token and not list((tmp_path / "m" / "undo").iterdir())
    assert not again.obs[2:].any() and (again.final_index[1:] == -1).all()
