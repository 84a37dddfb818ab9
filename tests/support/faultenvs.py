"""Environments that misbehave on purpose, for the safety and fault-injection tests.

Each is CartPole with one fault, chosen by env kwargs. Env i of a run with seed 0 is first reset with
seed i, which is how an env knows its index (`env_index` picks the env that misbehaves).

    env: {id: "faultenvs:Hang-v0", kwargs: {at_step: 20, env_index: 2}}
"""
from __future__ import annotations

import threading
import time

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class _Indexed(CartPoleEnv):
    """CartPole that counts its steps and learns its index from its first reset seed."""

    def __init__(self, at_step: int = 10**9, env_index: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.at_step, self.env_index = at_step, env_index
        self.index, self.steps = None, 0

    def reset(self, *, seed=None, options=None):
        if self.index is None and seed is not None:
            self.index = seed
        return super().reset(seed=seed, options=options)

    def faulty(self) -> bool:
        self.steps += 1
        return self.steps >= self.at_step and (self.env_index is None or self.index == self.env_index)


class NonFinite(_Indexed):
    """From step `at_step` on, the reward (what="reward") or the observation (what="obs") is nan or inf."""

    def __init__(self, what: str = "reward", value: float = float("nan"), **kwargs):
        super().__init__(**kwargs)
        self.what, self.value = what, value

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.faulty():
            if self.what == "obs":
                obs = obs.copy()
                obs[1] = self.value
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info


class Hang(_Indexed):
    """At step `at_step` one step() sleeps `seconds` (a hang when large); `every_step` sleeps that long
    on every step instead, a slow simulator that releases the GIL."""

    def __init__(self, seconds: float = 3600.0, every_step: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.seconds, self.every_step = seconds, every_step

    def step(self, action):
        if self.every_step:
            time.sleep(self.every_step)
        if self.faulty() and self.steps == self.at_step:
            time.sleep(self.seconds)
        return super().step(action)


class Unpicklable(CartPoleEnv):
    """Holds a lock, as envs that talk to a simulator hold sockets: no pickler can save it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.connection = threading.Lock()


class TextObservation(CartPoleEnv):
    """Observations the kit does not support (a Text space)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Text(8)


def _register(name, entry_point, **kw):
    if name not in gym.registry:
        gym.register(id=name, entry_point=entry_point, max_episode_steps=500, **kw)


_register("NonFinite-v0", f"{__name__}:NonFinite")
_register("Hang-v0", f"{__name__}:Hang")
_register("Unpicklable-v0", f"{__name__}:Unpicklable")
_register("TextObservation-v0", f"{__name__}:TextObservation")
# A lambda entry point: plain pickle cannot save the env (its spec holds the lambda), cloudpickle can.
_register("LambdaCartPole-v0", lambda **kwargs: CartPoleEnv(**kwargs))

