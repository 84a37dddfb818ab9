"""A hung env fails the run within its step timeout, naming the env's index, with every backend: worker threads
and the process backend's subprocesses."""
import time

import pytest

import faultenvs  # noqa: F401 - registers the misbehaving envs
from rlkit import train
from rlkit.envs.vector import EnvStepTimeout
from rundirs import CARTPOLE, status


@pytest.mark.parametrize("backend, threads, index", [("thread", 1, 2), ("thread", 2, 0), ("thread", 2, 3),
                                                     ("process", 1, 1)])
def test_hung_env_step_fails_naming_the_env(tmp_path, tiny, backend, threads, index):
    envs = 4 // threads
    overrides = {**tiny, "env.id": "faultenvs:Hang-v0", "env.kwargs": {"at_step": 8, "env_index": index},
                 "env.step_timeout": 0.5, "parallel.backend": backend, "parallel.num_threads": threads,
                 "parallel.envs_per_thread": envs, "eval.every": 0}
    t0 = time.monotonic()
    with pytest.raises(EnvStepTimeout, match=f"environment {index} did not return from step"):
        train(CARTPOLE, tmp_path / "r", overrides=overrides, progress=False)
    assert time.monotonic() - t0 < 30
    s = status(tmp_path / "r")
    assert s["state"] == "failed" and "env.step_timeout=0.5" in s["error"]
