"""One run in a worker subprocess: launch it, enforce its time limit, kill it, record how it ended.

    row = run_one(RunResult("cartpole", "seed0", run_dir, "failed"), spec, timeout_s=600, env=run_env(jobs=2))

`run_one` runs one config x seed to its end and returns its summary row. It launches a worker
subprocess (in its own session) that executes the notebook with papermill, waits, enforces the time
limit and records the outcome. The local pool (rlkit/experiments/runner.py) calls it from a thread per run, a
Dask worker (rlkit/experiments/cluster.py) as the run's task. Not a ProcessPoolExecutor: a pool cannot cancel a
running task and killing one of its workers breaks the pool, while a hung run must be killed alone,
kernel included. The worker imports no torch; only the kernel does.

Time limit (`timeout_s`): nbclient stops a cell that runs longer than `timeout_s` (CellTimeoutError;
the partial notebook is saved). As a backstop `run_one` SIGKILLs the kernel's and the worker's
process groups `timeout_s + KILL_GRACE_S` after launch. Either way status.json says failed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rlkit.runs.kernels import IPCKernelManager, new_socket_prefix, remove_sockets
from rlkit.runs.rundir import RunLock, read_status, write_status

REPO_ROOT = Path(__file__).resolve().parents[2]
KILL_GRACE_S = 10.0  # after timeout_s, time left for nbclient's own cell timeout before the hard kill
POLL_S = 0.1
STOP_POLL_S = 1.0  # how often a running run asks whether the batch was stopped (on Dask: a scheduler round trip)
INTERRUPTED = "Interrupted: the batch was stopped before this run ended"
_ERROR = "rlkit-run-error: "  # prefix of the line where a worker reports why its run failed


@dataclass
class RunResult:
    experiment: str  # results/<experiment>/: the params file stem, or a sweep variant's name
    run: str  # "seed<k>"
    run_dir: Path
    state: str  # finished | failed | skipped
    error: str | None = None
    seconds: float = 0.0
    policy_step: int | None = None


def run_one(result: RunResult, spec: dict, timeout_s, env: dict, stop=None) -> RunResult:
    """Run one config x seed to its end in a worker subprocess and return its summary row.

    Enforces the time limit, kills the run when `stop` (anything with is_set()) is set, and records a
    failure of any kind in status.json; a run that ends without error must have written state finished.
    A `stop` with a `reason` attribute (a pruned tuning trial) records that reason as the error.
    """
    if stop is not None and stop.is_set():  # stopped before it started: leave its directory alone
        result.error = stop_reason(stop)
        return result
    result.run_dir.mkdir(parents=True, exist_ok=True)
    holder = RunLock.holder(result.run_dir)  # before runner.log and train.ipynb are written (train locks itself)
    if holder is not None:
        result.error = f"RunLockedError: {result.run_dir} is in use by another training process (pid {holder}); left alone"
        return result
    # Another batch on the same results may have finished this run since ours was validated: leave it be.
    status = read_status(result.run_dir)
    if status.get("state") == "finished" and not spec["parameters"].get("force"):
        result.state, result.policy_step = "skipped", status.get("policy_step")
        return result
    spec = {**spec, "sockets": new_socket_prefix(), "parent": os.getpid()}
    t0 = next_stop_check = time.monotonic()
    # the worker's output, for post-mortems; appended, so that no attempt's log replaces an earlier one's
    with open(result.run_dir / "runner.log", "a") as out:
        out.write(f"--- rlkit run, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, "-c", _BOOT, json.dumps(spec)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while proc.poll() is None:
            time.sleep(POLL_S)
            now = time.monotonic()
            if timeout_s is not None and now - t0 > timeout_s + KILL_GRACE_S:
                _kill(proc)
                result.error = f"TimeoutError: run exceeded timeout_s={timeout_s:g} s and was killed"
            elif stop is not None and now >= next_stop_check:
                next_stop_check = now + STOP_POLL_S
                if stop.is_set():
                    _kill(proc)
                    result.error = stop_reason(stop)
    except BaseException:  # this thread is being torn down: never leave the run behind, nor unrecorded
        _kill(proc)
        result.error = result.error or INTERRUPTED
        write_status(result.run_dir, state="failed", error=result.error)
        raise
    finally:
        remove_sockets(spec["sockets"])  # a killed kernel's socket files
    return _finish(proc, result, time.monotonic() - t0)


def stop_reason(stop) -> str:
    return getattr(stop, "reason", None) or INTERRUPTED


def run_env(jobs: int) -> dict:
    """The worker's environment: this machine's cores shared among `jobs` concurrent runs, rlkit importable.

    Cores = those this process may run on (a Slurm job's allocation, a container's cpuset), not the node's.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // max(1, jobs))),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env["MKL_NUM_THREADS"] = env["OMP_NUM_THREADS"]
    return env


def report_line(log, r: RunResult) -> RunResult:
    """One progress line as a run ends (or is skipped)."""
    if r.state == "skipped":
        log(f"{r.experiment}/{r.run}: skipped, already finished at policy_step {r.policy_step}")
    else:
        tail = f": {r.error}" if r.error else ""
        log(f"{r.experiment}/{r.run}: {r.state} at policy_step {r.policy_step} after {r.seconds:.1f} s{tail}")
    return r


def _finish(proc: subprocess.Popen, result: RunResult, seconds: float) -> RunResult:
    """Decide the run's state from the worker's exit and status.json; record a failure there."""
    if result.error is None and proc.returncode != 0:
        log = (result.run_dir / "runner.log").read_text(errors="replace").rsplit("\n--- rlkit run, ", 1)[-1].splitlines()
        errors = [line[len(_ERROR):] for line in log if line.startswith(_ERROR)]
        result.error = errors[-1] if errors else f"worker exited with code {proc.returncode}; see runner.log"
    status = read_status(result.run_dir)
    if result.error is None and status.get("state") != "finished":
        result.error = f"notebook ended but status.json says {status.get('state')!r}"
    if result.error and result.error.startswith("RunLockedError"):  # another process trains there: its status
        status = read_status(result.run_dir)
    elif result.error:  # merge into what train wrote: keep its counters, never delete its files
        status = write_status(result.run_dir, state="failed", error=result.error)
    result.state = "failed" if result.error else "finished"
    result.seconds, result.policy_step = seconds, status.get("policy_step")
    return result


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the kernel (its own session, so its children too) and then the worker's process group."""
    kernels = []  # the worker's children, read before the worker dies and they are re-parented
    for task in Path(f"/proc/{proc.pid}/task").glob("*/children"):  # Linux only; elsewhere ipykernel's
        try:  # parent poller ends an orphaned kernel within a second
            kernels += map(int, task.read_text().split())
        except OSError:
            pass
    for pgid in [*kernels, proc.pid]:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()
    # SIGKILL is delivered when the kernel is next scheduled: on a busy machine that can be after we return.
    # Wait (at most 5 s) until no kernel runs, so that a reported kill is a finished one.
    deadline = time.monotonic() + 5.0
    while any(map(_running, kernels)) and time.monotonic() < deadline:
        time.sleep(0.01)


def _running(pid: int) -> bool:
    """Linux: the process exists and is neither a zombie nor dead (elsewhere: assume it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


# The worker: `python -c _BOOT <spec json>`. Hiding rfc3987_syntax makes jsonschema (under papermill)
# skip its IRI format checker, whose import alone takes 1.6 s of CPU per run, measured here.
_BOOT = "import sys; sys.modules['rfc3987_syntax'] = None; from rlkit.experiments.launch import _worker; _worker(sys.argv[1])"


def _worker(spec_json: str) -> None:
    """Execute one notebook; on failure print "<_ERROR><type>: <message>" and exit 1."""
    import papermill

    spec = json.loads(spec_json)
    die_with_parent(spec["parent"])
    IPCKernelManager.sockets = spec["sockets"]
    out = Path(spec["parameters"]["run_dir"]) / "train.ipynb"
    try:
        papermill.execute_notebook(
            spec["notebook"], str(out), parameters=spec["parameters"], cwd=spec["cwd"],
            kernel_name=spec["kernel_name"], kernel_manager_class=IPCKernelManager, log_output=False,
            progress_bar=False, execution_timeout=spec["cell_timeout"], start_timeout=120,
            # By shutdown the notebook is over; a graceful one only adds seconds of waiting on a kernel
            # stuck in a timed-out cell. The immediate one SIGKILLs the kernel's process group.
            shutdown_kernel="immediate")
    except BaseException as e:  # PapermillExecutionError, CellTimeoutError, DeadKernelError, anything
        ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
        message = (str(evalue).strip().splitlines() or [""])[0][:300]
        print(f"{_ERROR}{ename}: {message}", flush=True)
        sys.exit(1)


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the thread that launched it dies (a lost Dask worker, a killed batch,
    a killed benchmark script, whose pool workers would otherwise train on, orphaned). A papermill worker's
    kernel, in a session of its own, then sees its parent gone and exits within a second (ipykernel's parent
    poller). Elsewhere a no-op.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
