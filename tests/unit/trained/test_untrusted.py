"""A run directory from someone else cannot run code here: load, eval, video and export read policy.pt weights-only
and never open checkpoint.pt, whose pickle (planted here) would run code; a planted policy.pt is refused."""
import shutil

import pytest
import torch

import rlkit
from rlkit.cli import main
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.policy_file import PolicyFileError
from trained_runs import trained_runs  # noqa: F401 (the fixture)


class Payload:
    """Unpickling this calls open(marker, "w"): the file appearing is the code having run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_the_planted_checkpoint_would_run_code(tmp_path):
    """The plant is real: unpickling it (what resuming does) creates the marker, after one line saying so."""
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "ran"
    torch.save({"agent": Payload(marker)}, path)
    load_checkpoint(path)
    assert marker.exists()


def test_load_eval_video_export_never_unpickle_the_checkpoint(trained_runs, tmp_path, capsys):
    run, marker = tmp_path / "received", tmp_path / "ran"
    shutil.copytree(trained_runs["vector"], run)
    torch.save({"agent": Payload(marker)}, run / "checkpoint.pt")
    policy = rlkit.load(run)
    policy.act(policy.make_env().reset(seed=0)[0])
    for command in (["eval", "--episodes", "2"], ["video", "--steps", "5"], ["export"],
                    ["export", "--format", "onnx"]):
        assert main([command[0], str(run), *command[1:]]) == 0, capsys.readouterr().err
    assert not marker.exists()
    assert "unpickles" not in capsys.readouterr().err  # the resume notice never showed: nothing was unpickled


def test_a_policy_file_that_needs_unpickling_is_refused(trained_runs, tmp_path, capsys):
    run, marker = tmp_path / "received", tmp_path / "ran"
    shutil.copytree(trained_runs["vector"], run)
    state = torch.load(run / "policy.pt", weights_only=True)
    torch.save({**state, "actor": Payload(marker)}, run / "policy.pt")
    with pytest.raises(PolicyFileError, match="not a weights-only rlkit policy file"):
        rlkit.load(run)
    for command in ("eval", "video", "export"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "it was not loaded" in err[0], err
    assert not marker.exists()


def test_resuming_says_in_one_line_that_it_unpickles(trained_runs, tmp_path, capfd):
    run = tmp_path / "mine"
    shutil.copytree(trained_runs["multidiscrete"], run)
    assert main(["train", "--resume", str(run), "--set", "total_steps=576", "--no-progress"]) == 0
    lines = [line for line in capfd.readouterr().err.splitlines() if "unpickles" in line]
    assert lines == [f"{run / 'checkpoint.pt'}: loading a checkpoint unpickles it, which can run code; resume only "
                     "runs you trust (rlkit.load reads policy.pt, weights only)"]
    assert rlkit.load(run).policy_step == 576  # and policy.pt follows the resumed run
