"""Running statistics that must survive a checkpoint: observation and reward normalisers."""
from __future__ import annotations

import math

import numpy as np

from rlkit.fast.jit import compiled


class RunningMeanStd:
    """Mean and variance over every sample seen, merged batch by batch (Chan et al.'s parallel formula).

    Every update is one compiled loop (`_merge_rows`): the batch's moments by sums in row order, then the
    merge. A one-env collector updates with one row per step, where numpy's per-call overhead (np.mean,
    np.var and the conversions around them) would cost several times the arithmetic. mean and var are
    float64 arrays updated in place (0-d for a scalar statistic such as the return's).
    """

    def __init__(self, shape=(), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon  # a tiny prior keeps the first division finite
        self._std = None  # sqrt(var + 1e-8), computed once per update when first asked for
        self._flat = None
        # Several ranks (rlkit.runs.distributed.merge_moments): (mean, var, count) of this rank's batch -> those of
        # every rank's batch, so all ranks keep the same statistics. None in a one-rank run.
        self.sync = None

    @property
    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat views [D] of mean and var, which the compiled loops read and write through."""
        if self._flat is None:
            self._flat = self.mean.reshape(-1), self.var.reshape(-1)
        return self._flat

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        rows = batch.reshape(len(batch), -1)  # [B, D], D the statistic's size (1 for a scalar)
        mean, var = self.flat
        if self.sync is None:
            self.count = _merge_rows(rows, mean, var, self.count)
        else:
            b_mean, b_var = _moments(rows)
            b_mean, b_var, b_count = self.sync(b_mean.reshape(self.mean.shape), b_var.reshape(self.var.shape),
                                               len(rows))
            self.count = _merge_moments(mean, var, self.count, np.ravel(b_mean), np.ravel(b_var), b_count)
        self._std = None

    @property
    def std(self) -> np.ndarray:
        if self._std is None:  # math.sqrt for a scalar statistic: IEEE's square root, as np.sqrt, without numpy's call
            self._std = np.sqrt(self.var + 1e-8) if self.var.ndim else np.float64(math.sqrt(float(self.var) + 1e-8))
        return self._std

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var = np.array(state["mean"], np.float64), np.array(state["var"], np.float64)
        self.count = state["count"]
        self._std = self._flat = None


@compiled
def _moments(rows):
    """(mean, variance) of the rows [B, D] over B, each a sum in row order divided by B."""
    B, D = rows.shape
    b_mean, b_var = np.zeros(D), np.zeros(D)
    for b in range(B):
        for i in range(D):
            b_mean[i] += rows[b, i]
    b_mean /= B
    for b in range(B):
        for i in range(D):
            centred = rows[b, i] - b_mean[i]
            b_var[i] += centred * centred
    b_var /= B
    return b_mean, b_var


@compiled
def _merge_moments(mean, var, count, b_mean, b_var, b_count):
    """Fold a batch's moments into mean and var [D] in place (Chan et al.); returns the new count.
    delta = b_mean - mean; mean += delta * b_count / total;
    var = (var * count + b_var * b_count + delta^2 * count * b_count / total) / total."""
    total = count + b_count
    for i in range(mean.size):
        delta = b_mean[i] - mean[i]
        mean[i] = mean[i] + delta * b_count / total
        var[i] = (var[i] * count + b_var[i] * b_count + delta * delta * count * b_count / total) / total
    return total


@compiled
def _merge_rows(rows, mean, var, count):
    b_mean, b_var = _moments(rows)
    return _merge_moments(mean, var, count, b_mean, b_var, rows.shape[0])


@compiled
def _standardise(obs, mean, var, clip, out):
    """out = clip((obs - mean) / sqrt(var + 1e-8), -clip, clip) as float32, rows of obs [B, D] against flat mean
    and var [D]; the subtraction and division in float64, as numpy promotes them."""
    std = np.sqrt(var + 1e-8)
    for b in range(obs.shape[0]):
        for i in range(obs.shape[1]):
            z = (np.float64(obs[b, i]) - mean[i]) / std[i]
            if z < -clip:  # NaN passes through both tests, as through np.clip
                z = -clip
            elif z > clip:
                z = clip
            out[b, i] = z


class ObsNormalizer:
    """(obs - mean) / std clipped to [-clip, clip]; statistics updated only when asked."""

    def __init__(self, shape, clip: float = 5.0, enabled: bool = True):
        self.rms = RunningMeanStd(shape)
        self.clip, self.enabled = clip, enabled

    def update(self, obs: np.ndarray) -> None:
        if self.enabled:
            self.rms.update(obs)

    def __call__(self, obs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The normalised observations as float32, written into out when given (the rollout memory's row)."""
        if not self.enabled:
            if out is None:
                return obs
            out[...] = obs
            return out
        obs = np.asarray(obs)
        if out is None:
            out = np.empty(obs.shape, np.float32)
        elif not out.flags.c_contiguous:  # its flat view below must be a view, or the result would be lost
            raise ValueError("ObsNormalizer: out must be C-contiguous")
        mean, var = self.rms.flat
        _standardise(obs.reshape(-1, mean.size), mean, var, self.clip, out.reshape(-1, mean.size))
        return out

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

    def __call__(self, rewards: np.ndarray, dones: np.ndarray | None = None, out: np.ndarray | None = None):
        """rewards: [num_envs] for one step; returns the scaled rewards (float32, written into out when given:
        the rollout memory's row) and updates the statistics."""
        reset = self.episodic and dones is not None
        if out is None:
            out = np.empty(len(rewards), np.float32)
        if self.rms.sync is None:  # one compiled call per step (the same merge as RunningMeanStd.update)
            rms = self.rms
            rms.count = _filter_step(self.returns, rewards, dones if reset else None, self.gamma, *rms.flat,
                                     rms.count, out)
            rms._std = None
            return out
        self.returns *= self.gamma
        self.returns += rewards
        self.rms.update(self.returns)
        np.divide(rewards, self.rms.std, out=out, casting="unsafe")  # in float64 (std is), rounded once
        if reset and np.count_nonzero(dones):
            self.returns[dones] = 0.0
        return out

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "rms": self.rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].copy()
        self.rms.load_state_dict(state["rms"])


@compiled
def _filter_step(returns, rewards, dones, gamma, mean, var, count, scaled):
    """ReturnFilter's step: R = gamma R + r; fold R into the statistics; scaled = r / sqrt(var + 1e-8) rounded
    once to float32; R = 0 where an episode ended (dones None: never). Returns the new count."""
    for i in range(returns.size):
        returns[i] = returns[i] * gamma + rewards[i]
    count = _merge_rows(returns.reshape(returns.size, 1), mean, var, count)
    std = np.sqrt(var[0] + 1e-8)
    for i in range(rewards.size):
        scaled[i] = rewards[i] / std
        if dones is not None and dones[i]:
            returns[i] = 0.0
    return count
