"""`rlkit run --scheduler`: a real dask.distributed cluster on loopback, one scheduler and two workers as
subprocesses, each worker one thread. Real tiny trainings through notebooks/train.ipynb; the lost-worker
test uses test_runner's stub notebook (a kernel that needs no torch)."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from distributed import Client, Event
from distributed.scheduler import KilledWorker
from test_runner import CARTPOLE, TINY, alive, status, stub_notebook

from rlkit.experiments import cluster as rlkit_cluster
from rlkit.experiments import runner
from rlkit.cli import main
from rlkit.experiments.runner import RunResult, batch_exit_code, run_batch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` on 127.0.0.1 (free port, no dashboard) and two `dask worker`s; all killed at the end."""
    tmp = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = []

    def start(*args):
        with open(tmp / f"{args[0]}{len(procs)}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=tmp, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        return procs[-1]

    def start_worker():
        return start("worker", address, "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                     "--local-directory", str(tmp / "scratch"))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(tmp / "scheduler.json"))
        address = wait_for(lambda: (tmp / "scheduler.json").exists() and json.loads(
            (tmp / "scheduler.json").read_text())["address"], 30, "the scheduler")
        workers = [start_worker(), start_worker()]
        with Client(address, timeout=10) as client:
            client.wait_for_workers(2, timeout=30)
        yield SimpleNamespace(address=address, workers=workers, start_worker=start_worker, tmp=tmp)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_sweep_of_four_runs_on_two_workers(cluster, tmp_path):
    lines = []
    results = run_batch([CARTPOLE], [0, 1, 2, 3], results_dir=tmp_path / "results", overrides=TINY,
                        timeout_s=120, scheduler=cluster.address, log=lines.append)
    assert [(r.run, r.state, r.error) for r in results] == [(f"seed{k}", "finished", None) for k in range(4)]
    workers = set()
    for r in results:
        assert r.run_dir == tmp_path / "results" / "cartpole" / f"seed{r.run[4:]}" and r.policy_step >= 256
        assert status(r.run_dir)["state"] == "finished"
        metrics = (r.run_dir / "metrics.csv").read_text().splitlines()
        assert metrics[0] == "policy_step,env_step,gradient_step,wall_time,metric,value" and len(metrics) > 10
        assert (r.run_dir / "train.ipynb").exists()
        attempts = json.loads((r.run_dir / "attempts.json").read_text())["attempts"]
        assert len(attempts) == 1
        workers.add(attempts[0]["worker"])
    assert len(workers) == 2  # both workers took runs
    assert lines[0] == f"dask: {cluster.address}: 2 workers, 2 runs at once"
    assert sorted(line.split(":")[0] for line in lines[1:5]) == [f"cartpole/seed{k}" for k in range(4)]
    assert all(": finished at policy_step" in line for line in lines[1:5])  # a line as each run ends
    assert lines[-1].startswith("experiment") and lines[-1].count("finished") == 4  # the summary table
    assert batch_exit_code(results) == 0


def test_lost_worker_run_is_retried_on_another_and_resumes(cluster, tmp_path):
    """SIGKILL the worker running the run: its kernel goes too, and the run goes on on the other worker."""
    nb = stub_notebook(tmp_path / "stub.ipynb",  # the first attempt writes its kernel's pid and hangs
                       "first = run / 'first.pid'\nif not first.exists():\n"
                       "    first.write_text(str(os.getpid()))\n    time.sleep(1e6)")
    run_dir = tmp_path / "results" / "cartpole" / "seed5"
    out = {}
    batch = threading.Thread(target=lambda: out.update(results=run_batch(
        [CARTPOLE], [5], results_dir=tmp_path / "results", notebook=nb, timeout_s=60, scheduler=cluster.address,
        log=lambda *_: None)))
    batch.start()
    worker = None
    try:
        kernel = int(wait_for(lambda: (run_dir / "first.pid").exists() and (run_dir / "first.pid").read_text(),
                              60, "the first attempt's kernel"))
        launcher = ppid(kernel)  # rlkit's worker subprocess; its parent is the dask worker process
        worker = next(w for w in cluster.workers if w.pid == ppid(launcher))
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        batch.join(timeout=60)
    finally:
        if worker is not None:
            cluster.workers.remove(worker)
            cluster.workers.append(cluster.start_worker())  # back to two for whatever runs next
    assert not batch.is_alive()
    [r] = out["results"]
    assert (r.state, r.error) == ("finished", None) and status(run_dir)["state"] == "finished"
    attempts = json.loads((run_dir / "attempts.json").read_text())["attempts"]
    assert len(attempts) == 2 and attempts[0]["worker"] != attempts[1]["worker"]
    assert not alive(launcher)  # died with the worker's thread
    wait_for(lambda: not alive(kernel), 5, "the orphaned kernel to exit")


def test_second_lost_worker_fails_the_run(cluster, tmp_path):
    """The third start of a run in one batch means two workers died running it: record it failed, run nothing."""
    run_dir = tmp_path / "results" / "cartpole" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("policy_step,env_step,gradient_step,wall_time,metric,value\n64,64,1,0.1,x,1\n")
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "policy_step": 64}))
    lost = [{"worker": "tcp://127.0.0.1:1"}, {"worker": "tcp://127.0.0.1:2"}]
    (run_dir / "attempts.json").write_text(json.dumps({"batch": "b1", "attempts": lost}))
    spec = {"notebook": str(runner.NOTEBOOK), "cwd": str(ROOT), "kernel_name": None, "cell_timeout": None,
            "parameters": {"config": str(CARTPOLE), "run_dir": str(run_dir)}}
    missing = tmp_path / "elsewhere" / "seed0"
    with Client(cluster.address, timeout=10) as client:
        stop = Event("rlkit-test-stop", client=client)
        row = client.submit(rlkit_cluster.run_task, RunResult("cartpole", "seed0", run_dir, "failed"), spec, None,
                            "b1", stop, pure=False).result(timeout=30)
        assert row.state == "failed" and row.error == rlkit_cluster.lost_worker_error(lost) and row.policy_step == 64
        assert row.error.startswith("WorkerLost:") and "(2x: tcp://127.0.0.1:1, tcp://127.0.0.1:2)" in row.error
        st = status(run_dir)
        assert (st["state"], st["error"], st["policy_step"]) == ("failed", row.error, 64)
        assert (run_dir / "metrics.csv").read_text().count("\n") == 2  # kept
        assert not (run_dir / "train.ipynb").exists()  # nothing was run

        # a worker that does not see the run directory (no shared filesystem) fails the run, saying so
        row = client.submit(rlkit_cluster.run_task, RunResult("cartpole", "seed0", missing, "failed"),
                            {**spec, "parameters": {**spec["parameters"], "run_dir": str(missing)}}, None, "b2",
                            stop, pure=False).result(timeout=30)
        assert row.state == "failed" and row.error.startswith(f"FileNotFoundError: {missing.parent} does not exist on")
        assert "shared filesystem" in row.error
    # the scheduler gave up on a task itself (allowed-failures): the client records it
    error = rlkit_cluster._describe(KilledWorker("rlkit-run-x", SimpleNamespace(address="tcp://127.0.0.1:3"), 0))
    assert error == ("WorkerLost: the Dask worker running this run died (1x: the last tcp://127.0.0.1:3); "
                     "its metrics and checkpoint are kept: run again to resume it")


def test_unreachable_scheduler_is_one_line_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rlkit_cluster, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = tmp_path / "results"
    code = main(["run", str(CARTPOLE), "--seeds", "0-1", "--results", str(results),
                 "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"rlkit run: error: --scheduler tcp://127.0.0.1:{port}: cannot reach a Dask scheduler")
    assert "dask scheduler" in err and "leave out --scheduler" in err
    assert not results.exists()


def test_a_local_stop_stops_the_cluster_runs(cluster, tmp_path):
    """What a pruned tuning trial does on a cluster: setting the batch's stop event kills its runs on the workers."""
    from rlkit.experiments.runner import experiments_of, run_experiments

    nb = stub_notebook(tmp_path / "stub.ipynb", "(run / 'started').write_text('1')\ntime.sleep(1e6)")
    stop, out = threading.Event(), {}
    batch = threading.Thread(target=lambda: out.update(results=run_experiments(
        experiments_of([CARTPOLE]), [0, 1], results_dir=tmp_path / "results", notebook=nb, timeout_s=120,
        scheduler=cluster.address, stop=stop, log=lambda *_: None)))
    batch.start()
    runs = [tmp_path / "results" / "cartpole" / f"seed{k}" for k in (0, 1)]
    wait_for(lambda: all((r / "started").exists() for r in runs), 60, "both runs to start")
    t0 = time.monotonic()
    stop.set()
    batch.join(timeout=30)
    assert not batch.is_alive() and time.monotonic() - t0 < 15
    from rlkit.experiments.launch import INTERRUPTED
    assert [(r.state, r.error) for r in out["results"]] == [("failed", INTERRUPTED)] * 2
    assert all(status(r)["state"] == "failed" for r in runs)
