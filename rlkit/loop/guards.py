"""Guards around a run: checks before anything is written, numbers that must stay finite, SIGTERM.

- `preflight(cfg, world_size, run_dir)`: everything that can be refused without training (the env id and its
  kwargs, the spaces, the step schedule, the size of the networks and of the replay memory, in RAM or on the
  run directory's disk, values that would do nothing), so that a bad command line stops before a run
  directory is touched, `--force` included.
- `check_env_output`, `check_update`, `check_state`: a nan or inf in an observation, a reward, a loss,
  a gradient norm or a parameter stops the run with `NonFiniteError`, one line naming what and the
  policy step, before it reaches a metric row or the checkpoint (the last good checkpoint is kept).
- `stop_on_sigterm()` (from rlkit/runs/signals.py): SIGTERM (sent by `timeout`, Slurm, Kubernetes) raises
  `Terminated`, handled like Ctrl-C: the run is marked failed and can be resumed.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from rlkit.config import AlgoConfig, Config, ConfigError
from rlkit.notices import warn  # noqa: F401 (rlkit.loop.guards.warn: the one channel, re-exported)
from rlkit.runs.signals import Terminated, stop_on_sigterm  # noqa: F401 (the trainer's, re-exported)

BYTES_PER_PARAMETER = 20  # float32 weight, gradient, Adam's two moments, and the fused path's flat copy
BYTES_PER_ACTIVATION = 16  # float32, kept for the backward pass, for the actor and the critic, plus grads
LARGE_NETWORKS = 2**30  # bytes: above this the first update takes long enough to deserve a line saying so


class NonFiniteError(RuntimeError):
    """A nan or inf appeared in training; the message names what and the policy step."""




# ---------------------------------------------------------------- before the run

def preflight(cfg: Config, world_size: int = 1, run_dir=None):
    """Resolve and check everything that needs the env but no training; fills cfg's inferred fields. run_dir:
    where the run will be (None: its disk is not checked; rlkit.train checks it).

    Returns the EnvInfo. Raises ConfigError naming the key; writes nothing."""
    from rlkit.algos.base import check_config, learner_class
    from rlkit.envs.make import probe_env, resolve_env_fields

    train_every = check_config(cfg, world_size)  # the algorithm: its name, its keys, its rules (no env needed)
    info = probe_env(cfg.env)  # one env built, reset and stepped: wrappers, spaces, a missing package
    resolve_env_fields(cfg, info)
    first_training = cfg.learning_starts + train_every
    if cfg.total_steps < first_training and hasattr(learner_class(cfg.algo.name), "replay_bytes"):  # off-policy
        raise ConfigError(
            f"'total_steps' ({cfg.total_steps}) is smaller than learning_starts + train_every ({cfg.learning_starts} + "
            f"{train_every}): the run would end before its first gradient step; raise total_steps to at least "
            f"{first_training} or lower learning_starts")
    if cfg.total_steps < first_training:
        raise ConfigError(
            f"'total_steps' ({cfg.total_steps}) is smaller than learning_starts + one rollout "
            f"(train_every: the rollout x ranks = {train_every}): the run would end before its first gradient "
            f"step; raise total_steps to at least {first_training} or lower algo.batch_size")
    learner_class(cfg.algo.name).check_parts(cfg, info)  # the params file's loss and networks, built and called once
    a = cfg.algo
    if not info.has_continuous and a.log_std_init != AlgoConfig.log_std_init:
        warn(f"'algo.log_std_init' ({a.log_std_init}) does nothing: {cfg.env.id} has discrete actions; remove it")
    check_memory(cfg, info)
    if run_dir is not None:
        check_replay_disk(cfg, info, run_dir, world_size)
    return info


def network_parameters(obs_dim: int, hidden: list, out: int) -> int:
    sizes = [obs_dim, *hidden, out]
    return sum(i * o + o for i, o in zip(sizes, sizes[1:]))


def estimate_memory(cfg: Config, info) -> int:
    """Bytes the networks need to train: parameters (with gradients and optimizer state) and one
    minibatch's activations. An estimate from the layer sizes, before any tensor is allocated."""
    a = cfg.algo
    obs_dim = info.observ_dim
    params = network_parameters(obs_dim, a.hidden_sizes, info.action_dim) + network_parameters(obs_dim, a.hidden_sizes, 2)
    widths = sum(a.hidden_sizes)
    if a.use_RND:
        params += 3 * network_parameters(obs_dim, a.rnd_hidden_sizes, a.rnd_output_dim)
        widths += sum(a.rnd_hidden_sizes)
    return params * BYTES_PER_PARAMETER + max(a.mini_batch_size, cfg.num_envs) * widths * BYTES_PER_ACTIVATION


def available_memory() -> int | None:
    """Bytes this machine can still give (Linux: MemAvailable); None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: Config, info, available: int | None = None) -> None:
    """Refuse networks that would not fit in memory (before torch allocates them and the machine swaps or
    the run hangs for minutes); name the key that sizes them."""
    need = estimate_memory(cfg, info)
    available = available_memory() if available is None else available
    key = "algo.rnd_hidden_sizes" if cfg.algo.use_RND and max(cfg.algo.rnd_hidden_sizes) > max(cfg.algo.hidden_sizes) \
        else "algo.hidden_sizes"
    sizes = getattr(cfg.algo, key.split(".")[1])
    if available is not None and need > available:
        raise ConfigError(f"'{key}' {sizes}: the networks would need about {need / 2**30:.1f} GiB to train, "
                          f"more than the {available / 2**30:.1f} GiB this machine has free; use smaller layers")
    if need > LARGE_NETWORKS:
        warn(f"'{key}' {sizes}: the networks need about {need / 2**30:.1f} GiB to train; "
             "every update will be slow (the default [64, 64] needs under 1 MiB)")
    check_replay_memory(cfg, info, available, need)


def check_replay_memory(cfg: Config, info, available: int | None, networks: int) -> None:
    """An off-policy learner's replay memory (preallocated, so its size is known before the run): refused when
    it and the networks exceed the free memory, a line when it takes more than half of it."""
    from rlkit.algos.base import learner_class

    size = getattr(learner_class(cfg.algo.name), "replay_bytes", None)
    if size is None:
        return
    need = size(cfg, info)
    a = cfg.algo
    if available is not None and need + networks > available:
        raise ConfigError(f"'algo.buffer_size' ({a.buffer_size}): the replay memory would take about "
                          f"{need / 2**30:.1f} GiB, more than the {(available - networks) / 2**30:.1f} GiB this machine "
                          f"has free besides the networks; lower algo.buffer_size, or keep the memory on disk "
                          f"with algo.kwargs.replay_memory_map: true")
    if available is not None and need > available / 2:
        warn(f"'algo.buffer_size' ({a.buffer_size}): the replay memory takes about {need / 2**30:.1f} GiB, more than "
             f"half of the {available / 2**30:.1f} GiB this machine has free")


def check_replay_disk(cfg: Config, info, run_dir, world_size: int = 1, free: int | None = None) -> None:
    """A memory-mapped replay memory (algo.kwargs.replay_memory_map) takes disk, not RAM: refused when its files
    (every rank's, with their undo journal) exceed the free space of the run directory's filesystem. Files an
    earlier attempt left in <run_dir>/replay count as free: a resume reuses them, a new start replaces them."""
    from rlkit.algos.base import learner_class

    size = getattr(learner_class(cfg.algo.name), "replay_file_bytes", None)
    need = size(cfg, info, world_size) if size is not None else 0
    if not need:
        return
    folder = Path(run_dir) / "replay"
    free = free_disk(folder) if free is None else free
    if need > free:
        raise ConfigError(f"'algo.kwargs.replay_memory_map': the replay memory's files would take about "
                          f"{need / 2**30:.1f} GiB in {folder}, more than the {free / 2**30:.1f} GiB free there; free "
                          f"disk space, choose a run directory on a larger disk (--out), or lower algo.buffer_size")


def free_disk(folder: Path) -> int:
    """Bytes free on folder's filesystem (it need not exist yet), plus those its files already hold."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    held = sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    return shutil.disk_usage(existing).free + held


# ---------------------------------------------------------------- during the run

def _first_bad(array: np.ndarray) -> tuple[int, float]:
    """(env index, value) of the first non-finite entry of a [num_envs, ...] array."""
    flat = np.asarray(array).reshape(len(array), -1)
    env = int(np.flatnonzero(~np.isfinite(flat).all(axis=1))[0])
    return env, float(flat[env][~np.isfinite(flat[env])][0])


def check_env_output(obs: np.ndarray, rewards: np.ndarray, policy_step: int) -> None:
    """After every vector step, so it must be cheap: x·x (np.vdot, one BLAS call, about half the cost of a
    numpy reduction on small arrays) is non-finite whenever an entry is, and the rewards are a few Python
    floats. Finite values large enough to overflow the square (|x| > 1e19) take the exact test below,
    which clears them. Integer observations (images) cannot be non-finite."""
    if (obs.dtype.kind != "f" or math.isfinite(np.vdot(obs, obs))) and math.isfinite(sum(rewards.tolist())):
        return
    for what, array in (("observation", obs), ("reward", rewards)):
        if not np.isfinite(array).all():
            env, value = _first_bad(array)
            raise NonFiniteError(f"non-finite {what} ({value}) from environment {env} at policy step {policy_step}; "
                                 "the run stopped and its last checkpoint is kept: fix or clip the env's output")


def _parameters(modules):
    """(name, tensor) of every parameter of the modules, named by the module's class."""
    for module in modules:
        for name, p in module.named_parameters():
            yield f"{type(module).__name__}.{name}", p


def check_update(stats: dict, policy_step: int, modules) -> None:
    """After every training phase: its losses and gradient norms, then every parameter of the run's
    networks (the agent's, its hooks': RND)."""
    for name, value in stats.items():
        # losses and gradient norms only: a statistic may be nan by definition (explained variance of
        # constant returns, as in a sparse-reward task before its first reward)
        if not (name.startswith("loss/") or "grad_norm" in name):
            continue
        value = float(value)
        if not math.isfinite(value):
            kind = "gradient norm" if "grad_norm" in name else "loss"
            raise NonFiniteError(f"non-finite {kind} {name} ({value}) in the training phase at policy step "
                                 f"{policy_step}; the run stopped and its last checkpoint is kept: lower the "
                                 "learning rates (algo.actor_lr, algo.critic_lr) or algo.max_grad_norm, or check the rewards")
    named = list(_parameters(modules))
    with torch.no_grad():
        # one reduction for all: a tensor's norm is nan or inf exactly when it holds a nan or inf (or overflows,
        # which the per-tensor look below tells apart); a check per tensor per phase cost more than a small
        # network's gradient step
        norms = torch._foreach_norm([p for _, p in named]) if named else []
        if not named or bool(torch.isfinite(torch.stack(norms)).all()):
            return
        for name, p in named:
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteError(f"non-finite parameter {name} after the training phase at policy step "
                                     f"{policy_step}; the run stopped and its last checkpoint is kept: lower the "
                                     "learning rates (algo.actor_lr, algo.critic_lr)")


def check_state(state, policy_step: int, path: str = "") -> None:
    """Before a checkpoint is written: no floating tensor or array in it holds a nan or inf, so a good
    checkpoint is never replaced by a broken one."""
    if isinstance(state, dict):
        for key, value in state.items():
            check_state(value, policy_step, f"{path}{key}.")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            check_state(value, policy_step, f"{path}{i}.")
    elif isinstance(state, torch.Tensor) and state.is_floating_point():
        if not bool(torch.isfinite(state).all()):
            raise NonFiniteError(f"non-finite values in {path.rstrip('.')} at policy step {policy_step}: the "
                                 "checkpoint was not written and the last good one is kept")
    elif isinstance(state, np.ndarray) and np.issubdtype(state.dtype, np.floating):
        # episode returns may be inf/nan only through a reward the env check already refused
        if not np.isfinite(state).all():
            raise NonFiniteError(f"non-finite values in {path.rstrip('.')} at policy step {policy_step}: the "
                                 "checkpoint was not written and the last good one is kept")
