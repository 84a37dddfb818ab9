"""Tidy step-indexed metrics: one CSV row per (counters, metric, value), appended and flushed."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd

COLUMNS = ["policy_step", "env_step", "gradient_step", "wall_time", "metric", "value"]


class MetricsWriter:
    """Appends rows and flushes after each call, so a killed run leaves every complete row readable."""

    def __init__(self, path: Path, keep_rows: int | None = None):
        """keep_rows: when resuming, keep the header plus this many rows (those the checkpoint covers)."""
        self.path = Path(path)
        if keep_rows is not None and self.path.exists():
            self._truncate(keep_rows)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(COLUMNS)
            self.file.flush()
        self.rows = keep_rows or 0

    def _truncate(self, keep_rows: int) -> None:
        """Drop rows written after the checkpoint: the resumed run writes them again, identically."""
        with open(self.path, newline="") as f:
            lines = f.readlines()[: keep_rows + 1]
        tmp = self.path.with_suffix(".csv.tmp")
        tmp.write_text("".join(lines))
        tmp.replace(self.path)

    def log(self, counters: dict, wall_time: float, metrics: dict) -> None:
        head = [counters["policy_step"], counters["env_step"], counters["gradient_step"], f"{wall_time:.3f}"]
        for name, value in metrics.items():
            value = float(value)
            self.writer.writerow(head + [name, repr(value) if math.isfinite(value) else str(value)])
            self.rows += 1
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(path: Path) -> pd.DataFrame:
    """Load metrics.csv; a torn last line (a run killed mid-write) is dropped, not mis-parsed."""
    text = Path(path).read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    df = pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame(columns=COLUMNS)
    return df.dropna(subset=["value"]) if len(df) else df
