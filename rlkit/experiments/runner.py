"""Batch runs: one papermill execution of notebooks/train.ipynb per experiment x seed.

    results = run_batch(["params/cartpole.yaml"], parse_seeds("0-4"), jobs=2)
    results = run_batch(["params/sweep.yaml"], [0, 1, 2], grid={"algo.actor_lr": [3e-4, 1e-3]})
    results = run_batch(["params/cartpole.yaml"], parse_seeds("0-4"), scheduler="tcp://head:8786")
    sys.exit(batch_exit_code(results))

An experiment is a params file, or one variant of its sweep (rlkit/experiments/sweep.py); each runs once per seed
in results/<experiment>/seed<k>/. Every run goes through `launch.run_one` (a worker subprocess that
executes the notebook): locally `jobs` threads call it, on a Dask cluster each run is a task that calls
it on a worker (rlkit/experiments/cluster.py). Every experiment x seed is validated before anything starts; a
finished run is skipped unless `force`; an unfinished one resumes from its checkpoint; a failed run
never stops the others.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from rlkit.config import ConfigError
from rlkit.runs.kernels import default_kernel_name
from rlkit.experiments.launch import REPO_ROOT, RunResult, report_line, run_env, run_one
from rlkit.runs.rundir import read_status
from rlkit.experiments.sweep import Experiment, expand, load_variant, overrides_dict

NOTEBOOK = REPO_ROOT / "notebooks" / "train.ipynb"
MAX_SEEDS = 10_000  # seeds in one batch: a typo such as 0-1000000000 must not list a billion runs

__all__ = ["Experiment", "RunResult", "NOTEBOOK", "parse_seeds", "with_seed", "experiments_of", "run_batch",
           "run_experiments", "format_table", "batch_exit_code"]


def parse_seeds(text: str | int) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,5' -> [0, 2, 5]; '3' -> [3]; parts may mix: '0-2,7'."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            low, high = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            low, high = 0, -1
        if high - low >= MAX_SEEDS:
            raise ConfigError(f"seeds '{text}': {high - low + 1:,} seeds, more than the {MAX_SEEDS:,} one batch runs "
                              "(rlkit.experiments.runner.MAX_SEEDS); give fewer")
        part_seeds = list(range(low, high + 1))
        if not part_seeds:
            raise ConfigError(f"seeds '{text}': expected e.g. 0-4 (low <= high), 0,2,5 or 3")
        seeds += part_seeds
    return list(dict.fromkeys(seeds))  # drop repeats, keep order


def with_seed(overrides: dict | list | None, seed: int) -> dict | list:
    """Overrides plus the seed, in the same form (dict or list of "k=v") they came in."""
    if isinstance(overrides, (list, tuple)):
        return [*overrides, f"seed={seed}"]
    return {**(overrides or {}), "seed": seed}


def experiments_of(configs, overrides=None, grid=None) -> list[Experiment]:
    """The experiments of params files: one per file, or one per variant of its sweep (`grid` merged in)."""
    overrides = overrides_dict(overrides)
    return [e for c in configs for e in expand(c, overrides, grid)]


def run_batch(configs, seeds, *, overrides=None, grid=None, **kwargs) -> list[RunResult]:
    """Run every params file (every variant of its sweep, with `grid` added) x seed; see run_experiments."""
    return run_experiments(experiments_of(configs, overrides, grid), seeds, **kwargs)


def run_experiments(experiments: list[Experiment], seeds, *, jobs=1, results_dir="results", force=False,
                    timeout_s=None, kernel_name=None, log=print, notebook=None, scheduler=None,
                    stop=None, table=True) -> list[RunResult]:
    """Run every experiment x seed through the notebook, `jobs` at a time; never raises for a failed run.

    With `scheduler` (a dask.distributed address, e.g. "tcp://head:8786") each run is a task on that
    cluster instead, and `jobs` is ignored: the cluster's threads decide how many run at once.
    Every experiment x seed is validated first, so a bad one raises rlkit.ConfigError (naming the
    experiment and the key) before anything runs; so does a scheduler that cannot be reached.
    `stop` (a threading.Event, optionally with a `reason`): setting it kills the runs still going.
    `table`: end with a summary table, one row per run.
    """
    configs = validate(experiments, seeds)
    check_finished(experiments, seeds, configs, results_dir, force)
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
        from rlkit.experiments import cluster  # dask.distributed is imported only when a cluster is asked for
    client = cluster.connect(scheduler, log) if scheduler else None  # before anything is written

    try:
        results, todo = [], []
        for exp in experiments:
            for seed in seeds:
                run_dir = Path(results_dir).resolve() / exp.name / f"seed{seed}"
                status = read_status(run_dir)
                if status.get("state") == "finished" and not force:
                    results.append(report_line(log, RunResult(exp.name, run_dir.name, run_dir, "skipped",
                                                              policy_step=status.get("policy_step"))))
                    continue
                params = {"config": str(exp.config), "seed": seed, "overrides": exp.overrides,
                          "run_dir": str(run_dir), "resume": True, "force": force, "live_plot": False,
                          "progress": False}
                results.append(RunResult(exp.name, run_dir.name, run_dir, "failed"))
                todo.append((len(results) - 1, {**common, "parameters": params}))
        if client is None:
            _execute(results, todo, jobs, timeout_s, log, stop)  # fills in the RunResults as runs end
        else:
            cluster.execute(client, results, todo, timeout_s, log, stop)
    finally:
        if client is not None:
            client.close()
    if table:
        log(format_table(results))
    return results


def validate(experiments: list[Experiment], seeds) -> dict:
    """Every experiment x seed resolves to a valid Config, has a directory of its own, and its env builds
    and steps (rlkit.loop.guards.preflight, as `rlkit train` checks it), or ConfigError; nothing is written.

    Returns (experiment name, seed) -> the resolved Config (inferred fields filled in)."""
    from rlkit.loop.guards import preflight  # imports torch: only a batch that will train pays for it

    names = [e.name for e in experiments]
    configs, probed = {}, {}
    for exp in experiments:
        if names.count(exp.name) > 1:
            raise ConfigError(f"two experiments are named '{exp.name}' and would share results/{exp.name}/; "
                              "rename one of the params files")
        for seed in seeds:
            try:
                cfg = load_variant(exp.config, with_seed(exp.overrides, seed))
                # one probe per distinct config (the seed aside): a sweep over algo keys builds its env once per variant
                key = repr({**cfg.to_dict(), "seed": None})
                if key not in probed:
                    probed[key] = preflight(cfg)
                else:
                    preflight_again(cfg, probed[key])
            except ConfigError as e:
                if not exp.swept:
                    raise ConfigError(str(e) if str(e).startswith(f"{exp.config}") else f"{exp.config}: {e}") from None
                message = str(e).removeprefix(f"{exp.config}: ")  # the variant's name says which file
                raise ConfigError(f"sweep variant {exp.name}: {message}") from None
            configs[exp.name, seed] = cfg
    return configs


def preflight_again(cfg, info) -> None:
    """The env fields preflight inferred for a config that differs only in its seed."""
    from rlkit.envs.make import resolve_env_fields

    resolve_env_fields(cfg, info)


def check_finished(experiments, seeds, configs: dict, results_dir, force: bool) -> None:
    """A finished run is skipped only when it trained this very config: one whose saved config.yaml differs
    (another --set, an edited params file) is refused before anything runs, naming what differs."""
    from rlkit.analysis.runcheck import differences, read_config

    if force:
        return
    for exp in experiments:
        for seed in seeds:
            run_dir = Path(results_dir) / exp.name / f"seed{seed}"
            if read_status(run_dir).get("state") != "finished":
                continue
            saved, problem = read_config(run_dir)
            diffs = differences(saved, configs[exp.name, seed].to_dict(), ignore=()) if not problem else [problem]
            if diffs:
                more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
                raise ConfigError(
                    f"{run_dir} finished with another config ({'; '.join(diffs[:3])}{more}); it is left as it is: "
                    "give the new config its own experiment (another --results or params file name), pass --force "
                    f"to re-run it, or to train it further: rlkit train --resume {run_dir} --set total_steps=N")


def _execute(results, todo, jobs, timeout_s, log, stop=None) -> None:
    """The local pool: `jobs` threads, each running one run_one at a time; a line as each run ends."""
    env, stop = run_env(jobs), stop or threading.Event()
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="rlkit-run")
    futures = {pool.submit(run_one, results[i], spec, timeout_s, env, stop): i for i, spec in todo}
    try:
        for future in as_completed(futures):
            report_line(log, future.result())
    finally:  # Ctrl-C or a bug here: runs not started never start, running ones are killed and recorded
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


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
