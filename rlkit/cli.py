"""Command line: `rlkit train`, `rlkit run`, `rlkit report`.

Bad input ends with one line on stderr naming the key and the fix, and exit code 2 — no traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from rlkit.config import ConfigError
from rlkit.rundir import RunExistsError, RunLockedError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlkit", description="Notebook-first RL experiments.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run in this process (several: torchrun --nproc-per-node W -m rlkit train)")
    t.add_argument("config", nargs="?", help="params/*.yaml (optional with --resume: the run's config.yaml)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set algo.batch_size=512 (repeatable)")
    t.add_argument("--out", help="run directory (default results/<config stem>/seed<seed>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    t.add_argument("--force", action="store_true", help="overwrite a finished or unfinished run directory")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("run", help="execute notebooks/train.ipynb with papermill for every config x seed")
    r.add_argument("configs", nargs="+", help="params/*.yaml files")
    r.add_argument("--seeds", default="0", help="e.g. 0-4, 0,2,5 or 3 (default 0)")
    r.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process")
    r.add_argument("--results", default="results", help="results directory")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--force", action="store_true", help="re-run finished runs")
    r.add_argument("--timeout", type=float, default=None, help="wall-clock limit per run in seconds")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run each config x seed as a task on this dask.distributed cluster (default: this machine, "
                        "--jobs at a time); the results directory must be shared by every worker")

    p = sub.add_parser("report", help="execute notebooks/report.ipynb over a results directory")
    p.add_argument("results", nargs="?", default="results")
    p.add_argument("--metric", default="eval/return")
    p.add_argument("--x", default="policy_step", choices=["policy_step", "env_step", "gradient_step", "wall_time"])
    p.add_argument("--aggregate", default="iqm", choices=["iqm", "mean"])
    return parser


def _train(args) -> int:
    from pathlib import Path

    from rlkit.trainer import train

    if args.resume and args.force:
        raise ConfigError("--resume continues a run and --force starts it over: pass one of them (to train a "
                          "finished run further: --resume RUN_DIR --set total_steps=N)")
    if args.resume:
        run_dir = Path(args.resume)
        config = args.config or run_dir / "config.yaml"
        if not Path(config).exists():
            raise ConfigError(f"--resume {run_dir}: no run there (no config.yaml); check the path, or pass the CONFIG too")
        path = train(config, run_dir, overrides=args.overrides, resume=True, progress=not args.no_progress)
    else:
        if not args.config:
            raise ConfigError("rlkit train needs a CONFIG file (e.g. params/cartpole.yaml) or --resume RUN_DIR")
        path = train(args.config, args.out, overrides=args.overrides, force=args.force,
                     progress=not args.no_progress)
    if _rank() == 0:
        print(f"run finished: {path}")
    return 0


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 prints, so W ranks do not say it W times."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def _run(args) -> int:
    from rlkit.runner import batch_exit_code, parse_seeds, run_batch

    results = run_batch(args.configs, parse_seeds(args.seeds), jobs=args.jobs, results_dir=args.results,
                        overrides=args.overrides, force=args.force, timeout_s=args.timeout,
                        scheduler=args.scheduler)
    return batch_exit_code(results)


def _report(args) -> int:
    from rlkit.report import run_report

    try:
        index = run_report(args.results, metric=args.metric, x=args.x, aggregate=args.aggregate)
    except ValueError as e:  # no runs under the results directory
        raise FileNotFoundError(str(e)) from None
    print(f"report written: {index}")
    return 0


def _failed_run_errors() -> tuple:
    """Errors that end a run that started, each described in its message (status.json says the same)."""
    if "rlkit.trainer" not in sys.modules:  # rlkit run / report never import torch
        return ()
    from rlkit.checkpoint import CheckpointError
    from rlkit.guards import NonFiniteError
    from rlkit.vector import EnvStepTimeout
    return CheckpointError, NonFiniteError, EnvStepTimeout, OSError


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "run": _run, "report": _report}[args.command](args)
    except (ConfigError, RunExistsError, RunLockedError, FileNotFoundError) as e:
        if _rank() == 0:
            print(f"rlkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if _rank() == 0:
            how = "terminated (SIGTERM)" if type(e).__name__ == "Terminated" else "interrupted"
            again = ("re-run the same command to resume its unfinished runs" if args.command == "run" else
                     "resume with --resume RUN_DIR" if args.command == "train" else "run it again")
            print(f"rlkit {args.command}: {how}; {again}", file=sys.stderr)
        return 143 if type(e).__name__ == "Terminated" else 130
    except Exception as e:
        if not isinstance(e, _failed_run_errors()):
            raise
        if _rank() == 0:
            print(f"rlkit {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
