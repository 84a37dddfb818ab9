"""Batch runs through papermill: the committed notebooks, real training runs, failures, timeouts, parallel kernels.

Runs that must train go through the real notebooks/train.ipynb (a kernel that imports torch costs ~6 s
of CPU). Tests about the plumbing itself (16 kernels at once, timeouts, dead kernels) use a stub
notebook with the same parameters that writes status.json/metrics.csv like train does, in < 1 s.
"""
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import rlkit
from rlkit.experiments import launch
from rlkit.experiments import runner
from rlkit.experiments.runner import batch_exit_code, parse_seeds, run_batch

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "params" / "cartpole.yaml"
TINY = ["total_steps=256", "log_every=64", "eval.every=0", "parallel.envs_per_thread=4",
        "algo.batch_size=64", "algo.mini_batch_size=64", "algo.k_epochs=1"]


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("3") == [3]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    for bad in ("a", "4-2", "1-x", ""):
        with pytest.raises(rlkit.ConfigError):
            parse_seeds(bad)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    assert (nb.metadata.kernelspec.name, nb.metadata.kernelspec.display_name) == ("rlkit", "Python (rlkit)")


def test_train_notebook_parameters():
    import papermill

    params = papermill.inspect_notebook(str(ROOT / "notebooks" / "train.ipynb"))
    assert list(params) == ["config", "seed", "overrides", "run_dir", "resume", "force", "live_plot", "progress"]


def test_notebook_helpers_work_from_the_notebooks_folder(monkeypatch, tmp_path):
    from rlkit.analysis.live import LivePlot
    from rlkit.experiments.notebook import resolve_run

    for cwd in (ROOT / "notebooks", tmp_path):  # where JupyterLab may start the kernel
        monkeypatch.chdir(cwd)
        cfg, run_dir = resolve_run("params/cartpole.yaml", 3, {"algo.batch_size": 64})
        assert (cfg.seed, cfg.algo.batch_size, run_dir) == (3, 64, ROOT / "results" / "cartpole" / "seed3")
    cfg, run_dir = resolve_run("params/cartpole.yaml", 4, ["total_steps=512"], run_dir="elsewhere")
    assert (cfg.seed, cfg.total_steps, run_dir) == (4, 512, ROOT / "elsewhere")

    plot = LivePlot(every_s=0)
    assert not plot.live  # not in a Jupyter kernel: collect only, draw on demand
    plot({"policy_step": 8, "env_step": 8}, {"loss/policy": 0.1, "ppo/approx_kl": 0.01})
    assert not plot.has_returns()  # nothing to show yet: no frame is drawn in a notebook
    plot({"policy_step": 16, "env_step": 16}, {"eval/return": 20.0, "episode/return": 9.0})
    assert plot.series["eval/return"] == ([16], [20.0]) and plot.series["loss/policy"] == ([8], [0.1])
    top, policy_loss, value_loss, kl, entropy = plot.figure().axes
    assert [line.get_label() for line in top.lines][-1] == "eval/return (evaluation)"
    assert list(top.lines[-1].get_ydata()) == [20.0] and list(kl.lines[0].get_ydata()) == [0.01]
    assert list(policy_loss.lines[0].get_ydata()) == [0.1] and not value_loss.lines  # one quantity per panel


def test_bad_config_fails_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: {batch_sise: 64}\n")
    with pytest.raises(rlkit.ConfigError, match="batch_sise"):
        run_batch([CARTPOLE, bad], [0], results_dir=tmp_path / "results", log=lambda *_: None)
    with pytest.raises(rlkit.ConfigError, match="total_steps"):
        run_batch([CARTPOLE], [0], overrides=["total_steps=-1"], results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One real batch, two runs in parallel: tiny CartPole, and an env that passes the batch's checks (it builds
    and steps) but raises once training has started."""
    tmp = tmp_path_factory.mktemp("batch")
    broken = tmp / "broken.yaml"
    broken.write_text("env: {id: 'toolfaults:RaisesMidEpisode-v0'}\n")
    lines = []
    support = str(Path(__file__).resolve().parents[1] / "support")  # the kernels import toolfaults too
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [support, os.environ.get("PYTHONPATH")])))
        results = run_batch([CARTPOLE, broken], [0], jobs=2, results_dir=tmp / "results", overrides=TINY,
                            timeout_s=120, log=lines.append)
    return tmp, results, lines


def test_batch_trains_through_the_notebook(batch):
    tmp, results, lines = batch
    ok = results[0]
    assert (ok.experiment, ok.run, ok.state, ok.error) == ("cartpole", "seed0", "finished", None)
    assert ok.run_dir == tmp / "results" / "cartpole" / "seed0" and ok.policy_step >= 256
    assert status(ok.run_dir)["state"] == "finished"
    metrics = (ok.run_dir / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "policy_step,env_step,gradient_step,wall_time,metric,value" and len(metrics) > 10
    assert "total_steps: 256" in (ok.run_dir / "config.yaml").read_text()
    executed = nbformat.read(ok.run_dir / "train.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    for line in ("live_plot = False", "progress = False", "resume = True", f'run_dir = "{ok.run_dir}"'):
        assert line in injected.source
    assert any("cartpole/seed0: finished" in line for line in lines)
    assert "experiment" in lines[-1] and "broken" in lines[-1]  # the summary table


def test_failed_run_is_recorded_and_the_rest_goes_on(batch):
    tmp, results, _ = batch
    bad = results[1]
    assert (bad.experiment, bad.state) == ("broken", "failed")
    assert "simulator crashed" in bad.error and bad.error.startswith("EnvStepError: ")  # the cell's exception
    st = status(bad.run_dir)
    assert st["state"] == "failed" and "simulator crashed" in st["error"]
    assert (bad.run_dir / "train.ipynb").exists()  # the executed notebook shows the traceback
    assert batch_exit_code(results) == 1 and batch_exit_code(results[:1]) == 0


def test_finished_run_is_skipped(batch):
    tmp, _, _ = batch
    before = (tmp / "results" / "cartpole" / "seed0" / "metrics.csv").read_text()
    results = run_batch([CARTPOLE], [0], results_dir=tmp / "results", overrides=TINY, log=lambda *_: None)
    assert [r.state for r in results] == ["skipped"] and results[0].policy_step >= 256
    assert (tmp / "results" / "cartpole" / "seed0" / "metrics.csv").read_text() == before
    assert batch_exit_code(results) == 0


# ---------------------------------------------------------------- plumbing, with a stub notebook

STUB_SETUP = """\
import json, os, pathlib, time
run = pathlib.Path(run_dir)
run.mkdir(parents=True, exist_ok=True)
(run / "metrics.csv").write_text("policy_step,env_step,gradient_step,wall_time,metric,value\\n64,64,1,0.1,x,1.0\\n")
(run / "status.json").write_text(json.dumps({"state": "running", "policy_step": 64, "versions": {"stub": 1}}))
assert live_plot is False and progress is False and resume is True
(run / "kernel.pid").write_text(str(os.getpid()))
"""
STUB_FINISH = 'time.sleep(0.2)\n(run / "status.json").write_text(json.dumps({"state": "finished", "policy_step": 128}))'


def stub_notebook(path: Path, *middle: str) -> Path:
    params = 'config = ""\nseed = 0\noverrides = {}\nrun_dir = None\nresume = True\nforce = False\n' \
             'live_plot = True\nprogress = True'
    cells = [new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(STUB_SETUP)]
    nb = new_notebook(cells=cells + [new_code_cell(src) for src in middle] + [new_code_cell(STUB_FINISH)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_sixteen_runs_eight_at_a_time(tmp_path):
    """16 real tiny trainings through the real notebook, 8 kernels at once: no port races, all finish."""
    results = run_batch([CARTPOLE], list(range(16)), jobs=8, results_dir=tmp_path / "results", overrides=TINY,
                        timeout_s=240, log=lambda *_: None)
    assert [(r.run, r.state, r.error) for r in results] == [(f"seed{k}", "finished", None) for k in range(16)]
    assert all(r.policy_step >= 256 for r in results)
    assert all(status(r.run_dir)["state"] == "finished" for r in results)


def test_timeouts_and_dead_kernels_fail_the_run_only(tmp_path, monkeypatch):
    # hard kill 12 s after launch: five kernels starting at once on a busy 2-core machine took over 6 s to
    # reach their cells, so a tighter grace turned seed 0's cell timeout into the hard kill
    monkeypatch.setattr(launch, "KILL_GRACE_S", 10.0)
    nb = stub_notebook(tmp_path / "stub.ipynb",
                       "if seed == 0:\n    time.sleep(1e6)",  # one endless cell: nbclient's cell timeout
                       *["if seed == 1:\n    time.sleep(1.2)"] * 14,  # no cell too long, the run is: hard kill
                       "if seed == 2:\n    os._exit(1)",  # the kernel dies
                       "if seed == 3:\n    raise RuntimeError('boom')")
    results = run_batch([CARTPOLE], [0, 1, 2, 3, 4], jobs=5, results_dir=tmp_path / "results", notebook=nb,
                        timeout_s=2, log=lambda *_: None)
    by_seed = {r.run: r for r in results}
    assert by_seed["seed0"].error.startswith("CellTimeoutError")
    assert by_seed["seed1"].error.startswith("TimeoutError") and 12 < by_seed["seed1"].seconds < 16
    assert by_seed["seed2"].error.startswith("DeadKernelError")
    assert by_seed["seed3"].error == "RuntimeError: boom"
    assert by_seed["seed4"].state == "finished"
    for seed in range(4):
        r = by_seed[f"seed{seed}"]
        st = status(r.run_dir)
        assert r.state == "failed" and st["state"] == "failed" and st["error"] == r.error
        assert st["versions"] == {"stub": 1} and st["policy_step"] == 64  # merged, not replaced
        assert (r.run_dir / "metrics.csv").read_text().count("\n") == 2  # never deleted
        assert not alive(int((r.run_dir / "kernel.pid").read_text()))  # no kernel left running
    assert batch_exit_code(results) == 1


def test_orchestration_imports_go_one_way():
    """runner -> cluster -> launch -> kernels, never back; report needs nothing from the runner. (Between
    packages tests/unit/test_layers.py checks the direction; this checks it inside experiments/ and analysis/,
    function-level imports included.)"""
    import ast

    mine = {"runner": "experiments", "cluster": "experiments", "launch": "experiments", "kernels": "runs",
            "sweep": "experiments", "tune": "experiments", "tune_report": "experiments", "report": "analysis",
            "scores": "analysis", "live": "analysis", "tensorboard": "analysis", "notebook": "experiments"}
    graph = {}
    for name, package in mine.items():
        tree = ast.parse((ROOT / "rlkit" / package / f"{name}.py").read_text())
        found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                  for a in n.names}
        graph[name] = {m.split(".")[-1] for m in found if m.startswith("rlkit.") and m.split(".")[-1] in mine}
    assert "runner" not in graph["cluster"] and "runner" not in graph["report"] and "runner" not in graph["launch"]

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph[start])

    assert [m for m in mine if reaches(m, m)] == []  # no cycle, function-level imports included
