"""Envs and wrappers that break the way user code breaks, for the tests of the commands' one error path."""
import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class RaisesMidEpisode(CartPoleEnv):
    """Steps normally, then raises: a simulator that crashes after the run has started."""

    def __init__(self, after=40, **kwargs):
        super().__init__(**kwargs)
        self.after, self.steps = after, 0

    def step(self, action):
        self.steps += 1
        if self.steps > self.after:
            raise RuntimeError("the simulator crashed")
        return super().step(action)


class WrongShape(gym.ObservationWrapper):
    """Declares a 3-number observation and returns CartPole's 4."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def observation(self, obs):
        return obs


if "RaisesMidEpisode-v0" not in gym.registry:
    gym.register(id="RaisesMidEpisode-v0", entry_point=f"{__name__}:RaisesMidEpisode", max_episode_steps=500)
