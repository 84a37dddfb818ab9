"""Environment construction: gymnasium.make, the params file's wrappers, and the kit's step semantics.

Every env (training and evaluation alike) is built by `make_env`, in layers from the inside out:

    gymnasium.make(env.id, **env.kwargs)   without its registered time limit (re-applied outermost)
    EmulatorState                          ALE envs only: pickled with the emulator's state
    TrueEpisode                            only with env.wrappers: the game's own score (rlkit/envs/wrappers.py)
    env.wrappers                           in the order given, each {type: import path, kwargs: {...}}
    PackedObservation                      only for Dict / Discrete / MultiBinary observations (rlkit/envs/spaces.py)
    RepeatAction(env.action_repeat)
    TimeLimit(env.max_episode_steps)       counted in policy steps

so `max_episode_steps` counts policy steps whatever the wrappers skip, and a policy step makes the
simulator compute action_repeat x frames_per_step frames (`frames_per_step`).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlkit.envs import spaces
from rlkit.config import ConfigError, EnvConfig
from rlkit.fast.jit import compiled
from rlkit.envs.wrappers import EmulatorState, PackedObservation, TrueEpisode

INSTALL = "pip install -e '.[{extra}]' (or make install EXTRAS={extra})"
# env ids the kit knows how to register: (id prefix, module whose import registers them, extra that installs it)
NAMESPACES = [("ALE/", "ale_py", "atari"), ("MiniGrid-", "minigrid", "minigrid"), ("BabyAI-", "minigrid", "minigrid"),
              ("MinAtar/", "minatar.gym", "minatar")]
# modules an installed env or wrapper may need, and the extra that installs them
EXTRA_OF_MODULE = {"ale_py": "atari", "cv2": "atari", "minigrid": "minigrid", "minatar": "minatar",
                   "seaborn": "minatar", "Box2D": "box2d", "mujoco": "mujoco", "imageio": "mujoco"}
EXTRA_OF_ENTRY_POINT = {"gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco"}


def _install_hint(module_name: str | None) -> str:
    top = (module_name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    return f"; install it with {INSTALL.format(extra=extra)}" if extra else ""


def _register_known(name: str) -> None:
    """Import the package that registers a known namespace (ALE/..., MiniGrid-..., MinAtar/...), so ids need
    no "module:" prefix; MinAtar registers only when asked (gymnasium 1.x no longer loads entry-point plugins)."""
    for prefix, module, extra in NAMESPACES:
        if name.startswith(prefix) and name not in gym.registry:
            try:
                imported = importlib.import_module(module)
            except ModuleNotFoundError:
                raise ConfigError(f"'env.id': {name} needs the {extra} extra: {INSTALL.format(extra=extra)}") from None
            if hasattr(imported, "register_envs") and module == "minatar.gym":
                imported.register_envs()


def _spec(env_id: str):
    """The registry entry; a "module:EnvName-v0" id first imports the module that registers it (as gym.make does)."""
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        _register_known(name)
        return gym.spec(name)
    except gym.error.Error as e:
        known = [k for k in gym.registry if name.split("-")[0].lower() in k.lower()][:5]
        hint = f" Did you mean one of {known}?" if known else ""
        raise ConfigError(f"'env.id': unknown environment '{env_id}' ({e}).{hint} "
                          "Use a registered id, or 'module:EnvName-v0' to import the module that registers it") from None
    except ModuleNotFoundError as e:
        raise ConfigError(f"'env.id': cannot import the module for '{env_id}': {e}{_install_hint(e.name)}") from None
    except ConfigError:  # a known namespace whose extra is missing: its own line already names the fix
        raise
    except Exception as e:  # the module itself raised while it was imported
        raise ConfigError(f"'env.id': importing '{module}' for '{env_id}' raised {type(e).__name__}: "
                          f"{' '.join(str(e).split())}; fix that module (python -c 'import {module}' shows the traceback)") from None


# ---------------------------------------------------------------- wrappers from the params file

def _import_wrapper(i: int, path: str):
    module, _, attr = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        raise ConfigError(f"'env.wrappers[{i}]': cannot import {path}: {e}{_install_hint(e.name)}") from None
    except AttributeError:
        raise ConfigError(f"'env.wrappers[{i}]': module {module} has no {attr}; check the spelling of 'type'") from None
    if not callable(obj):
        raise ConfigError(f"'env.wrappers[{i}]': {path} is not a wrapper class or function")
    return obj


def _apply_wrappers(env: gym.Env, wrappers: list) -> gym.Env:
    applied = "gymnasium.make"
    for i, spec in enumerate(wrappers):
        path, kwargs = spec["type"], spec.get("kwargs", {})
        cls = _import_wrapper(i, path)
        try:
            inspect.signature(cls).bind(env, **kwargs)
        except TypeError as e:
            params = [p for p in inspect.signature(cls).parameters][1:]
            raise ConfigError(f"'env.wrappers[{i}]' {path}: bad kwargs {kwargs} ({e}); it takes {', '.join(params)}") from None
        except ValueError:  # no signature to check (a builtin): the call below will tell
            pass
        try:
            wrapped = cls(env, **kwargs)
        except gym.error.DependencyNotInstalled as e:  # AtariPreprocessing without opencv, for one
            raise ConfigError(f"'env.wrappers[{i}]' {path} needs a package that is not installed ({_first_line(e)})"
                              f"{_install_hint(_module_named_in(str(e)))}") from None
        except Exception as e:  # the wrapper's own check of the space it is given
            raise ConfigError(f"'env.wrappers[{i}]' {path} cannot wrap the env as it is after {applied} "
                              f"(observation space {env.observation_space}): {type(e).__name__}: {_first_line(e)}; "
                              "check the order of env.wrappers") from None
        if not isinstance(wrapped, gym.Env):
            raise ConfigError(f"'env.wrappers[{i}]' {path} returned {type(wrapped).__name__}, not a gymnasium env")
        env, applied = wrapped, path.rpartition(".")[2]
    return env


def _module_named_in(message: str) -> str | None:
    """The module an error message names ("opencv-python package not installed" -> cv2), if the kit knows it."""
    aliases = {"opencv": "cv2", "box2d": "Box2D"}
    lowered = message.lower()
    for name in [*aliases, *EXTRA_OF_MODULE]:
        if name.lower() in lowered:
            return aliases.get(name, name)
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else repr(e)


def make_env(env_cfg: EnvConfig) -> gym.Env:
    spec = _spec(env_cfg.id)
    try:  # the registered time limit counts raw env steps; the kit's own, outermost, counts policy steps
        env = gym.make(dataclasses.replace(spec, max_episode_steps=None), **env_cfg.kwargs)
    except TypeError as e:
        raise ConfigError(f"'env.kwargs' {env_cfg.kwargs} rejected by {env_cfg.id}: {e}") from None
    except gym.error.DependencyNotInstalled as e:
        module = str(spec.entry_point).partition(":")[0]
        extra = next((x for prefix, x in EXTRA_OF_ENTRY_POINT.items() if f"{module}.".startswith(prefix + ".")), None)
        extra = extra or EXTRA_OF_MODULE.get(_module_named_in(str(e)) or "")
        fix = INSTALL.format(extra=extra) if extra else "install the package it names"
        raise ConfigError(f"'env.id': {env_cfg.id} needs a package that is not installed ({_first_line(e)}); "
                          f"{fix}") from None
    except ModuleNotFoundError as e:
        raise ConfigError(f"'env.id': {env_cfg.id} needs module {e.name}, not installed{_install_hint(e.name)}") from None
    if hasattr(env.unwrapped, "ale") and type(env.unwrapped).__module__.startswith("ale_py"):
        env = EmulatorState(env)  # checkpointed ALE envs resume the game, not a fresh ROM at frame 0
    if env_cfg.wrappers:  # only then can the learner's episode differ from the game
        env = _apply_wrappers(TrueEpisode(env), env_cfg.wrappers)
    spaces.check_observation_space(env.observation_space)
    spaces.check_action_space(env.action_space)
    if isinstance(env.observation_space, spaces.PACKED):
        env = PackedObservation(env)
    if env_cfg.action_repeat > 1:
        env = gym.wrappers.RepeatAction(env, env_cfg.action_repeat)
    limit = env_cfg.max_episode_steps
    if limit is None:
        limit = default_max_episode_steps(env_cfg, frames_per_env_step(env, env_cfg)[1], spec)
    if limit is not None:
        env = gym.wrappers.TimeLimit(env, limit)
    return env


# ---------------------------------------------------------------- frames per env step

def _chain(env: gym.Env):
    """The env and every env it wraps, outermost first."""
    while True:
        yield env
        if not isinstance(env, gym.Wrapper):
            return
        env = env.env


def frames_per_env_step(env: gym.Env, env_cfg: EnvConfig) -> tuple[int, int]:
    """(frames the simulator computes per step of the wrapped env, raw env steps per wrapped step).

    Read where the env says it: ALE's `frameskip` (frames per raw step), gymnasium's AtariPreprocessing
    `frame_skip` and MaxAndSkipObservation `skip` (raw steps per wrapped step). env.frames_per_step, when
    set, replaces the frame count (an env or wrapper that skips frames without saying so)."""
    inner, skips = 1, 1
    for layer in _chain(env):
        if isinstance(layer, gym.wrappers.AtariPreprocessing):
            skips *= layer.frame_skip
        elif isinstance(layer, gym.wrappers.MaxAndSkipObservation):
            skips *= layer._skip
        elif not isinstance(layer, gym.Wrapper) and hasattr(layer, "_frameskip") and hasattr(layer, "ale"):
            frameskip = layer._frameskip
            if not isinstance(frameskip, (int, np.integer)) and env_cfg.frames_per_step is None:
                raise ConfigError(f"'env.frames_per_step': {env_cfg.id} skips a random number of frames per step "
                                  f"(frameskip {frameskip}); set env.frames_per_step to the count to report, "
                                  "e.g. its mean, or make frameskip an int in env.kwargs")
            inner = int(frameskip) if isinstance(frameskip, (int, np.integer)) else 1
    frames = env_cfg.frames_per_step if env_cfg.frames_per_step is not None else inner * skips
    return frames, skips


# ---------------------------------------------------------------- what the agent needs to know

@dataclass(frozen=True)
class EnvInfo:
    """The spaces and what the kit derives from them."""
    obs_shape: tuple  # as stored: the packed array's for Dict / Discrete / MultiBinary observations
    has_continuous: bool
    action_dim: int
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    obs_dtype: np.dtype = np.dtype(np.float32)  # the rollout memory's and the vectors' obs arrays
    obs_space: gym.Space | None = None  # before packing: what the networks encode
    action_space: gym.Space | None = None
    frames_per_step: int = 1  # simulator frames per env step (before action_repeat)
    raw_steps_per_step: int = 1  # raw env steps per wrapped env step (frame-skipping wrappers)
    true_returns: bool = False  # a TrueEpisode layer reports the game's score (env.wrappers set)
    frame_stack: int | None = None  # FrameStackObservation's stack_size when no wrapper reshapes its output

    @property
    def observ_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def action_scaling(self) -> float | None:
        if not self.has_continuous:
            return None
        return float(np.max((self.action_high - self.action_low) / 2))

    @property
    def action_shape(self) -> tuple:
        """One action's shape in the rollout memory: () for Discrete, (k,) for a Box, MultiDiscrete or MultiBinary."""
        return () if isinstance(self.action_space, gym.spaces.Discrete) else tuple(self.action_space.shape)

    @property
    def is_image(self) -> bool:
        return spaces.is_image(self.obs_space)


def inspect_env(env: gym.Env, env_cfg: EnvConfig | None = None) -> EnvInfo:
    env_cfg = env_cfg or EnvConfig()
    obs_space, act_space = env.observation_space, env.action_space
    spaces.check_observation_space(obs_space)
    spaces.check_action_space(act_space)
    layers = list(_chain(env))
    packed = next((layer for layer in layers if isinstance(layer, PackedObservation)), None)
    stack = next((layer for layer in layers if isinstance(layer, gym.wrappers.FrameStackObservation)
                  and layer.observation_space == obs_space), None)  # frames along dim 0 of what is stored
    frames, skips = frames_per_env_step(env, env_cfg)
    common = dict(obs_dtype=spaces.storage_dtype(obs_space), obs_space=packed.original_space if packed else obs_space,
                  action_space=act_space, frames_per_step=frames, raw_steps_per_step=skips,
                  true_returns=any(isinstance(layer, TrueEpisode) for layer in layers),
                  frame_stack=stack.stack_size if stack is not None else None)
    shape = tuple(obs_space.shape)
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvInfo(shape, False, int(act_space.n), **common)
    if isinstance(act_space, gym.spaces.MultiDiscrete):
        return EnvInfo(shape, False, int(act_space.nvec.sum()), **common)
    if isinstance(act_space, gym.spaces.MultiBinary):
        return EnvInfo(shape, False, int(np.prod(act_space.shape)), **common)
    return EnvInfo(shape, True, int(act_space.shape[0]), act_space.low.astype(np.float32),
                   act_space.high.astype(np.float32), **common)


def probe_env(env_cfg: EnvConfig) -> EnvInfo:
    """Build one env, reset it and take one random step: wrappers in the wrong order, a missing package or a
    space the kit does not take fail here, in one line, before any run directory or worker exists."""
    env = make_env(env_cfg)
    try:
        info = inspect_env(env, env_cfg)
        try:
            env.reset(seed=0)
            env.step(env.action_space.sample())
        except ConfigError:
            raise
        except Exception as e:
            where = f" with env.wrappers {[w['type'] for w in env_cfg.wrappers]} (check their order)" if env_cfg.wrappers else ""
            raise ConfigError(f"'env.id': {env_cfg.id}{where} failed on its first reset/step: "
                              f"{type(e).__name__}: {_first_line(e)}") from None
    finally:
        env.close()
    return info


def default_max_episode_steps(env_cfg: EnvConfig, raw_steps_per_step: int = 1, spec=None) -> int | None:
    """The env's registered limit (raw env steps) in policy steps."""
    frames = (spec or _spec(env_cfg.id)).max_episode_steps
    return None if frames is None else max(1, frames // (env_cfg.action_repeat * raw_steps_per_step))


def resolve_env_fields(cfg, info: EnvInfo) -> None:
    """Fill the algo parameters inferred from the spaces (docs/design.md, "Parameter names"); a given value
    that disagrees is an error naming both."""
    a = cfg.algo
    if a.normalize_obs and (info.obs_dtype != np.float32 or isinstance(info.obs_space, spaces.PACKED)):
        raise ConfigError(f"'algo.normalize_obs' is for float vector observations; {cfg.env.id}'s are "
                          f"{spaces.one_line(info.obs_space)} (stored as {info.obs_dtype.name}), which the networks "
                          "scale or one-hot themselves: set algo.normalize_obs: false")
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
        cfg.env.max_episode_steps = default_max_episode_steps(cfg.env, info.raw_steps_per_step)


class Episodes:
    """Each env's running episode return and length -> the metrics of the episodes that end.

    `episode/return` and `episode/length` (policy steps) are the game's own: its score, even when the
    wrappers clip rewards or end the learner's episode at a lost life. With env.wrappers set, whose
    episodes may differ from the game's, `episode/return_train` is logged at the end of every episode
    the learner saw: the sum of the rewards it was given (before algo.normalize_reward)."""

    def __init__(self, num_envs: int, true_returns: bool = False):
        self.true_returns = true_returns
        self.returns = np.zeros(num_envs)  # the learner's episode so far
        self.lengths = np.zeros(num_envs, np.int64)  # policy steps since the logged episode (the game) began
        self.last_return = float("nan")

    def step(self, rewards: np.ndarray, dones: np.ndarray, true_return: np.ndarray | None = None) -> list[dict]:
        """true_return: the vector's (NaN where no game ended); needed with true_returns."""
        if not _add_step(self.returns, self.lengths, rewards, dones):  # one compiled call every step
            return []
        ended = []
        for i in np.flatnonzero(dones):  # logged at the policy step the episode ends
            if not self.true_returns:
                ended.append({"episode/return": self.returns[i], "episode/length": self.lengths[i]})
                self.lengths[i] = 0
                continue
            row = {"episode/return_train": self.returns[i]}
            if not np.isnan(true_return[i]):  # this episode's end was the game's
                row.update({"episode/return": true_return[i], "episode/length": self.lengths[i]})
                self.lengths[i] = 0
            ended.append(row)
        games = [row["episode/return"] for row in ended if "episode/return" in row]
        if games:
            self.last_return = float(games[-1])
        self.returns[dones] = 0.0
        return ended


@compiled
def _add_step(returns, lengths, rewards, dones) -> int:
    """Every env's episode return += its reward, its length += 1; returns how many episodes ended."""
    ended = 0
    for i in range(returns.size):
        returns[i] += rewards[i]
        lengths[i] += 1
        ended += dones[i]
    return ended
