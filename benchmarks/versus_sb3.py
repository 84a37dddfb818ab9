"""Side by side with Stable-Baselines3 PPO at identical settings: final score and training speed, per seed.

    .venv/bin/python benchmarks/versus_sb3.py params/minatar_breakout.yaml --seeds 0-2 [--jobs 2] [--set k=v ...]

Both sides get the same env (rlkit.envs.make.make_env: the params file's wrappers and time limit), the same
number of envs and rollout length, epochs, minibatch size, learning rate and its annealing, gamma, GAE
lambda, clip, entropy and value coefficients, gradient clipping, Adam eps 1e-5, and the same network: SB3's
features extractor is rlkit's own encoder (rlkit.nn.networks.encoder), one per actor and critic as in rlkit
(share_features_extractor=False), with no hidden layers after it (rlkit adds none after a CNN). Both are
scored by the same rlkit Evaluator (the same greedy games on the same seeds) every eval.every policy steps;
"final" is the last of those. SPS is policy steps over the wall time of the training call (rlkit:
`wall_time` of the run's last row; SB3: `model.learn()`), evaluations included on both sides. Each side's
wall time is also split: `update_us` is the training phases' microseconds per policy step (rlkit's
perf/update_seconds; SB3's train()), `other_us` the rest (collection, evaluation, logging).
What differs: SB3 clips the actor's and critic's gradients as one vector, rlkit each on its own.
Writes results/benchmarks/versus_sb3_<experiment>.csv after every run, with the commit.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import as_completed
from pathlib import Path

import pandas as pd
from learning import seed_pool, setup  # this folder is on sys.path when a script in it runs


def rlkit_side(config, seed, overrides, out):
    import rlkit
    from rlkit.runs.metrics import read_metrics

    run = rlkit.train(config, Path(out) / f"rlkit{seed}", overrides={**overrides, "seed": seed},
                      progress=False, force=True)
    df = read_metrics(run / "metrics.csv")
    evals = df[df.metric == "eval/return"]
    steps, wall = df.policy_step.max(), df.wall_time.max()
    update = df[df.metric == "perf/update_seconds"].value.sum()
    return {"side": "rlkit", "seed": seed, "final": evals.value.iloc[-1], "best": evals.value.max(),
            "sps": steps / wall, "wall_s": wall, **split_us(update, wall, steps)}


def split_us(update_seconds: float, wall_seconds: float, steps: int) -> dict:
    """Microseconds per policy step in the training phases and in everything else."""
    return {"update_us": update_seconds / steps * 1e6, "other_us": (wall_seconds - update_seconds) / steps * 1e6}


def sb3_side(config, seed, overrides):
    import functools

    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlkit.config import load_config
    from rlkit.envs.make import make_env, probe_env
    from rlkit.loop.evaluate import Evaluator
    from rlkit.nn.networks import encoder, network_kind

    torch.set_num_threads(1)
    cfg = load_config(config, {**overrides, "seed": seed})
    a, info, n_envs = cfg.algo, probe_env(cfg.env), cfg.num_envs

    class RlkitEncoder(BaseFeaturesExtractor):
        def __init__(self, observation_space):
            layers, width = encoder(observation_space, network_kind(observation_space, a.network), a)
            super().__init__(observation_space, width)
            self.layers = torch.nn.Sequential(*layers)

        def forward(self, obs):
            return self.layers(obs)

    env_fn = functools.partial(make_env, cfg.env)
    evaluator = Evaluator(env_fn, cfg.eval.episodes, 2**30 + seed * 1_000, info.obs_shape,
                          not info.has_continuous, info.obs_dtype, info.true_returns)
    scores = []

    class Evaluate(BaseCallback):
        def _on_step(self):
            if self.num_timesteps % cfg.eval.every < n_envs and self.num_timesteps < cfg.total_steps:
                scores.append(score())
            return True

    def score():
        act = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
        return evaluator.run(act, cfg.env.max_episode_steps)["eval/return"]

    envs = DummyVecEnv([env_fn] * n_envs)
    envs.seed(seed)
    lr = (lambda left: a.actor_lr * left) if a.anneal_lr else a.actor_lr
    model = PPO("MlpPolicy", envs, learning_rate=lr, n_steps=a.batch_size // n_envs, batch_size=a.mini_batch_size,
                n_epochs=a.k_epochs, gamma=a.gamma, gae_lambda=a.GAE_lambda, clip_range=a.policy_clip,
                ent_coef=a.ent_coef, vf_coef=a.vf_coef, max_grad_norm=a.max_grad_norm, normalize_advantage=a.norm_adv,
                policy_kwargs=dict(features_extractor_class=RlkitEncoder, share_features_extractor=False, net_arch=[],
                                   optimizer_kwargs={"eps": 1e-5}),
                seed=seed, device="cpu", verbose=0)
    update_seconds, train = [0.0], model.train

    def timed_train():  # SB3's training phase, timed as rlkit's perf/update_seconds is
        start = time.perf_counter()
        train()
        update_seconds[0] += time.perf_counter() - start

    model.train = timed_train
    start = time.perf_counter()
    model.learn(cfg.total_steps, callback=Evaluate())
    wall = time.perf_counter() - start
    scores.append(score())  # after the last update, as rlkit's final evaluation
    return {"side": "SB3", "seed": seed, "final": scores[-1], "best": float(np.max(scores)),
            "sps": model.num_timesteps / wall, "wall_s": wall, **split_us(update_seconds[0], wall, model.num_timesteps)}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sides", default="rlkit,SB3")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    seeds, overrides, name, commit, dest = setup(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, seed_pool(args.jobs) as pool:
        futures = []
        for seed in seeds:  # interleaved, so both sides see the same load
            if "rlkit" in args.sides:
                futures.append(pool.submit(rlkit_side, args.config, seed, overrides, tmp))
            if "SB3" in args.sides:
                futures.append(pool.submit(sb3_side, args.config, seed, overrides))
        for future in as_completed(futures):
            r = {**future.result(), "commit": commit}
            rows.append(r)
            print(f"{name} {r['side']} seed {r['seed']}: final {r['final']:.2f}, best {r['best']:.2f}, "
                  f"{r['sps']:.0f} SPS (us per policy step: {r['update_us']:.0f} update, {r['other_us']:.0f} other)",
                  flush=True)
            pd.DataFrame(rows).sort_values(["side", "seed"]).to_csv(dest / f"versus_sb3_{name}.csv", index=False)
    table = pd.DataFrame(rows).sort_values(["side", "seed"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    med = table.groupby("side")[["final", "sps", "update_us", "other_us"]].median()
    print(med.to_string(float_format=lambda v: f"{v:.2f}"))
    if {"rlkit", "SB3"} <= set(med.index):
        print(f"{name} at {commit}: median final rlkit {med.final['rlkit']:.2f} vs SB3 {med.final['SB3']:.2f}; "
              f"SPS ratio {med.sps['rlkit'] / med.sps['SB3']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
