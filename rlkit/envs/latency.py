"""A latency-bound test environment: CartPole-v1 whose every step also waits `delay_s`.

The wait is `time.sleep`, which releases the GIL, like a remote simulator, a real-time game
or a robot that answers after a while. It is the case where worker threads pay off
(docs/design.md, "Threads"); the thread-scaling benchmark uses it beside the CPU-bound CartPole-v1.

Importing this module registers the env, so a config can name it without extra code:

    env: {id: "rlkit.envs.latency:LatencyCartPole-v1", kwargs: {delay_s: 0.001}}

(gymnasium imports `rlkit.envs.latency` before looking up a `module:EnvName` id.)
"""
from __future__ import annotations

import time

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

ENV_ID = "LatencyCartPole-v1"


class LatencyCartPole(CartPoleEnv):
    """CartPole-v1 dynamics; `step` additionally sleeps `delay_s` seconds (default 1 ms)."""

    def __init__(self, delay_s: float = 0.001, render_mode: str | None = None):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        super().__init__(render_mode=render_mode)
        self.delay_s = float(delay_s)

    def step(self, action):
        result = super().step(action)
        if self.delay_s > 0:
            time.sleep(self.delay_s)  # releases the GIL while "waiting for the simulator"
        return result


if ENV_ID not in gym.registry:  # importing twice (or reloading) must not re-register
    gym.register(id=ENV_ID, entry_point=f"{__name__}:LatencyCartPole", max_episode_steps=500, reward_threshold=475.0)
