"""A resume trusts only verified files: a checkpoint with flipped bytes or a metrics.csv shorter than the
checkpoint covers is refused with the files untouched; a failed checkpoint write keeps the old one and leaves no
temporary file. (A truncated checkpoint through a real `rlkit train` process: tests/integration/test_cli_errors.py.)"""
import pytest

from rlkit import train
from rlkit.runs.checkpoint import CheckpointError
from rundirs import CARTPOLE, cut_run as _cut_run, snapshot, status


def test_metrics_shorter_than_the_checkpoint_covers_is_refused(tmp_path, tiny):
    run = _cut_run(tmp_path, tiny)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:20]))
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"metrics.csv has 19 complete rows but checkpoint.pt covers \d+"):
        train(CARTPOLE, run, overrides=tiny, progress=False, resume=True)
    assert snapshot(run) == before


def test_flipped_bytes_in_the_checkpoint_are_refused(tmp_path, tiny):
    run = _cut_run(tmp_path, tiny)
    data = bytearray((run / "checkpoint.pt").read_bytes())
    for k in range(100):
        data[len(data) // 2 + 7 * k] ^= 0xFF
    (run / "checkpoint.pt").write_bytes(bytes(data))
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="checkpoint.pt: checksum mismatch"):
        train(CARTPOLE, run, overrides=tiny, progress=False, resume=True)
    assert snapshot(run) == before


def test_a_failed_checkpoint_write_keeps_the_old_one_and_no_tmp(tmp_path, tiny, monkeypatch):
    from rlkit.runs import checkpoint
    run = _cut_run(tmp_path, tiny)
    before = (run / "checkpoint.pt").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(CARTPOLE, run, overrides=tiny, progress=False, resume=True)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob("*.tmp"))
    assert "No space left on device" in status(run)["error"] and status(run)["state"] == "failed"
