"""Tiny trained runs (a session fixture: `from trained_runs import trained_runs` in a test module), one per kind of policy the trained/ tests load: vector observations with the
normaliser and a Box action, images through a CNN, a Dict observation, MultiDiscrete actions."""
import pytest

from conftest import TINY

CASES = {
    "vector": ("Pendulum-v1", {"algo.normalize_obs": True}),
    "image": ("MinAtar/Breakout-v1", {"algo.cnn_layers": [[16, 3, 1]], "algo.cnn_features": 32}),
    "dict": ("toy_envs:ToyDictObs-v0", {}),
    "multidiscrete": ("toy_envs:ToyMultiDiscrete-v0", {}),
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
