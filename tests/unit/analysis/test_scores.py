"""rlkit/analysis/scores.py and the report's tables against hand-computed cases: the final-score window, IQM and
bootstrap CIs, the probability of improvement, what differs between configs, readable numbers."""
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from rlkit.analysis import report
from rlkit.analysis import scores


def rows(points, metric="eval/return"):
    return pd.DataFrame({"policy_step": [p for p, _ in points], "metric": metric, "value": [v for _, v in points]})


# ---------------------------------------------------------------- the final score
def test_final_score_is_the_last_tenth_of_the_run():
    # evaluations every 10k up to 100k: the last 10% is policy_step >= 90k -> mean(90k, 100k)
    evals = rows([(s, float(s // 1000)) for s in range(10_000, 100_001, 10_000)])
    assert scores.final_score(evals) == pytest.approx((90 + 100) / 2)
    # other metrics logged later extend the run: its last policy step is 110k -> window from 99k
    longer = pd.concat([evals, rows([(110_000, 0.0)], "perf/sps")])
    assert scores.final_score(longer) == 100.0
    assert scores.final_score(evals, window=0.25) == pytest.approx((80 + 90 + 100) / 3)  # >= 75k
    assert scores.final_score(evals, window=1.0) == pytest.approx(55.0)  # every evaluation


def test_final_score_of_a_short_run_never_uses_early_evaluations():
    # the case: a short run whose evaluations were 20, 60, 500, 335 at 2.5k..10k. A tail-of-five mean
    # mixes in 20 and 60; the window takes the last 10% of 10k steps, i.e. only the evaluation at 10k.
    short = rows([(2500, 20.0), (5000, 60.0), (7500, 500.0), (10_000, 335.0)])
    assert scores.final_score(short) == 335.0
    # no evaluation in the window: at least one, the latest, counts
    sparse = pd.concat([rows([(1000, 7.0), (5000, 9.0)]), rows([(20_000, 1.0)], "episode/return")])
    assert scores.final_score(sparse) == 9.0
    # several evaluations at the last step are averaged
    assert scores.final_score(rows([(100, 1.0), (100, 3.0)])) == 2.0
    assert np.isnan(scores.final_score(rows([(100, 1.0)], "episode/return")))
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="window"):
            scores.final_score(short, window=bad)


# ---------------------------------------------------------------- aggregates
def test_iqm_mean_median_by_hand():
    assert scores.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # mean(3, 4, 5, 6)
    assert scores.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    assert scores.iqm([1, 2, 3, 4, 100]) == 3.0  # n=5: one dropped per end
    assert scores.iqm([5, 1, 3]) == 3.0  # n<4: the mean
    assert scores.mean([1, 2, 3, 4, 100]) == 22.0 and scores.median([1, 2, 3, 4, 100]) == 3.0
    rng = np.random.default_rng(0)
    for n in range(1, 14):
        x = rng.normal(size=n)
        assert scores.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25))


def test_bootstrap_ci_by_hand():
    # two runs [0, 1]: each replicate has two draws, so the mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4;
    # the 95% percentile interval spans [0, 1] and the 50% one is {0.5}
    lo, hi = scores.stratified_bootstrap_ci([[0.0, 1.0]], scores.mean, level=0.95, reps=4000)
    assert (lo, hi) == (0.0, 1.0)
    assert scores.stratified_bootstrap_ci([[0.0, 1.0]], scores.mean, level=0.4, reps=4000) == (0.5, 0.5)
    # strata kept: 2 runs of task 1 and 3 of task 2 in every replicate -> the pooled mean (1+1+3+3+3)/5 always
    assert scores.stratified_bootstrap_ci([[1.0, 1.0], [3.0, 3.0, 3.0]], scores.mean) == pytest.approx((2.2, 2.2))
    assert scores.stratified_bootstrap_ci(np.full((4, 2), 7.0)) == (7.0, 7.0)
    ci = scores.stratified_bootstrap_ci(np.random.default_rng(1).normal(10, 2, (10, 3)), seed=3)
    assert ci == scores.stratified_bootstrap_ci(np.random.default_rng(1).normal(10, 2, (10, 3)), seed=3)


# ---------------------------------------------------------------- probability of improvement
def test_probability_of_improvement_by_hand():
    # x = [1, 3], y = [2]: pairs (1>2: 0), (3>2: 1) -> 1/2
    assert scores.probability_of_improvement([[1.0, 3.0]], [[2.0]]) == 0.5
    # ties count one half: x = [2, 2], y = [2, 1] -> (0.5 + 1 + 0.5 + 1) / 4 = 0.75
    assert scores.probability_of_improvement([[2.0, 2.0]], [[2.0, 1.0]]) == 0.75
    # x = [5, 6, 7] beats every y -> 1; the reverse -> 0
    assert scores.probability_of_improvement([[5, 6, 7]], [[1, 2]]) == 1.0
    assert scores.probability_of_improvement([[1, 2]], [[5, 6, 7]]) == 0.0
    # two tasks are averaged: task 1 gives 1, task 2 gives 0.5 -> 0.75
    assert scores.probability_of_improvement([[9.0], [1.0, 3.0]], [[0.0], [2.0]]) == 0.75
    # the Mann-Whitney U statistic / (N K), as Agarwal et al. (2021) define it
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 7), rng.normal(0, 1, 5)
    u = scipy.stats.mannwhitneyu(x, y, alternative="greater").statistic
    assert scores.probability_of_improvement([x], [y]) == pytest.approx(u / 35)
    with pytest.raises(ValueError, match="same tasks"):
        scores.probability_of_improvement([[1.0], [2.0]], [[1.0]])


def test_probability_of_improvement_ci():
    # every x above every y: every resample gives 1
    assert scores.probability_of_improvement_ci([[5.0, 6.0]], [[1.0, 2.0]]) == (1.0, 1.0)
    # one run each, x = 1 and y = 1: always a tie
    assert scores.probability_of_improvement_ci([[1.0]], [[1.0]]) == (0.5, 0.5)
    # x = [0, 2], y = [1]: a replicate draws x twice -> P is 0 (both 0), 0.5 (mixed) or 1 (both 2)
    assert scores.probability_of_improvement_ci([[0.0, 2.0]], [[1.0]], reps=4000) == (0.0, 1.0)
    assert scores.probability_of_improvement_ci([[0.0, 2.0]], [[1.0]], level=0.4, reps=4000) == (0.5, 0.5)


# ---------------------------------------------------------------- tables
def test_config_diff_shows_only_what_differs():
    a = {"seed": 0, "env": {"id": "X-v0", "kwargs": {}}, "algo": {"beta": 0.5, "lr": 0.001, "sizes": [64, 64]}}
    b = {"seed": 1, "env": {"id": "X-v0", "kwargs": {}}, "algo": {"beta": 2.0, "lr": 0.001, "sizes": [32]}}
    c = {"seed": 2, "env": {"id": "X-v0", "kwargs": {"hard": True}}, "algo": {"beta": 0.5, "lr": 0.001, "sizes": [64, 64]}}
    diff = report.config_diff({"a": a, "b": b, "c": c})
    assert list(diff.columns) == ["algo.beta", "algo.sizes", "env.kwargs", "env.kwargs.hard"]
    assert diff.loc["a"].tolist() == ["0.5", "[64, 64]", "{}", "(unset)"]
    assert diff.loc["b"].tolist() == ["2", "[32]", "{}", "(unset)"]
    assert diff.loc["c", "env.kwargs.hard"] == "true"
    assert report.config_diff({"a": a, "a2": dict(a, seed=9)}).empty  # only the seed differs: nothing
    assert report.config_diff({"a": a}).empty


def test_readable_numbers():
    assert [report.readable(v) for v in (16020.4, 1e6, 500.0, 3, 0.0003, 12.3456, -87.25, 0.5)] == \
        ["16,020", "1,000,000", "500", "3", "0.0003", "12.35", "-87.25", "0.5"]
    assert report.readable(float("nan")) == "" and report.readable(None) == ""
    assert report.with_ci(110.0, 100.0, 120.0) == "110 [100, 120]"
