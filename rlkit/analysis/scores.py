"""Scores and their uncertainty: a run's final score, aggregates over seeds, bootstrap CIs, probability
of improvement. The one place these are defined; the report, the tuner and the tests use them.

Final score: the mean of a run's `eval/return` over the last 10% of its policy steps (`FINAL_WINDOW`),
and at least its last evaluation when none falls in that window. A short run's early evaluations
never enter its final score.

Aggregates over seeds follow Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice":
IQM (interquartile mean), mean and median, each with a 95% percentile CI from the stratified bootstrap,
and the probability of improvement P(X > Y) with its CI.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FINAL_METRIC = "eval/return"
FINAL_WINDOW = 0.1  # the final score averages evaluations in the last 10% of a run's policy steps


def final_score(metrics: pd.DataFrame, metric: str = FINAL_METRIC, window: float = FINAL_WINDOW) -> float:
    """One run's final score from its metrics.csv rows (NaN when it logged no `metric` at all).

    The mean of `metric` over the rows at policy_step >= (1 - window) x the run's last policy step;
    if no row of `metric` falls there, its last logged value (the latest evaluation).
    """
    if not 0 < window <= 1:
        raise ValueError(f"final-score window {window} must be in (0, 1]: the fraction of a run's policy steps")
    values = metrics[metrics.metric == metric]
    if values.empty:
        return float("nan")
    last_step = metrics.policy_step.max()
    recent = values[values.policy_step >= (1 - window) * last_step]
    if recent.empty:
        recent = values[values.policy_step == values.policy_step.max()]
    return float(recent.value.mean())


# ---------------------------------------------------------------- aggregates over seeds
def iqm(x, axis=None):
    """Interquartile mean with ``scipy.stats.trim_mean(x, 0.25)`` semantics (as rliable): sort, drop
    ``floor(n/4)`` values at each end, average the rest. n<4 gives the plain mean, n=5..7 drops one per end."""
    x = np.asarray(x, dtype=float)
    if axis is None:
        x, axis = x.ravel(), 0
    x = np.sort(np.moveaxis(x, axis, -1), axis=-1)
    k = x.shape[-1] // 4
    return np.mean(x[..., k: x.shape[-1] - k], axis=-1)


def mean(x, axis=None):
    """Arithmetic mean (same call convention as ``iqm``)."""
    return np.mean(np.asarray(x, dtype=float), axis=axis)


def median(x, axis=None):
    """Median (same call convention as ``iqm``)."""
    return np.median(np.asarray(x, dtype=float), axis=axis)


STATISTICS = {"iqm": iqm, "mean": mean, "median": median}


def _tasks(scores) -> list[np.ndarray]:
    """[runs x tasks] array (1-D: one task) or a list of per-task 1-D arrays -> list of 1-D arrays."""
    if isinstance(scores, (list, tuple)):
        return [np.asarray(t, dtype=float).ravel() for t in scores]
    arr = np.asarray(scores, dtype=float)
    return list(arr.reshape(len(arr), -1).T)


def stratified_bootstrap_ci(scores, statistic=iqm, level=0.95, reps=2000, seed=0):
    """Percentile bootstrap CI ``(low, high)`` of ``statistic`` over all scores.

    ``scores``: an array [runs x tasks] (1-D: one task), or a list of per-task 1-D arrays (tasks may
    have different run counts). Each replicate resamples runs with replacement within every task
    independently (the strata), pools them and applies ``statistic(samples, axis=-1)``; the interval
    is the ``(1-level)/2`` and ``(1+level)/2`` quantiles. Deterministic given ``seed``."""
    tasks = _tasks(scores)
    rng = np.random.default_rng(seed)
    boot = np.concatenate([t[rng.integers(0, len(t), size=(reps, len(t)))] for t in tasks], axis=1)
    stats = statistic(boot, axis=-1)
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


# ---------------------------------------------------------------- probability of improvement
def probability_of_improvement(x, y) -> float:
    """P(X > Y): the probability that a run of X scores higher than a run of Y on the same task, averaged
    over tasks (Agarwal et al., 2021). Per task it is the Mann-Whitney U statistic over N x K pairs,
    ties counting one half: (1/NK) sum_ij [x_i > y_j] + 0.5 [x_i = y_j].

    ``x``, ``y``: per-task scores, in the forms ``stratified_bootstrap_ci`` takes; the same tasks in order."""
    xs, ys = _tasks(x), _tasks(y)
    if len(xs) != len(ys):
        raise ValueError(f"probability of improvement needs the same tasks on both sides, got {len(xs)} and {len(ys)}")
    return float(np.mean([_pairwise(a[None], b[None])[0] for a, b in zip(xs, ys)]))


def _pairwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x [R, N], y [R, K] -> [R]: the fraction of pairs with x > y, ties one half."""
    gt = x[:, :, None] > y[:, None, :]
    eq = x[:, :, None] == y[:, None, :]
    return (gt + 0.5 * eq).mean(axis=(1, 2))


def probability_of_improvement_ci(x, y, level=0.95, reps=2000, seed=0):
    """Percentile CI ``(low, high)`` of P(X > Y): each replicate resamples X's and Y's runs independently
    with replacement within every task (the stratified bootstrap). Deterministic given ``seed``."""
    xs, ys = _tasks(x), _tasks(y)
    rng = np.random.default_rng(seed)
    per_task = [_pairwise(a[rng.integers(0, len(a), (reps, len(a)))], b[rng.integers(0, len(b), (reps, len(b)))])
                for a, b in zip(xs, ys)]
    stats = np.mean(per_task, axis=0)
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))
