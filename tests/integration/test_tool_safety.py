"""The commands around a run lose no data: tensorboard, run, tune, report and sweeps on real results trees.

Each data case runs the real command (rlkit.cli.main, or a subprocess where a signal is sent) on a results
directory of finished runs, and compares a sha256 of every finished run's files before and after.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
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


# ---------------------------------------------------------------- rlkit run: validation before anything is touched

def test_run_force_with_a_misspelled_env_touches_no_finished_run(tree, cli):
    """Issue row 3: the batch now builds and probes the env (as train does) before any run directory is touched."""
    res = tree / "res"
    before = sha256s(res)
    code, _, err = cli("run", tree / "tiny.yaml", "--results", res, "--seeds", "0-1", "--force",
                       "--set", "env.id=CartPoel-v1")
    assert code == 2 and one_line(err) and "env.id" in err
    assert sha256s(res) == before


@pytest.mark.parametrize("override, names", [
    ("env.kwargs={no_such_kwarg: 1}", "no_such_kwarg"),
    ("algo.hidden_sizes=[64, 100000000000]", "algo.hidden_sizes"),
    ("total_steps=32", "total_steps"),
], ids=["env-kwargs", "network-size", "budget-below-one-rollout"])
def test_run_refuses_what_train_refuses_before_touching_anything(tree, cli, override, names):
    res = tree / "res"
    before = sha256s(res)
    code, _, err = cli("run", tree / "tiny.yaml", "--results", res, "--force", "--set", override)
    assert code == 2 and one_line(err) and names in err
    assert sha256s(res) == before


def test_run_on_a_finished_run_with_another_config_says_what_differs(tree, cli):
    """Issue row 6: it used to say "skipped" (exit 0) and never run the new config."""
    res = tree / "res"
    before = sha256s(res)
    code, _, err = cli("run", tree / "tiny.yaml", "--results", res, "--set", "algo.actor_lr=0.5")
    assert code == 2 and one_line(err)
    assert "algo.actor_lr: 0.001 -> 0.5" in err and "--force" in err and f"--resume {res / 'tiny' / 'seed0'}" in err
    assert sha256s(res) == before
    code, out, _ = cli("run", tree / "tiny.yaml", "--results", res, "--seeds", "0-1")  # the same config: skipped
    assert code == 0 and out.count("skipped, already finished") == 2
    assert sha256s(res) == before


def test_a_run_finished_by_another_batch_meanwhile_is_left_alone(tree):
    """Issue row 7: a second batch reaching a run the first has finished since it validated overwrote its
    runner.log (and train.ipynb); run_one now looks again and leaves a finished run as it is."""
    from rlkit.experiments.launch import RunResult, run_env, run_one

    run_dir = tree / "res" / "tiny" / "seed0"
    (run_dir / "runner.log").write_text("the first batch's log\n")
    before = sha256s(run_dir)
    spec = {"notebook": str(ROOT / "notebooks" / "train.ipynb"), "cwd": str(ROOT), "kernel_name": None,
            "cell_timeout": None, "parameters": {"run_dir": str(run_dir), "force": False}}
    result = run_one(RunResult("tiny", "seed0", run_dir, "failed"), spec, None, run_env(1))
    assert result.state == "skipped" and result.policy_step == 512
    assert sha256s(run_dir) == before


def test_a_new_attempt_appends_to_runner_log(tmp_path):
    """Every attempt's output stays: a failed start cannot wipe the log of the attempt before it."""
    from rlkit.experiments.launch import RunResult, run_env, run_one

    run_dir = tmp_path / "exp" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "runner.log").write_text("the earlier attempt's log\n")
    spec = {"notebook": str(tmp_path / "no_such.ipynb"), "cwd": str(ROOT), "kernel_name": None,
            "cell_timeout": None, "parameters": {"run_dir": str(run_dir), "force": False}}
    result = run_one(RunResult("exp", "seed0", run_dir, "failed"), spec, None, run_env(1))
    log = (run_dir / "runner.log").read_text()
    assert result.state == "failed" and log.startswith("the earlier attempt's log\n")
    assert "no_such.ipynb" in result.error and log.count("--- rlkit run") == 1


# ---------------------------------------------------------------- sweeps and --grid follow the params files' YAML rules

def test_the_readmes_grid_example_validates(root):
    from rlkit.experiments.runner import experiments_of, validate
    from rlkit.experiments.sweep import parse_grid

    grid = parse_grid(["algo.actor_lr=3e-4,1e-3", "algo.k_epochs=4,10"])
    assert grid == {"algo.actor_lr": [0.0003, 0.001], "algo.k_epochs": [4, 10]}
    experiments = experiments_of([root / "params" / "cartpole.yaml"], grid=grid)
    configs = validate(experiments, [0])
    assert sorted((c.algo.actor_lr, c.algo.k_epochs) for c in configs.values()) == [
        (0.0003, 4), (0.0003, 10), (0.001, 4), (0.001, 10)]


def test_sweep_files_follow_the_yaml_rules(tmp_path, cli):
    from rlkit.experiments.sweep import expand

    good = tmp_path / "good.yaml"
    good.write_text(TINY_YAML.replace("total_steps: 512", "total_steps: 2e3") + "sweep:\n  algo.actor_lr: [1e-3, 3e-4]\n")
    assert [e.overrides for e in expand(good)] == [{"algo.actor_lr": 0.001}, {"algo.actor_lr": 0.0003}]
    dup = tmp_path / "dup.yaml"
    dup.write_text(TINY_YAML + "algo:\n  k_epochs: 3\nsweep:\n  algo.gamma: [0.9, 0.99]\n")
    code, _, err = cli("run", dup, "--results", tmp_path / "r")
    assert code == 2 and one_line(err) and "duplicate key 'algo'" in err
    assert not (tmp_path / "r").exists()


def test_bad_params_paths_and_names_are_one_line(tmp_path, cli):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    code, _, err = cli("run", tmp_path / "a.yaml", "--results", tmp_path / "r")
    assert code == 2 and one_line(err) and "symbolic links" in err
    long = tmp_path / ("p" * 245 + ".yaml")
    long.write_text(TINY_YAML)
    code, _, err = cli("run", long, "--grid", "algo.actor_lr=1e-3,3e-4", "--results", tmp_path / "r")
    assert code == 2 and one_line(err) and "255" in err
    assert not (tmp_path / "r").exists()


BOMB = """\
env:
  kwargs:
    a: &a [x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path, cli, command):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    where = ["--results", tmp_path / "r"] if command == "run" else ["--out", tmp_path / "r"]
    code, _, err = cli(command, tmp_path / "bomb.yaml", *where)
    assert code == 2 and one_line(err) and len(err) < 400 and "MAX_YAML_NODES" in err
    assert not (tmp_path / "r").exists()


def test_a_huge_sweep_is_refused_before_it_is_expanded(tmp_path, cli):
    sweep = "".join(f"  algo.k{i}: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" for i in range(7))
    (tmp_path / "big.yaml").write_text(TINY_YAML + "sweep:\n" + sweep)
    code, _, err = cli("run", tmp_path / "big.yaml", "--results", tmp_path / "r")
    assert code == 2 and one_line(err) and "4,782,969 variants" in err and "MAX_VARIANTS" in err


@pytest.mark.parametrize("override, key", [("total_steps=1e30", "total_steps"),
                                           ("env.action_repeat=1e6", "env.action_repeat")])
@pytest.mark.parametrize("command", ["run", "train"])
def test_values_no_run_could_reach_are_refused(tree, cli, command, override, key):
    where = ["--results", tree / "r"] if command == "run" else ["--out", tree / "r"]
    code, _, err = cli(command, tree / "tiny.yaml", "--set", override, *where)
    assert code == 2 and one_line(err) and f"'{key}'" in err and "more than" in err
    assert not (tree / "r").exists()


# ---------------------------------------------------------------- rlkit tune

SPACE = ["algo.actor_lr=log:1e-5:1e-1"]


def _tune(tmp_path, nb, **kw):
    from rlkit.experiments.tune import tune

    args = dict(trials=2, seeds=[0], overrides=["eval.every=100"], results_dir=tmp_path / "res", notebook=nb,
                kernel_name="python3", pruner="none", log=lambda *_: None)
    return tune(ROOT / "params" / "cartpole.yaml", kw.pop("space", SPACE), **{**args, **kw})


def test_a_resumed_study_keeps_its_space_overrides_and_base_config(tmp_path):
    """Issue row 4: a resume with other --set values wrote best.yaml with values trial 0 never trained with;
    another space key mixed silently, another kind was a traceback and a FAIL trial counted toward --trials."""
    import yaml
    from test_tune import stub

    from rlkit import ConfigError

    nb = stub(tmp_path, pause=0.05)
    study = _tune(tmp_path, nb)
    tune_dir = tmp_path / "res" / "cartpole_tune"
    best = yaml.safe_load((tune_dir / "best.yaml").read_text())
    trained = json.loads(study.best_trial.user_attrs["overrides"])
    assert best["algo"]["actor_lr"] == trained["algo.actor_lr"] == study.best_trial.params["algo.actor_lr"]
    params = yaml.safe_load((ROOT / "params" / "cartpole.yaml").read_text())
    assert best["eval"]["every"] == 100 and best["algo"]["k_epochs"] == params["algo"]["k_epochs"]
    before = sha256s(tune_dir)
    changes = [dict(overrides=["eval.every=100", "algo.k_epochs=1", "algo.gamma=0.5"]),
               dict(space=["algo.critic_lr=log:1e-5:1e-1"]),
               dict(space=["algo.actor_lr=float:1e-5:1e-1"])]
    for change in changes:
        with pytest.raises(ConfigError, match="was made with another"):
            _tune(tmp_path, nb, trials=3, **change)
    assert sha256s(tune_dir) == before  # no trial was added, no file rewritten
    edited = tmp_path / "cartpole.yaml"  # the same file name, other values: the base config changed
    edited.write_text((ROOT / "params" / "cartpole.yaml").read_text() + "\nlog_every: 999\n")
    from rlkit.experiments.tune import tune
    with pytest.raises(ConfigError, match="base config"):
        tune(edited, SPACE, trials=3, seeds=[0], overrides=["eval.every=100"], results_dir=tmp_path / "res",
             name="cartpole_tune", notebook=nb, kernel_name="python3", pruner="none", log=lambda *_: None)
    assert sha256s(tune_dir) == before


@pytest.mark.parametrize("args, says", [
    (["--name", "../../escape"], "--name"),
    (["--storage", "foo://bar"], "--storage foo://bar"),
    (["--storage", "sqlite:///MISSING/sub/study.db"], "--storage"),
])
def test_tune_bad_name_or_storage_is_one_line_and_writes_nothing(tmp_path, cli, args, says):
    """Issue row 8 (--name climbing out of --results) and the storage tracebacks."""
    args = [a.replace("MISSING", str(tmp_path / "missing")) for a in args]
    res = tmp_path / "deep" / "er" / "res"
    code, _, err = cli("tune", ROOT / "params" / "cartpole.yaml", "--space", SPACE[0], "--results", res, *args)
    assert code == 2 and one_line(err) and says in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


# ---------------------------------------------------------------- SIGTERM and Ctrl-C: every command stops as on Ctrl-C

def _tune_process(tmp_path, nb):
    code = (f"import sys, rlkit.experiments.runner as r, pathlib; r.NOTEBOOK = pathlib.Path({str(nb)!r}); "
            "from rlkit.cli import main; "
            f"sys.exit(main(['tune', {str(ROOT / 'params' / 'cartpole.yaml')!r}, '--space', {SPACE[0]!r}, "
            f"'--trials', '2', '--seeds', '0', '--jobs', '2', '--pruner', 'none', '--set', 'eval.every=100', "
            f"'--results', {str(tmp_path / 'res')!r}]))")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig, rc, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_stopping_a_parallel_tune_is_one_line_and_records_its_runs(tmp_path, sig, rc, word):
    """Ctrl-C of `rlkit tune --jobs 2` printed two Optuna tracebacks; SIGTERM killed it at once (-15)."""
    from test_tune import stub

    nb = stub(tmp_path, pause=1.0)
    proc = _tune_process(tmp_path, nb)
    runs = [tmp_path / "res" / "cartpole_tune" / f"trial00{k}" / "seed0" for k in (0, 1)]
    deadline = time.monotonic() + 120
    while not all((r / "metrics.csv").exists() and "100," in (r / "metrics.csv").read_text() for r in runs):
        assert proc.poll() is None and time.monotonic() < deadline, "the trials never started"
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == rc and "Traceback" not in err and word in err
    assert len([line for line in err.splitlines() if line.startswith("rlkit tune:")]) == 1
    for r in runs:
        st = json.loads((r / "status.json").read_text())
        assert st["state"] == "failed" and st["error"].startswith("Interrupted")


def test_sigterm_stops_a_batch_as_ctrl_c_does(tree):
    """SIGTERM to `rlkit run` killed it at once with its run left 'running' in status.json."""
    (tree / "slow.yaml").write_text(TINY_YAML.replace("total_steps: 512", "total_steps: 200000"))
    proc = subprocess.Popen([sys.executable, "-m", "rlkit", "run", str(tree / "slow.yaml"), "--results",
                             str(tree / "res")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tree / "res" / "slow" / "seed0"
    deadline = time.monotonic() + 120
    while not ((run / "metrics.csv").exists() and (run / "metrics.csv").read_text().count("\n") > 3):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    before = sha256s(tree / "res" / "tiny")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err and "terminated (SIGTERM)" in err
    st = json.loads((run / "status.json").read_text())
    assert st["state"] == "failed" and st["error"].startswith("Interrupted")
    assert sha256s(tree / "res" / "tiny") == before


# ---------------------------------------------------------------- rlkit train: an env that fails is one line

@pytest.mark.parametrize("override", ["env.id=toolfaults:RaisesMidEpisode-v0",
                                      "env.wrappers=[{type: toolfaults.WrongShape}]"], ids=["raises", "wrong-shape"])
def test_an_env_that_fails_under_train_is_one_line(tree, cli, override):
    import toolfaults  # noqa: F401 - registers the env

    code, _, err = cli("train", tree / "tiny.yaml", "--set", override, "--out", tree / "r", "--no-progress")
    assert code == 1 and one_line(err) and ("RuntimeError" in err or "shape" in err) and "status.json" in err
    assert json.loads((tree / "r" / "status.json").read_text())["state"] == "failed"


# ---------------------------------------------------------------- rlkit report

def _copy_run(tree, src, dst, **config_changes):
    """A copy of a finished run under another name, its config.yaml changed (as another --set would have)."""
    import yaml

    shutil.copytree(tree / "res" / src, tree / "res" / dst)
    path = tree / "res" / dst / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in config_changes.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_runs_of_different_configs_in_one_experiment_are_not_aggregated(tree):
    """Issue row 5: the report aggregated them, said the configs do not differ, and gave one budget."""
    from rlkit.analysis import report

    _copy_run(tree, "tiny/seed1", "tiny/seed2", **{"seed": 2, "algo.actor_lr": 0.5, "total_steps": 1024})
    before = sha256s(tree / "res")
    rep = report.build(tree / "res", out_dir=tree / "out", figures=False)
    assert sorted(rep.summary.experiment) == ["tiny (config 1)", "tiny (config 2)"]
    assert dict(zip(rep.summary.experiment, rep.summary.n_seeds)) == {"tiny (config 1)": 2, "tiny (config 2)": 1}
    assert any("trained 2 different configs" in w and "algo.actor_lr" in w for w in rep.warnings)
    from rlkit.analysis import layout
    env_id = rep.summary.env_id.iloc[0]
    assert "do not differ" not in layout.differences_html(rep, env_id) and "algo.actor_lr" in rep.diff.columns
    assert sha256s(tree / "res") == before


def test_an_unreadable_config_or_metrics_file_is_named_with_its_reason(tree):
    """A non-UTF-8 config.yaml was a traceback; a corrupt metrics.csv was "has no eval/return yet"."""
    from rlkit.analysis import report

    (tree / "res" / "tiny" / "seed1" / "config.yaml").write_bytes(b"seed: 1\n\xff\xfe bad\n")
    _copy_run(tree, "tiny/seed0", "tiny/seed2", seed=2)
    (tree / "res" / "tiny" / "seed2" / "metrics.csv").write_bytes(bytes(range(256)) * 4)
    rep = report.build(tree / "res", out_dir=tree / "out", figures=False)
    assert any("not UTF-8" in w for w in rep.warnings)
    assert any(w.startswith("tiny") and "seed2: metrics.csv is not a metrics file" in w for w in rep.warnings)
    assert not any("has no eval/return yet" in w for w in rep.warnings)


def test_report_metric_nobody_logged_is_one_line(tree, cli):
    code, _, err = cli("report", tree / "res", "--metric", "nosuch/metric")
    assert code == 2 and one_line(err) and "--metric nosuch/metric" in err and "eval/return" in err
    assert not (tree / "res" / "report").exists()


def test_an_experiment_named_report_cannot_land_in_the_report_folder(tree, cli):
    (tree / "report.yaml").write_text(TINY_YAML)
    code, _, err = cli("run", tree / "report.yaml", "--results", tree / "res")
    assert code == 2 and one_line(err) and "rename the params file" in err
    assert not (tree / "res" / "report").exists()
    shutil.copytree(tree / "res" / "tiny", tree / "res" / "report")  # one made by an older rlkit
    before = sha256s(tree / "res")
    code, _, err = cli("report", tree / "res")
    assert code == 2 and one_line(err) and "named 'report'" in err
    assert sha256s(tree / "res") == before
    code, _, err = cli("tune", tree / "tiny.yaml", "--space", SPACE[0], "--name", "report", "--results", tree / "res")
    assert code == 2 and one_line(err)


def test_few_seeds_are_marked_on_the_table_and_the_figures(tree):
    """3 seeds: the "95% CI" is about [min, max] of the three, and a P of 0 [0, 0] from 3 vs 3 looks certain."""
    from matplotlib.figure import Figure

    from rlkit.analysis import report

    assert report.seeds_for_ci(0.95) == 6 and report.seeds_for_improvement(0.95) == 4
    _copy_run(tree, "tiny/seed1", "tiny/seed2", seed=2)
    for k in range(3):
        _copy_run(tree, f"tiny/seed{k}", f"other/seed{k}", **{"algo.k_epochs": 3})
    rep = report.build(tree / "res", out_dir=tree / "out", figures=False)
    from rlkit.analysis import layout
    table = layout.headline_html(rep, rep.summary.env_id.iloc[0])
    assert "\u2020" in table and "6 seeds are the fewest for a 95% CI" in table and "4 per side" in table
    assert any("6 seeds are the fewest" in w for w in rep.warnings)
    fig = Figure()
    report._note_few_runs(fig, [3, 3], 0.95)
    assert "needs at least 6 seeds" in fig.texts[0].get_text()
    assert "training return (IQM)" in table and "final episode/return" in rep.runs_html()  # the training return beside eval
    assert "training loop" in report.X_LABELS["wall_time"]
    rep = report.build(tree / "res", out_dir=tree / "out")  # the figures carry the note
    assert rep.figures and all(p.exists() for p in rep.figures)


# ---------------------------------------------------------------- presets

@pytest.mark.parametrize("preset", ["minigrid_doorkey.yaml", "minigrid_doorkey_rnd.yaml"])
def test_doorkey_presets_evaluate_sampled_actions_like_the_other_minigrid_presets(preset):
    from rlkit.config import load_config

    assert load_config(ROOT / "params" / preset).eval.deterministic is False
    assert load_config(ROOT / "params" / "minigrid_empty16.yaml").eval.deterministic is False


# ---------------------------------------------------------------- the notebook under papermill's -p

def test_papermill_p_overrides_string_is_read_as_a_mapping(tree):
    """papermill's -p passes a string: it was TypeError: 'str' object is not a mapping."""
    from rlkit.config import ConfigError
    from rlkit.experiments.notebook import resolve_run

    cfg, _ = resolve_run(tree / "tiny.yaml", 0, '{"total_steps": 4096}')
    assert cfg.total_steps == 4096
    with pytest.raises(ConfigError, match="overrides"):
        resolve_run(tree / "tiny.yaml", 0, "4096")
    out = tree / "out.ipynb"
    run_dir = tree / "nb_run"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "train.ipynb"), str(out),
                           "-p", "config", str(tree / "tiny.yaml"), "-p", "overrides", '{"total_steps": 256}',
                           "-p", "run_dir", str(run_dir), "-p", "live_plot", "False", "-p", "progress", "False"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run_dir / "status.json").read_text())["policy_step"] == 256


# ---------------------------------------------------------------- a fresh machine: make test gets its browser

def _stub_bin(tmp_path, uid):
    """A PATH folder whose `id` says uid and whose `apt-get` records its arguments instead of installing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'apt.log'}\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_make_test_installs_the_browser_as_root_with_apt(tmp_path):
    env = _stub_bin(tmp_path, 0)
    proc = subprocess.run(["make", "-s", "browser", f"CHROMIUM={tmp_path / 'no-chromium'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


def test_make_test_without_root_says_in_one_line_what_to_run(tmp_path):
    env = _stub_bin(tmp_path, 1000)
    proc = subprocess.run(["make", "-s", "browser", f"CHROMIUM={tmp_path / 'no-chromium'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "apt-get install chromium" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("make: the browser")]) == 1
    assert not (tmp_path / "apt.log").exists()
    test_target = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "chromium" in test_target.stdout  # `make test` runs the browser step before the suite


def test_sigterm_stops_a_report_in_one_line(tree):
    """Every entry point runs under the SIGTERM handler: `rlkit report` mid-notebook says so and exits 143."""
    proc = subprocess.Popen([sys.executable, "-m", "rlkit", "report", str(tree / "res")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tree / "res" / "report").exists():  # made just before the notebook starts
        assert proc.poll() is None and time.monotonic() < deadline, "the report never started"
        time.sleep(0.05)
    before = sha256s(tree / "res" / "tiny")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err and "rlkit report: terminated (SIGTERM)" in err
    assert sha256s(tree / "res" / "tiny") == before
