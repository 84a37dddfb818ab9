"""Batch runs: one papermill execution of notebooks/train.ipynb per params file x seed.

    results = run_batch(["params/cartpole.yaml"], parse_seeds("0-4"), jobs=2)
    results = run_batch(["params/cartpole.yaml"], parse_seeds("0-4"), scheduler="tcp://head:8786")
    sys.exit(batch_exit_code(results))

Process model: `run_one` runs one config x seed to its end and returns its summary row: it launches
a worker subprocess (in its own session) that executes the notebook, waits, enforces the time limit
and records the outcome. Locally `jobs` threads call it; on a Dask cluster each run is a task that
calls it on a worker. Not a ProcessPoolExecutor: a pool cannot cancel a running task and killing one
of its workers breaks the pool, while a hung run must be killed alone, kernel included. The worker
imports no torch; only the kernel does.

Time limit (`timeout_s`): nbclient stops a cell that runs longer than `timeout_s` (CellTimeoutError;
the partial notebook is saved). As a backstop `run_one` SIGKILLs the kernel's and the worker's
process groups `timeout_s + KILL_GRACE_S` after launch. Either way status.json says failed and
the batch goes on.

On a Dask cluster (`scheduler=`) each run is a task that calls `run_one` on a worker: rlkit/cluster.py.

Kernels talk over IPC sockets with a unique path each (DESIGN §5: TCP ports collide at 16+ parallel kernels).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import default

from rlkit.config import ConfigError, load_config
from rlkit.rundir import RunLock, read_status, write_status

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "train.ipynb"
KILL_GRACE_S = 10.0  # after timeout_s, time left for nbclient's own cell timeout before the hard kill
POLL_S = 0.1
STOP_POLL_S = 1.0  # how often a running run asks whether the batch was stopped (on Dask: a scheduler round trip)
INTERRUPTED = "Interrupted: the batch was stopped before this run ended"
_ERROR = "rlkit-run-error: "  # prefix of the line where a worker reports why its run failed


class IPCKernelManager(AsyncKernelManager):
    """Kernel sockets are files in the Jupyter runtime dir, not TCP ports that parallel kernels race for."""

    sockets: str | None = None  # path prefix of the socket files; the worker sets it so the parent can clean up

    @default("transport")
    def _default_transport(self):
        return "ipc"

    @default("ip")
    def _default_ip(self):
        # jupyter_client's default prefix, "kernel-ipc" in the cwd, is the same for every kernel started
        # from one directory: parallel kernels then pick the same socket files ("Invalid Signature").
        return self.sockets or new_socket_prefix()


def new_socket_prefix() -> str:
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    return str(runtime / f"rlkit-{uuid.uuid4().hex[:12]}-ipc")


@dataclass
class RunResult:
    experiment: str  # params file stem
    run: str  # "seed<k>"
    run_dir: Path
    state: str  # finished | failed | skipped
    error: str | None = None
    seconds: float = 0.0
    policy_step: int | None = None


def parse_seeds(text: str | int) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,5' -> [0, 2, 5]; '3' -> [3]; parts may mix: '0-2,7'."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            part_seeds = list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
        except ValueError:
            part_seeds = []
        if not part_seeds:
            raise ConfigError(f"seeds '{text}': expected e.g. 0-4 (low <= high), 0,2,5 or 3")
        seeds += part_seeds
    return list(dict.fromkeys(seeds))  # drop repeats, keep order


def with_seed(overrides: dict | list | None, seed: int) -> dict | list:
    """Overrides plus the seed, in the same form (dict or list of "k=v") they came in."""
    if isinstance(overrides, (list, tuple)):
        return [*overrides, f"seed={seed}"]
    return {**(overrides or {}), "seed": seed}


def default_kernel_name() -> str:
    """The kit's own kernelspec if registered (`make install` registers it in the venv), else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "rlkit" if "rlkit" in KernelSpecManager().find_kernel_specs() else "python3"


def run_batch(configs, seeds, *, jobs=1, results_dir="results", overrides=None, force=False,
              timeout_s=None, kernel_name=None, log=print, notebook=None, scheduler=None) -> list[RunResult]:
    """Run every config x seed through the notebook, `jobs` at a time; never raises for a failed run.

    With `scheduler` (a dask.distributed address, e.g. "tcp://head:8786") each run is a task on that
    cluster instead, and `jobs` is ignored: the cluster's threads decide how many run at once.
    Every config is validated first, so a bad one raises rlkit.ConfigError before anything runs; so
    does a scheduler that cannot be reached. A finished run is skipped unless `force`; an unfinished
    one resumes from its checkpoint.
    """
    configs = [Path(c).resolve() for c in configs]  # the kernel runs in the repo root, not our cwd
    stems = [c.stem for c in configs]
    for c in configs:
        if stems.count(c.stem) > 1:
            raise ConfigError(f"two params files are named '{c.stem}' and would share "
                                    f"{results_dir}/{c.stem}/; rename one")
        for seed in seeds:
            load_config(c, with_seed(overrides, seed))
    if timeout_s is not None and timeout_s <= 0:
        raise ConfigError(f"timeout {timeout_s} must be > 0 seconds (or None for no limit)")
    if int(jobs) < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1 (runs at once on this machine)")
    jobs = int(jobs)
    # paths are absolute: on a cluster they must mean the same files on every worker
    common = {"notebook": str(Path(notebook or NOTEBOOK).resolve()), "cwd": str(REPO_ROOT),
              "kernel_name": kernel_name or (None if scheduler else default_kernel_name()),
              "cell_timeout": timeout_s}
    if scheduler:
        from rlkit import cluster  # dask.distributed is imported only when a cluster is asked for
    client = cluster.connect(scheduler, log) if scheduler else None  # before anything is written

    try:
        results, todo = [], []
        for c in configs:
            for seed in seeds:
                run_dir = Path(results_dir).resolve() / c.stem / f"seed{seed}"
                status = read_status(run_dir)
                if status.get("state") == "finished" and not force:
                    results.append(_report(log, RunResult(c.stem, run_dir.name, run_dir, "skipped",
                                                          policy_step=status.get("policy_step"))))
                    continue
                params = {"config": str(c), "seed": seed, "overrides": overrides or {}, "run_dir": str(run_dir),
                          "resume": True, "force": force, "live_plot": False, "progress": False}
                results.append(RunResult(c.stem, run_dir.name, run_dir, "failed"))
                todo.append((len(results) - 1, {**common, "parameters": params}))
        if client is None:
            _execute(results, todo, jobs, timeout_s, log)  # fills in the RunResults as runs end
        else:
            cluster.execute(client, results, todo, timeout_s, log)
    finally:
        if client is not None:
            client.close()
    log(format_table(results))
    return results


def run_one(result: RunResult, spec: dict, timeout_s, env: dict, stop=None) -> RunResult:
    """Run one config x seed to its end in a worker subprocess and return its summary row.

    The local pool calls this in a thread per run, a Dask worker as the run's task. Enforces the time
    limit, kills the run when `stop` (anything with is_set()) is set, and records a failure of any
    kind in status.json; a run that ends without error must have written state finished.
    """
    if stop is not None and stop.is_set():  # stopped before it started: leave its directory alone
        result.error = INTERRUPTED
        return result
    result.run_dir.mkdir(parents=True, exist_ok=True)
    holder = RunLock.holder(result.run_dir)  # before runner.log and train.ipynb are rewritten (train locks itself)
    if holder is not None:
        result.error = f"RunLockedError: {result.run_dir} is in use by another training process (pid {holder}); left alone"
        return result
    spec = {**spec, "sockets": new_socket_prefix(), "parent": os.getpid()}
    t0 = next_stop_check = time.monotonic()
    with open(result.run_dir / "runner.log", "w") as out:  # the worker's output, for post-mortems
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
                    result.error = INTERRUPTED
    except BaseException:  # this thread is being torn down: never leave the run behind, nor unrecorded
        _kill(proc)
        result.error = result.error or INTERRUPTED
        write_status(result.run_dir, state="failed", error=result.error)
        raise
    finally:
        for leftover in Path(spec["sockets"]).parent.glob(Path(spec["sockets"]).name + "-*"):  # a killed kernel's
            leftover.unlink(missing_ok=True)
    return _finish(proc, result, time.monotonic() - t0)


def _run_env(jobs: int) -> dict:
    """The worker's environment: this machine's cores shared among `jobs` concurrent runs, rlkit importable.

    Cores = those this process may run on (a Slurm job's allocation, a container's cpuset), not the node's.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // jobs)),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env["MKL_NUM_THREADS"] = env["OMP_NUM_THREADS"]
    return env


def _execute(results, todo, jobs, timeout_s, log) -> None:
    """The local pool: `jobs` threads, each running one run_one at a time; a line as each run ends."""
    env, stop = _run_env(jobs), threading.Event()
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="rlkit-run")
    futures = {pool.submit(run_one, results[i], spec, timeout_s, env, stop): i for i, spec in todo}
    try:
        for future in as_completed(futures):
            _report(log, future.result())
    finally:  # Ctrl-C or a bug here: runs not started never start, running ones are killed and recorded
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _finish(proc: subprocess.Popen, result: RunResult, seconds: float) -> RunResult:
    """Decide the run's state from the worker's exit and status.json; record a failure there."""
    if result.error is None and proc.returncode != 0:
        log = (result.run_dir / "runner.log").read_text(errors="replace").splitlines()
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


def _report(log, r: RunResult) -> RunResult:
    """One progress line as a run ends (or is skipped)."""
    if r.state == "skipped":
        log(f"{r.experiment}/{r.run}: skipped, already finished at policy_step {r.policy_step}")
    else:
        tail = f": {r.error}" if r.error else ""
        log(f"{r.experiment}/{r.run}: {r.state} at policy_step {r.policy_step} after {r.seconds:.1f} s{tail}")
    return r


def format_table(results: list[RunResult]) -> str:
    """Summary table, one row per run."""
    rows = [("experiment", "run", "state", "policy_step", "seconds", "error")]
    rows += [(r.experiment, r.run, r.state, str(r.policy_step), f"{r.seconds:.1f}", (r.error or "")[:60])
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths + [0])).rstrip() for row in rows)


def batch_exit_code(results: list[RunResult]) -> int:
    """1 if any run failed, else 0 (skipped runs are fine)."""
    return int(any(r.state == "failed" for r in results))


# The worker: `python -c _BOOT <spec json>`. Hiding rfc3987_syntax makes jsonschema (under papermill)
# skip its IRI format checker, whose import alone takes 1.6 s of CPU per run, measured here.
_BOOT = "import sys; sys.modules['rfc3987_syntax'] = None; from rlkit.runner import _worker; _worker(sys.argv[1])"


def _worker(spec_json: str) -> None:
    """Execute one notebook; on failure print "<_ERROR><type>: <message>" and exit 1."""
    import papermill

    spec = json.loads(spec_json)
    _die_with_parent(spec["parent"])
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


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this worker when the thread that launched it dies (a lost Dask worker, a killed batch).

    Its kernel, in a session of its own, then sees its parent gone and exits within a second (ipykernel's
    parent poller). Elsewhere a no-op.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)
