"""Tiny envs with every space kind, and a game with lives, for the environment tests."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SpaceEnv(gym.Env):
    """Random observations from any observation space, any action space; reward 1 per step, `length` steps."""

    def __init__(self, observation_space=None, action_space=None, length: int = 5):
        self.observation_space = observation_space or spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = action_space or spaces.Discrete(2)
        self.length, self.t = length, 0
        self.actions = []  # what step() received, for the action-space tests

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), f"{action!r} not in {self.action_space}"
        self.actions.append(action)
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t >= self.length, False, {}


class _Lives:
    def __init__(self, game):
        self.game = game

    def lives(self) -> int:
        return self.game.lives_left


class LivesEnv(gym.Env):
    """An ALE-like game: `lives` lives, one lost every `life_steps` steps; reward 5 per step (clipped to 1 by
    ClipReward), so a game scores 5 * lives * life_steps and each life-episode the learner sees 1 * life_steps.
    `image`: uint8 (6, 6) frames instead of a float vector. Exposes `ale.lives()` as ALE envs do."""

    def __init__(self, lives: int = 3, life_steps: int = 4, image: bool = False):
        self.lives_total, self.life_steps = lives, life_steps
        shape, dtype, high = ((6, 6), np.uint8, 255) if image else ((3,), np.float32, 1.0)
        self.observation_space = spaces.Box(0, high, shape, dtype)
        self.action_space = spaces.Discrete(2)
        self.ale = _Lives(self)
        self.lives_left, self.t, self.resets = lives, 0, 0

    def _obs(self):
        return np.full(self.observation_space.shape, self.t % 7, self.observation_space.dtype)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.lives_left, self.t = self.lives_total, 0
        self.resets += 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        if self.t % self.life_steps == 0:
            self.lives_left -= 1
        return self._obs(), 5.0, self.lives_left == 0, False, {}


gym.register("ToySpace-v0", entry_point=SpaceEnv)
gym.register("ToyLives-v0", entry_point=LivesEnv)
# spaces the kit takes only since it reads them from the space itself; ids for params files (toy_envs:ToyMultiDiscrete-v0)
gym.register("ToyMultiDiscrete-v0", entry_point=SpaceEnv,
             kwargs={"action_space": spaces.MultiDiscrete([3, 2]), "length": 20})
gym.register("ToyDictAction-v0", entry_point=SpaceEnv,
             kwargs={"action_space": spaces.Dict({"move": spaces.Discrete(3), "grip": spaces.Discrete(2)}), "length": 20})
gym.register("ToyMultiBinary-v0", entry_point=SpaceEnv,
             kwargs={"observation_space": spaces.MultiBinary(6), "action_space": spaces.MultiBinary(3), "length": 20})
gym.register("ToyDictObs-v0", entry_point=SpaceEnv,
             kwargs={"observation_space": spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8),
                                                       "direction": spaces.Discrete(4),
                                                       "pos": spaces.Box(-1, 1, (2,), np.float32)}), "length": 20})


