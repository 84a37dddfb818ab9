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
        try:
            tmp.write_text("".join(lines))
            tmp.replace(self.path)
        except BaseException:  # a full disk: metrics.csv is untouched, and no temporary is left behind
            tmp.unlink(missing_ok=True)
            raise

    def log(self, counters: dict, wall_time: float, metrics: dict) -> None:
        head = [counters["policy_step"], counters["env_step"], counters["gradient_step"], f"{wall_time:.3f}"]
        for name, value in metrics.items():
            value = float(value)
            self.writer.writerow(head + [name, repr(value) if math.isfinite(value) else str(value)])
            self.rows += 1
        self.file.flush()

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:  # the unflushed rows of a failed write (a full disk): that error was raised already
            pass


def count_rows(path: Path) -> int:
    """Complete data rows in metrics.csv (the header and a torn last line not counted); 0 if it is missing."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    return max(0, data.count(b"\n") - 1)


def read_metrics(path: Path) -> pd.DataFrame:
    """Load metrics.csv; a torn last line (a run killed mid-write) is dropped, not mis-parsed."""
    text = Path(path).read_text(errors="replace")
    # Rows are written whole with a trailing newline, so anything after the last
    # newline is a torn row from a killed run: drop it rather than parse "12.3" as "12."
    lines = text[: text.rfind("\n") + 1].splitlines()
    if not lines or lines[0].strip() != ",".join(COLUMNS):
        return pd.DataFrame(columns=COLUMNS)
    # A resumed run may glue new rows onto a torn one: keep only 6-field lines
    # (pandas would otherwise turn extra leading fields into an index).
    rows = "\n".join(line for line in lines[1:] if line.count(",") == 5)
    df = pd.read_csv(io.StringIO(rows), names=COLUMNS, header=None, dtype={"metric": str})
    for c in COLUMNS:  # any non-numeric or empty field -> NaN -> the row is dropped
        if c != "metric":
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.dropna().reset_index(drop=True)
