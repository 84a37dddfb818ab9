"""The contracts the loop calls, and the registries that pick their implementations from the config.

Three contracts, smallest first:
  - `Learner`: what the loop (rlkit/loop/trainer.py) calls. It acts for the collector, observes each vector
    step, says when to train and trains a phase, says when a checkpoint may be taken, and holds its state.
    An off-policy algorithm (a replay memory, a phase every train_every policy steps) implements it directly.
  - `Agent`: an on-policy algorithm (PPO, A2C). rlkit.algos.onpolicy.OnPolicyLearner wraps it in a Learner
    that owns the rollout memory, GAE and the truncation bootstrap, the reward filter and the hooks.
  - `RolloutHook`: something that rides along an on-policy rollout and adds to the batch (RND).

`algo.name` picks the class: a name in AGENTS, or an import path "module:Class". Registry entries are
"module:Class" strings, imported when used, so reading a config never imports torch.
"""
from __future__ import annotations

import importlib
from typing import Any, NamedTuple, Protocol

import numpy as np

from rlkit.config import ConfigError, build_section

AGENTS = {"ppo": "rlkit.algos.ppo:PPO", "a2c": "rlkit.algos.a2c:A2C",
          "dqn": "rlkit.algos.dqn:DQN", "sac": "rlkit.algos.sac:SAC"}  # the last two: Learners (rlkit.algos.offpolicy)
HOOKS = {"rnd": "rlkit.algos.rnd:RNDHook"}  # checkpoint keys too: a hook that is off saves None under its name
ON_POLICY = "rlkit.algos.onpolicy:OnPolicyLearner"  # the Learner around an Agent


class Phase(NamedTuple):
    """What a training phase returns to the loop."""
    updates: int  # gradient steps on this rank (the loop adds W per update to gradient_step)
    metrics: dict  # logged at the phase's policy step, before the counters' replay ratio
    hook_metrics: dict = {}  # logged after it (a hook's own metrics)
    seconds: float | None = None  # its own wall seconds, when it ran off the loop's thread


class Learner(Protocol):
    """Built as cls(cfg, env_info, device, rng, generator, world_size=, parts=, run_dir=, rank=): cfg the whole
    Config (already checked by cls.check_config), env_info rlkit.envs.EnvInfo, rng a numpy Generator and
    generator a torch one (this rank's streams, saved and restored by the loop), parts {"actor", "critic",
    "loss"} given to rlkit.train (None: built from the config), run_dir the run directory and rank this
    process's rank (for files a learner keeps beside the checkpoint, each rank its own: a memory-mapped replay
    memory).

    Per iteration the loop calls act, steps the envs, calls observe; then, if ready(counter), train(counter);
    it checkpoints only when resumable(). Observations are raw (as the envs return them): normalising them
    is the learner's business."""

    @classmethod
    def check_config(cls, cfg, world_size: int) -> int:
        """Refuse what this algorithm cannot run (one ConfigError line naming the key); returns train_every,
        the policy steps between training phases, for the loop's checks. No env is built."""

    @classmethod
    def check_parts(cls, cfg, env_info) -> None:
        """Once the env is probed, before the run directory is touched: build and try the parts the params
        file names (algo.loss, algo.actor, algo.critic), one ConfigError line for the first that fails."""

    def act(self, obs: np.ndarray, counter) -> np.ndarray:
        """The actions env.step takes for every env, chosen at counter.policy_step (before the step): random
        ones before learning_starts, the policy's after."""

    def observe(self, next_obs, rewards, terminated, truncated, final_obs, counter) -> None:
        """After the vector step (counter already advanced); final_obs is the true last observation of the
        envs whose episode ended (the vector has reset them). Store what training needs."""

    def ready(self, counter) -> bool:
        """Train now? (on-policy: the rollout is full; off-policy: a multiple of train_every at or past
        learning_starts)."""

    def train(self, counter) -> Phase | None:
        """Run one training phase: its Phase, or None when it runs on a thread of its own (see settle)."""

    def settle(self) -> Phase | None:
        """Optional: wait for a phase train() left running and return it (None when none runs); the loop calls
        it before the next phase, an evaluation, a checkpoint and the end."""

    def close(self) -> None:
        """Optional: free what the learner started (threads)."""

    # Optional: true when phases come every few policy steps (off-policy): the loop then averages their metrics
    # into its log_every rows (rlkit/loop/phase_means.py) instead of writing a row per phase.
    average_phases: bool

    def resumable(self) -> bool:
        """A checkpoint taken now resumes exactly (on-policy: between rollouts)."""

    def policy(self, obs: np.ndarray, generator=None) -> np.ndarray:
        """Env actions for evaluation: greedy with generator None, else sampled with it."""

    def modules(self) -> list:
        """Every network (checked for nan after each phase)."""

    def replicate(self, world_size: int) -> None:
        """Several ranks: become one replica of a data-parallel model (rlkit.runs.distributed.replicate)."""

    @classmethod
    def acting_network(cls, cfg, env_info) -> tuple:
        """(the network that acts, its map from the network's actions to env actions), built on the CPU from the
        config and the env's spaces by the constructor the learner builds its own with: rlkit.load loads
        policy.pt's weights into it. The network has mode(obs) -> greedy actions and sample(obs, generator) ->
        (sampled actions, ...), both batched tensors."""

    def policy_parts(self):
        """(acting network, observation normaliser) for policy.pt, the file rlkit.load reads; None: this learner
        writes none."""

    def state_dict(self) -> dict:
        """Top-level checkpoint entries every rank holds identically (weights, optimizer, statistics)."""

    def local_state_dict(self) -> dict:
        """Top-level checkpoint entries of this rank alone (per-env filters, a hook's per-env state)."""

    def load_state_dict(self, state: dict) -> None:
        """From the checkpoint's entries (this rank's local ones merged in)."""

    @staticmethod
    def replicated(state: dict) -> dict:
        """The part of a checkpoint every rank must hold identically (the replica digest)."""


class Agent(Protocol):
    """An on-policy algorithm. Built as cls(algo, obs_space, action_space, device, value_heads=, actor=, critic=,
    loss=); cls.Keys (optional) is the dataclass of its own keys under algo.kwargs, and cls.defaults (optional)
    its defaults for shared algo.* keys the params file does not set (A2C: gamma 0.99, GAE_lambda 1.0).
    cls.rollout(cfg) (optional) -> (transitions per rank per rollout, gradient steps per phase); without it
    PPO's: algo.batch_size and k_epochs x ceil(batch_size / mini_batch_size).

    Observations come in as numpy arrays [B, *obs_shape] (normalised by the learner where configured);
    values are [B, value_heads], head 0 the task's. Actions are in the policy's units; env_actions maps
    them to what env.step takes."""

    actor: Any  # the modules, for tests and tools that inspect them
    critic: Any
    sync_gradients: Any  # None, or a callable run after each backward and before clipping (rlkit.runs.distributed)

    def act(self, obs: np.ndarray, generator) -> tuple[np.ndarray, np.ndarray]:
        """(actions, their log-probabilities) for the collector, every step."""

    def value(self, obs: np.ndarray) -> np.ndarray:
        """[B, value_heads]. Called once per rollout on all the rollout's stored observations (and on the last
        ones), not every step: the weights are those of the collection either way."""

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


def import_part(key: str, path, what: str):
    """The object at "module:Name" for the config key `key`, or one ConfigError line saying why not."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"'{key}' must be an import path 'module:Name' ({what}), got {path!r}")
    module, _, name = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"'{key}': cannot import {path}: {e}; check the module name and that it is on "
                          "PYTHONPATH") from None
    except AttributeError:
        raise ConfigError(f"'{key}': module {module} has no {name}; check the spelling") from None
    except Exception as e:  # the module itself fails to import
        raise ConfigError(f"'{key}': importing {module} failed ({type(e).__name__}: {e}); fix that module") from None
    return obj


def algorithm(name: str):
    """The class algo.name names: a registered one, or "module:Class"."""
    if ":" in name:
        cls = import_part("algo.name", name, "an algorithm class")
        if not isinstance(cls, type) or not (callable(getattr(cls, "update", None))
                                             or callable(getattr(cls, "observe", None))):
            raise ConfigError(f"'algo.name' {name} is neither an on-policy Agent (with update) nor a Learner (with "
                              "observe, ready, train); see rlkit.algos.base for the contracts")
        return cls
    if name not in AGENTS:
        raise ConfigError(f"'algo.name' is '{name}'; known algorithms: {', '.join(AGENTS)} "
                          "(rlkit.algos.base.AGENTS), or give an import path module:Class")
    return load(AGENTS[name])


def learner_class(name: str):
    """The Learner the loop drives for algo.name: the algorithm itself, or the on-policy learner around its Agent."""
    cls = algorithm(name)
    return cls if callable(getattr(cls, "observe", None)) else load(ON_POLICY)


def algorithm_keys(cfg):
    """The algorithm's own keys (algo.kwargs) as its Keys dataclass, checked like any section: one line
    naming the key for an unknown one or a wrong type."""
    keys = getattr(algorithm(cfg.algo.name), "Keys", None)
    if keys is None:
        if cfg.algo.kwargs:
            raise ConfigError(f"'algo.kwargs' {cfg.algo.kwargs}: {cfg.algo.name} has no keys of its own; "
                              "its settings are the algo.* keys")
        return None
    return build_section(keys, cfg.algo.kwargs, "algo.kwargs.")


def check_config(cfg, world_size: int = 1) -> int:
    """Resolve the algorithm's part of the config and check it: its defaults for the shared algo.* keys the
    params file left out, its own keys, and its learner's rules. Returns train_every. Idempotent."""
    cls = algorithm(cfg.algo.name)
    given = getattr(cfg.algo, "given", None)
    for key, value in getattr(cls, "defaults", {}).items():
        if given is not None and key not in given:
            setattr(cfg.algo, key, value)
    if given is not None:
        cfg.algo.given = None  # resolved: the values are now the run's
    algorithm_keys(cfg)
    return learner_class(cfg.algo.name).check_config(cfg, world_size)


def make_hooks(cfg, env_info, num_envs: int, device, train_every: int) -> list:
    """The enabled hooks, each told which critic head is its own (1, 2, ...: head 0 is the task's)."""
    hooks, head = [], 1
    for entry in HOOKS.values():
        cls = load(entry)
        if cls.enabled(cfg):
            hooks.append(cls(cfg, env_info, num_envs, device, train_every, head))
            head += cls.value_heads
    return hooks
