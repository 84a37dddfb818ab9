"""TensorBoard event files from metrics rows, written with TensorBoard's own writer.

Two users: `rlkit tensorboard` exports finished runs' metrics.csv (rlkit/analysis/tensorboard.py), and
`log.tensorboard: true` writes the rows as a run logs them (LiveEvents, a training callback). Either way a
row (policy_step, wall_time, metric, value) is one scalar at step = policy_step, so both read alike.
torch.utils.tensorboard needs the `tensorboard` package: pip install -e ".[tensorboard]".
"""
from __future__ import annotations

import time
from pathlib import Path

from rlkit.config import ConfigError


def event_writer(logdir: Path, purge_step: int | None = None):
    """TensorBoard's SummaryWriter into logdir. purge_step: events at this step and later, left by an earlier
    session of the run, are hidden (a resumed run writes them again)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("TensorBoard event files need the tensorboard package: "
                          "pip install -e \".[tensorboard]\"") from None
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step)


def write_row(writer, policy_step: int, walltime: float, metrics: dict) -> None:
    """One metrics row (the counters' policy step, {metric: value}) as scalars."""
    for name, value in metrics.items():
        writer.add_scalar(name, float(value), global_step=int(policy_step), walltime=walltime)


class LiveEvents:
    """A training callback: every row that goes to metrics.csv also goes to logdir as it is logged. The writer
    opens at the first row, so a resumed run purges what the interrupted session wrote after its checkpoint."""

    def __init__(self, logdir: Path):
        self.logdir, self.writer = Path(logdir), None

    def __call__(self, counters: dict, metrics: dict) -> None:
        if self.writer is None:
            resumed = self.logdir.is_dir() and any(self.logdir.glob("events.out.tfevents.*"))
            self.writer = event_writer(self.logdir, counters["policy_step"] if resumed else None)
        write_row(self.writer, counters["policy_step"], time.time(), metrics)
        self.writer.flush()  # rows reach TensorBoard while the run trains, as metrics.csv's do

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
