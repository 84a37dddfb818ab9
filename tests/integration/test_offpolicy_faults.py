"""kill -9 in the middle of a DQN and a SAC run (thread backend), then resume: the metrics rows equal an
uninterrupted run's, so the replay memory came back with the checkpoint (a resume that lost it would train
on a different memory and log different losses from the next phase on). The same with the memory in files
(algo.kwargs.replay_memory_map), killed after the ring wrapped: the undo journal gives back what it overwrote.
And SAC with parallel.overlap (a phase on its own thread)."""
import re
import signal

import pytest

from conftest import learned_rows
from rlkit import train
from rlkit.runs.rundir import RunLock
from test_faults import assert_clean, resume, start, status, wait_until

COMMON = {"total_steps": 1024, "log_every": 128, "checkpoint_every": 256, "eval.every": 512, "eval.episodes": 1,
          "parallel.num_threads": 2, "parallel.envs_per_thread": 2, "learning_starts": 64,
          "algo.buffer_size": 2000, "algo.mini_batch_size": 32, "algo.hidden_sizes": [64, 64]}
RUNS = {
    "dqn": {**COMMON, "algo.name": "dqn", "train_every": 8, "algo.per_rank_gradient_steps": 4,
            "algo.kwargs": {"target_update_interval": 64, "epsilon_decay_steps": 512, "n_step": 2},
            "env.id": "faultenvs:Hang-v0", "env.kwargs": {"every_step": 0.003}},
    "sac": {**COMMON, "algo.name": "sac", "train_every": 4, "algo.per_rank_gradient_steps": 2,
            "env.id": "Pendulum-v1"},
}
RUNS["sac-overlap"] = {**RUNS["sac"], "parallel.overlap": True}  # a phase on its own thread while the envs collect


@pytest.mark.parametrize("name", ["dqn", "sac", "sac-overlap"])
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, name):
    overrides = RUNS[name]
    reference = learned_rows(train("params/cartpole.yaml", tmp_path / "ref", overrides=overrides, progress=False))
    run = tmp_path / "r"
    proc = start(run, overrides=overrides)
    wait_until(lambda: status(run).get("policy_step", 0) >= 256 and (run / "checkpoint.pt").exists(), proc,
               timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunLock.holder(run) is None
    assert status(run)["policy_step"] < 1024  # killed mid-run
    resume(run)
    assert status(run)["state"] == "finished" and status(run)["envs_restored"] is True
    assert_clean(run)
    assert learned_rows(run).equals(reference)


def test_kill_9_with_the_replay_memory_in_files_after_the_ring_wrapped(tmp_path):
    """algo.kwargs.replay_memory_map with a ring of 100 slots per env (400 transitions over 4 envs), full from
    policy step 400: killed after the checkpoint at 512 once the run has overwritten 32 more slots that held
    transitions then, the files are not the checkpoint's; the resume undoes those writes from the journal and
    trains the rows of the uninterrupted run."""
    overrides = {**RUNS["dqn"], "algo.buffer_size": 400,
                 "algo.kwargs": {**RUNS["dqn"]["algo.kwargs"], "replay_memory_map": True}}
    reference = learned_rows(train("params/cartpole.yaml", tmp_path / "ref", overrides=overrides, progress=False))
    run = tmp_path / "r"
    proc = start(run, overrides=overrides)
    wait_until(lambda: status(run).get("policy_step", 0) >= 512
               and re.search(r"^640,", (run / "metrics.csv").read_text(), re.M), proc, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert status(run)["policy_step"] == 512  # killed between the checkpoints at 512 and 768
    journal = run / "replay" / "rank0" / "undo" / "1"  # the generation of the checkpoint at 512 (the second)
    assert [p.name for p in journal.iterdir()] == [f"{0:012d}"]  # one chunk: the interval's slots and 2 ahead
    resume(run)
    assert status(run)["state"] == "finished" and status(run)["envs_restored"] is True
    assert_clean(run)
    assert learned_rows(run).equals(reference)
