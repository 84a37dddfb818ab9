"""Environment construction: gymnasium.make with the kit's step semantics.

`max_episode_steps` counts policy steps; with `action_repeat` k the simulator runs at most
max_episode_steps * k frames per episode (DESIGN §2), so the time limit wraps the raw env in
frames and the repeat wrapper sits outside it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlkit.config import ConfigError, EnvConfig


class ActionRepeat(gym.Wrapper):
    """Repeat each action k frames, summing rewards; stop early when the episode ends."""

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        self.k = k

    def step(self, action):
        total = 0.0
        for _ in range(self.k):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def _spec(env_id: str):
    """The registry entry; a "module:EnvName-v0" id first imports the module that registers it (as gym.make does)."""
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        return gym.spec(name)
    except gym.error.Error as e:
        known = [k for k in gym.registry if name.split("-")[0].lower() in k.lower()][:5]
        hint = f" Did you mean one of {known}?" if known else ""
        raise ConfigError(f"'env.id': unknown environment '{env_id}' ({e}).{hint} "
                          "Use a registered id, or 'module:EnvName-v0' to import the module that registers it") from None
    except ModuleNotFoundError as e:
        raise ConfigError(f"'env.id': cannot import the module for '{env_id}': {e}") from None
    except Exception as e:  # the module itself raised while it was imported
        raise ConfigError(f"'env.id': importing '{module}' for '{env_id}' raised {type(e).__name__}: "
                          f"{' '.join(str(e).split())}; fix that module (python -c 'import {module}' shows the traceback)") from None


def frame_limit(env_cfg: EnvConfig) -> int | None:
    """Frames per episode: max_episode_steps (policy steps) x action_repeat."""
    if env_cfg.max_episode_steps is None:
        return None
    return env_cfg.max_episode_steps * env_cfg.action_repeat


def make_env(env_cfg: EnvConfig) -> gym.Env:
    _spec(env_cfg.id)
    limit = frame_limit(env_cfg)
    try:
        env = gym.make(env_cfg.id, max_episode_steps=limit, **env_cfg.kwargs) if limit else \
            gym.make(env_cfg.id, **env_cfg.kwargs)
    except TypeError as e:
        raise ConfigError(f"'env.kwargs' {env_cfg.kwargs} rejected by {env_cfg.id}: {e}") from None
    if env_cfg.action_repeat > 1:
        env = ActionRepeat(env, env_cfg.action_repeat)
    return env


def default_max_episode_steps(env_cfg: EnvConfig) -> int | None:
    """The env's registered limit, converted from frames to policy steps."""
    frames = _spec(env_cfg.id).max_episode_steps
    return None if frames is None else max(1, frames // env_cfg.action_repeat)


@dataclass(frozen=True)
class EnvInfo:
    """What the agent needs to know about the spaces."""
    obs_shape: tuple
    has_continuous: bool
    action_dim: int
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    @property
    def observ_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def action_scaling(self) -> float | None:
        if not self.has_continuous:
            return None
        return float(np.max((self.action_high - self.action_low) / 2))


def inspect_env(env: gym.Env) -> EnvInfo:
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"'env.id': observation space {obs_space} is not supported; rlkit needs a Box observation")
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvInfo(tuple(obs_space.shape), False, int(act_space.n))
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise ConfigError("'env.id': continuous actions need finite bounds to scale the Gaussian policy")
        return EnvInfo(tuple(obs_space.shape), True, int(act_space.shape[0]),
                       act_space.low.astype(np.float32), act_space.high.astype(np.float32))
    raise ConfigError(f"'env.id': action space {act_space} is not supported; use Discrete or a 1-D Box")


def resolve_env_fields(cfg, info: EnvInfo) -> None:
    """Fill the seed's inferred PPO parameters; a given value that disagrees is an error naming both."""
    a = cfg.algo
    inferred = {"has_continuous": info.has_continuous, "action_dim": info.action_dim,
                "observ_dim": info.observ_dim, "action_scaling": info.action_scaling}
    for key, value in inferred.items():
        given = getattr(a, key)
        if given is None:
            setattr(a, key, value)
        elif key == "action_scaling" and value is not None and abs(given - value) < 1e-6:
            continue
        elif given != value:
            raise ConfigError(f"'algo.{key}' is {given} but {cfg.env.id} has {value}; "
                              f"remove algo.{key} to infer it or set it to {value}")
    if cfg.env.max_episode_steps is None:
        cfg.env.max_episode_steps = default_max_episode_steps(cfg.env)
