"""Environments: building them (make), vectors of them (vector), the kit's wrappers and spaces, and test tasks."""
import importlib

_MADE = ("make_env", "probe_env", "inspect_env", "resolve_env_fields", "Episodes", "EnvInfo")


def __getattr__(name):
    # `from rlkit.envs import make_env` predates the subpackage; these names live in rlkit.envs.make
    if name in _MADE:
        return getattr(importlib.import_module("rlkit.envs.make"), name)
    raise AttributeError(f"module 'rlkit.envs' has no attribute {name!r}")
