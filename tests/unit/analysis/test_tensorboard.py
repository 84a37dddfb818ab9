"""rlkit tensorboard: every run's metrics.csv as TensorBoard event files, step = policy_step, read back
with TensorBoard's own event reader."""
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_report import HEADER

from rlkit.cli import main


def test_export_matches_metrics_csv(tmp_path, capsys):
    run = tmp_path / "results" / "cartpole" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(HEADER + "1000,1000,10,1.5,eval/return,20.5\n1000,1000,10,1.5,loss/policy,-0.25\n"
                                     "2000,4000,20,3.0,eval/return,35.0\n2000,4000,20,3.0,perf/sps,1234.0\n")
    for _ in range(2):  # exporting again replaces the events instead of doubling them
        assert main(["tensorboard", str(tmp_path / "results")]) == 0
    assert "1 runs written as TensorBoard event files: tensorboard --logdir" in capsys.readouterr().out
    events = tmp_path / "results" / "tensorboard" / "cartpole" / "seed0"
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["eval/return", "loss/policy", "perf/sps"]
    assert [(e.step, e.value) for e in acc.Scalars("eval/return")] == [(1000, 20.5), (2000, 35.0)]
    assert [(e.step, e.value) for e in acc.Scalars("loss/policy")] == [(1000, -0.25)]
    walls = [e.wall_time for e in acc.Scalars("eval/return")]
    assert walls[1] - walls[0] == pytest.approx(1.5, abs=1e-3)  # the run's wall_time, anchored to real time
    assert main(["tensorboard", str(tmp_path / "empty")]) == 2  # no runs: one line, exit 2
    assert "no runs found" in capsys.readouterr().err
