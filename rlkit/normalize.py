"""Running statistics that must survive a checkpoint: observation and reward normalisers."""
from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and variance over every sample seen, merged batch by batch (Chan et al.'s parallel formula).

    A one-env collector updates with one row per step, where numpy's per-call overhead (np.mean,
    np.var and the conversions around them) costs more than the arithmetic: a one-row batch takes
    `_update_one_row`, which is the same formula with the batch's mean = the row, its variance = 0
    and its count = 1, its operations in the same order, so it gives the same bits
    (tests/test_normalize.py checks it against `merge`).
    """

    def __init__(self, shape=(), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon  # a tiny prior keeps the first division finite
        self._std = None  # sqrt(var + 1e-8), computed once per update when first asked for
        # Several ranks (rlkit.distributed.merge_moments): (mean, var, count) of this rank's batch -> those of
        # every rank's batch, so all ranks keep the same statistics. None in a one-rank run.
        self.sync = None

    def update(self, batch: np.ndarray) -> None:
        if self.sync is None and len(batch) == 1:
            self._update_one_row(batch[0])
            return
        batch = np.asarray(batch, np.float64)
        b_count = batch.shape[0]
        # np.mean and np.var's own arithmetic, without their Python wrappers: the same bits
        b_mean = np.add.reduce(batch, axis=0) / b_count
        centred = batch - b_mean
        b_var = np.add.reduce(np.multiply(centred, centred, out=centred), axis=0) / b_count
        if self.sync is not None:
            b_mean, b_var, b_count = self.sync(b_mean, b_var, b_count)
        self.merge(b_mean, b_var, b_count)

    def merge(self, b_mean, b_var, b_count) -> None:
        """Fold in a batch's moments: the plain formula, which every update path computes."""
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total
        self._std = None

    def _update_one_row(self, row) -> None:
        # merge(row, 0, 1): delta * 1 and adding 0 * 1 change no bits, so they are left out
        total = self.count + 1
        if self.mean.ndim == 0:  # a scalar statistic (one env's return): Python floats, IEEE doubles as numpy's
            mean, var, count = float(self.mean), float(self.var), self.count
            delta = float(row) - mean
            self.mean = np.float64(mean + delta / total)
            self.var = np.float64((var * count + delta * delta * count / total) / total)
        else:
            delta = row - self.mean  # float64: the row is promoted exactly, as np.asarray(batch, np.float64) does
            self.mean = self.mean + delta / total
            sq = np.multiply(delta, delta, out=delta)
            sq *= self.count
            sq /= total
            m2 = self.var * self.count
            m2 += sq
            m2 /= total
            self.var = m2
        self.count = total
        self._std = None

    @property
    def std(self) -> np.ndarray:
        if self._std is None:
            self._std = np.sqrt(self.var + 1e-8)
        return self._std

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].copy(), state["var"].copy(), state["count"]
        self._std = None


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
        z = obs - self.rms.mean
        z /= self.rms.std
        # np.clip's arithmetic without its Python wrapper (a third of this call on one row)
        np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=z)
        return z.astype(np.float32)

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
        self.returns *= self.gamma
        self.returns += rewards
        self.rms.update(self.returns)
        scaled = rewards / self.rms.std
        if self.episodic and dones is not None and dones.any():
            self.returns[dones] = 0.0
        return scaled.astype(np.float32)

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "rms": self.rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].copy()
        self.rms.load_state_dict(state["rms"])
