"""Tiny trained runs (a session fixture: `from trained_runs import trained_runs` in a test module), one per kind of policy the trained/ tests load: vector observations with the
normaliser and a Box action, images through a CNN, a Dict observation, MultiDiscrete actions (PPO), and the
off-policy algorithms: SAC on Pendulum, DQN on CartPole (which also records a video while it trains)."""
import pytest

from conftest import TINY

# the off-policy runs: 64 random steps, then small networks trained on 16-transition batches
OFF_POLICY = {"learning_starts": 64, "algo.hidden_sizes": [16, 16], "algo.mini_batch_size": 16,
              "algo.buffer_size": 1000}
CASES = {
    "vector": ("Pendulum-v1", {"algo.normalize_obs": True}),
    "image": ("MinAtar/Breakout-v1", {"algo.cnn_layers": [[16, 3, 1]], "algo.cnn_features": 32}),
    "dict": ("toy_envs:ToyDictObs-v0", {}),
    "multidiscrete": ("toy_envs:ToyMultiDiscrete-v0", {}),
    "sac": ("Pendulum-v1", {**OFF_POLICY, "algo.name": "sac", "train_every": 4}),
    "dqn": ("CartPole-v1", {**OFF_POLICY, "algo.name": "dqn", "algo.kwargs.learning_rate": 1e-3,
                            "eval.video_every": 512}),
}


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """{case: run directory} of finished tiny runs (trained once for every test that uses them)."""
    import rlkit

    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for case, (env_id, extra) in CASES.items():
        runs[case] = rlkit.train({"env": {"id": env_id}}, root / case, overrides={**TINY, **extra}, progress=False)
    return runs
