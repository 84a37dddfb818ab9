"""The benchmark scripts as a researcher runs them: what they leave behind when stopped."""
import subprocess
import sys
import time
from pathlib import Path

from test_runner import alive

REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_learning_check_takes_its_seeds_with_it(tmp_path):
    """SIGKILL reaches only the script; its pool's workers must not train on, orphaned."""
    out = tmp_path / "runs"
    script = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks/learning.py"), str(REPO / "params/cartpole.yaml"), "--seeds", "0-1",
         "--jobs", "2", "--threshold", "0", "--out", str(out), "--set", "total_steps=100000000"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: all((out / f"seed{s}" / "status.json").exists() for s in (0, 1)), 120), \
            script.stderr.read().decode() if script.poll() is not None else "the seeds did not start"
        workers = children(script.pid)
        assert len(workers) == 2 and all(alive(w) for w in workers)
    finally:
        script.kill()
        script.wait()
    assert wait_for(lambda: not any(alive(w) for w in workers), 10), "seeds still training after the script died"
    assert not list(tmp_path.glob("results/benchmarks/learning_*.csv"))  # no unfinished seed reported


def test_a_learning_check_at_other_settings_keeps_its_own_csv():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning", REPO / "benchmarks/learning.py")
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)
    csv = lambda *overrides: learning.results_csv(Path("results"), "pendulum_sac", list(overrides))  # noqa: E731
    assert csv() == Path("results/learning_pendulum_sac.csv")
    assert csv("a=1", "b=2") == csv("b=2", "a=1") == Path("results/learning_pendulum_sac__a=1__b=2.csv")
    assert len({csv(), csv("a=1"), csv("a=2"), csv("a=1", "b=2")}) == 4


def test_the_overlap_case_measures_both_loops_side_by_side(tmp_path):
    """throughput.py case 12 (a smoke run: --quick numbers mean nothing): a serial and an overlap row per run,
    each overlap row with its ratio to the serial one."""
    import pandas as pd

    out = tmp_path / "throughput.csv"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/throughput.py"), "--quick", "--reps", "1",
                           "--cases", "12", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(out)
    import importlib.util
    runs = 3 if importlib.util.find_spec("mujoco") else 2  # SAC on Hopper needs the mujoco extra; DQN's two do not
    assert sorted(rows.case) == ["12 overlap"] * runs + ["12 serial"] * runs
    assert {"DQN CartPole-v1, case 11's settings", "DQN LatencyCartPole (0.5 ms a step), case 11's settings"} <= \
        set(rows.name)
    overlap = rows[rows.case == "12 overlap"]
    assert (overlap.value > 0).all() and (overlap.ratio > 0).all() and (overlap.ratio_to == "serial").all()


def test_the_floor_case_puts_each_gradient_step_above_its_matmuls(tmp_path):
    """throughput.py case 13: per algorithm an update row, the same step compiled (algo.kwargs.compile), and
    compiled in bf16-mixed (algo.kwargs.precision), a floor row (its matmuls at this CPU's matmul rate) and,
    with SBX installed, SBX's step; the floor above zero and below every float32 step that contains those
    matmuls."""
    import importlib.util

    import pandas as pd

    out = tmp_path / "throughput.csv"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/throughput.py"), "--quick", "--reps", "1",
                           "--cases", "13", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(out)
    runs = 2 if importlib.util.find_spec("mujoco") else 1  # SAC on Hopper needs the mujoco extra
    sbx = runs if importlib.util.find_spec("sbx") else 0  # SBX's row: the bench extra
    assert sorted(rows.case) == ["13 SBX"] * sbx + ["13 floor"] * runs + ["13 update"] * runs + \
        ["13 update-bf"] * runs + ["13 update-c"] * runs
    for _, group in rows.groupby("name"):
        floor, update, compiled = (group[group.case == f"13 {kind}"].value.item() for kind in ("floor", "update", "update-c"))
        assert 0 < floor < min(update, compiled)
        assert group[group.case == "13 update-c"].ratio_to.item() == "eager"
        # bf16-mixed: its matmuls in bfloat16 may run below the float32 floor, not below zero
        assert group[group.case == "13 update-bf"].value.item() > 0
        assert group[group.case == "13 update-bf"].ratio_to.item() == "eager"
        if sbx:  # SBX's step runs the same matmuls
            assert group[group.case == "13 SBX"].value.item() > floor
            assert group[group.case == "13 SBX"].ratio_to.item() == "compiled"
