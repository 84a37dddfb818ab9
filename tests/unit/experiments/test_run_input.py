"""`rlkit run`'s input: a bad key is named with its params file before anything is written, --jobs must be
positive, and an interrupted batch says how to resume it."""
import pytest

from conftest import ROOT
from rlkit import ConfigError
from rundirs import CARTPOLE, cli, one_line  # noqa: F401 (cli is a fixture)


def test_run_names_the_params_file_with_the_bad_key(tmp_path):
    from rlkit.experiments.runner import run_batch
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo:\n  bach_size: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'algo.bach_size'"):
        run_batch([ROOT / CARTPOLE, bad], [0], results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_run_jobs_must_be_positive(tmp_path, jobs, cli):
    out = cli("run", CARTPOLE, "--jobs", jobs, "--results", str(tmp_path / "results"))
    assert out.returncode == 2 and one_line(out) and "--jobs" in out.stderr and ">= 1" in out.stderr, out.stderr


def test_interrupted_batch_says_how_to_resume(monkeypatch, capsys):
    from rlkit import cli
    from rlkit.experiments import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "run_batch", interrupted)
    assert cli.main(["run", CARTPOLE]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "re-run the same command" in err
