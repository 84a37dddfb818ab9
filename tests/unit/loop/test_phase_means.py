"""Off-policy phases averaged into one row: each metric the mean over the gradient steps, the seconds summed."""
import pytest

from rlkit.loop.phase_means import PhaseMeans


def test_a_row_is_the_mean_over_gradient_steps_and_the_sum_of_seconds():
    means = PhaseMeans()
    assert means.pop() == {}
    means.add({"loss/q": 1.0, "dqn/q": 4.0}, updates=3, seconds=0.5)  # a first phase of 3 (pretrain steps)
    means.add({"loss/q": 5.0, "dqn/q": 0.0}, updates=1, seconds=0.25)
    assert means.pop() == pytest.approx({"loss/q": 2.0, "dqn/q": 3.0, "perf/update_seconds": 0.75})
    assert means.pop() == {}  # a fresh start after each row
    means.add({"loss/q": 2.0, "rnd/loss": 6.0}, updates=1, seconds=0.1)  # a metric only some phases have
    means.add({"loss/q": 4.0}, updates=1, seconds=0.1)
    assert means.pop() == pytest.approx({"loss/q": 3.0, "rnd/loss": 6.0, "perf/update_seconds": 0.2})


def test_the_sums_survive_a_checkpoint():
    means, resumed = PhaseMeans(), PhaseMeans()
    means.add({"loss/critic": 2.5}, updates=2, seconds=0.1)
    resumed.load_state_dict(means.state_dict())
    means.add({"loss/critic": 1.0}, updates=1, seconds=0.2)
    resumed.add({"loss/critic": 1.0}, updates=1, seconds=0.2)
    assert resumed.pop() == means.pop() == pytest.approx({"loss/critic": 2.0, "perf/update_seconds": 0.3})
