"""TensorBoard export: every run's metrics.csv as event files, step = policy_step.

    rlkit tensorboard results            # -> results/tensorboard/<experiment>/<run>/events.out.tfevents...
    tensorboard --logdir results/tensorboard

metrics.csv stays the source of truth: the export is derived from it and can be redone at any time
(each run's old event files are replaced), so it never disagrees with what the report reads.
Written with TensorBoard's own writer (rlkit/runs/events.py, which `log.tensorboard: true` also uses to
write a run's rows live, into <run>/tensorboard).

The log directory belongs to the export: it is marked with a `.rlkit-tensorboard` file, and only a new or
empty folder, one so marked, or one holding nothing but event files is written into. A re-export deletes
event files, never anything else, so a --logdir that names a results tree (or a folder above one) is
refused before anything is touched.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from rlkit.analysis.runcheck import metrics_problem
from rlkit.config import ConfigError
from rlkit.runs.events import event_writer, write_row
from rlkit.runs.metrics import read_metrics

MARKER = ".rlkit-tensorboard"
EVENTS = "events.out.tfevents."


def export(results_dir="results", logdir=None, say=None) -> tuple[Path, int]:
    """Write event files for every run under `results_dir`; returns (logdir, number of runs written).

    A run whose metrics.csv holds no usable row is skipped and named on stderr (`say`) with the reason."""
    say = say or (lambda line: print(line, file=sys.stderr))
    results_dir = Path(results_dir)
    logdir = Path(logdir) if logdir else results_dir / "tensorboard"
    runs = sorted(p.parent for p in results_dir.glob("*/*/metrics.csv"))
    if not runs:
        raise FileNotFoundError(f"no runs found under {results_dir.resolve()} "
                                "(expected <experiment>/<run>/metrics.csv): run `rlkit run` first")
    check_logdir(logdir, results_dir)
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / MARKER).write_text("event files written by `rlkit tensorboard`; a re-export replaces them\n")
    written = 0
    for run_dir in runs:
        problem = metrics_problem(run_dir / "metrics.csv")
        if problem:
            say(f"rlkit tensorboard: skipped {run_dir.parent.name}/{run_dir.name}: {problem}")
            continue
        out = logdir / run_dir.parent.name / run_dir.name
        for old in out.glob(f"{EVENTS}*"):  # a re-export replaces its own events instead of doubling them
            old.unlink()
        metrics = read_metrics(run_dir / "metrics.csv")
        # TensorBoard's "wall" axis wants epoch seconds: anchor the run's wall_time at metrics.csv's mtime
        start = (run_dir / "metrics.csv").stat().st_mtime - (metrics.wall_time.max() if len(metrics) else 0.0)
        writer = event_writer(out)
        for row in metrics.itertuples(index=False):
            write_row(writer, row.policy_step, start + row.wall_time, {row.metric: row.value})
        writer.close()
        written += 1
    return logdir, written


def check_logdir(logdir: Path, results_dir: Path) -> None:
    """Refuse a log directory the export does not own, before anything is written (ConfigError, one line)."""
    if logdir.exists() and not logdir.is_dir():
        raise ConfigError(f"--logdir {logdir} is a file, not a folder; give a new folder (default RESULTS/tensorboard)")
    here, results = logdir.resolve(), results_dir.resolve()
    if here == results or here in results.parents:
        raise ConfigError(f"--logdir {logdir} holds the results being exported ({results_dir}); give a folder of "
                          "its own, e.g. the default RESULTS/tensorboard")
    inside = next((p for p in [here, *here.parents] if (p / "metrics.csv").is_file() or (p / "status.json").is_file()), None)
    if inside is not None:
        raise ConfigError(f"--logdir {logdir} is inside the run directory {inside}; give a folder of its own, "
                          "e.g. the default RESULTS/tensorboard")
    if not logdir.exists() or (logdir / MARKER).exists():
        return
    for folder, _, files in os.walk(logdir):
        for name in files:
            if not name.startswith(EVENTS):
                raise ConfigError(f"--logdir {logdir} holds files the export did not write "
                                  f"({Path(folder, name).relative_to(logdir)}); give a new or empty folder")
