"""Envs that misbehave: one that hangs off the main thread or after SIGALRM's handler was reset, a module that
raises on import, envs that cannot be pickled (re-seeded on resume) and envs registered with a lambda
(checkpointed by cloudpickle). A hung env under each backend, processes included: tests/integration/test_hung_envs.py."""
import pytest

import faultenvs  # noqa: F401 - registers the misbehaving envs
from conftest import learned_rows
from rlkit import ConfigError, load_config, train
from rlkit.envs.vector import EnvStepTimeout
from rlkit.runs.checkpoint import load_checkpoint
from rundirs import CARTPOLE, Interrupt, status, stop_at


def test_step_timeout_in_an_owner_thread_off_the_main_thread(tiny):
    """Off the main thread no alarm can interrupt the caller, but a hung worker thread is still timed."""
    import threading

    import numpy as np

    from rlkit.config import load_config
    from rlkit.envs.make import make_env
    from rlkit.envs.vector import ThreadedEnvs
    cfg = load_config({"env": {"id": "faultenvs:Hang-v0", "kwargs": {"at_step": 3, "env_index": 3,
                                                                      "every_step": 0.02}}})
    outcome = {}

    def collect():
        envs = ThreadedEnvs([lambda: make_env(cfg.env)] * 4, list(range(4)), (4,), True, 2, one_core=False,
                            step_timeout=0.5)
        envs._owners_ran = True
        envs.reset()
        try:
            for _ in range(5):
                envs.step(np.zeros(4, np.int64))
        except EnvStepTimeout as e:
            outcome["error"] = str(e)
        finally:
            envs.close()

    thread = threading.Thread(target=collect)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert "environment 3 did not return from step()" in outcome.get("error", ""), outcome


def test_step_timeout_survives_a_reset_sigalrm_handler():
    """pytest-timeout (and other code) resets SIGALRM to its default action, which ends the process: the
    next vector installs the watchdog's handler again, and an alarm is never sent to another handler."""
    import signal

    import numpy as np

    from rlkit.envs.make import make_env
    from rlkit.envs.vector import SerialEnvs
    cfg = load_config({"env": {"id": "faultenvs:Hang-v0", "kwargs": {"at_step": 2, "env_index": 1, "seconds": 5}}})
    SerialEnvs([lambda: make_env(cfg.env)], [0], (4,), True, step_timeout=0.3).close()
    previous = signal.signal(signal.SIGALRM, signal.SIG_DFL)
    try:
        envs = SerialEnvs([lambda: make_env(cfg.env)] * 2, [0, 1], (4,), True, step_timeout=0.3)
        envs.reset()
        with pytest.raises(EnvStepTimeout, match="environment 1 did not return from step"):
            for _ in range(3):
                envs.step(np.zeros(2, np.int64))
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_env_module_that_raises_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "brokenenvs.py").write_text("raise RuntimeError('simulator library missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from rlkit.envs.make import make_env
    with pytest.raises(ConfigError, match="importing 'brokenenvs' .* raised RuntimeError: simulator library missing"):
        make_env(load_config({"env": {"id": "brokenenvs:Sim-v0"}}).env)


def test_unpicklable_envs_resume_from_reseeded_envs(tmp_path, tiny, capfd):
    overrides = {**tiny, "env.id": "faultenvs:Unpicklable-v0"}
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=overrides, progress=False, callbacks=[stop_at(400)])
    assert "envs cannot be pickled" in capfd.readouterr().err
    assert load_checkpoint(run / "checkpoint.pt")["envs"] is None
    train(CARTPOLE, run, overrides=overrides, progress=False, resume=True)
    s = status(run)
    assert s["state"] == "finished" and s["envs_restored"] is False and s["policy_step"] == 512


def test_lambda_registered_env_is_checkpointed_with_cloudpickle(tmp_path, tiny):
    overrides = {**tiny, "env.id": "faultenvs:LambdaCartPole-v0"}
    full = train(CARTPOLE, tmp_path / "full", overrides=overrides, progress=False)
    run = tmp_path / "r"
    with pytest.raises(Interrupt):
        train(CARTPOLE, run, overrides=overrides, progress=False, callbacks=[stop_at(400)])
    train(CARTPOLE, run, overrides=overrides, progress=False, resume=True)
    assert status(run)["envs_restored"] is True
    assert learned_rows(run).equals(learned_rows(full))
