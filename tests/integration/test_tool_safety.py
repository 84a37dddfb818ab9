"""The commands around a run lose no data: tensorboard, run, tune, report and sweeps on real results trees.

Each data case runs the real command (rlkit.cli.main, or a subprocess where a signal is sent) on a results
directory of finished runs, and compares a sha256 of every finished run's files before and after.
"""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, TINY
from rlkit.cli import main

TINY_YAML = """\
env:
  id: CartPole-v1
total_steps: 512
log_every: 128
checkpoint_every: 256
eval:
  every: 256
  episodes: 2
parallel:
  num_threads: 2
  envs_per_thread: 2
algo:
  batch_size: 64
  mini_batch_size: 32
  k_epochs: 2
"""


def sha256s(root: Path) -> dict:
    """Every file under root (locks aside) -> its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """A results tree made once: tiny/seed0 and tiny/seed1, finished by `rlkit train`, plus the params file."""
    from rlkit import train

    base = tmp_path_factory.mktemp("template")
    (base / "tiny.yaml").write_text(TINY_YAML)
    for seed in (0, 1):
        train(base / "tiny.yaml", base / "res" / "tiny" / f"seed{seed}", overrides={"seed": seed}, progress=False)
    return base


@pytest.fixture
def tree(template, tmp_path):
    """A fresh copy of the template: tmp/tiny.yaml and tmp/res/tiny/seed{0,1}."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture
def cli(capsys):
    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return call


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ---------------------------------------------------------------- rlkit tensorboard

def test_tensorboard_logdir_above_the_results_deletes_nothing(tree, cli):
    """Issue row 1: `rlkit tensorboard R/full --logdir R` used to rmtree R's runs matching the exported ones."""
    res = tree / "res"
    shutil.copytree(res, tree / "full_src")
    shutil.copytree(tree / "full_src", res / "full")  # R/full/tiny/seed0 mirrors R/tiny/seed0
    before = sha256s(res)
    code, _, err = cli("tensorboard", res / "full", "--logdir", res)
    assert code == 2 and one_line(err) and "--logdir" in err
    assert sha256s(res) == before


def test_tensorboard_logdir_equal_to_the_results_deletes_nothing(tree, cli):
    """Issue row 2: --logdir R over R deleted the first run, then failed on its missing metrics.csv."""
    res = tree / "res"
    before = sha256s(res)
    code, _, err = cli("tensorboard", res, "--logdir", res)
    assert code == 2 and one_line(err)
    assert sha256s(res) == before


def test_tensorboard_refuses_a_folder_it_does_not_own_and_a_file(tree, cli):
    res = tree / "res"
    other = tree / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = cli("tensorboard", res, "--logdir", other)
    assert code == 2 and one_line(err) and "notes.txt" in err
    assert (other / "notes.txt").read_text() == "keep me"
    code, _, err = cli("tensorboard", res, "--logdir", other / "notes.txt")
    assert code == 2 and one_line(err) and "is a file" in err
    code, _, err = cli("tensorboard", res, "--logdir", res / "tiny" / "seed0" / "tb")
    assert code == 2 and one_line(err) and "inside the run directory" in err
    assert not (res / "tiny" / "seed0" / "tb").exists()


def test_tensorboard_reexport_replaces_only_its_event_files(tree, cli):
    res = tree / "res"
    before = sha256s(res / "tiny")
    assert cli("tensorboard", res)[0] == 0
    run_out = res / "tensorboard" / "tiny" / "seed0"
    (run_out / "my_notes.txt").write_text("kept")
    first = sorted(p.name for p in run_out.glob("events.out.tfevents.*"))
    code, out, _ = cli("tensorboard", res)
    assert code == 0 and "2 runs written" in out
    assert (run_out / "my_notes.txt").read_text() == "kept"
    assert len(list(run_out.glob("events.out.tfevents.*"))) == 1 and first  # replaced, not doubled
    assert sha256s(res / "tiny") == before


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (bytes(range(256)) * 8, "not a metrics file"),
    ("policy_step,env_step,gradient_step,wall_time,metric,value\n"
     "nan,nan,nan,nan,eval/return,nan\n".encode(), "none holds finite numbers"),
], ids=["empty", "random-bytes", "nan"])
def test_tensorboard_names_a_corrupt_metrics_file_and_does_not_count_it(tree, cli, content, reason):
    res = tree / "res"
    (res / "tiny" / "seed1" / "metrics.csv").write_bytes(content)
    code, out, err = cli("tensorboard", res)
    assert code == 0 and "1 runs written" in out
    assert "skipped tiny/seed1" in err and reason in err
