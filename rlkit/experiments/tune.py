"""Hyper-parameter tuning with Optuna: every trial is one config run on every seed, through the runner.

    rlkit tune params/cartpole.yaml --space 'algo.actor_lr=log:1e-4:3e-3' --space 'algo.k_epochs=int:3:20' \\
        --trials 12 --seeds 0-1 --jobs 2

- Objective: the IQM over seeds of each run's final score (rlkit/analysis/scores.py), so no value is chosen on
  one lucky seed. Maximised.
- Pruning: while a trial's runs train, their metrics.csv are read every few seconds; at each evaluation
  the IQM over seeds of eval/return is reported to Optuna at that policy step (rounded down to the
  eval schedule, so trials with other batch sizes still compare), and a trial the pruner stops has its
  runs killed and recorded as pruned.
- Storage: Optuna's RDB storage, by default SQLite in the tuning directory (RESULTS/<stem>_tune/study.db;
  any SQLAlchemy URL with --storage). Several `rlkit tune` processes with the same storage and name share
  the study. A tune that was killed resumes: a trial whose process died is run again with the same
  values, in the same directory, so its runs resume from their checkpoints.
- Output: RESULTS/<stem>_tune/trial<k>/seed<s>/ per run, best.yaml (the params file with the best values),
  tuning/index.html (optimisation history, parameter importances, the best trials' curves).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlkit.config import ConfigError, parse_yaml
from rlkit.runs.metrics import read_metrics
from rlkit.experiments.runner import Experiment, parse_seeds, run_experiments, with_seed
from rlkit.analysis.scores import FINAL_METRIC, FINAL_WINDOW, final_score, iqm
from rlkit.experiments.sweep import load_variant, overrides_dict, read_params

MONITOR_S = 2.0  # how often a trial's metrics.csv files are read for intermediate values
HEARTBEAT_S = 30  # Optuna heartbeat: a trial silent for GRACE_S is stale (its process died) and is retried
GRACE_S = 120
KINDS = ("log", "float", "int", "intlog", "choice")


@dataclass
class Dimension:
    """One --space entry: a config key and the distribution Optuna samples it from."""

    key: str
    kind: str  # log | float | int | intlog | choice
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    entry: str = ""

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind in ("int", "intlog"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.kind == "intlog")
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")

    def corners(self) -> list:
        return list(self.choices) if self.kind == "choice" else [
            int(v) if self.kind in ("int", "intlog") else v for v in (self.low, self.high)]


def parse_space(entry: str) -> Dimension:
    """'algo.actor_lr=log:1e-4:3e-3' -> Dimension; kinds: log, float, int, intlog (low:high), choice:a,b,c."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"--space '{entry}': {why}; expected KEY=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH, "
                           "intlog:LOW:HIGH or choice:A,B,C (e.g. algo.actor_lr=log:1e-4:3e-3)")

    key, eq, spec = entry.partition("=")
    kind, _, rest = spec.partition(":")
    key, kind = key.strip(), kind.strip()
    if not eq or not key or not rest:
        raise bad("not KEY=KIND:...")
    if kind not in KINDS:
        raise bad(f"unknown kind '{kind}'")
    if kind == "choice":
        choices = tuple(parse_yaml(v) for v in rest.split(",") if v.strip())
        if len(choices) < 2:
            raise bad("a choice needs at least two values")
        return Dimension(key, kind, choices=choices, entry=entry)
    parts = rest.split(":")
    try:
        low, high = (float(v) for v in parts)
    except ValueError:
        raise bad("LOW and HIGH must be two numbers") from None
    if not low < high:
        raise bad(f"LOW ({low:g}) must be below HIGH ({high:g})")
    if kind in ("log", "intlog") and low <= 0:
        raise bad(f"a log range needs LOW > 0, got {low:g}")
    if kind in ("int", "intlog") and not (low.is_integer() and high.is_integer()):
        raise bad("an int range needs whole numbers")
    return Dimension(key, kind, low, high, entry=entry)


def check_space(config: Path, space: list[Dimension], overrides: dict, seeds) -> None:
    """Every dimension's key exists and its extreme values give a valid config (one line naming the entry)."""
    if not space:
        raise ConfigError("rlkit tune needs at least one --space KEY=KIND:..., e.g. --space 'algo.actor_lr=log:1e-4:3e-3'")
    keys = [d.key for d in space]
    for d in space:
        if keys.count(d.key) > 1:
            raise ConfigError(f"--space '{d.entry}': {d.key} is given twice; keep one")
        for value in d.corners():
            try:
                load_variant(config, with_seed({**overrides, d.key: value}, seeds[0]))
            except ConfigError as e:
                raise ConfigError(f"--space '{d.entry}': {e}") from None


# ---------------------------------------------------------------- the study
def check_name(name: str) -> str:
    """The study's name is one directory under --results: no path, nothing that climbs out of it."""
    from rlkit.experiments.sweep import RESERVED

    if name in RESERVED:
        raise ConfigError(f"--name {name}: RESULTS/{name}/ is where rlkit {name} writes; choose another name")
    if not name or name in (".", "..") or Path(name).name != name or len(name.encode()) > 255:
        raise ConfigError(f"--name {name!r}: the study's directory under --results; give a plain name "
                          "(letters, digits, _ or -; no '/' and no '..')")
    return name


def settings(config: Path, space: list[Dimension], overrides: dict, base) -> dict:
    """What a study's trials depend on besides their sampled values; a resumed study must keep all of them."""
    entries = {d.key: [d.kind, d.low, d.high, list(d.choices)] for d in space}
    resolved = {**base.to_dict(), "seed": None}
    return {"config": str(config), "space": json.dumps(entries, sort_keys=True, default=str),
            "overrides": json.dumps(overrides, sort_keys=True, default=str),
            "base": json.dumps(resolved, sort_keys=True, default=str)}


def check_same_study(study, mine: dict) -> None:
    """A study resumed with another --space, other --set overrides or an edited params file would mix trials
    of different searches under one best value: refused, naming what changed. A new study records its settings."""
    # the params file's path is recorded but not compared: the same file in another checkout is the same search
    what = {"space": "--space", "overrides": "--set overrides", "base": "base config (the params file's values)"}
    saved = study.user_attrs
    if study.get_trials(deepcopy=False) and "space" in saved:
        changed = [what[k] for k in what if saved.get(k) != mine[k]]
        if changed:
            raise ConfigError(f"study '{study.study_name}' was made with another {' and '.join(changed)}; give the "
                              "same ones to resume it, or start a new study with --name (or another --results)")
    for key, value in mine.items():
        if saved.get(key) != value:
            study.set_user_attr(key, value)


def _quiet_optuna():
    """Optuna marks heartbeats and the retry callback experimental; the warning says nothing a user can act on."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna logs each failed trial with its traceback; the tune says why a trial failed in one line instead
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def _storage(url: str):
    optuna = _quiet_optuna()

    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                          heartbeat_stale_trial_callback=callback)
    except Exception as e:  # noqa: BLE001 -- SQLAlchemy's many errors: a bad URL, a missing driver or folder
        reason = " ".join(str(e).split())[:200]
        raise ConfigError(f"--storage {url}: cannot open the study's database ({reason}); give a SQLAlchemy URL "
                          "such as sqlite:///RESULTS/study.db whose folder exists, or leave --storage out") from None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_locally(owner: str | None) -> bool:
    """The trial's process ran on this machine and is gone (killed, crashed, Ctrl-C'd)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, someone else's
        return False
    return False


def recover(study, storage, log=print) -> None:
    """Queue again the trials an earlier tune left unfinished: RUNNING ones whose process on this machine is
    gone (other machines' are caught by Optuna's heartbeat) and interrupted ones. The retry keeps the values
    and the experiment directory, so its runs resume from their checkpoints."""
    import optuna
    from optuna.trial import TrialState

    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
    study_id = storage.get_study_id_from_name(study.study_name)
    trials = study.get_trials(deepcopy=False)
    latest = {}
    for t in trials:
        latest[t.user_attrs.get("experiment", t.number)] = t
    for t in latest.values():
        orphan = t.state == TrialState.RUNNING and _dead_locally(t.user_attrs.get("owner"))
        interrupted = t.state == TrialState.FAIL and t.user_attrs.get("interrupted")
        if orphan:
            storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                           TrialState.FAIL)
        if orphan or interrupted:
            log(f"tune: trial {t.number} ({t.user_attrs.get('experiment')}) did not finish; queued again")
            retry(study, study.get_trials(deepcopy=False)[t.number])


def trials_done(study) -> int:
    """Trials that count towards --trials: one per experiment, finished (complete, pruned or failed) or running
    elsewhere; a trial queued again counts once."""
    from optuna.trial import TrialState

    latest = {}
    for t in study.get_trials(deepcopy=False):
        latest[t.user_attrs.get("experiment", t.number)] = t
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
               for t in latest.values())


class TrialFailed(RuntimeError):
    """A run of the trial failed: the trial is recorded as failed with the run's error."""


class TrialInterrupted(RuntimeError):
    """Ctrl-C stopped the trial's runs: recorded as failed and interrupted; a resumed tune runs it again."""


class _Stop(threading.Event):
    reason: str | None = None


def tune(config, space, *, trials=20, seeds=(0, 1, 2), jobs=1, results_dir="results", name=None, storage=None,
         overrides=None, scheduler=None, timeout_s=None, pruner="median", sampler_seed=0, notebook=None,
         kernel_name=None, window=FINAL_WINDOW, log=print):
    """Run (or resume) the study until it holds `trials` finished trials; returns the Optuna study.

    `space`: Dimensions or --space strings. `jobs`: trials at once (each runs its seeds at once).
    `pruner`: "median", "none" or an optuna pruner."""
    import optuna

    config = Path(config).resolve()
    seeds = list(seeds)
    space = [d if isinstance(d, Dimension) else parse_space(d) for d in space]
    overrides = overrides_dict(overrides)
    check_space(config, space, overrides, seeds)
    base = load_variant(config, with_seed(overrides, seeds[0]))
    if trials < 1:
        raise ConfigError(f"--trials {trials}: must be >= 1")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1 (trials at once)")
    name = check_name(name or f"{config.stem}_tune")
    tune_dir = Path(results_dir).resolve() / name
    rdb = _storage(storage) if storage else None  # a bad --storage is refused before the directory is made
    tune_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{tune_dir / 'study.db'}"
    if pruner == "median":  # evaluations before a fifth of the budget are too noisy to stop a trial on
        pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=int(0.2 * base.total_steps))
    elif pruner in ("none", None):
        pruner = optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=min(10, max(3, trials // 3)),
                                         constant_liar=jobs > 1)
    rdb = rdb or _storage(url)
    study = optuna.create_study(storage=rdb, study_name=name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    check_same_study(study, settings(config, space, overrides, base))
    recover(study, rdb, log)
    todo = trials - trials_done(study)
    log(f"tune: study '{name}' in {url}: {trials - todo} of {trials} trials done, {max(todo, 0)} to run, "
        f"{jobs} at a time, seeds {seeds}")
    objective = _Objective(config, space, overrides, seeds, tune_dir, base.eval.every, window,
                           dict(scheduler=scheduler, timeout_s=timeout_s, notebook=notebook, kernel_name=kernel_name),
                           log)
    if todo > 0:
        with _stop_trials_on_ctrl_c(objective):
            study.optimize(objective, n_trials=todo, n_jobs=jobs, catch=(TrialFailed, TrialInterrupted),
                           gc_after_trial=False)
    write_outputs(study, config, tune_dir, overrides, log)
    return study


@contextlib.contextmanager
def _stop_trials_on_ctrl_c(objective):
    """Ctrl-C stops every running trial's runs (recorded as interrupted) instead of waiting for them: with
    --jobs > 1 the trials run in Optuna's worker threads, which a KeyboardInterrupt in this one never reaches."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    signals = []

    def interrupt(signum, frame):
        signals.append(signum)
        objective.interrupted.set()
        for stop in list(objective.running):
            stop.set()

    # SIGTERM (timeout, Slurm, Kubernetes) stops the trials exactly as Ctrl-C does
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if objective.interrupted.is_set():
        from rlkit.runs.signals import Terminated

        raise Terminated("terminated by SIGTERM") if signal.SIGTERM in signals else KeyboardInterrupt()


class _Objective:
    def __init__(self, config, space, overrides, seeds, tune_dir, eval_every, window, run_kwargs, log):
        self.config, self.space, self.overrides, self.seeds = config, space, overrides, seeds
        self.tune_dir, self.eval_every, self.window, self.run_kwargs, self.log = (
            tune_dir, eval_every, window, run_kwargs, log)
        self.running: set[_Stop] = set()  # the stop events of the trials running now
        self.interrupted = threading.Event()

    def __call__(self, trial) -> float:
        import optuna

        values = {d.key: d.suggest(trial) for d in self.space}
        name = trial.user_attrs.get("experiment") or f"trial{trial.number:03d}"  # a retry keeps its directory
        trial.set_user_attr("experiment", name)
        trial.set_user_attr("owner", _owner())
        trial.set_user_attr("interrupted", False)
        exp = Experiment(name, self.config, {**self.overrides, **values}, values)
        trial.set_user_attr("overrides", json.dumps(exp.overrides, default=str))
        run_dirs = [self.tune_dir / name / f"seed{s}" for s in self.seeds]
        stop, outcome = _Stop(), {}

        def runs():
            try:
                outcome["results"] = run_experiments([exp], self.seeds, jobs=len(self.seeds),
                                                     results_dir=self.tune_dir, log=self.log, stop=stop,
                                                     table=False, **self.run_kwargs)
            except BaseException as e:  # noqa: BLE001 -- handed to the objective's thread
                outcome["error"] = e

        if self.interrupted.is_set():  # Ctrl-C came before this trial started
            raise TrialInterrupted(name)
        self.running.add(stop)
        worker = threading.Thread(target=runs, name=f"rlkit-{name}")
        worker.start()
        reported, pruned_at = set(), None
        try:
            while worker.is_alive():
                worker.join(MONITOR_S)
                for step, value in self.intermediate(run_dirs):
                    if step not in reported:
                        reported.add(step)
                        trial.report(value, step)
                if pruned_at is None and reported and trial.should_prune():
                    pruned_at = max(reported)
                    stop.reason = f"Pruned: Optuna stopped {name} (trial {trial.number}) at policy_step {pruned_at}"
                    stop.set()
        except BaseException:  # a KeyboardInterrupt here: stop the runs (recorded as interrupted) and go
            trial.set_user_attr("interrupted", True)
            stop.set()
            worker.join()
            raise
        finally:
            self.running.discard(stop)
        if self.interrupted.is_set():  # Ctrl-C: the runs were stopped; a resumed tune queues this trial again
            trial.set_user_attr("interrupted", True)
            raise TrialInterrupted(name)
        if "error" in outcome:
            raise outcome["error"]
        if pruned_at is not None:
            raise optuna.TrialPruned(stop.reason)
        failed = [r for r in outcome["results"] if r.state == "failed"]
        if failed:
            self.log(f"tune: trial {trial.number} ({name}) failed: {failed[0].run}: {failed[0].error}")
            raise TrialFailed(f"{failed[0].experiment}/{failed[0].run}: {failed[0].error}")
        scores = [final_score(read_metrics(d / "metrics.csv"), FINAL_METRIC, self.window) for d in run_dirs]
        if not all(math.isfinite(s) for s in scores):
            raise TrialFailed(f"{name}: a run logged no {FINAL_METRIC}; set eval.every below total_steps")
        value = float(iqm(scores))
        self.log(f"tune: trial {trial.number} ({name}) {values}: IQM final score {value:.4g} over seeds {self.seeds}")
        return value

    def intermediate(self, run_dirs) -> list[tuple[int, float]]:
        """(policy_step, IQM over seeds of eval/return) at each evaluation every seed has reached."""
        per_seed = []
        for d in run_dirs:
            if not (d / "metrics.csv").exists():
                return []
            m = read_metrics(d / "metrics.csv")
            m = m[m.metric == FINAL_METRIC]
            every = self.eval_every or 1
            per_seed.append(m.assign(step=(m.policy_step // every) * every).groupby("step").value.last())
        common = sorted(set.intersection(*(set(s.index) for s in per_seed))) if per_seed else []
        return [(int(step), float(iqm([s[step] for s in per_seed]))) for step in common]


# ---------------------------------------------------------------- outputs
def best_params_file(study, config: Path, overrides: dict | None = None) -> str:
    """The params file with the tune's overrides and the best trial's values set, as YAML text with a header
    saying where it came from: `rlkit run best.yaml` runs the best trial's configuration."""
    raw, _ = read_params(config)
    best = study.best_trial
    # the overrides the trial itself trained with (recorded when it ran), never those of a later command
    trained = best.user_attrs.get("overrides")
    trained = json.loads(trained) if trained is not None else {**(overrides or {}), **best.params}
    for key, value in trained.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    head = (f"# Best of the Optuna study '{study.study_name}' over {config.name}: trial {best.number} "
            f"({best.user_attrs.get('experiment')}), IQM final score {best.value:.6g}\n"
            + "".join(f"# {k}: {v!r}\n" for k, v in best.params.items()))
    return head + yaml.safe_dump(raw, sort_keys=False)


def write_outputs(study, config: Path, tune_dir: Path, overrides=None, log=print) -> None:
    """best.yaml and the tuning report, from whatever the study holds now."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log("tune: no trial completed yet; no best.yaml")
        return
    (tune_dir / "best.yaml").write_text(best_params_file(study, config, overrides))
    from rlkit.experiments.tune_report import write_tune_report

    index = write_tune_report(study, tune_dir)
    best = study.best_trial
    log(f"tune: best trial {best.number} ({best.user_attrs.get('experiment')}): {best.params} -> "
        f"IQM final score {best.value:.4g}; {tune_dir / 'best.yaml'}; report {index}")


# ---------------------------------------------------------------- command line (rlkit/cli.py parses)
def main(args) -> int:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError('rlkit tune needs Optuna: pip install -e ".[tune]"') from None
    try:
        study = tune(args.config, args.space, trials=args.trials, seeds=parse_seeds(args.seeds), jobs=args.jobs,
                     results_dir=args.results, name=args.name, storage=args.storage, overrides=args.overrides,
                     scheduler=args.scheduler, timeout_s=args.timeout, pruner=args.pruner)
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if type(e).__name__ == "Terminated" else "interrupted"
        print(f"rlkit tune: {how}; the runs were stopped and recorded. Run the same command again to resume "
              "the study", file=sys.stderr)
        return 143 if type(e).__name__ == "Terminated" else 130
    from optuna.trial import TrialState

    return 0 if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else 1
