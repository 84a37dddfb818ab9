"""What the kit does with each gymnasium space: which it takes, how observations are stored, which it refuses.

Observations:
  - Box: stored as they come, in their own dtype (uint8 and bool images stay bytes; floats as float32).
  - Discrete, MultiBinary, and Dict of any of these: packed into one flat array per observation
    (PackLayout), so that the collector, the rollout memory and the normalisers handle one array per
    step whatever the space; the networks unpack it (`PackLayout.unpack`) and encode each part by its
    kind (a Discrete index one-hot, an image by a CNN, a vector as it is).
Actions: Discrete, Box, MultiDiscrete, MultiBinary.
Anything else is refused with one line naming a wrapper that turns it into one of these.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlkit.config import ConfigError

PACKED = (gym.spaces.Discrete, gym.spaces.MultiBinary, gym.spaces.Dict)
FLATTEN_HINT = ("wrap it with gymnasium.wrappers.FlattenObservation in env.wrappers "
                "(- type: gymnasium.wrappers.FlattenObservation)")


def storage_dtype(space: gym.spaces.Box) -> np.dtype:
    """Bytes stay bytes (an 8 x 128 x 4 x 84 x 84 Atari rollout is 86 MB as uint8, 344 MB as float32);
    other integers and every float become float32, the networks' dtype."""
    if space.dtype in (np.uint8, np.bool_):
        return np.dtype(space.dtype)
    return np.dtype(np.float32)


def is_image(space: gym.Space) -> bool:
    """A byte Box of 2 or 3 dims (HW, HWC, CHW): pixels or a grid of cells."""
    return isinstance(space, gym.spaces.Box) and space.dtype in (np.uint8, np.bool_) and len(space.shape) in (2, 3)


def one_line(space: gym.Space) -> str:
    return " ".join(str(space).split())  # some reprs (a 2-D MultiDiscrete) span lines


def check_observation_space(space: gym.Space, key: str = "") -> None:
    """Raise ConfigError for a space the kit cannot store or encode, naming a wrapper that would make it work."""
    where = f"observation key '{key}'" if key else "observation space"
    if isinstance(space, gym.spaces.Box):
        return
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiBinary)):
        return
    if isinstance(space, gym.spaces.Dict) and not key:
        for name, sub in space.spaces.items():
            if isinstance(sub, gym.spaces.Dict):
                raise ConfigError(f"'env.id': {where} '{name}' is a nested Dict; {FLATTEN_HINT}")
            check_observation_space(sub, name)
        return
    if key and type(space).__name__ in ("MissionSpace", "Text"):  # MiniGrid's text mission, for one
        raise ConfigError(f"'env.id': {where} is {type(space).__name__} (text), which no network here reads; drop it "
                          f"with gymnasium.wrappers.FilterObservation (kwargs: filter_keys: [the other keys]) "
                          f"or, for MiniGrid, minigrid.wrappers.ImgObsWrapper in env.wrappers")
    raise ConfigError(f"'env.id': {where} {one_line(space)} is not supported (Box, Discrete, MultiBinary or a Dict of "
                      f"them); {FLATTEN_HINT}")


def check_action_space(space: gym.Space) -> None:
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim != 1:
            raise ConfigError(f"'env.id': action space {one_line(space)} is a MultiDiscrete of {space.nvec.ndim} dims; "
                              "rlkit takes a 1-D one: flatten it with a gymnasium.ActionWrapper of your own, named in env.wrappers")
        return
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) != 1:
            raise ConfigError(f"'env.id': action space {one_line(space)} is a Box of shape {space.shape}; rlkit takes a 1-D Box: "
                              "flatten it with a gymnasium.ActionWrapper of your own, named in env.wrappers")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ConfigError(f"'env.id': the Box action space {one_line(space)} has infinite bounds; the Gaussian policy is scaled "
                              "to the bounds: give them with a gymnasium.ActionWrapper of your own, named in env.wrappers")
        return
    if isinstance(space, gym.spaces.Dict):
        raise ConfigError(f"'env.id': action space {one_line(space)} is a Dict; add rlkit.envs.wrappers.DictAction to env.wrappers "
                          "(- type: rlkit.envs.wrappers.DictAction), which makes it one MultiDiscrete or one Box")
    raise ConfigError(f"'env.id': action space {one_line(space)} is not supported (Discrete, Box, MultiDiscrete or MultiBinary); "
                      "map it onto one of them with a gymnasium.ActionWrapper of your own, named in env.wrappers")


class PackLayout:
    """Where each part of a Discrete / MultiBinary / Dict observation lies in one flat array.

    A Discrete part is its index (one slot), a MultiBinary part its bits, a Box part its values in
    order. The array is uint8 when every part fits a byte exactly (MiniGrid's image and direction),
    float32 otherwise.
    """

    def __init__(self, space: gym.Space):
        self.space = space
        parts = space.spaces.items() if isinstance(space, gym.spaces.Dict) else [(None, space)]
        self.parts = []  # (key, space, start, stop)
        start, fits_bytes = 0, True
        for key, sub in parts:
            size = 1 if isinstance(sub, gym.spaces.Discrete) else int(np.prod(sub.shape))
            self.parts.append((key, sub, start, start + size))
            start += size
            if isinstance(sub, gym.spaces.Discrete):
                fits_bytes &= sub.n <= 256
            elif isinstance(sub, gym.spaces.Box):
                fits_bytes &= sub.dtype in (np.uint8, np.bool_)
        self.dtype = np.dtype(np.uint8 if fits_bytes else np.float32)
        high = 255 if fits_bytes else np.inf
        self.box = gym.spaces.Box(0 if fits_bytes else -np.inf, high, (start,), self.dtype)

    def pack(self, observation) -> np.ndarray:
        out = np.empty(self.box.shape, self.dtype)
        for key, sub, start, stop in self.parts:
            value = observation if key is None else observation[key]
            if isinstance(sub, gym.spaces.Discrete):
                value = int(value) - int(sub.start)
            out[start:stop] = np.asarray(value).reshape(-1)
        return out

    def unpack(self, x: torch.Tensor) -> dict:
        """[B, size] packed tensor -> {key: [B, *shape]} (None as the key for a space that is not a Dict);
        a Discrete part comes back as its index, [B] int64."""
        out = {}
        for key, sub, start, stop in self.parts:
            part = x[:, start:stop]
            out[key] = part[:, 0].long() if isinstance(sub, gym.spaces.Discrete) else part.reshape(-1, *sub.shape)
        return out
