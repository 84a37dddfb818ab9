"""Grid sweeps: a params file's sweep: section and --grid expand to one experiment per variant x seed."""
import json
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from test_runner import CARTPOLE, ROOT, TINY, status

import rlkit
from rlkit.cli import main
from rlkit.experiments.runner import experiments_of, run_batch
from rlkit.experiments.sweep import expand, parse_grid


def sweep_file(tmp_path, sweep, name="sw.yaml") -> Path:
    path = tmp_path / name
    raw = yaml.safe_load(CARTPOLE.read_text())
    path.write_text(yaml.safe_dump({**raw, "sweep": sweep}))
    return path


def test_expand_is_the_cartesian_product_with_readable_names(tmp_path):
    path = sweep_file(tmp_path, {"algo.actor_lr": [0.0003, 0.001], "algo.hidden_sizes": [[64, 64], [32]]})
    exps = expand(path, {"total_steps": 512})
    assert [e.name for e in exps] == ["sw__actor_lr=0.0003__hidden_sizes=64-64", "sw__actor_lr=0.0003__hidden_sizes=32",
                                      "sw__actor_lr=0.001__hidden_sizes=64-64", "sw__actor_lr=0.001__hidden_sizes=32"]
    assert exps[3].overrides == {"total_steps": 512, "algo.actor_lr": 0.001, "algo.hidden_sizes": [32]}
    assert exps[3].swept == {"algo.actor_lr": 0.001, "algo.hidden_sizes": [32]}
    # --grid adds keys to the file's sweep (and replaces one it names); keys sharing a last part keep their section
    exps = expand(path, grid={"algo.actor_lr": [0.01], "algo.gamma_int": [0.9], "algo.gamma": [0.9, 0.99]})
    assert len(exps) == 4 and exps[0].name == "sw__actor_lr=0.01__hidden_sizes=64-64__gamma_int=0.9__gamma=0.9"
    plain = expand(CARTPOLE)
    assert [(e.name, e.overrides, e.swept) for e in plain] == [("cartpole", {}, {})]
    assert all(c not in e.name for e in expand(CARTPOLE, grid={"env.id": ["a/b c:d"]}) for c in "/ :")


def test_parse_grid():
    assert parse_grid(["algo.beta=0.5,1,2"]) == {"algo.beta": [0.5, 1, 2]}
    assert parse_grid(["algo.hidden_sizes=[64,64],[32]", "env.id=CartPole-v1"]) == \
        {"algo.hidden_sizes": [[64, 64], [32]], "env.id": ["CartPole-v1"]}
    for bad in ("algo.beta", "algo.beta=", "=1,2"):
        with pytest.raises(rlkit.ConfigError, match="--grid"):
            parse_grid([bad])


def test_every_variant_is_validated_before_anything_runs(tmp_path, capsys):
    path = sweep_file(tmp_path, {"algo.actor_lr": [0.001, -1.0]})
    with pytest.raises(rlkit.ConfigError) as e:
        run_batch([path], [0], results_dir=tmp_path / "results", log=lambda *_: None)
    assert str(e.value) == "sweep variant sw__actor_lr=-1: 'algo.actor_lr' must be > 0, got -1.0"
    assert not (tmp_path / "results").exists()
    bad_key = sweep_file(tmp_path, {"algo.actr_lr": [0.001]}, "typo.yaml")
    code = main(["run", str(bad_key), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "typo__actr_lr=0.001" in err[0] and "algo.actr_lr" in err[0]
    code = main(["run", str(CARTPOLE), "--grid", "algo.k_epochs=2,0", "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["rlkit run: error: sweep variant cartpole__k_epochs=0: 'algo.k_epochs' must be >= 1, got 0"]
    (tmp_path / "list.yaml").write_text("sweep: {algo.beta: 0.5}\n")
    with pytest.raises(rlkit.ConfigError, match="sweep.algo.beta must be a non-empty list"):
        experiments_of([tmp_path / "list.yaml"])
    assert not (tmp_path / "results").exists()


def test_a_sweep_runs_each_variant_in_its_own_experiment(tmp_path):
    """Real tiny trainings through the committed notebook: the kernel loads the file without its sweep section."""
    path = sweep_file(tmp_path, {"algo.actor_lr": [0.0005, 0.002]})
    results = run_batch([path], [0], jobs=2, overrides=TINY, results_dir=tmp_path / "results", timeout_s=120,
                        log=lambda *_: None)
    assert [(r.experiment, r.state) for r in results] == [("sw__actor_lr=0.0005", "finished"),
                                                          ("sw__actor_lr=0.002", "finished")]
    for r, lr in zip(results, (0.0005, 0.002)):
        cfg = yaml.safe_load((r.run_dir / "config.yaml").read_text())
        assert cfg["algo"]["actor_lr"] == lr and cfg["total_steps"] == 256 and "sweep" not in cfg
        assert status(r.run_dir)["state"] == "finished"
    again = run_batch([path], [0], overrides=TINY, results_dir=tmp_path / "results", log=lambda *_: None)
    assert [r.state for r in again] == ["skipped", "skipped"]  # the runner's skip rule, per variant
