"""rlkit tune: the search space, the objective over seeds, pruning, parallel trials, resuming a killed study.

The trials run through the real runner on a stub notebook (a kernel without torch, well under a second):
its eval/return is a known function of algo.actor_lr, 100 - 30 |log10(lr) + 3|, logged at policy steps
100..500 with a pause between, so the tests know every objective value and can catch a trial mid-run.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import optuna
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from test_runner import CARTPOLE, ROOT

import rlkit
from rlkit.experiments import tune as rlkit_tune
from rlkit.cli import main
from rlkit.experiments.tune import parse_space, tune

pytestmark = pytest.mark.timeout(240)
EVAL = ["eval.every=100"]
STUB = '''\
import json, math, pathlib, time
run = pathlib.Path(run_dir)
run.mkdir(parents=True, exist_ok=True)
lr = overrides["algo.actor_lr"]
score = 100 - 30 * abs(math.log10(lr) + 3)
(run / "status.json").write_text(json.dumps({"state": "running", "policy_step": 0}))
started = time.time()
with open(run / "metrics.csv", "w") as f:
    f.write("policy_step,env_step,gradient_step,wall_time,metric,value\\n")
    for step in range(100, 501, 100):
        time.sleep(PAUSE)
        f.write(f"{step},{step},1,0.1,eval/return,{score + seed}\\n")
        f.flush()
(run / "times.json").write_text(json.dumps([started, time.time()]))
(run / "status.json").write_text(json.dumps({"state": "finished", "policy_step": 500}))
'''


def stub(tmp_path, pause=0.3) -> Path:
    params = 'config = ""\nseed = 0\noverrides = {}\nrun_dir = None\nresume = True\nforce = False\n' \
             'live_plot = True\nprogress = True'
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}),
                             new_code_cell(STUB.replace("PAUSE", str(pause)))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "stub.ipynb")
    return tmp_path / "stub.ipynb"


def expected(lr, seeds):
    import math
    return 100 - 30 * abs(math.log10(lr) + 3) + sum(seeds) / len(seeds)


def test_bad_search_spaces_name_the_entry(capsys):
    assert parse_space("algo.actor_lr=log:1e-4:3e-3").corners() == [1e-4, 3e-3]
    assert parse_space("algo.k_epochs=int:3:20").corners() == [3, 20]
    assert parse_space("algo.activation=choice:tanh,relu").corners() == ["tanh", "relu"]
    for entry, why in [("algo.actor_lr=log:0:1", "LOW > 0"), ("algo.actor_lr=lgo:1e-4:1e-3", "unknown kind 'lgo'"),
                       ("algo.actor_lr=log:1e-3:1e-4", "must be below"), ("algo.k_epochs=int:3:x", "two numbers"),
                       ("algo.actor_lr", "not KEY=KIND")]:
        with pytest.raises(rlkit.ConfigError, match=why) as e:
            parse_space(entry)
        assert str(e.value).startswith(f"--space '{entry}': ")
    # a key the config does not know, or a range outside what the config accepts: before anything runs
    for entry, why in [("algo.actr_lr=log:1e-4:1e-3", "unknown key 'algo.actr_lr'"),
                       ("algo.k_epochs=int:0:5", "'algo.k_epochs' must be >= 1")]:
        code = main(["tune", str(CARTPOLE), "--space", entry, "--trials", "1", "--results", "/nonexistent/x"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"rlkit tune: error: --space '{entry}': ") and why in err[0]
    assert not Path("/nonexistent/x").exists()


def test_objective_is_the_iqm_over_seeds_and_trials_run_in_parallel(tmp_path):
    study = tune(CARTPOLE, ["algo.actor_lr=log:1e-5:1e-1"], trials=2, seeds=[0, 1], jobs=2, overrides=EVAL,
                 results_dir=tmp_path, notebook=stub(tmp_path, pause=0.4), kernel_name="python3", pruner="none",
                 log=lambda *_: None)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:  # final score = the last 10% of 500 steps = the evaluation at 500; IQM of 2 seeds = mean
        assert t.value == pytest.approx(expected(t.params["algo.actor_lr"], [0, 1]))
        assert sorted(t.intermediate_values) == [100, 200, 300, 400, 500]
    windows = [json.loads((tmp_path / "cartpole_tune" / f"trial00{k}" / "seed0" / "times.json").read_text())
               for k in (0, 1)]
    assert windows[0][0] < windows[1][1] and windows[1][0] < windows[0][1]  # the two trials overlapped in time
    best = yaml.safe_load((tmp_path / "cartpole_tune" / "best.yaml").read_text())
    assert best["algo"]["actor_lr"] == study.best_params["algo.actor_lr"] and best["eval"]["every"] == 100
    assert "sweep" not in best and (tmp_path / "cartpole_tune" / "study.db").exists()
    for name in ("index.html", "history.png", "importances.png", "intermediate.png", "best_trials.png"):
        assert (tmp_path / "cartpole_tune" / "tuning" / name).exists(), name


def test_pruned_trials_stop_their_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(rlkit_tune, "MONITOR_S", 0.5)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="p", direction="maximize")
    study.enqueue_trial({"algo.actor_lr": 1e-3})  # scores 100: kept
    study.enqueue_trial({"algo.actor_lr": 1e-1})  # scores 40 from the first evaluation: pruned
    study = tune(CARTPOLE, ["algo.actor_lr=log:1e-5:1e-1"], trials=2, seeds=[0], overrides=EVAL, name="p",
                 storage=url, results_dir=tmp_path, notebook=stub(tmp_path, pause=0.8), kernel_name="python3",
                 pruner=optuna.pruners.ThresholdPruner(lower=50.0), log=lambda *_: None)
    kept, pruned = study.get_trials()
    assert kept.state.name == "COMPLETE" and kept.value == 100.0
    assert pruned.state.name == "PRUNED" and min(pruned.intermediate_values) == 100
    st = json.loads((tmp_path / "p" / "trial001" / "seed0" / "status.json").read_text())
    assert st["state"] == "failed" and st["error"].startswith("Pruned: Optuna stopped trial001 (trial 1)")
    assert not (tmp_path / "p" / "trial001" / "seed0" / "times.json").exists()  # killed before its end


def test_a_killed_study_resumes(tmp_path):
    """SIGKILL the tune mid-trial; the next tune queues that trial again (same values, same directory)."""
    nb = stub(tmp_path, pause=0.6)
    call = (f"from rlkit.experiments.tune import tune; tune({str(CARTPOLE)!r}, ['algo.actor_lr=log:1e-5:1e-1'], trials=3, "
            f"seeds=[0], overrides={EVAL!r}, results_dir={str(tmp_path)!r}, notebook={str(nb)!r}, "
            f"kernel_name='python3', pruner='none')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", call], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_run = tmp_path / "cartpole_tune" / "trial001" / "seed0" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (killed_run.exists() and "200," in killed_run.read_text()):  # trial 1 is halfway through
        assert proc.poll() is None and time.monotonic() < deadline, "trial 1 never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = []
    study = tune(CARTPOLE, ["algo.actor_lr=log:1e-5:1e-1"], trials=3, seeds=[0], overrides=EVAL,
                 results_dir=tmp_path, notebook=nb, kernel_name="python3", pruner="none", log=lines.append)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    killed, retried = trials[1], trials[2]
    assert retried.params == killed.params and retried.user_attrs["experiment"] == "trial001"
    assert any("trial 1 (trial001) did not finish; queued again" in line for line in lines)
    assert any("1 of 3 trials done, 2 to run" in line for line in lines)
    assert sorted(t.user_attrs["experiment"] for t in trials if t.state.name == "COMPLETE") == \
        ["trial000", "trial001", "trial003"]  # the new trial takes the next number
    assert retried.value == pytest.approx(expected(retried.params["algo.actor_lr"], [0]))
    again = tune(CARTPOLE, ["algo.actor_lr=log:1e-5:1e-1"], trials=3, seeds=[0], overrides=EVAL,
                 results_dir=tmp_path, notebook=nb, kernel_name="python3", pruner="none", log=lambda *_: None)
    assert len(again.get_trials()) == 4  # nothing left to do


def test_ctrl_c_stops_parallel_trials_and_records_them(tmp_path):
    """SIGINT with two trials running in Optuna's threads: their runs are killed and recorded, the tune ends."""
    nb = stub(tmp_path, pause=1.0)
    call = (f"from rlkit.experiments.tune import tune; tune({str(CARTPOLE)!r}, ['algo.actor_lr=log:1e-5:1e-1'], trials=2, "
            f"seeds=[0], jobs=2, overrides={EVAL!r}, results_dir={str(tmp_path)!r}, notebook={str(nb)!r}, "
            f"kernel_name='python3', pruner='none')")
    proc = subprocess.Popen([sys.executable, "-c", call], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = [tmp_path / "cartpole_tune" / f"trial00{k}" / "seed0" for k in (0, 1)]
    deadline = time.monotonic() + 120
    while not all((r / "metrics.csv").exists() and "100," in (r / "metrics.csv").read_text() for r in runs):
        assert proc.poll() is None and time.monotonic() < deadline, "the trials never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)  # not the ~5 s the runs had left, plus their kernels' shutdown, times two
    study = optuna.load_study(study_name="cartpole_tune", storage=f"sqlite:///{tmp_path / 'cartpole_tune' / 'study.db'}")
    assert [(t.state.name, t.user_attrs["interrupted"]) for t in study.get_trials()] == [("FAIL", True)] * 2
    for r in runs:
        st = json.loads((r / "status.json").read_text())
        assert st["state"] == "failed" and st["error"].startswith("Interrupted") and not (r / "times.json").exists()
