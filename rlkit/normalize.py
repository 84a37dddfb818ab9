"""Running statistics that must survive a checkpoint: observation and reward normalisers."""
from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and variance over every sample seen, merged batch by batch (Chan et al.'s parallel formula)."""

    def __init__(self, shape=(), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon  # a tiny prior keeps the first division finite
        # Several ranks (rlkit.distributed.merge_moments): (mean, var, count) of this rank's batch -> those of
        # every rank's batch, so all ranks keep the same statistics. None in a one-rank run.
        self.sync = None

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        b_mean, b_var, b_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        if self.sync is not None:
            b_mean, b_var, b_count = self.sync(b_mean, b_var, b_count)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].copy(), state["var"].copy(), state["count"]


class ObsNormalizer:
    """(obs - mean) / std clipped to [-clip, clip]; statistics updated only when asked."""

    def __init__(self, shape, clip: float = 5.0, enabled: bool = True):
        self.rms = RunningMeanStd(shape)
        self.clip, self.enabled = clip, enabled

    def update(self, obs: np.ndarray) -> None:
        if self.enabled:
            self.rms.update(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return obs
        return np.clip((obs - self.rms.mean) / self.rms.std, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)


class ReturnFilter:
    """Scale rewards by the running std of the discounted return, kept per env over time.

    For each env i: R_i <- gamma * R_i + r_i at every step, and the std is taken over all the
    R_i seen so far. Each env's return runs along its own time axis (a popular implementation
    runs the filter across envs of one step instead, which mixes unrelated trajectories).
    `episodic` resets R_i when env i's episode ends (task rewards); RND's intrinsic reward is
    non-episodic and never resets.
    """

    def __init__(self, num_envs: int, gamma: float, episodic: bool = True):
        self.gamma, self.episodic = gamma, episodic
        self.returns = np.zeros(num_envs, np.float64)
        self.rms = RunningMeanStd(())

    def __call__(self, rewards: np.ndarray, dones: np.ndarray | None = None) -> np.ndarray:
        """rewards: [num_envs] for one step; returns the scaled rewards and updates the statistics."""
        self.returns = self.gamma * self.returns + rewards
        self.rms.update(self.returns)
        scaled = rewards / self.rms.std
        if self.episodic and dones is not None:
            self.returns[dones] = 0.0
        return scaled.astype(np.float32)

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "rms": self.rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].copy()
        self.rms.load_state_dict(state["rms"])
