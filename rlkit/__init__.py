"""rlkit: a notebook-first experiment kit for reinforcement learning."""
__version__ = "0.1.0"

from rlkit.config import Config, ConfigError, load_config  # noqa: E402
from rlkit.rundir import RunExistsError  # noqa: E402
from rlkit.train import train  # noqa: E402

__all__ = ["Config", "ConfigError", "RunExistsError", "load_config", "train", "__version__"]
