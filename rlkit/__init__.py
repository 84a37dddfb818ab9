"""rlkit: a notebook-first experiment kit for reinforcement learning."""
__version__ = "0.1.0"

from rlkit.config import Config, ConfigError, load_config  # noqa: E402
from rlkit.rundir import RunExistsError  # noqa: E402

__all__ = ["Config", "ConfigError", "RunExistsError", "load_config", "train", "__version__"]


def __getattr__(name):
    # `rlkit.train` pulls in torch (~2 s); the report and the runner import rlkit without needing it.
    if name == "train":
        from rlkit.trainer import train
        return train
    raise AttributeError(f"module 'rlkit' has no attribute {name!r}")
