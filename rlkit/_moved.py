"""Import paths from before rlkit's subpackages, kept for one release with a DeprecationWarning.

A notebook that says `from rlkit.trainer import train` or a checkpoint that pickled `rlkit.sparse`'s env still
loads: the old name is the new module itself (one module object, not a copy). Removed in rlkit 0.3.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "rlkit.agent": "rlkit.algos.base",
    "rlkit.ppo": "rlkit.algos.ppo",
    "rlkit.rnd": "rlkit.algos.rnd",
    "rlkit.networks": "rlkit.nn.networks",
    "rlkit.optim": "rlkit.nn.optim",
    "rlkit.jit": "rlkit.fast.jit",
    "rlkit.numpy_mlp": "rlkit.nn.numpy_mlp",
    "rlkit.memory": "rlkit.data.rollout",
    "rlkit.normalize": "rlkit.data.normalize",
    "rlkit.vector": "rlkit.envs.vector",
    "rlkit.wrappers": "rlkit.envs.wrappers",
    "rlkit.spaces": "rlkit.envs.spaces",
    "rlkit.affinity": "rlkit.envs.affinity",
    "rlkit.sparse": "rlkit.envs.sparse",
    "rlkit.latency": "rlkit.envs.latency",
    "rlkit.trainer": "rlkit.loop.trainer",
    "rlkit.evaluate": "rlkit.loop.evaluate",
    "rlkit.guards": "rlkit.loop.guards",
    "rlkit.checkpoint": "rlkit.runs.checkpoint",
    "rlkit.rundir": "rlkit.runs.rundir",
    "rlkit.metrics": "rlkit.runs.metrics",
    "rlkit.distributed": "rlkit.runs.distributed",
    "rlkit.kernels": "rlkit.runs.kernels",
    "rlkit.report": "rlkit.analysis.report",
    "rlkit.scores": "rlkit.analysis.scores",
    "rlkit.live": "rlkit.experiments.notebook",
    "rlkit.tensorboard": "rlkit.analysis.tensorboard",
    "rlkit.runner": "rlkit.experiments.runner",
    "rlkit.launch": "rlkit.experiments.launch",
    "rlkit.cluster": "rlkit.experiments.cluster",
    "rlkit.sweep": "rlkit.experiments.sweep",
    "rlkit.tune": "rlkit.experiments.tune",
    "rlkit.tune_report": "rlkit.experiments.tune_report",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}; the old import path goes in rlkit 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:  # the module it stands for is already executed
        pass


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
