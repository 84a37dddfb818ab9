"""Command line: `rlkit train`, `rlkit run`, `rlkit report`, `rlkit tune`, `rlkit tensorboard`, and for a trained
run `rlkit eval`, `rlkit video`, `rlkit export`.

Bad input ends with one line on stderr naming the key and the fix, and exit code 2 — no traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from rlkit.config import ConfigError
from rlkit.runs.rundir import RunExistsError, RunLockedError
from rlkit.runs.signals import stop_on_sigterm


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
    r.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="sweep KEY over these values (repeatable: the Cartesian product), added to the params "
                        "file's sweep: section; each variant is its own experiment in RESULTS/<stem>__<key>=<value>")
    r.add_argument("--force", action="store_true", help="re-run finished runs")
    r.add_argument("--report", action="store_true", help="then write the report over RESULTS (as rlkit report does)")
    r.add_argument("--timeout", type=float, default=None, help="wall-clock limit per run in seconds")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run each config x seed as a task on this dask.distributed cluster (default: this machine, "
                        "--jobs at a time); the results directory must be shared by every worker")

    p = sub.add_parser("report", help="execute notebooks/report.ipynb over a results directory")
    p.add_argument("results", nargs="?", default="results")
    p.add_argument("--metric", default="eval/return")
    p.add_argument("--x", default="policy_step", choices=["policy_step", "env_step", "gradient_step", "wall_time"],
                   help="x axis of the per-seed figure and the comparison's left panel (the right one is always the "
                        "training loop's wall time; --x wall_time puts policy steps on the left)")
    p.add_argument("--baseline", metavar="EXPERIMENT",
                   help="compare every experiment with this one (probability of improvement); default: the first")
    p.add_argument("--window", type=float, default=None,
                   help="a run's final score: mean of --metric over this last fraction of its policy steps (default 0.1)")

    u = sub.add_parser("tune", help="tune hyper-parameters with Optuna; every trial runs on every seed")
    u.add_argument("config", help="params/*.yaml: the values not tuned")
    u.add_argument("--space", action="append", default=[], metavar="KEY=KIND:...",
                   help="a dimension to tune (repeatable): KEY=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH, "
                        "intlog:LOW:HIGH or choice:A,B,C, e.g. 'algo.actor_lr=log:1e-4:3e-3'")
    u.add_argument("--trials", type=int, default=20, help="trials in the study (a resumed study runs the rest)")
    u.add_argument("--seeds", default="0-2", help="every trial runs on each of these seeds (default 0-2)")
    u.add_argument("--jobs", type=int, default=1, help="trials at once; each runs its seeds at once")
    u.add_argument("--results", default="results", help="results directory; the study goes to RESULTS/NAME")
    u.add_argument("--name", help="study and directory name (default <config stem>_tune)")
    u.add_argument("--storage", help="SQLAlchemy URL of the study (default sqlite:///RESULTS/NAME/study.db)")
    u.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    u.add_argument("--pruner", default="median", choices=["median", "none"])
    u.add_argument("--timeout", type=float, default=None, help="wall-clock limit per run in seconds")
    u.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run every trial's runs on this Dask cluster")

    _trained_parsers(sub)

    b = sub.add_parser("tensorboard", help="write every run's metrics.csv as TensorBoard event files (step = policy_step)")
    b.add_argument("results", nargs="?", default="results", help="results directory (default results)")
    b.add_argument("--logdir", help="where the event files go (default RESULTS/tensorboard)")
    return parser


def _trained_parsers(sub) -> None:
    """rlkit eval / video / export: using a run's trained policy (rlkit/trained/)."""
    e = sub.add_parser("eval", help="evaluate a run's policy anew into RUN/evals/<name>.csv (metrics.csv untouched)")
    e.add_argument("run", help="run directory, e.g. results/hopper/seed0")
    e.add_argument("--episodes", type=int, help="episodes (default: the run's eval.episodes; ignored with --seeds)")
    e.add_argument("--seeds", help="reset seeds, one episode each: e.g. 0-99 (default: the run's evaluation seeds)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change the env, e.g. --set env.kwargs.gravity=-5 (repeatable)")
    e.add_argument("--sample", action="store_true", help="sample actions instead of the greedy action")
    e.add_argument("--checkpoint", metavar="POLICY_FILE", help="another policy file than RUN/policy.pt")
    e.add_argument("--name", help="RUN/evals/NAME.csv (default: final, or what --set and --sample changed)")

    v = sub.add_parser("video", help="record the run's policy playing one episode: RUN/videos/<policy_step>.mp4")
    v.add_argument("run", help="run directory")
    v.add_argument("--out", help="the .mp4 to write (default RUN/videos/<policy_step>.mp4; never overwritten)")
    v.add_argument("--steps", type=int, help="this many policy steps, game after game (default: one game)")
    v.add_argument("--seed", type=int, help="reset seed (default: the run's first evaluation seed)")
    v.add_argument("--sample", action="store_true", help="sample actions instead of the greedy action")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    x = sub.add_parser("export", help="write the policy as one file that runs without rlkit: observation -> action")
    x.add_argument("run", help="run directory")
    x.add_argument("--format", default="torchscript", choices=["torchscript", "onnx"])
    x.add_argument("--out", help="the file to write (default RUN/exported/policy_<policy_step>.ts or .onnx)")


def _load_policy(args):
    from rlkit.trained.policy import load
    from rlkit.runs.policy_file import PolicyFileError

    try:
        return load(args.run, getattr(args, "overrides", None), getattr(args, "checkpoint", None))
    except PolicyFileError as e:
        raise ConfigError(str(e)) from None


def _eval(args) -> int:
    from rlkit.analysis.scores import iqm, mean, stratified_bootstrap_ci
    from rlkit.experiments.runner import parse_seeds
    from rlkit.runs.metrics import read_metrics
    from rlkit.trained.evaluate import evaluate, evaluation_name, write_evaluation

    policy = _load_policy(args)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    episodes = policy.cfg.eval.episodes if args.episodes is None else args.episodes
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    table = evaluate(policy, episodes, seeds, deterministic=not args.sample)
    path = write_evaluation(args.run, args.name or evaluation_name(args.overrides, not args.sample), table)
    returns = table["return"].to_numpy(float)
    parts = [f"{name} {stat(returns):,.1f} [95% CI {', '.join(f'{v:,.1f}' for v in stratified_bootstrap_ci([returns], stat))}]"
             for name, stat in (("mean", mean), ("IQM", iqm))]
    print(f"policy step {policy.policy_step:,}, {len(returns)} episodes: {'; '.join(parts)}; written to {path}")
    metrics = read_metrics(os.path.join(args.run, "metrics.csv"))
    last = metrics[metrics.metric == "eval/return"].tail(1)
    if len(last):
        print(f"the run's last evaluation: {last.value.iloc[0]:,.1f} at policy step {int(last.policy_step.iloc[0]):,} "
              f"({policy.cfg.eval.episodes} episodes)")
    return 0


def _video(args) -> int:
    from pathlib import Path

    from rlkit.trained.video import VideoError, record_video

    policy = _load_policy(args)
    out = Path(args.out) if args.out else Path(args.run) / "videos" / f"{policy.policy_step}.mp4"
    out = _free_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        record_video(policy, out, args.steps, args.seed, deterministic=not args.sample)
    except VideoError as e:
        raise ConfigError(str(e)) from None
    print(f"video written: {out}")
    return 0


def _export(args) -> int:
    from pathlib import Path

    from rlkit.trained.export import FORMATS, ExportError, export

    policy = _load_policy(args)
    default = Path(args.run) / "exported" / f"policy_{policy.policy_step}{FORMATS[args.format]}"
    out = _free_path(Path(args.out) if args.out else default)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export(policy, out, args.format)
    except ExportError as e:
        raise ConfigError(str(e)) from None
    print(f"{args.format} policy written: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def _free_path(path):
    """path, or path_2, path_3, ... where it exists: nothing is overwritten."""
    n, free = 2, path
    while free.exists():
        free, n = path.with_name(f"{path.stem}_{n}{path.suffix}"), n + 1
    return free


def _train(args) -> int:
    from pathlib import Path

    from rlkit.trained.callbacks import train

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
    from rlkit.experiments.runner import batch_exit_code, parse_seeds, run_batch
    from rlkit.experiments.sweep import parse_grid

    results = run_batch(args.configs, parse_seeds(args.seeds), jobs=args.jobs, results_dir=args.results,
                        overrides=args.overrides, grid=parse_grid(args.grid), force=args.force,
                        timeout_s=args.timeout, scheduler=args.scheduler)
    if args.report:
        from rlkit.analysis.report import run_report

        print(f"report written: {run_report(args.results)}")
    return batch_exit_code(results)


def _report(args) -> int:
    from rlkit.analysis.report import run_report
    from rlkit.analysis.scores import FINAL_WINDOW

    try:
        index = run_report(args.results, metric=args.metric, x=args.x, baseline=args.baseline,
                           window=FINAL_WINDOW if args.window is None else args.window)
    except ValueError as e:  # no runs under the results directory, an unknown baseline, a bad window
        raise FileNotFoundError(str(e)) from None
    print(f"report written: {index}")
    return 0


def _failed_run_errors() -> tuple:
    """Errors that end a run that started, each described in its message (status.json says the same)."""
    if "rlkit.loop.trainer" not in sys.modules:  # rlkit report never trains
        return ()
    from rlkit.runs.checkpoint import CheckpointError
    from rlkit.loop.guards import NonFiniteError
    from rlkit.envs.vector import EnvStepError, EnvStepTimeout
    return CheckpointError, NonFiniteError, EnvStepTimeout, EnvStepError, OSError


def _one_line(e: BaseException) -> str:
    """An error's message as one line: an env's error carries its traceback after the first line (status.json
    keeps it whole), so only that first line is shown."""
    text = str(e).split("\noriginal traceback:", 1)[0]
    line = " ".join(text.split())
    if type(e).__name__ == "EnvStepError":
        line += " (the env or a wrapper failed after the run started; fix it, the traceback is in the run's status.json)"
    return line


def _tune(args) -> int:
    from rlkit.experiments.tune import main as tune_main

    return tune_main(args)


def _tensorboard(args) -> int:
    from rlkit.analysis.tensorboard import export

    logdir, written = export(args.results, args.logdir)
    print(f"{written} runs written as TensorBoard event files: tensorboard --logdir {logdir}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"train": _train, "run": _run, "report": _report, "tune": _tune, "tensorboard": _tensorboard,
                    "eval": _eval, "video": _video, "export": _export}
        with stop_on_sigterm():  # every command stops on SIGTERM (timeout, Slurm, Kubernetes) as on Ctrl-C
            return commands[args.command](args)
    except (ConfigError, RunExistsError, RunLockedError, FileNotFoundError) as e:
        if _rank() == 0:
            print(f"rlkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if _rank() == 0:
            how = "terminated (SIGTERM)" if type(e).__name__ == "Terminated" else "interrupted"
            again = ("re-run the same command to resume its unfinished runs" if args.command == "run" else
                     "resume with --resume RUN_DIR" if args.command == "train" else
                     "run the same command again to resume the study" if args.command == "tune" else "run it again")
            print(f"rlkit {args.command}: {how}; {again}", file=sys.stderr)
        return 143 if type(e).__name__ == "Terminated" else 130
    except Exception as e:
        if not isinstance(e, _failed_run_errors()):
            raise
        if _rank() == 0:
            print(f"rlkit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
