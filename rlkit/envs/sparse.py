"""A sparse-reward task: MountainCar-v0 whose reward is 1 on reaching the flag and 0 on every other step.

MountainCar-v0's -1 per step is dense enough to explore by: with normalised rewards a fresh critic
expects far more than the true returns, and that optimism drives plain PPO to the flag (see the
docs/results.md, classic control). Here nothing is learned until the flag has been reached once, which a
random-ish policy almost never does in 200 steps: the case RND is for.

    env: {id: "rlkit.envs.sparse:SparseMountainCar-v0"}

The episode return is 1 for an episode that reaches the flag and 0 otherwise (a success rate);
`episode/length` and `eval/length` say how fast.
"""
from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv

ENV_ID = "SparseMountainCar-v0"


class SparseMountainCar(MountainCarEnv):
    """MountainCar-v0 dynamics and start states; reward 1 when the episode terminates at the flag, else 0."""

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float(terminated), terminated, truncated, info


if ENV_ID not in gym.registry:  # importing twice (or reloading) must not re-register
    gym.register(id=ENV_ID, entry_point=f"{__name__}:SparseMountainCar", max_episode_steps=200)
