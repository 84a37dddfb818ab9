"""Evaluation on env instances of its own, reseeded identically every time."""
from __future__ import annotations

import itertools

import numpy as np

from rlkit.envs.vector import SerialEnvs


class Evaluator:
    def __init__(self, env_fn, episodes: int, base_seed: int, obs_shape, discrete: bool, obs_dtype=np.float32,
                 true_returns: bool = False):
        seeds = [base_seed + k for k in range(episodes)]
        self.envs = SerialEnvs([env_fn] * episodes, seeds, obs_shape, discrete, obs_dtype=obs_dtype)
        self.true_returns = true_returns

    def run(self, act, max_steps: int | None) -> dict:
        """One game per env with the policy `act(obs) -> env actions`; mean return and length.

        With true returns (env.wrappers set) a game may span several of the learner's episodes (a life
        each): it ends when the game does, and its return is the game's score. At most max_steps policy
        steps (None: until every game ends)."""
        n = self.envs.num_envs
        returns, lengths = np.zeros(n), np.zeros(n, np.int64)
        running = np.ones(n, bool)
        obs = self.envs.reset()  # reset(seed=...) makes every evaluation see the same start states
        for _ in range(max_steps) if max_steps is not None else itertools.count():
            obs, reward, terminated, truncated, _ = self.envs.step(act(obs))
            returns += reward * running
            lengths += running
            ended = terminated | truncated
            if self.true_returns:
                true_return = self.envs.arrays["true_return"]
                ended &= ~np.isnan(true_return)
                returns[ended & running] = true_return[ended & running]
            running &= ~ended
            if not running.any():
                break
        if self.true_returns:  # games cut by max_steps: the score so far
            for i in np.flatnonzero(running):
                returns[i] = self.envs.recorders[i].score
        return {"eval/return": float(returns.mean()), "eval/return_std": float(returns.std()),
                "eval/length": float(lengths.mean())}

    def close(self):
        self.envs.close()
