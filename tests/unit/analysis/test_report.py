"""Tests for rlkit.analysis.report: loading (torn lines), grid, statistics, the report."""
import rlkit
import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from rlkit.analysis import report
from rlkit.runs.metrics import read_metrics

HEADER = "policy_step,env_step,gradient_step,wall_time,metric,value\n"

# Hand-checkable finals: evaluations every 1000 steps; the last two of each run (its last 10% of policy
# steps: 9000 and 10000, or 7200.. for the short run: 8000 only) are c-1 and c+1 (short run: c), so the final score is c.
FINALS = {"fast": [100.0, 110.0, 120.0], "slow": [50.0, 60.0, 90.0]}
SPS = [1000.0, 2000.0, 3000.0]  # perf/sps per seed -> median 2000


def write_run(results, experiment, seed, final, last_step=10_000, env_id="CartPole-v1", torn=""):
    d = results / experiment / f"seed{seed}"
    d.mkdir(parents=True)
    steps = np.arange(0, last_step + 1, 1000)
    values = np.linspace(0.0, final, len(steps))
    values[-2:] = final + np.array([-1, 1]) if last_step == 10_000 else final
    rng = np.random.default_rng(seed)
    lines = []
    for step, v in zip(steps, values):
        row = f"{step},{step * 2},{step // 100},{step / 1000 * (1 + 0.1 * seed):.3f}"
        lines += [f"{row},episode/return,{v + rng.normal():.6f}", f"{row},eval/return,{v}",
                  f"{row},perf/sps,{SPS[seed]}"]
    (d / "metrics.csv").write_text(HEADER + "\n".join(lines) + "\n" + torn)
    (d / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "env": {"id": env_id}}))
    (d / "status.json").write_text(json.dumps({"state": "finished", "policy_step": int(last_step),
                                               "env_step": int(2 * last_step), "gradient_step": 0,
                                               "wall_time": 1.0, "error": None}))
    return d


@pytest.fixture
def results(tmp_path):
    """2 experiments x 3 seeds x 1 env; slow/seed2 stops early and has a torn last line."""
    res = tmp_path / "results"
    for exp, finals in FINALS.items():
        for seed, final in enumerate(finals):
            short = exp == "slow" and seed == 2
            write_run(res, exp, seed, final, last_step=8000 if short else 10_000,
                      torn="9000,18000,90,9.9,eval/return,12" if short else "")
    (res / "report").mkdir()  # folders without runs are skipped
    (res / "benchmarks" / "x").mkdir(parents=True)
    (res / "benchmarks" / "x" / "bench.csv").write_text("a,b\n1,2\n")
    return res


# ---------------------------------------------------------------- loading
def test_torn_last_line_is_ignored(tmp_path):
    p = tmp_path / "metrics.csv"
    good = HEADER + "0,0,0,0.1,eval/return,1.5\n1000,1000,10,1.2,eval/return,2.5\n"
    p.write_text(good + "2000,2000,20,2.3,eval/return,12")  # "12" may be a torn "12.75"
    df = read_metrics(p)
    assert df["value"].tolist() == [1.5, 2.5]
    p.write_text(good + "2000,2000,20,2.3,eval/ret")  # torn inside the metric name
    assert len(read_metrics(p)) == 2
    p.write_text(good)  # complete file: every row kept
    assert len(read_metrics(p)) == 2
    # a resumed run appending after a tear glues two rows: that line is dropped
    glued = "0,0,0,0.1,eval/re1000,1000,10,1.2,eval/return,2.5\n"
    p.write_text(HEADER + glued + "3,3,3,3.0,eval/return,3.0\n")
    assert read_metrics(p)["value"].tolist() == [3.0]
    p.write_text("0,0,0,0.1,eval/re")  # torn header: empty, no crash
    assert read_metrics(p).empty


def test_load_runs_and_info(results):
    runs = report.load_runs(results)
    assert set(runs.experiment) == {"fast", "slow"}
    assert sorted(runs.run.unique()) == ["seed0", "seed1", "seed2"]
    assert set(runs.env_id) == {"CartPole-v1"} and set(runs.seed) == {0, 1, 2}
    torn = runs[(runs.experiment == "slow") & (runs.run == "seed2")]
    assert torn.policy_step.max() == 8000  # the torn 9000 row is gone
    info = report.load_run_info(results)
    assert len(info) == 6 and set(info.state) == {"finished"}
    # no config.yaml: env falls back to "unknown", seed to the run name
    (results / "fast" / "seed1" / "config.yaml").unlink()
    row = report.load_runs(results).query("experiment == 'fast' and run == 'seed1'").iloc[0]
    assert row.env_id == "unknown" and row.seed == 1


def test_no_runs_is_a_clear_error(tmp_path):
    for d in [tmp_path / "missing", tmp_path]:
        with pytest.raises(ValueError, match="rlkit run"):
            report.load_runs(d)
        with pytest.raises(ValueError, match=str(d.name)):
            report.run_report(d)


# ---------------------------------------------------------------- grid
def tidy(run, xs, vs, metric="eval/return"):
    return pd.DataFrame({"policy_step": xs, "metric": metric, "value": vs, "run": run,
                         "experiment": "e", "env_id": "Env-v0"})


def test_grid_holds_last_value_and_stops_at_shortest_run():
    runs = pd.concat([tidy("a", [0, 10, 20], [1.0, 2.0, 3.0]),
                      tidy("b", [0, 5, 5, 15], [10.0, 10.0, 30.0, 30.0]),  # x=5 twice: averaged
                      tidy("a", [0, 20], [99.0, 99.0], metric="loss/policy")])
    g = report.on_grid(runs, "eval/return", points=5)
    grid = [0.0, 3.75, 7.5, 11.25, 15.0]  # up to min final x = 15, never extrapolated
    a, b = g[g.run == "a"], g[g.run == "b"]
    assert a.policy_step.tolist() == grid == b.policy_step.tolist()
    assert a.value.tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]
    assert b.value.tolist() == [10.0, 10.0, 20.0, 20.0, 30.0]
    # trailing mean over the last 2 logged values: a -> [1, 1.5, 2.5]
    s = report.on_grid(runs, "eval/return", points=5, smooth=2)
    assert s[s.run == "a"].value.tolist() == [1.0, 1.0, 1.0, 1.5, 1.5]
    # the grid starts where every run has logged something
    late = pd.concat([tidy("a", [0, 10], [1.0, 2.0]), tidy("b", [4, 10], [5.0, 6.0])])
    assert report.on_grid(late, "eval/return", points=3).policy_step.min() == 4
    # runs that share no range (one's wall time all after the other's end): no grid, not another run's last value
    apart = pd.concat([tidy("a", [0, 10], [1.0, 2.0]), tidy("b", [20, 30], [5.0, 6.0])])
    assert report.on_grid(apart, "eval/return", points=3).empty


# ---------------------------------------------------------------- statistics
def test_iqm_and_mean_by_hand():
    assert report.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # mean(3, 4, 5, 6)
    assert report.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # order does not matter
    assert report.iqm([1, 2, 3, 4, 100]) == 3.0  # n=5: floor(5/4)=1 dropped per end
    assert report.iqm([5, 1, 3]) == 3.0  # n<4: nothing dropped, = mean
    assert report.mean([1, 2, 3, 4, 100]) == 22.0
    rng = np.random.default_rng(0)
    for n in range(1, 14):
        x = rng.normal(size=n)
        assert report.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25))
    m = rng.normal(size=(6, 9))
    assert np.allclose(report.iqm(m, axis=1), [report.iqm(r) for r in m])
    assert np.allclose(report.iqm(m, axis=0), scipy.stats.trim_mean(m, 0.25, axis=0))


def test_stratified_bootstrap_ci():
    rng = np.random.default_rng(1)
    scores = rng.normal(10, 2, size=(10, 3))  # runs x tasks
    ci = report.stratified_bootstrap_ci(scores, report.iqm, seed=3)
    assert ci == report.stratified_bootstrap_ci(scores, report.iqm, seed=3)  # deterministic
    assert ci != report.stratified_bootstrap_ci(scores, report.iqm, seed=4)
    assert ci[0] < report.iqm(scores) < ci[1]
    low, high = report.stratified_bootstrap_ci(scores, report.mean, seed=3)
    assert low < scores.mean() < high
    many = rng.normal(10, 2, size=(200, 3))
    low2, high2 = report.stratified_bootstrap_ci(many, report.iqm, seed=3)
    assert high2 - low2 < (ci[1] - ci[0]) / 2  # ~sqrt(20) narrower
    assert report.stratified_bootstrap_ci(np.full((4, 2), 7.0)) == (7.0, 7.0)
    # per-task arrays of different lengths. Strata are respected: every replicate
    # keeps two runs of task 1 and three of task 2, so the CI collapses to the
    # pooled mean (1+1+3+3+3)/5 although the pooled values differ.
    lo, hi = report.stratified_bootstrap_ci([[1.0, 1.0], [3.0, 3.0, 3.0]], report.mean)
    assert lo == pytest.approx(2.2) and hi == pytest.approx(2.2)


def test_summarise_iqm_differs_from_mean():
    finals = [1, 2, 3, 4, 100]
    runs = pd.concat([tidy(f"seed{i}", [0, 100], [0.0, v]).assign(seed=i) for i, v in enumerate(finals)])
    s = report.summarise(runs).iloc[0]
    assert s.final_iqm == 3.0 and s.final_mean == 22.0 and s.final_median == 3.0 and s.n_seeds == 5
    assert s.final_iqm_low <= 3.0 <= s.final_iqm_high and s.final_policy_step == 100
    assert s.baseline == "e" and np.isnan(s.poi)  # the only experiment is its own baseline


def test_probability_of_improvement_over_the_baseline(results):
    runs = report.load_runs(results)
    s = report.summarise(runs).set_index("experiment")  # baseline: the first, "fast"
    # slow's finals [50, 60, 90] vs fast's [100, 110, 120]: no pair is higher -> P = 0
    assert s.loc["fast", "baseline"] == "fast" and np.isnan(s.loc["fast", "poi"])
    assert s.loc["slow", "poi"] == 0.0 and (s.loc["slow", "poi_low"], s.loc["slow", "poi_high"]) == (0.0, 0.0)
    s = report.summarise(runs, baseline="slow").set_index("experiment")
    assert s.loc["fast", "poi"] == 1.0 and s.loc["fast", "baseline"] == "slow"
    with pytest.raises(ValueError, match="--baseline nope: no such experiment; choose one of fast, slow"):
        report.summarise(runs, baseline="nope")


# ---------------------------------------------------------------- the report
def test_write_report(results, tmp_path):
    for seed in range(3):  # every seed of one experiment trained the same config (runs that differ are split)
        (results / "slow" / f"seed{seed}" / "config.yaml").write_text(
            yaml.safe_dump({"seed": seed, "env": {"id": "CartPole-v1"}, "algo": {"beta": 2.0}}))
    (results / "fast" / "seed0" / "status.json").write_text(json.dumps({"state": "failed", "error": "RuntimeError: boom"}))
    (results / "fast" / "seed0" / "train.ipynb").write_text("{}")
    out = tmp_path / "out"
    index = report.write_report(results, out)
    pngs = sorted(p.name for p in out.glob("*.png"))
    # the IQM against policy steps and against wall time: one figure, two panels
    assert pngs == ["CartPole-v1__eval-return__policy_step__wall_time.png", "CartPole-v1__eval-return__seeds.png",
                    "CartPole-v1__improvement.png", "CartPole-v1__intervals.png"]
    s = pd.read_csv(out / "summary.csv").set_index("experiment")
    assert list(s.columns[:2]) == ["env_id", "algo"] and set(s.algo) == {"ppo"}  # configs without algo.name: ppo
    for exp, finals in FINALS.items():
        assert s.loc[exp, "final_mean"] == pytest.approx(np.mean(finals))
        assert s.loc[exp, "final_iqm"] == pytest.approx(np.mean(finals))  # n=3: IQM = mean
        assert s.loc[exp, "final_median"] == pytest.approx(np.median(finals))
        assert s.loc[exp, "final_iqm_low"] <= s.loc[exp, "final_iqm"] <= s.loc[exp, "final_iqm_high"]
        assert s.loc[exp, "n_seeds"] == 3 and s.loc[exp, "median_sps"] == 2000
    assert s.loc["slow", "final_policy_step"] == 10_000  # median of 10k, 10k, 8k
    runs = pd.read_csv(out / "runs.csv").set_index(["experiment", "run"])
    assert runs.loc[("fast", "seed0"), "state"] == "failed" and runs.loc[("slow", "seed2"), "final"] == 90.0
    page = index.read_text()
    # shown: each seed, the IQM against steps and wall time, the intervals, the improvement; and the interactive figure
    assert index == out / "index.html" and page.count("<img") == 4 and "<table" in page
    assert "<script src='plotly.min.js'></script>" in page and (out / "plotly.min.js").exists()
    assert page.count("class='interactive'") == 1 and "<h2>CartPole-v1</h2>" in page
    assert 'src="CartPole-v1__eval-return__seeds.png"' in page
    assert 'src="CartPole-v1__eval-return__policy_step__wall_time.png"' in page
    assert "failed: RuntimeError: boom" in page and f"rlkit {rlkit.__version__}" in page and "commit " in page
    assert "last 10% of its policy steps" in page  # the definition of "final", stated
    assert "e+0" not in page  # readable numbers
    assert '<a href="../results/fast/seed0/train.ipynb">train.ipynb</a>' in page  # relative links
    assert "<th>algo.beta</th>" in page and "(unset)" in page  # the config diff: only slow sets algo.beta


def test_few_seeds_are_warned_about(tmp_path):
    res = tmp_path / "results"
    write_run(res, "lonely", 0, 10.0)
    rep = report.build(res)
    assert rep.warnings == ["lonely: only 1 seed with a final score; its confidence intervals say little "
                            "(use at least 3)"]
    assert "only 1 seed" in rep.header_html()


def test_relative_results_dir_is_inside_the_repository(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a kernel started anywhere
    assert report.repo_path("results") == report.REPO_ROOT / "results"
    assert report.repo_path(tmp_path) == tmp_path
    empty = report.build(tmp_path / "none")  # a fresh checkout: a report that says what to do, no traceback
    assert "run `rlkit run` first" in empty.warnings[0] and "No runs" in empty.runs_html()


def test_run_report_executes_notebook(results):
    from rlkit.runs.kernels import default_kernel_name
    assert default_kernel_name() in {"rlkit", "python3"}
    index = report.run_report(results, kernel_name="python3", x="env_step", baseline="slow")
    out = results / "report"
    assert index == out / "index.html" and index.exists()
    assert (out / "summary.csv").exists()
    assert (out / "CartPole-v1__eval-return__env_step__wall_time.png").exists()  # --x: the left panel's
    nb = nbformat.read(out / "report.ipynb", as_version=4)
    assert all(o.get("output_type") != "error" for c in nb.cells for o in c.get("outputs", []))
    # the committed notebook stays clean
    src = nbformat.read(report.NOTEBOOK, as_version=4)
    assert src.cells[1].metadata["tags"] == ["parameters"]
    assert all(c.get("execution_count") is None and not c.get("outputs")
               for c in src.cells if c.cell_type == "code")


def test_report_cli_refuses_bad_options_in_one_line(results, capsys):
    from rlkit.cli import main

    for args, message in [(["--baseline", "nope"], "--baseline nope: no such experiment; choose one of fast, slow"),
                          (["--window", "0"], "--window 0.0 must be in (0, 1]")]:
        assert main(["report", str(results), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (results / "report" / "index.html").exists()
