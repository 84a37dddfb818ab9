"""The training metrics of several phases averaged into one row.

An off-policy learner trains every few policy steps (SAC: every step), so a row per phase would make a
300k-step run's metrics.csv millions of rows long, most of them noise. Its phases are instead summed here and
written as one row when the loop writes its log_every row: each metric the mean over the gradient steps since
the last row, perf/update_seconds the sum of the phases' seconds (so summed over the run it is still the time
spent training). The sums are part of the checkpoint, so a resumed run writes the rows of the uninterrupted one.
"""
from __future__ import annotations


class PhaseMeans:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.weights: dict[str, int] = {}  # per metric: a metric some phases lack is the mean of those that have it
        self.seconds = 0.0

    def add(self, metrics: dict, updates: int, seconds: float) -> None:
        """One phase: its metrics (the means over its `updates` gradient steps) and its wall seconds."""
        weight = max(updates, 1)
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight
            self.weights[name] = self.weights.get(name, 0) + weight
        self.seconds += seconds

    def pop(self) -> dict:
        """The row of the phases added since the last pop ({} if none), and a fresh start."""
        if not self.weights:
            return {}
        row = {name: total / self.weights[name] for name, total in self.sums.items()}
        row["perf/update_seconds"] = self.seconds
        self.__init__()
        return row

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "weights": dict(self.weights), "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.weights, self.seconds = dict(state["sums"]), dict(state["weights"]), state["seconds"]
