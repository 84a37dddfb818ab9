"""Threads where they pay: do rlkit's thread workers overlap the steps of envs that simulate in C?

    .venv/bin/python benchmarks/threads.py [--quick] [--reps 3] [--envs 8] [--only hopper,breakout]

At a fixed number of envs (8), for MuJoCo (Hopper-v5) and the ALE (ALE/Breakout-v5, frameskip 4 inside
the env, RAM observations so that rlkit's MLP applies): backend thread with T = 1, 2, 4 workers
(T x 8/T envs), backend process (one process per env), and envpool's C++ vector (when installed, with
1, 2 and 4 of its own threads), each
- collection only: the vector's step() on random actions drawn up front, no policy (steps/s), and
- full training: rlkit.train policy steps / wall second (envpool: not a backend, so no training row).
Every figure is the median of --reps runs, the rep loop outside; the ratio is to thread T=1 in the same rep.
Writes results/benchmarks/threads.csv.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import threadpoolctl
import torch

import rlkit
from rlkit.config import EnvConfig
from rlkit.envs.make import inspect_env, make_env
from rlkit.runs.metrics import read_metrics
from rlkit.envs.vector import make_vector

ENVS = {
    # name: (rlkit env config, envpool task and kwargs doing the same work per step, training algo)
    "hopper": ({"id": "Hopper-v5"}, ("Hopper-v5", {}),
               {"batch_size": 2048, "mini_batch_size": 64, "k_epochs": 10, "gamma": 0.99, "actor_lr": 3e-4,
                "critic_lr": 3e-4, "normalize_obs": True, "normalize_reward": True}),
    "breakout": ({"id": "ALE/Breakout-v5", "kwargs": {"obs_type": "ram"}},
                 ("Breakout-v5", {"img_height": 210, "img_width": 160, "gray_scale": False, "stack_num": 1,
                                  "episodic_life": False, "reward_clip": False, "noop_max": 1,
                                  "repeat_action_probability": 0.25}),
                 {"batch_size": 1024, "mini_batch_size": 256, "k_epochs": 4, "gamma": 0.99, "actor_lr": 2.5e-4,
                  "critic_lr": 2.5e-4, "ent_coef": 0.01, "normalize_obs": True}),
}


def _register():
    try:
        import ale_py
        import gymnasium as gym
        gym.register_envs(ale_py)
    except ImportError:
        pass


def collect_sps(env_cfg: dict, backend: str, threads: int, n: int, steps: int) -> float:
    """Random actions through rlkit's vector (thread backend: T workers; process: one process per env)."""
    cfg = EnvConfig(**env_cfg)
    probe = make_env(cfg)
    info = inspect_env(probe)
    rng = np.random.default_rng(0)
    if info.has_continuous:
        actions = rng.uniform(info.action_low, info.action_high, (steps // n, n, info.action_dim)).astype(np.float32)
    else:
        actions = rng.integers(0, info.action_dim, (steps // n, n))
    probe.close()
    envs = make_vector(backend, [functools.partial(make_env, cfg)] * n, list(range(n)), info.obs_shape,
                       not info.has_continuous, threads, one_core=False)
    envs.reset()
    for a in actions[:10]:  # threads started, first resets done
        envs.step(a)
    start = time.perf_counter()
    for a in actions:
        envs.step(a)
    elapsed = time.perf_counter() - start
    envs.close()
    return actions.shape[0] * n / elapsed


def envpool_sps(task: str, kwargs: dict, threads: int, n: int, steps: int) -> float:
    import envpool

    env = envpool.make_gymnasium(task, num_envs=n, batch_size=n, num_threads=threads, seed=0, **kwargs)
    space = env.action_space
    rng = np.random.default_rng(0)
    if hasattr(space, "n"):
        actions = rng.integers(0, space.n, (steps // n, n))
    else:
        actions = rng.uniform(space.low, space.high, (steps // n, n, space.shape[0]))
    env.reset()
    for a in actions[:10]:
        env.step(a)
    start = time.perf_counter()
    for a in actions:
        env.step(a)  # envpool resets ended episodes itself
    elapsed = time.perf_counter() - start
    env.close()
    return actions.shape[0] * n / elapsed


def train_sps(env_cfg: dict, algo: dict, backend: str, threads: int, n: int, steps: int) -> float:
    cfg = {"total_steps": steps, "torch_threads": 1, "checkpoint_every": 0, "eval": {"every": 0}, "env": env_cfg,
           "parallel": {"num_threads": threads, "envs_per_thread": n // threads, "backend": backend,
                        "one_core": False}, "algo": algo}
    with tempfile.TemporaryDirectory() as out:
        run = rlkit.train(cfg, Path(out) / "run", progress=False, force=True)
        last = read_metrics(run / "metrics.csv").iloc[-1]
    return last.policy_step / last.wall_time


def cases(args):
    n, q = args.envs, args.quick
    collect_steps, train_steps = (800, 2048) if q else (12_000, 8_192)
    try:
        import envpool  # noqa: F401
        have_envpool = True
    except ImportError as e:
        have_envpool = False
        print(f"envpool rows skipped: {e} (pip install envpool)")
    out = []
    for name in args.only:
        env_cfg, (task, pool_kwargs), algo = ENVS[name]
        layouts = [("thread", t) for t in (1, 2, 4)] + [("process", n)]
        for backend, t in layouts:
            label = f"{backend} T={t} E={n // t}" if backend == "thread" else f"process ({n} processes)"
            out.append((name, "collect", label, functools.partial(collect_sps, env_cfg, backend, t, n, collect_steps)))
        if have_envpool:
            for t in (1, 2, 4):
                out.append((name, "collect", f"envpool num_threads={t}",
                            functools.partial(envpool_sps, task, pool_kwargs, t, n, collect_steps)))
        for backend, t in layouts:
            label = f"{backend} T={t} E={n // t}" if backend == "thread" else f"process ({n} processes)"
            out.append((name, "train", label, functools.partial(train_sps, env_cfg, algo, backend,
                                                                 t if backend == "thread" else 1, n, train_steps)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small step counts: a smoke test, not a measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--envs", type=int, default=8, help="envs in every layout")
    parser.add_argument("--only", default="hopper,breakout")
    parser.add_argument("--out", default="results/benchmarks/threads.csv")
    args = parser.parse_args(argv)
    args.only = args.only.split(",")
    torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(1, user_api="blas")
    _register()
    todo = cases(args)
    samples = defaultdict(list)
    for rep in range(args.reps):
        for env, mode, label, fn in todo:
            samples[env, mode, label].append(fn())
            print(f"  rep {rep + 1}/{args.reps}  {env:9s} {mode:8s} {label:28s} {samples[env, mode, label][-1]:>9,.0f} steps/s",
                  flush=True)
    rows = []
    for (env, mode, label), v in samples.items():
        base = samples[env, mode, f"thread T=1 E={args.envs}"]
        rows.append({"env": env, "mode": mode, "layout": label, "steps_per_s": statistics.median(v),
                     "ratio_to_T1": statistics.median(a / b for a, b in zip(v, base)),
                     "samples": " ".join(f"{x:.0f}" for x in v)})
    table = pd.DataFrame(rows)
    print(table.drop(columns="samples").to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
