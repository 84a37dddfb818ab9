"""rlkit: a notebook-first experiment kit for reinforcement learning.

The tree is the architecture, bottom to top (a module imports only from its own level or below;
tests/unit/test_layers.py checks it):

    config                   the configuration: every key, its default and its checks
    steps, fast/             the step counters and schedule; the compiled CPU loops
    envs/, data/, runs/      environments; memories and normalisers; a run's files, metrics, checkpoints
    nn/                      networks, the optimizer, plain MLPs in numpy
    algos/                   the learner contracts, PPO, A2C, RND
    loop/                    the trainer that any learner plugs into, evaluation, guards
    trained/                 a run's policy loaded to act (weights only), evaluated anew, recorded, exported
    analysis/                scores, the report, live plots, TensorBoard export
    experiments/             sweeps, batches through papermill (local or Dask), tuning, notebook helpers
    cli                      the `rlkit` command
"""
__version__ = "0.2.0"

from rlkit import _moved
from rlkit.config import Config, ConfigError, load_config  # noqa: E402
from rlkit.runs.rundir import RunExistsError  # noqa: E402

_moved.install()

__all__ = ["Config", "ConfigError", "RunExistsError", "load", "load_config", "train", "__version__"]


def __getattr__(name):
    # `rlkit.train` pulls in torch (~2 s); the report and the runner import rlkit without needing it.
    if name == "train":
        from rlkit.trained.callbacks import train  # the trainer's, with the config's videos and live TensorBoard
        return train
    if name == "load":  # a run's policy, to act: rlkit/trained/policy.py
        from rlkit.trained.policy import load
        return load
    raise AttributeError(f"module 'rlkit' has no attribute {name!r}")
