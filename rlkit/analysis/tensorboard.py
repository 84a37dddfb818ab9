"""TensorBoard export: every run's metrics.csv as event files, step = policy_step.

    rlkit tensorboard results            # -> results/tensorboard/<experiment>/<run>/events.out.tfevents...
    tensorboard --logdir results/tensorboard

metrics.csv stays the source of truth: the export is derived from it and can be redone at any time
(each run's old event files are replaced), so it never disagrees with what the report reads.
Written with TensorBoard's own writer (rlkit/runs/events.py, which `log.tensorboard: true` also uses to
write a run's rows live, into <run>/tensorboard).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from rlkit.runs.events import event_writer, write_row
from rlkit.runs.metrics import read_metrics


def export(results_dir="results", logdir=None) -> tuple[Path, int]:
    """Write event files for every run under `results_dir`; returns (logdir, number of runs written)."""
    results_dir = Path(results_dir)
    logdir = Path(logdir) if logdir else results_dir / "tensorboard"
    runs = sorted(p.parent for p in results_dir.glob("*/*/metrics.csv"))
    if not runs:
        raise FileNotFoundError(f"no runs found under {results_dir.resolve()} "
                                "(expected <experiment>/<run>/metrics.csv): run `rlkit run` first")
    for run_dir in runs:
        out = logdir / run_dir.parent.name / run_dir.name
        shutil.rmtree(out, ignore_errors=True)  # a re-export replaces the old events instead of doubling them
        metrics = read_metrics(run_dir / "metrics.csv")
        # TensorBoard's "wall" axis wants epoch seconds: anchor the run's wall_time at metrics.csv's mtime
        start = (run_dir / "metrics.csv").stat().st_mtime - (metrics.wall_time.max() if len(metrics) else 0.0)
        writer = event_writer(out)
        for row in metrics.itertuples(index=False):
            write_row(writer, row.policy_step, start + row.wall_time, {row.metric: row.value})
        writer.close()
    return logdir, len(runs)
