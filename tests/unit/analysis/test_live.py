"""What a person reads in the live notebook: the curves' panels and ticks, the progress bar's one speed, the
whole history of a resumed run, and an interrupt that is one line."""
import json
import signal
import time

import numpy as np
import pytest

from rlkit.analysis import live
from rlkit.analysis.live import LivePlot, learning_curves, steps_label
from rlkit.loop.progress import ProgressBar


def test_tick_labels_fit_small_panels():
    assert [steps_label(v) for v in (0, 500, 50_000, 150_000, 1_500_000)] == ["0", "500", "50k", "150k", "1.5M"]


def test_an_early_value_spike_does_not_flatten_the_rest():
    xs = np.arange(1, 101) * 1000
    value_loss = np.r_[np.full(5, 300.0), np.full(95, 0.5)]
    fig = learning_curves({"episode/return": (xs, np.linspace(0, 1, 100)), "loss/value": (xs, value_loss),
                           "loss/policy": (xs, np.full(100, -0.01))}, title="CartPole-v1, seed 0")
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert panels["value loss (log)"].get_yscale() == "log"
    assert panels["policy loss"].get_yscale() == "linear"  # its own axis, not the value loss's
    assert any(t.get_text() == "not logged yet" for t in panels["approx. KL"].texts)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    labels = [t.get_text() for t in panels["policy loss"].get_xticklabels() if t.get_text()]
    assert labels and all(len(label) <= 5 for label in labels)  # 50k, 100k: no "0 50000100000150000"
    renderer = canvas.get_renderer()
    box = fig.bbox
    for ax in fig.axes:  # every title lies inside the figure, none clipped
        extent = ax.title.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, ax.get_title()


@pytest.mark.parametrize("params, panels", [
    ("params/pendulum_sac.yaml", ["critic loss (log)", "actor loss", "alpha (log)", "entropy"]),
    ("params/cartpole_dqn.yaml", ["TD loss (log)", "mean Q", "epsilon"])])
def test_off_policy_runs_show_their_own_diagnostics(tmp_path, params, panels):
    """A SAC or DQN run's curves show its own losses and statistics, each panel drawn, none 'not logged yet'."""
    from rlkit import train

    run = train(params, tmp_path / "run", progress=False,
                overrides={"total_steps": 1200, "learning_starts": 200, "eval.every": 600, "algo.hidden_sizes": [16]})
    fig = live.run_curves(run)
    drawn = {ax.get_title(): ax for ax in fig.axes[1:]}
    assert list(drawn) == panels
    assert all(ax.lines and not ax.texts for ax in drawn.values())
    plot = LivePlot()  # the live plot draws once the run's first two panels have points
    plot({"policy_step": 8}, {"episode/return": 10.0})
    plot({"policy_step": 16}, {"episode/return": 12.0})
    first = next(m for name, ms in live.DIAGNOSTICS[params.split("_")[-1][:3]].items() for m in ms)
    plot({"policy_step": 300}, {first: 0.5})
    assert plot.has_returns()


def test_nothing_is_drawn_before_there_is_a_curve_and_losses():
    plot = LivePlot()
    plot({"policy_step": 8}, {"episode/return": 10.0})
    plot({"policy_step": 16}, {"episode/return": 12.0})
    assert not plot.has_returns()
    plot({"policy_step": 64}, {"loss/policy": 0.1, "loss/value": 3.0})
    assert plot.has_returns()


def test_a_resumed_run_plots_its_whole_history(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "policy_step,env_step,gradient_step,wall_time,metric,value\n"
        "100,100,0,1.0,episode/return,10\n200,200,4,2.0,loss/value,5\n300,300,4,3.0,episode/return,20\n")
    plot = LivePlot(run_dir=tmp_path)
    plot({"policy_step": 300}, {"episode/return": 20.0})  # the first row after resume is already in the file
    plot({"policy_step": 400}, {"episode/return": 30.0})
    assert plot.series["episode/return"] == ([100, 300, 400], [10.0, 20.0, 30.0])
    assert plot.series["loss/value"] == ([200], [5.0])


def test_the_progress_bar_shows_one_speed_and_a_smoothed_return(capsys):
    bar = ProgressBar(total_steps=10_000)
    bar({"policy_step": 5_000}, {"episode/return": -80.0})  # a resumed run: the first row is at 5,000
    bar({"policy_step": 5_100}, {"episode/return": -100.0})
    bar({"policy_step": 5_120}, {"perf/sps": 12_345.6})
    assert bar.bar.initial == 5_000 and bar.bar.n == 5_120  # the jump to the checkpoint is not progress
    assert bar.postfix() == "12,346 steps/s, return -90.0 (last 2)"
    assert "{rate" not in bar.bar.bar_format  # tqdm's own rate is not on the bar
    bar.close()


def interrupt_inside_numba():
    """Kernel > Interrupt landing inside a numba-compiled call, for real: numba's dispatcher raises a SystemError
    caused by the KeyboardInterrupt, not the KeyboardInterrupt."""
    import _thread
    import threading

    from rlkit.nn.numpy_mlp import _categorical_sample
    logits, uniform = np.zeros((1, 2), np.float32), np.full(1, 0.5, np.float32)
    threading.Timer(0.05, _thread.interrupt_main).start()  # arrives while the loop is (nearly always) in the call
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _categorical_sample(logits, uniform)
    raise AssertionError("no interrupt arrived in 30 s")


@pytest.fixture
def sigint_handled():
    """Python's own SIGINT handler, as in a kernel: a process started in the background of a shell inherits SIGINT
    ignored, and then _thread.interrupt_main does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def raise_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", [raise_interrupt, interrupt_inside_numba])
def test_an_interrupt_in_the_notebook_is_one_line_and_resumable(tmp_path, monkeypatch, capsys, tiny, where,
                                                                sigint_handled):
    from rlkit.experiments.notebook import train_in_notebook
    from rlkit.config import load_config

    calls = []

    def interrupt(self, counters, metrics):
        calls.append(counters["policy_step"])
        if counters["policy_step"] >= 384:
            where()

    monkeypatch.setattr(LivePlot, "__call__", interrupt)
    cfg = load_config("params/cartpole.yaml", tiny)
    run_dir = train_in_notebook(cfg, tmp_path / "run", progress=False)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["stopped at policy step 384; Run All resumes from the checkpoint at policy step 256"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "Run All resumes it from the checkpoint at policy step 256" in status["error"]
    monkeypatch.setattr(LivePlot, "__call__", lambda self, counters, metrics: None)
    train_in_notebook(cfg, run_dir, progress=False)  # Run All again: resumes and finishes
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"


@pytest.fixture(autouse=True)
def _forget_drawn():
    live.DRAWN.clear()
