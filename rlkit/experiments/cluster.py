"""Runs on a Dask cluster: `rlkit run ... --scheduler tcp://HOST:PORT` (docs/scaling.md).

Each experiment x seed is one task that calls launch.run_one on a worker, exactly as the local
pool (rlkit/experiments/runner.py) does. The results directory must be on a filesystem every worker shares, at the same path: the
worker writes the run directory itself. A worker lost mid-run takes its run along (the run's
process dies with the thread that launched it); the scheduler starts the task again elsewhere,
which resumes from the checkpoint, and attempts.json in the run directory makes a second loss fail
the run instead of trying forever.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

from rlkit.config import ConfigError
from rlkit.runs.rundir import read_status, write_status
from rlkit.runs.kernels import default_kernel_name
from rlkit.experiments.launch import INTERRUPTED, POLL_S, RunResult, report_line, run_env, run_one

CONNECT_TIMEOUT_S = 5.0  # to reach the scheduler
MAX_ATTEMPTS = 2  # per run: the first, and one more if the worker running it is lost
STOP_WAIT_S = 15.0
STOP_FORWARD_S = 1.0  # how often a forwarded local stop is checked  # on Ctrl-C, how long to wait for tasks to stop their runs and record them


def connect(scheduler: str, log=print):
    """A dask.distributed Client for `scheduler`, or a ConfigError (one line) if it cannot be reached."""
    from distributed import Client
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    try:
        get_backend(parse_address(scheduler)[0])  # a bad scheme fails here, not in a half-made Client
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--scheduler {scheduler}: cannot reach a Dask scheduler ({reason}); start one with "
                          f"`dask scheduler` and pass the address it prints, or leave out --scheduler to run "
                          f"on this machine") from None
    threads = client.nthreads()  # {worker address: threads}; one run per thread
    log(f"dask: {scheduler}: {len(threads)} workers, {sum(threads.values())} runs at once")
    return client


def execute(client, results, todo, timeout_s, log, local_stop=None) -> None:
    """Each run a task on the cluster (retried once if it raises); a line as each run ends.

    Setting `local_stop` (a threading.Event in this process) stops the tasks still running, as Ctrl-C does.
    """
    from distributed import Event, as_completed as dask_completed

    batch = uuid.uuid4().hex[:12]
    stop = Event(f"rlkit-stop-{batch}", client=client)
    ended = threading.Event()
    if local_stop is not None:
        _forward(local_stop, stop, ended)
    futures = {}
    for i, spec in todo:
        results[i].run_dir.parent.mkdir(parents=True, exist_ok=True)  # a worker that cannot see it fails the run
        key = f"rlkit-run-{results[i].experiment}-{results[i].run}-{batch}"
        futures[client.submit(run_task, results[i], spec, timeout_s, batch, stop, key=key, retries=1)] = i
    try:
        for future in dask_completed(futures, loop=client.loop):
            i = futures[future]
            try:
                row = future.result()
            except Exception as e:  # the run's workers were lost, the task raised twice, the scheduler went away
                row = _fail(results[i], _describe(e))
            else:
                if row.state == "failed" and read_status(row.run_dir).get("error") != row.error:
                    _fail(row, row.error)  # a failure the worker could not write (e.g. no shared filesystem)
            results[i] = report_line(log, row)
    finally:  # Ctrl-C or a bug here: tell the tasks to kill their runs and record them, then cancel
        ended.set()
        unfinished = [f for f in futures if not f.done()]
        if unfinished:
            stop.set()
            deadline = time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline and not all(f.done() for f in unfinished):
                time.sleep(POLL_S)
            client.cancel(unfinished)


def _forward(local_stop, stop, ended: threading.Event) -> None:
    """A daemon thread that sets the cluster-wide `stop` once `local_stop` is set, until the batch has `ended`."""
    def wait():
        while not ended.is_set():
            if local_stop.wait(STOP_FORWARD_S):
                stop.set()
                return

    threading.Thread(target=wait, daemon=True, name="rlkit-stop-forward").start()


def _describe(e: BaseException) -> str:
    """One line for status.json when a task gave no result."""
    from distributed.scheduler import KilledWorker

    if isinstance(e, KilledWorker):  # the scheduler's own limit (allowed-failures) was reached first
        return _lost(e.allowed_failures + 1, f"the last {getattr(e.last_worker, 'address', '?')}")
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def _fail(result: RunResult, error: str) -> RunResult:
    """Record `result` as failed with `error`, merged into its status.json (counters and files kept)."""
    result.run_dir.mkdir(parents=True, exist_ok=True)
    status = write_status(result.run_dir, state="failed", error=error)
    result.state, result.error, result.policy_step = "failed", error, status.get("policy_step")
    return result


# ------------------------------------------------------------------ the task, on a worker

def run_task(result: RunResult, spec: dict, timeout_s, batch: str, stop) -> RunResult:
    """One run as a Dask task: run_one, as the local pool does, plus what a cluster needs.

    Checks that this worker sees the paths (shared filesystem); counts attempts in attempts.json so
    that a run whose worker was lost is run once more (resuming, never forced) and then fails.
    """
    from distributed import get_worker

    worker = get_worker()
    if stop.is_set():
        result.error = INTERRUPTED
        return result
    for path in (spec["notebook"], spec["parameters"]["config"], result.run_dir.parent):
        if not Path(path).exists():
            result.error = (f"FileNotFoundError: {path} does not exist on the Dask worker {worker.address}; every "
                            f"worker must see the checkout and the results directory at the same path (a shared filesystem)")
            return result
    result.run_dir.mkdir(exist_ok=True)
    attempts = _add_attempt(result.run_dir, batch, worker.address)
    if len(attempts) > MAX_ATTEMPTS:
        return _fail(result, lost_worker_error(attempts[:-1]))
    if len(attempts) > 1:  # the previous attempt's worker was lost: continue from what it wrote
        spec = {**spec, "parameters": {**spec["parameters"], "force": False}}
    spec = {**spec, "kernel_name": spec["kernel_name"] or default_kernel_name()}
    return run_one(result, spec, timeout_s, run_env(worker.state.nthreads), stop)


def lost_worker_error(lost: list[dict]) -> str:
    """The error recorded when the workers of `lost` attempts (attempts.json entries) died running the run."""
    return _lost(len(lost), ", ".join(a["worker"] for a in lost))


def _lost(times: int, workers: str) -> str:
    return (f"WorkerLost: the Dask worker running this run died ({times}x: {workers}); its metrics and "
            f"checkpoint are kept: run again to resume it")


def _add_attempt(run_dir: Path, batch: str, worker: str) -> list[dict]:
    """Append this attempt to run_dir/attempts.json (reset for a new batch); return this batch's attempts."""
    path = run_dir / "attempts.json"
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        record = {}
    if record.get("batch") != batch:
        record = {"batch": batch, "attempts": []}
    record["attempts"].append({"worker": worker, "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return record["attempts"]
