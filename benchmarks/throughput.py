"""Throughput benchmark: raw env limit, rlkit vs Stable-Baselines3 PPO, thread scaling, time to solve, RND cost,
off-policy (SAC, DQN) against SB3, with parallel.overlap against without, and their gradient step against its
matmul floor.

    .venv/bin/python benchmarks/throughput.py [--quick] [--reps 3] [--seeds 5] [--cases 1,2,3,4,5,6,7,8,9,10,11,12,13]

Every throughput figure is the median of --reps runs; the rep loop is outside and the cases
inside, so load drift on a shared machine hits every case alike. Training SPS is policy steps
/ wall second from the final row of the run's metrics.csv (`wall_time` starts when the loop
starts, so building envs and the model is left out; eval is off, one checkpoint at the end).
SB3 is timed around `model.learn()` only. Both run with torch.set_num_threads(1), numpy's BLAS on one thread.
SBX (cases 11 and 13, when `sbx-rl` is installed: the bench extra) runs in a child process, on one core and (case
11) on every core; its first learn() call, which compiles, is not timed. Case 11's other rows run on one core too
(`on_one_core`): XLA's thread flags do not keep its matmuls on one thread, so only the CPU affinity gives every
side the same one core. rlkit's case 11 rows are timed
from the log row a quarter into the run to its end, so that its random steps and, with algo.kwargs.compile,
its compile are left out.
Prints a table and writes results/benchmarks/throughput.csv.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import threadpoolctl
import torch

import rlkit
import rlkit.envs.latency  # noqa: F401  registers LatencyCartPole-v1
from rlkit.runs.metrics import read_metrics
from rlkit.algos.ppo import PPO

LATENCY_ID = "rlkit.envs.latency:LatencyCartPole-v1"
# SB3 rl-zoo CartPole-v1: 8 envs x 32 steps, 20 epochs of one 256-minibatch, gamma .98, lambda .8, lr 1e-3
ZOO = {"parallel": {"num_threads": 1, "envs_per_thread": 8},
       "algo": {"batch_size": 256, "mini_batch_size": 256, "k_epochs": 20, "gamma": 0.98, "GAE_lambda": 0.8,
                "actor_lr": 1e-3, "critic_lr": 1e-3, "ent_coef": 0.0}}
SEED_DEFAULTS = {"parallel": {"num_threads": 1, "envs_per_thread": 8}, "algo": {}}  # batch 1024, mini 512, 23 epochs
# Scaling rows: a cheap update (one gradient step per 1024-step rollout) so collection dominates.
SCALING_ALGO = {"batch_size": 1024, "mini_batch_size": 1024, "k_epochs": 1}
# Only 1 and the one-process-per-env row are meaningful with the process backend.
SCALING = [("thread", t) for t in (1, 2, 4, 8)] + [("process", 1)]


# CleanRL ppo_continuous_action on MuJoCo: 2048 policy steps per rollout, 10 epochs of 32 minibatches of 64,
# lr 3e-4, gamma 0.99, GAE lambda 0.95, clip 0.2, normalised observations and rewards, 64-64 tanh; as one env
# x 2048 steps (CleanRL's own layout) and as 8 envs x 256
MUJOCO_ID = "Hopper-v5"
CLEANRL_ALGO = {"batch_size": 2048, "mini_batch_size": 64, "k_epochs": 10, "gamma": 0.99, "GAE_lambda": 0.95,
                "policy_clip": 0.2, "actor_lr": 3e-4, "critic_lr": 3e-4, "ent_coef": 0.0, "vf_coef": 0.5,
                "max_grad_norm": 0.5, "hidden_sizes": [64, 64], "activation": "tanh",
                "normalize_obs": True, "normalize_reward": True}
MUJOCO_LAYOUTS = (1, 8)  # envs; steps per env per rollout = 2048 / envs


def raw_mujoco_sps(steps: int) -> float:
    """Case 8: one gymnasium.make(Hopper-v5) stepping random actions (drawn up front), reset when an episode
    ends, no policy: the ceiling for any one-env Hopper loop on this machine."""
    env = gym.make(MUJOCO_ID)
    env.action_space.seed(0)
    return one_env_sps(env, [env.action_space.sample() for _ in range(steps)])


def one_env_sps(env, actions) -> float:
    """Steps per second of one env taking the given actions (drawn up front), reset when an episode ends."""
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return len(actions) / elapsed


def sb3_steps_per_second(model, env, total_steps: int) -> float:
    """Policy steps per second of SB3's training call alone (the model and its envs built before the clock)."""
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed


def sb3_mujoco_sps(total_steps: int, n_envs: int) -> float:
    """Case 8: SB3 PPO at the CleanRL settings (VecNormalize of obs and rewards, 64-64 tanh); learn() timed only."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(MUJOCO_ID, n_envs=n_envs, seed=0), gamma=0.99)
    model = PPO("MlpPolicy", env, n_steps=2048 // n_envs, batch_size=64, n_epochs=10, gamma=0.99, gae_lambda=0.95,
                learning_rate=3e-4, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, device="cpu",
                seed=0, verbose=0,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    return sb3_steps_per_second(model, env, total_steps)


ATARI_PRESET = "params/atari_breakout.yaml"


def raw_atari_sps(steps: int) -> float:
    """Case 9: one env of the Atari preset, built as rlkit builds it (AtariPreprocessing, episodic life, clipped
    rewards, 4 stacked frames), random actions: policy steps per second (4 emulator frames each), no policy."""
    from rlkit.config import load_config
    from rlkit.envs.make import make_env

    env = make_env(load_config(ATARI_PRESET).env)
    return one_env_sps(env, np.random.default_rng(0).integers(0, env.action_space.n, steps).tolist())


def raw_env_sps(steps: int) -> float:
    """Case 1: random actions (drawn up front) through SyncVectorEnv of 8 CartPole-v1, no learning."""
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 8)
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, (steps // 8, 8))
    start = time.perf_counter()
    for a in actions:
        envs.step(a)
    elapsed = time.perf_counter() - start
    envs.close()
    return actions.size / elapsed


def rlkit_sps(base: dict, total_steps: int, env_id: str = "CartPole-v1", **parallel) -> float:
    """Case 2/4: policy steps per wall second of rlkit.train, from the final metrics row."""
    return rlkit_run(base, total_steps, env_id, **parallel)[0]


def rlkit_run(base: dict, total_steps: int, env_id: str = "CartPole-v1", **parallel) -> tuple[float, float]:
    """(policy steps per wall second, wall seconds of the training phases per policy step) of rlkit.train."""
    cfg = {"total_steps": total_steps, "torch_threads": 1, "checkpoint_every": 0, "eval": {"every": 0},
           "env": {"id": env_id}, "parallel": {**base["parallel"], **parallel}, "algo": base["algo"]}
    with tempfile.TemporaryDirectory() as out:
        run = rlkit.train(cfg, Path(out) / "run", progress=False, force=True)
        df = read_metrics(run / "metrics.csv")
    last = df.iloc[-1]
    return last.policy_step / last.wall_time, df[df.metric == "perf/update_seconds"].value.sum() / last.policy_step


# case 8, one env: each rep's update seconds per policy step (the "8 bound" row)
UPDATE_SECONDS = []


def one_env_mujoco_sps(total_steps: int) -> float:
    sps, update_seconds = rlkit_run({"parallel": {"num_threads": 1, "envs_per_thread": 1}, "algo": CLEANRL_ALGO},
                                    total_steps, MUJOCO_ID)
    UPDATE_SECONDS.append(update_seconds)
    return sps


def sb3_sps(total_steps: int) -> float:
    """Case 3: SB3 PPO at the zoo settings, same 64-64 tanh MLPs; timed around learn() only."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env  # DummyVecEnv + Monitor

    env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
                learning_rate=1e-3, ent_coef=0.0, device="cpu", seed=0, verbose=0,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
    return sb3_steps_per_second(model, env, total_steps)


def params_sps(config: str, total_steps: int) -> float:
    """Case 6: policy steps per wall second of a params file as it is, eval and warm-up off (both rows alike)."""
    overrides = {"total_steps": total_steps, "learning_starts": 0, "eval.every": 0, "checkpoint_every": 0,
                 "torch_threads": 1}
    with tempfile.TemporaryDirectory() as out:
        run = rlkit.train(config, Path(out) / "run", overrides=overrides, progress=False, force=True)
        last = read_metrics(run / "metrics.csv").iloc[-1]
    return last.policy_step / last.wall_time


def gradient_step_us(fused: bool, steps: int) -> float:
    """Case 7: wall microseconds per PPO gradient step at the zoo sizes (a 256-row minibatch of CartPole-sized
    observations, 64-64 tanh actor and critic), clipping and Adam included: rlkit/algos/ppo_numpy.py or autograd.
    The batch is one the policy collected (its own actions and log-probabilities), so the numpy path's checks
    against autograd (each phase's last minibatch) run as in training and are part of the figure."""
    algo = {**ZOO["algo"], "numpy_gradient": fused}
    agent = PPO(rlkit.load_config({"algo": algo}).algo, gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                gym.spaces.Discrete(2), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(256, 4, generator=g)
    actions, logprobs = agent.act(obs.numpy(), g)
    batch = {"obs": obs, "actions": torch.as_tensor(actions, dtype=torch.float32),
             "logprobs": torch.as_tensor(logprobs), "advantages": torch.randn(256, generator=g),
             "returns": torch.randn(256, 1, generator=g), "values": torch.randn(256, 1, generator=g)}
    rng = np.random.default_rng(0)
    agent.update(batch, 20, rng)  # warm-up
    with torch.no_grad():  # the batch as the moved policy would have collected it: a new rollout's log-probs
        batch["logprobs"] = agent.actor.evaluate(batch["obs"], batch["actions"])[0]
    start = time.perf_counter()
    agent.update(batch, steps, rng)
    return (time.perf_counter() - start) / steps * 1e6


MINATAR_PRESET = "params/minatar_breakout.yaml"


def minatar_step_us(kernels_only: bool, steps: int) -> float:
    """Case 10: wall microseconds per gradient step of params/minatar_breakout.yaml (a 256-row minibatch of
    10x10x4 boolean grids; the MinAtar paper's network as actor and as critic): rlkit's whole step (the loss
    through autograd, clipping, Adam), or the networks' own kernels alone, forward and backward of actor and
    critic through torch, which any PPO with these networks runs (SB3 in versus_sb3.py runs the same modules)."""
    from rlkit.config import load_config
    from rlkit.envs.make import probe_env, resolve_env_fields

    cfg = load_config(MINATAR_PRESET)
    info = probe_env(cfg.env)
    resolve_env_fields(cfg, info)
    agent = PPO(cfg.algo, info.obs_space, info.action_space, torch.device("cpu"))
    g, n = torch.Generator().manual_seed(0), cfg.algo.batch_size
    batch = {"obs": torch.rand((n, *info.obs_shape), generator=g) < 0.1,
             "actions": torch.randint(0, info.action_space.n, (n,), generator=g).float(),
             "logprobs": torch.full((n,), -1.1), "advantages": torch.randn(n, generator=g),
             "returns": torch.randn(n, 1, generator=g), "values": torch.randn(n, 1, generator=g)}
    rng = np.random.default_rng(0)
    if kernels_only:
        obs = batch["obs"][:cfg.algo.mini_batch_size]

        def step(_):
            (agent.actor.net(obs).sum() + agent.critic(obs).sum()).backward()
    else:
        def step(k):
            agent.update(batch, k, rng)
    step(4)  # warm-up
    start = time.perf_counter()
    if kernels_only:
        for _ in range(steps):
            step(1)
    else:
        step(steps)
    return (time.perf_counter() - start) / steps * 1e6


class _Solved(Exception):
    """Raised by the callback to stop a run once it is solved."""


def time_to_solve(seed: int, config: str, total_steps: int) -> tuple[float, float]:
    """Case 5: (wall_time, policy_step) of the first eval/return >= 475 row; NaN if never reached."""
    def stop_when_solved(counters, metrics):
        if metrics.get("eval/return", -np.inf) >= 475:
            raise _Solved

    overrides = {"seed": seed, "total_steps": total_steps, "eval.every": 2000, "eval.episodes": 10,
                 "torch_threads": 1, "checkpoint_every": 0}
    with tempfile.TemporaryDirectory() as out:
        try:
            rlkit.train(config, Path(out) / "run", overrides=overrides, progress=False, force=True,
                        callbacks=[stop_when_solved])
        except _Solved:
            pass
        df = read_metrics(Path(out) / "run" / "metrics.csv")
    hit = df[(df.metric == "eval/return") & (df.value >= 475)]
    return (hit.wall_time.iloc[0], hit.policy_step.iloc[0]) if len(hit) else (float("nan"), float("nan"))


# Case 11, off-policy at one env, one gradient step per train_every: SAC on Hopper-v5 (SB3's defaults: 256-256 ReLU,
# batch 256, a gradient step every policy step) and DQN on CartPole-v1 (a gradient step every 4 policy steps,
# batch 128, 256-256 ReLU); 100 random steps first on both sides, the whole training call timed
OFFPOLICY = {"sac": ("Hopper-v5", 1, {"mini_batch_size": 256, "hidden_sizes": [256, 256]}),
             "dqn": ("CartPole-v1", 4, {"mini_batch_size": 128, "hidden_sizes": [256, 256],
                                        "kwargs": {"learning_rate": 1e-4, "target_update_interval": 1000}})}
# case 12 also on an env whose step waits without the GIL (a remote simulator, a robot): DQN's settings on
# CartPole that sleeps 0.5 ms a step (rlkit/envs/latency.py), where the envs' time can hide behind the phase's
OFFPOLICY["dqn-latency"] = (LATENCY_ID, 4, OFFPOLICY["dqn"][2])
LATENCY_KWARGS = {LATENCY_ID: {"delay_s": 0.0005}}
OFFPOLICY_STARTS = 100


def rlkit_offpolicy_sps(name: str, total_steps: int, overlap: bool = False, compile: bool = False,
                        after: int = 0, precision: str = "32-true") -> float:
    """rlkit's SAC / DQN at case 11's settings (compile, precision: algo.kwargs'), policy steps per second of the
    training loop; after: from the log row at that policy step to the end, leaving out the start of the run,
    where the random steps and the compiled step's compile are (as SBX's compile is left out)."""
    env_id, every, algo = OFFPOLICY[name]
    algo = {**algo, "kwargs": {**algo.get("kwargs", {}), "compile": compile, "precision": precision}}
    cfg = {"total_steps": total_steps, "torch_threads": 1, "checkpoint_every": 0, "eval": {"every": 0},
           "learning_starts": OFFPOLICY_STARTS, "train_every": every, **({"log_every": after} if after else {}),
           "env": {"id": env_id, "kwargs": LATENCY_KWARGS.get(env_id, {})},
           "parallel": {"num_threads": 1, "envs_per_thread": 1, "overlap": overlap},
           "algo": {"name": name.split("-")[0], "per_rank_gradient_steps": 1, "buffer_size": total_steps, **algo}}
    with tempfile.TemporaryDirectory() as out:
        run = rlkit.train(cfg, Path(out) / "run", progress=False, force=True)
        rows = read_metrics(run / "metrics.csv")
    last, first = rows.iloc[-1], rows[rows.policy_step >= after].iloc[0]
    if not after:
        return last.policy_step / last.wall_time
    assert first.policy_step == after, first.policy_step
    return (last.policy_step - first.policy_step) / (last.wall_time - first.wall_time)


def offpolicy_update_us(name: str, floor: bool, steps: int, compile: bool = False,
                        precision: str = "32-true") -> float:
    """Case 13: microseconds of one gradient step of case 11's SAC or DQN (update_step on a batch the learner
    samples from its replay memory), or its matmul floor: the step's floating-point operations, counted by
    torch's FlopCounterMode, over the best rate of a 256x256x256 matmul on one thread. What the floor leaves
    out of the step is what any implementation can still save (dispatch, autograd, the optimizer, the small
    ops); no implementation runs these matmuls in less (in float32). compile, precision: algo.kwargs' (the
    warm-up compiles)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rlkit.algos.base import check_config, learner_class
    from rlkit.config import load_config
    from rlkit.envs.make import probe_env, resolve_env_fields
    from rlkit.steps import StepCounter

    env_id, every, algo = OFFPOLICY[name]
    cfg = load_config({"total_steps": 10_000, "learning_starts": 0, "train_every": every, "env": {"id": env_id},
                       "parallel": {"num_threads": 1, "envs_per_thread": 1},
                       "algo": {"name": name, "per_rank_gradient_steps": 1, "buffer_size": 1_000, **algo,
                                "kwargs": {**algo.get("kwargs", {}), "compile": compile, "precision": precision}}})
    info = probe_env(cfg.env)
    resolve_env_fields(cfg, info)
    check_config(cfg, 1)
    learner = learner_class(name)(cfg, info, "cpu", np.random.default_rng(0), torch.Generator().manual_seed(0))
    counter, rng = StepCounter(1, 1, 1), np.random.default_rng(1)
    obs = rng.normal(size=(1, *info.obs_shape)).astype(np.float32)
    for _ in range(2 * algo["mini_batch_size"]):  # transitions for the batches: their values do not change the cost
        learner.act(obs, counter)
        counter.step_iteration()
        obs = rng.normal(size=obs.shape).astype(np.float32)
        learner.observe(obs, np.ones(1, np.float32), np.zeros(1, bool), np.zeros(1, bool), obs, counter)
    batch = learner.sample()
    if floor:
        with FlopCounterMode(display=False) as flops:
            learner.update_step(batch)
        x, w = torch.randn(256, 256), torch.randn(256, 256)
        best = float("inf")
        for _ in range(20):
            start = time.perf_counter()
            for _ in range(50):
                x @ w
            best = min(best, (time.perf_counter() - start) / 50)
        return flops.get_total_flops() / (2 * 256**3 / best) * 1e6
    for _ in range(10):  # warm-up
        learner.update_step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        learner.update_step(batch)
    return (time.perf_counter() - start) / steps * 1e6


def sb3_offpolicy_sps(name: str, total_steps: int) -> float:
    """SB3's SAC / DQN at the same settings, timed around learn() only."""
    import stable_baselines3 as sb3

    env_id, every, algo = OFFPOLICY[name]
    env = gym.make(env_id)
    common = dict(learning_starts=OFFPOLICY_STARTS, batch_size=algo["mini_batch_size"], buffer_size=total_steps,
                  train_freq=every, gradient_steps=1, device="cpu", seed=0, verbose=0,
                  policy_kwargs=dict(net_arch=algo["hidden_sizes"], activation_fn=torch.nn.ReLU))
    if name == "sac":
        model = sb3.SAC("MlpPolicy", env, **common)
    else:
        model = sb3.DQN("MlpPolicy", env, learning_rate=1e-4, target_update_interval=1000, **common)
    return sb3_steps_per_second(model, env, total_steps)


# SBX (Stable-Baselines3 in JAX) runs in a child process: XLA reads its thread settings when jax is imported
SBX_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def sbx_offpolicy_sps(name: str, total_steps: int, one_thread: bool = True) -> float:
    """SBX's SAC / DQN at case 11's settings, learn() timed only; XLA's one-thread flags unless one_thread is
    False (they do not stop its matmuls from using a second core: case 11 pins the child to one core, which it
    inherits, with on_one_core). Prints the child's CPU time over its wall time, which tells how many cores it
    used."""
    result = sbx_run(name, total_steps, "learn", one_thread)
    print(f"    SBX {name}: {result['cpu_per_wall']:.2f} CPU seconds per wall second in learn()", flush=True)
    return result["sps"]


def sbx_update_us(name: str, steps: int) -> float:
    """Case 13's SBX row: microseconds of one SBX gradient step, train() with its batch sampling, at case 11's
    settings (call it on one core: on_one_core)."""
    return sbx_run(name, steps, "update", True)["us"]


def sbx_run(name: str, steps: int, mode: str, one_thread: bool) -> dict:
    """One SBX timing (sbx_child) in a child process, as a dict."""
    import json
    import os
    import subprocess

    env = {**os.environ, "XLA_FLAGS": SBX_ONE_THREAD if one_thread else "", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, __file__, "--sbx-child", name, str(steps), mode], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def on_one_core(fn):
    """fn, run with this thread (and so the threads and child processes it starts) on one core, the first this
    process may use; the affinity is restored after."""
    import os

    def pinned():
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})
        try:
            return fn()
        finally:
            os.sched_setaffinity(0, cores)
    return pinned


def sbx_child(name: str, total_steps: int, mode: str) -> None:
    """mode learn: policy steps per second of learn() for total_steps; update: microseconds per train() call of
    one gradient step, total_steps of them (after the same first learn())."""
    import json

    import flax.linen
    import sbx

    env_id, every, algo = OFFPOLICY[name]
    env = gym.make(env_id)
    common = dict(learning_starts=OFFPOLICY_STARTS, batch_size=algo["mini_batch_size"], buffer_size=total_steps,
                  train_freq=every, gradient_steps=1, seed=0, verbose=0,
                  policy_kwargs=dict(net_arch=algo["hidden_sizes"], activation_fn=flax.linen.relu))
    if name == "sac":
        model = sbx.SAC("MlpPolicy", env, **common)
    else:
        model = sbx.DQN("MlpPolicy", env, learning_rate=1e-4, target_update_interval=1000, **common)
    # JAX compiles the update on its first call: a first learn() past learning_starts is left out of the timing,
    # so the timed steps all train (the other sides' include OFFPOLICY_STARTS random ones)
    model.learn(total_timesteps=OFFPOLICY_STARTS + 2 * every)
    if mode == "update":  # train() syncs: it records its losses with .item()
        for _ in range(10):
            model.train(gradient_steps=1, batch_size=algo["mini_batch_size"])
        start = time.perf_counter()
        for _ in range(total_steps):
            model.train(gradient_steps=1, batch_size=algo["mini_batch_size"])
        print(json.dumps({"us": (time.perf_counter() - start) / total_steps * 1e6}))
        return
    before, start, cpu = model.num_timesteps, time.perf_counter(), time.process_time()
    model.learn(total_timesteps=total_steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    print(json.dumps({"sps": (model.num_timesteps - before) / wall, "cpu_per_wall": (time.process_time() - cpu) / wall}))


def have_mujoco() -> bool:
    import importlib.util

    return importlib.util.find_spec("mujoco") is not None


def have_sbx() -> bool:
    import importlib.util

    return importlib.util.find_spec("sbx") is not None


def throughput_cases(args, have_sb3: bool) -> list[tuple[str, str, callable]]:
    """(case, name, fn) for every throughput measurement; fn() returns steps per second."""
    q = args.quick
    train_steps = 4096 if q else 98_304  # a multiple of 256 and 1024: every run ends on a rollout boundary
    cpu_steps, lat_steps = (2048, 1024) if q else (32_768, 8192)
    cases = [("1 raw env", "SyncVectorEnv 8x CartPole-v1, random actions", lambda: raw_env_sps(8_000 if q else 200_000)),
             ("2 rlkit", "zoo: 8 envs x 32, 20 epochs, mb 256", lambda: rlkit_sps(ZOO, train_steps)),
             ("2 rlkit", "seed defaults: 8 envs, batch 1024, mb 512, 23 epochs",
              lambda: rlkit_sps(SEED_DEFAULTS, train_steps))]
    if have_sb3:
        cases.append(("3 SB3", "zoo: 8 envs x 32, 20 epochs, mb 256", lambda: sb3_sps(train_steps)))
    for env_id, steps in (("CartPole-v1", cpu_steps), (LATENCY_ID, lat_steps)):
        # the latency env also at T=8 with its threads left on every core, beside one_core: auto's choice
        extra = [("thread", 8, {"one_core": False})] if env_id == LATENCY_ID else []
        for backend, t, options in [(b, t, {}) for b, t in SCALING] + extra:
            e = 16 // t
            name = f"{env_id.split(':')[-1]} {backend} T={t} E={e}" + "".join(
                f" {k}={str(v).lower()}" for k, v in options.items())
            cases.append(("4 scaling", name, lambda env_id=env_id, steps=steps, b=backend, t=t, e=e, o=options: rlkit_sps(
                {"parallel": {}, "algo": SCALING_ALGO}, steps, env_id,
                num_threads=t, envs_per_thread=e, backend=b, **o)))
    rnd_steps = 4096 if q else 32_768  # 16 rollouts of 16 envs x 128 steps
    cases += [("6 RND", "MountainCar-v0 PPO (params/mountaincar.yaml)",
               lambda: params_sps("params/mountaincar.yaml", rnd_steps)),
              ("6 RND", "MountainCar-v0 PPO + RND (params/mountaincar_rnd.yaml)",
               lambda: params_sps("params/mountaincar_rnd.yaml", rnd_steps))]
    grad_steps = 200 if q else 2000
    cases += [("7 grad step", "zoo sizes, rlkit/algos/ppo_numpy.py (numpy)", lambda: gradient_step_us(True, grad_steps)),
              ("7 grad step", "zoo sizes, autograd (algo.numpy_gradient: false)", lambda: gradient_step_us(False, grad_steps))]
    mujoco_steps = 4096 if q else 16_384  # 8 rollouts of 2048
    cases.append(("8 raw env", f"one {MUJOCO_ID}, random actions", lambda: raw_mujoco_sps(2_000 if q else 30_000)))
    for n in MUJOCO_LAYOUTS:
        name = f"{MUJOCO_ID} CleanRL settings, {n} env{'s' if n > 1 else ''} x {2048 // n}"
        cases.append(("8 rlkit", name, (lambda: one_env_mujoco_sps(mujoco_steps)) if n == 1 else lambda n=n: rlkit_sps(
            {"parallel": {"num_threads": 1, "envs_per_thread": n}, "algo": CLEANRL_ALGO}, mujoco_steps, MUJOCO_ID)))
        if have_sb3:
            cases.append(("8 SB3", name, lambda n=n: sb3_mujoco_sps(mujoco_steps, n)))
    atari_steps = 1024 if q else 3072  # whole rollouts of the preset's 8 envs x 128 steps
    cases += [("9 raw env", "one env of params/atari_breakout.yaml, random actions",
               lambda: raw_atari_sps(500 if q else 5_000)),
              ("9 rlkit", "params/atari_breakout.yaml as it is, one torch thread",
               lambda: params_sps(ATARI_PRESET, atari_steps))]
    minatar_steps = 16 if q else 128
    cases += [("10 grad step", "params/minatar_breakout.yaml, rlkit's whole gradient step",
               lambda: minatar_step_us(False, minatar_steps)),
              ("10 grad step", "params/minatar_breakout.yaml, the networks' kernels alone (forward + backward)",
               lambda: minatar_step_us(True, minatar_steps))]
    sac_steps, dqn_steps = (300, 2_000) if q else (2_000, 10_000)
    for name, steps, what in (("sac", sac_steps, "SAC Hopper-v5, 256-256, batch 256, 1 gradient step / policy step"),
                              ("dqn", dqn_steps, "DQN CartPole-v1, 256-256, batch 128, train every 4")):
        # every row on one core but SBX-mt; rlkit's rows from the first quarter of the run on: its random steps and
        # the compile left out
        cases.append(("11 rlkit", what, on_one_core(
            lambda name=name, steps=steps: rlkit_offpolicy_sps(name, steps, after=steps // 4))))
        cases.append(("11 rlkit-c", what, on_one_core(  # algo.kwargs.compile: the gradient step compiled
            lambda name=name, steps=steps: rlkit_offpolicy_sps(name, steps, compile=True, after=steps // 4))))
        cases.append(("11 rlkit-bf", what, on_one_core(  # and algo.kwargs.precision: bf16-mixed
            lambda name=name, steps=steps: rlkit_offpolicy_sps(name, steps, compile=True, after=steps // 4,
                                                               precision="bf16-mixed"))))
        if have_sb3:
            cases.append(("11 SB3", what, on_one_core(lambda name=name, steps=steps: sb3_offpolicy_sps(name, steps))))
        if have_sbx():  # (SBX's rows: case 11, and its step in case 13)
            cases.append(("11 SBX", what, on_one_core(lambda name=name, steps=steps: sbx_offpolicy_sps(name, steps))))
            cases.append(("11 SBX-mt", what,  # XLA's default threads on every core
                          lambda name=name, steps=steps: sbx_offpolicy_sps(name, steps, one_thread=False)))
    # case 12: parallel.overlap (a phase on its own thread while the envs step) against the serial loop
    runs = [("dqn", dqn_steps, "DQN CartPole-v1, case 11's settings"),
            ("dqn-latency", dqn_steps, "DQN LatencyCartPole (0.5 ms a step), case 11's settings")]
    if have_mujoco():
        runs.insert(0, ("sac", sac_steps, "SAC Hopper-v5, case 11's settings"))
    elif "12" in args.cases:
        print("case 12's SAC rows skipped: MuJoCo is not installed; pip install -e '.[mujoco]'")
    for name, steps, what in runs:
        cases += [("12 serial", what, lambda name=name, steps=steps: rlkit_offpolicy_sps(name, steps)),
                  ("12 overlap", what, lambda name=name, steps=steps: rlkit_offpolicy_sps(name, steps, True))]
    # case 13: case 11's gradient step, and the time its matmuls alone take at this CPU's matmul rate
    for name, what in (("sac", "SAC Hopper-v5, case 11's settings"), ("dqn", "DQN CartPole-v1, case 11's settings")):
        if name == "sac" and not have_mujoco():
            continue
        cases += [("13 update", what, lambda name=name: offpolicy_update_us(name, False, 30 if q else 500)),
                  ("13 update-c", what, lambda name=name: offpolicy_update_us(name, False, 30 if q else 500, True)),
                  ("13 update-bf", what, lambda name=name: offpolicy_update_us(name, False, 30 if q else 500, True,
                                                                             "bf16-mixed")),
                  ("13 floor", what, lambda name=name: offpolicy_update_us(name, True, 0))]
        if have_sbx():  # SBX's gradient step on one core, its sampling included as update_step's is
            cases.append(("13 SBX", what, on_one_core(lambda name=name: sbx_update_us(name, 30 if q else 500))))
    return [c for c in cases if case_number(c[0]) in args.cases]


def case_number(case: str) -> str:
    return case.split()[0]


def unit(case: str) -> str:
    """Cases 7, 10 and 13 time one gradient step; the others count policy steps per second."""
    return "us/step" if case_number(case) in ("7", "10", "13") else "steps/s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small step counts: a smoke test, not a measurement")
    parser.add_argument("--reps", type=int, default=3, help="runs per throughput figure (median reported)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for time to solve")
    parser.add_argument("--cases", default="1,2,3,4,5,6,7,8,9,10,11,12,13", help="comma-separated subset of cases 1-13")
    parser.add_argument("--out", default="results/benchmarks/throughput.csv")
    parser.add_argument("--sbx-child", nargs=3, help=argparse.SUPPRESS)  # (name, steps, mode): one SBX timing, as JSON
    args = parser.parse_args(argv)
    if args.sbx_child:
        sbx_child(args.sbx_child[0], int(args.sbx_child[1]), args.sbx_child[2])
        return 0
    args.cases = set(args.cases.replace(" ", "").split(","))
    torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(1, user_api="blas")
    try:
        import stable_baselines3  # noqa: F401
        have_sb3 = True
    except ImportError as e:
        have_sb3 = False
        if "3" in args.cases:
            print(f"case 3 skipped: Stable-Baselines3 is not installed ({e}); pip install -e '.[bench]'")

    cases = throughput_cases(args, have_sb3)
    samples = defaultdict(list)
    for rep in range(args.reps):  # reps outside, cases inside: drift hits all cases alike
        for case, name, fn in cases:
            samples[case, name].append(fn())
            unit_of = unit(case)
            print(f"  rep {rep + 1}/{args.reps}  {case:11s} {name:55s} {samples[case, name][-1]:>10,.0f} {unit_of}",
                  flush=True)

    rows = [{"case": c, "name": n, "value": statistics.median(v), "unit": unit(c),
             "runs": len(v),
             "samples": " ".join(f"{x:.0f}" for x in v)} for (c, n), v in samples.items()]
    by_key = {(r["case"], r["name"]): r for r in rows}
    for r in rows:  # ratios: rlkit / SB3 at the same settings; scaling rows / the same env at T=1;
        # the median of per-rep ratios: each pair ran side by side, so load drift largely cancels
        base = {"2 rlkit": ("3 SB3", r["name"]),
                "4 scaling": ("4 scaling", f"{r['name'].split()[0]} thread T=1 E=16"),
                "6 RND": ("6 RND", "MountainCar-v0 PPO (params/mountaincar.yaml)"),
                # case 7: autograd's time over the fused step's, i.e. the fused step's speed-up
                "7 grad step": ("7 grad step", "zoo sizes, rlkit/algos/ppo_numpy.py (numpy)"),
                "8 rlkit": ("8 SB3", r["name"]),
                "11 rlkit": ("11 SB3", r["name"]),
                "11 rlkit-c": ("11 SB3", r["name"]),
                "11 rlkit-bf": ("11 SB3", r["name"]),
                "13 update-c": ("13 update", r["name"]),
                "13 update-bf": ("13 update", r["name"]),
                # SBX's gradient step over rlkit's compiled one: above 1, rlkit's is the faster
                "13 SBX": ("13 update-c", r["name"]),
                "12 overlap": ("12 serial", r["name"]),
                "11 SBX": ("11 SB3", r["name"]),
                "11 SBX-mt": ("11 SB3", r["name"]),
                # case 10: the kernels' share of rlkit's whole step
                "10 grad step": ("10 grad step", "params/minatar_breakout.yaml, rlkit's whole gradient step")
                }.get(r["case"])
        if base in by_key and by_key[base] is not r:
            pairs = zip(samples[r["case"], r["name"]], samples[base])
            r["ratio"] = statistics.median(a / b for a, b in pairs)
            r["ratio_to"] = {"3 SB3": "SB3", "4 scaling": "thread T=1", "6 RND": "PPO", "7 grad step": "fused",
                             "8 SB3": "SB3", "10 grad step": "whole step", "11 SB3": "SB3",
                             "12 serial": "serial", "13 update": "eager", "13 update-c": "compiled"}[base[0]]
        sbx = ("11 SBX", r["name"])
        if r["case"] in ("11 rlkit", "11 rlkit-c", "11 rlkit-bf") and sbx in by_key:  # rlkit's steps/s over SBX's, per rep
            r["of_sbx"] = statistics.median(a / b for a, b in zip(samples[r["case"], r["name"]], samples[sbx]))
        raw = ("8 raw env", f"one {MUJOCO_ID}, random actions")
        if r["case"] == "8 rlkit" and " 1 env " in r["name"] and raw in by_key:  # the one-env limit, per rep too
            r["of_raw"] = statistics.median(a / b for a, b in zip(samples[r["case"], r["name"]], samples[raw]))
        raw = ("9 raw env", "one env of params/atari_breakout.yaml, random actions")
        if r["case"] == "9 rlkit" and raw in by_key:  # 8 envs' policy steps against one env's limit
            r["of_raw"] = statistics.median(a / b for a, b in zip(samples[r["case"], r["name"]], samples[raw]))

    raw = samples.get(("8 raw env", f"one {MUJOCO_ID}, random actions"))
    if raw and UPDATE_SECONDS:  # the most a one-env loop can make with rlkit's own update and collection for free
        bounds = [1 / (1 / r + u) for r, u in zip(raw, UPDATE_SECONDS)]
        rows.append({"case": "8 bound", "unit": "steps/s", "runs": len(bounds), "value": statistics.median(bounds),
                     "name": f"raw env + rlkit's update ({statistics.median(UPDATE_SECONDS) * 1e6:.0f} us/step), "
                             "collection free",
                     "of_raw": statistics.median(b / r for b, r in zip(bounds, raw)),
                     "samples": " ".join(f"{b:.0f}" for b in bounds)})

    if "5" in args.cases:
        seeds = 1 if args.quick else args.seeds
        budget = 4096 if args.quick else 100_000
        solved = []
        for seed in range(seeds):
            wall, step = time_to_solve(seed, "params/cartpole.yaml", budget)
            solved.append((wall, step))
            print(f"  seed {seed}: eval/return >= 475 at {step:,.0f} policy steps, {wall:.1f} s", flush=True)
        walls = [np.inf if np.isnan(w) else w for w, _ in solved]  # unsolved: slower than any solved seed
        reached = sum(np.isfinite(walls))
        rows.append({"case": "5 time to solve", "unit": "s", "runs": len(walls),
                     "name": f"params/cartpole.yaml, eval every 2000 (10 ep, cost included); solved {reached}/{len(walls)}",
                     "value": statistics.median(walls),
                     "samples": " ".join(f"{w:.1f}@{s:.0f}" for w, s in solved)})

    table = pd.DataFrame(rows, columns=["case", "name", "value", "unit", "ratio", "ratio_to", "of_raw", "of_sbx",
                                       "runs", "samples"])
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.drop(columns="samples").to_string(index=False, na_rep="", formatters={
            "value": lambda v: f"{v:,.1f}" if v < 1000 else f"{v:,.0f}", "ratio": lambda v: "" if pd.isna(v) else f"{v:.2f}",
            "of_raw": lambda v: "" if pd.isna(v) else f"{v:.0%}", "of_sbx": lambda v: "" if pd.isna(v) else f"{v:.2f}"}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
