"""The contracts the trainer calls, and the registries that pick their implementations from the config.

An on-policy algorithm is an `Agent`: a new one is one module with a class that has these methods and
one line in AGENTS (then `algo.name: <name>`). Something that rides along the rollout and adds to the
batch (RND's intrinsic reward) is a `RolloutHook`: one class and one line in HOOKS. Registry entries are
"module:Class" strings, imported when used, so reading a config never imports torch.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from rlkit.config import ConfigError

AGENTS = {"ppo": "rlkit.algos.ppo:PPO"}
HOOKS = {"rnd": "rlkit.algos.rnd:RNDHook"}  # checkpoint keys too: a hook that is off saves None under its name


class Agent(Protocol):
    """Built as cls(algo, obs_space, action_space, device, value_heads=, actor=, critic=, loss=).

    Observations come in as numpy arrays [B, *obs_shape] (normalised by the trainer where configured);
    values are [B, value_heads], head 0 the task's. Actions are in the policy's units; env_actions maps
    them to what env.step takes."""

    actor: Any  # the modules, for tests and tools that inspect them
    critic: Any
    sync_gradients: Any  # None, or a callable run after each backward and before clipping (rlkit.runs.distributed)

    def act(self, obs: np.ndarray, generator) -> tuple[np.ndarray, np.ndarray]:
        """(actions, their log-probabilities) for the collector, every step."""

    def value(self, obs: np.ndarray) -> np.ndarray:
        """[B, value_heads]. The trainer calls it once per rollout on all the rollout's stored observations (and
        on the last ones), not every step: the weights are those of the collection either way."""

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        """The greedy action, for evaluation."""

    def random_actions(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def env_actions(self, actions: np.ndarray) -> np.ndarray: ...

    def set_lr_fraction(self, frac: float) -> None: ...

    def add_param_group(self, params, lr: float) -> Any:
        """Train more parameters in the agent's optimizer step (a hook's own network)."""

    def update(self, batch: dict, n_updates: int, rng: np.random.Generator, extra_losses=()) -> dict:
        """Train on a rollout's batch of tensors (obs, actions, logprobs, advantages [N], returns and values
        [N, heads]) in n_updates gradient steps; returns the metrics to log."""

    def modules(self) -> list:
        """The networks every rank must hold identically."""

    params: list  # every trained parameter (their gradients are averaged over ranks)

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class RolloutHook(Protocol):
    """Built as cls(cfg, env_info, num_envs, device, train_every, value_head) when cls.enabled(cfg); env_info is
    rlkit.envs.EnvInfo (obs_shape and obs_dtype as stored, obs_space, frame_stack, ...)."""

    name: str
    value_heads: int  # critic heads it adds after the agent's first

    @staticmethod
    def enabled(cfg) -> bool: ...

    def attach(self, agent: Agent, memory) -> None:
        """Once, after the agent and the rollout memory exist: join the optimizer, add memory fields."""

    def on_step(self, memory, next_obs: np.ndarray, final_obs: np.ndarray, dones: np.ndarray, warmup: bool) -> None:
        """After every vector step; warmup: the random warm-up (learning_starts), when nothing is stored."""

    def extend_batch(self, batch: dict, memory, values: np.ndarray, last_values: np.ndarray,
                     counter) -> tuple[list, dict]:
        """Before the update, values [T, N, heads] of the rollout's observations and last_values [N, heads] of the
        ones after it: change the batch in place; returns (extra loss terms for Agent.update, metrics)."""

    def modules(self) -> list: ...

    def running_stats(self) -> list:
        """RunningMeanStd objects every rank must keep identical."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    @staticmethod
    def replicated(state: dict) -> dict:
        """The part of state_dict() every rank holds identically (for the replica digest)."""


def load(entry: str):
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def agent_class(name: str):
    if name not in AGENTS:
        raise ConfigError(f"'algo.name' is '{name}'; known agents: {', '.join(AGENTS)} (rlkit.algos.base.AGENTS)")
    return load(AGENTS[name])


def make_hooks(cfg, env_info, num_envs: int, device, train_every: int) -> list:
    """The enabled hooks, each told which critic head is its own (1, 2, ...: head 0 is the task's)."""
    hooks, head = [], 1
    for entry in HOOKS.values():
        cls = load(entry)
        if cls.enabled(cfg):
            hooks.append(cls(cfg, env_info, num_envs, device, train_every, head))
            head += cls.value_heads
    return hooks
