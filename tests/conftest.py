import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# tests/unit mirrors rlkit's subpackages (fast, in-process); tests/integration runs real processes, notebooks,
# a browser, Dask and torchrun. Both import these helpers (conftest) and tests/support (toy and faulty envs).
for folder in (Path(__file__).parent, Path(__file__).parent / "support"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A run small enough for a unit test: 2 threads x 2 envs, 64-step batches, a few updates.
TINY = {
    "total_steps": 512, "log_every": 128, "checkpoint_every": 256,
    "eval.every": 256, "eval.episodes": 2,
    "parallel.num_threads": 2, "parallel.envs_per_thread": 2,
    "algo.batch_size": 64, "algo.mini_batch_size": 32, "algo.k_epochs": 2,
}


@pytest.fixture
def tiny():
    return dict(TINY)


@pytest.fixture
def root():
    return ROOT


def learned_rows(run_dir):
    """A run's metrics.csv without its wall-clock measurements (the perf/ rows, the wall_time column): what
    two runs of the same seed, or a resumed run and an uninterrupted one, must share exactly."""
    from rlkit.runs.metrics import read_metrics

    df = read_metrics(Path(run_dir) / "metrics.csv")
    return df[~df.metric.str.startswith("perf/")].drop(columns=["wall_time"]).reset_index(drop=True)


def run_cli(*args, cwd=ROOT):
    import subprocess
    return subprocess.run([sys.executable, "-m", "rlkit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def pytest_collection_modifyitems(items):
    """Everything under tests/integration is marked `integration`: `pytest tests/unit` (or -m "not integration")
    is the fast subset."""
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
