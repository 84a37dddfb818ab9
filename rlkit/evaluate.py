"""Deterministic evaluation on env instances of its own, reseeded identically every time."""
from __future__ import annotations

import numpy as np

from rlkit.vector import SerialEnvs


class Evaluator:
    def __init__(self, env_fn, episodes: int, base_seed: int, obs_shape, discrete: bool):
        seeds = [base_seed + k for k in range(episodes)]
        self.envs = SerialEnvs([env_fn] * episodes, seeds, obs_shape, discrete)

    def run(self, act, max_steps: int) -> dict:
        """One episode per env with the greedy policy `act(obs) -> env actions`; mean return and length."""
        n = self.envs.num_envs
        returns, lengths = np.zeros(n), np.zeros(n, np.int64)
        running = np.ones(n, bool)
        obs = self.envs.reset()  # reset(seed=...) makes every evaluation see the same start states
        for _ in range(max_steps):
            obs, reward, terminated, truncated, _ = self.envs.step(act(obs))
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
            if not running.any():
                break
        return {"eval/return": float(returns.mean()), "eval/return_std": float(returns.std()),
                "eval/length": float(lengths.mean())}

    def close(self):
        self.envs.close()
