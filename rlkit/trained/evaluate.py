"""Evaluate a loaded policy anew: episodes on the env as trained (or changed by overrides), one CSV row each.

    table = evaluate(policy, episodes=100)          # episode, seed, return, length
    path = write_evaluation(run_dir, "final", table) # <run>/evals/final.csv; metrics.csv is never touched

The default reset seeds are those of the training run's evaluations (the Evaluator's base seed, then one per
episode), so the first eval.episodes episodes start where the run's own evaluations did. An episode is a game:
with env.wrappers (a lost life ending the learner's episode, clipped rewards) its return is the game's score,
read from the TrueEpisode layer as the trainer's Evaluator does.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import gymnasium as gym
import pandas as pd
import torch

from rlkit.envs.wrappers import TrueEpisode

COLUMNS = ["episode", "seed", "return", "length", "policy_step", "deterministic"]


def default_seeds(cfg, episodes: int) -> list[int]:
    """The reset seeds of the training run's evaluation episodes, continued: 2**30 + seed x 1000 + k."""
    return [2**30 + cfg.seed * 1_000 + k for k in range(episodes)]


def evaluate(policy, episodes: int = 10, seeds=None, deterministic: bool = True, max_steps: int | None = None,
             progress=None) -> pd.DataFrame:
    """One row per episode. seeds: the reset seed of each episode (default_seeds when None; their number is
    the number of episodes). max_steps: policy steps a game may last (None: env.max_episode_steps)."""
    seeds = list(seeds) if seeds is not None else default_seeds(policy.cfg, episodes)
    max_steps = max_steps or policy.cfg.env.max_episode_steps
    env = policy.make_env()
    true_episode = find_true_episode(env)
    rows = []
    try:
        for k, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))  # --sample: the actions' draws follow the seed
            ret, length = _play(env, policy, int(seed), deterministic, generator, max_steps, true_episode)
            rows.append({"episode": k, "seed": int(seed), "return": ret, "length": length,
                         "policy_step": policy.policy_step, "deterministic": deterministic})
            if progress is not None:
                progress(k + 1, len(seeds))
    finally:
        env.close()
    return pd.DataFrame(rows, columns=COLUMNS)


def find_true_episode(env: gym.Env) -> TrueEpisode | None:
    """The TrueEpisode layer (only with env.wrappers), which knows the game's score."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TrueEpisode):
            return env
        env = env.env
    return None


def _play(env, policy, seed, deterministic, generator, max_steps, true_episode) -> tuple[float, int]:
    """(return, policy steps) of one game from reset(seed)."""
    obs, _ = env.reset(seed=seed)
    if true_episode is not None:
        true_episode.take()  # forget the previous game's score
    total, steps = 0.0, 0
    for steps in itertools.count(1):
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs, deterministic, generator))
        total += float(reward)
        if max_steps is not None and steps >= max_steps:
            return (true_episode.score if true_episode is not None else total), steps
        if terminated or truncated:
            if true_episode is None:
                return total, steps
            obs, _ = env.reset()  # a lost life resets the learner's episode; the game may go on
            score = true_episode.take()
            if score is not None:
                return score, steps


def evaluation_name(overrides=(), deterministic: bool = True) -> str:
    """A file name from what changed: final, final_sampled, env.kwargs.gravity=5, ..."""
    if not overrides:
        return "final" if deterministic else "final_sampled"
    items = overrides.items() if isinstance(overrides, dict) else (o.split("=", 1) for o in overrides)
    name = "__".join(f"{k}={v}" for k, v in items) + ("" if deterministic else "__sampled")
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)[:150]


def write_evaluation(run_dir, name: str, table: pd.DataFrame) -> Path:
    """<run>/evals/<name>.csv; an existing evaluation of that name is kept and this one gets <name>_2, _3, ..."""
    folder = Path(run_dir) / "evals"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.csv"
    for n in itertools.count(2):
        try:
            with open(path, "x", newline="") as f:  # "x": never replaces a file, even one written meanwhile
                table.to_csv(f, index=False)
            return path
        except FileExistsError:
            path = folder / f"{name}_{n}.csv"
