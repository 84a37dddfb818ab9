"""A run's agent, loaded to act: `rlkit.load(run_dir)` -> Policy.

    policy = rlkit.load("results/hopper/seed0")
    env = policy.make_env()                          # the env as trained: wrappers, action repeat, time limit
    obs, _ = env.reset(seed=0)
    action = policy.act(obs, deterministic=True)     # one observation, or a batch [B, ...]

Only policy.pt and config.yaml are read (rlkit/runs/policy_file.py): weights and statistics, never a pickle, so
a run directory from someone else cannot run code here. The network that acts (PPO's and A2C's actor, SAC's
squashed Gaussian actor, DQN's Q-network) is rebuilt from the config and the env's spaces by the learner of
algo.name (its acting_network, the constructor training used), on the CPU whatever device trained it;
observations are normalised by the same ObsNormalizer as in training, with the statistics the file holds
(disabled for SAC and DQN, which train on raw observations).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlkit.algos.base import learner_class
from rlkit.config import load_config
from rlkit.data.normalize import ObsNormalizer
from rlkit.envs import spaces
from rlkit.envs.make import inspect_env, make_env
from rlkit.runs.policy_file import PolicyFileError, read_policy


class Policy:
    """The acting network and the observation normaliser of a run, and the env it was trained on."""

    def __init__(self, cfg, state: dict, run_dir: Path | None = None):
        self.cfg, self.run_dir, self.policy_step = cfg, run_dir, int(state["policy_step"])
        env = make_env(cfg.env)
        try:
            info = inspect_env(env, cfg.env)
        finally:
            env.close()
        self.info, self.obs_space, self.action_space = info, info.obs_space, info.action_space
        self.layout = spaces.PackLayout(info.obs_space) if isinstance(info.obs_space, spaces.PACKED) else None
        # files written before "algo" was recorded lack it: on-policy runs', whose config.yaml names the algorithm
        name, written_by = cfg.algo.name, state.get("algo", cfg.algo.name)
        if written_by != name:
            raise PolicyFileError(f"{run_dir}: the policy file is a {written_by} run's and config.yaml's algo.name is "
                                  f"{name}; give the policy file this run wrote")
        self.actor, self.to_env = acting_network(name, run_dir)(cfg, info)
        try:
            self.actor.load_state_dict(state["actor"])
        except RuntimeError as e:
            raise PolicyFileError(f"{run_dir}: policy.pt's weights do not fit the network config.yaml describes "
                                  f"({str(e).splitlines()[0][:160]}): a run trained with its own actor module, or by "
                                  "another rlkit; load it with the code that trained it") from None
        self.actor.eval()
        norm = state["obs_norm"]
        self.obs_norm = ObsNormalizer(info.obs_shape, clip=norm["clip"], enabled=norm["enabled"])
        self.obs_norm.load_state_dict({"mean": norm["mean"].numpy(), "var": norm["var"].numpy(),
                                       "count": norm["count"]})

    # ------------------------------------------------------------------ acting
    def act(self, obs, deterministic: bool = True, generator: torch.Generator | None = None):
        """The env action(s) for one observation or a batch, in the env's own action space.

        obs: as `make_env()` gives it, or as the raw env does (a Dict's dict of arrays, a Discrete's int;
        a dict of batched arrays for a batch). deterministic=False samples from the policy (generator: its
        random numbers) as the run's evaluations did with eval.deterministic false: PPO, A2C and SAC draw from
        their action distribution, DQN is epsilon-greedy at algo.kwargs.epsilon_end."""
        batch, single = self._as_batch(obs)
        x = torch.as_tensor(self.obs_norm(batch))
        with torch.inference_mode():
            actions = self.actor.mode(x) if deterministic else self.actor.sample(x, generator)[0]
        actions = self.to_env(actions.numpy())
        return actions[0] if single else actions

    def _as_batch(self, obs) -> tuple[np.ndarray, bool]:
        """(a batch [B, *stored shape], whether obs was one observation)."""
        shape = tuple(self.info.obs_shape)
        if self.layout is not None and isinstance(obs, dict):
            key, sub, _, _ = self.layout.parts[0]
            single = np.shape(obs[key]) == (() if isinstance(sub, gym.spaces.Discrete) else sub.shape)
            if single:
                return self.layout.pack(obs)[None], True
            n = len(obs[key])
            return np.stack([self.layout.pack({k: v[i] for k, v in obs.items()}) for i in range(n)]), False
        raw_indices = np.ndim(obs) == 0 or (np.ndim(obs) == 1 and np.shape(obs) != shape)
        if isinstance(self.obs_space, gym.spaces.Discrete) and raw_indices:  # an int or [B] ints, not packed rows
            return np.stack([self.layout.pack(v) for v in np.atleast_1d(obs)]), np.ndim(obs) == 0
        arr = np.asarray(obs)
        if arr.shape == shape:
            return arr[None], True
        if arr.shape[1:] != shape:
            raise ValueError(f"policy.act: an observation of shape {arr.shape}; this policy takes {shape} "
                             f"or a batch [B, {', '.join(map(str, shape))}]")
        return arr, False

    # ------------------------------------------------------------------ the env
    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The env exactly as trained (rlkit.envs.make.make_env with the run's env section); render_mode
        "rgb_array" for frames."""
        env_cfg = self.cfg.env
        if render_mode is not None:
            env_cfg = dataclasses.replace(env_cfg, kwargs={**env_cfg.kwargs, "render_mode": render_mode})
        return make_env(env_cfg)


def acting_network(name: str, run_dir):
    """The classmethod that builds algo.name's acting network (rlkit.algos.base.Learner.acting_network)."""
    build = getattr(learner_class(name), "acting_network", None)
    if build is None:
        raise PolicyFileError(f"{run_dir}: algo.name {name} has no acting_network, so rlkit.load cannot rebuild its "
                              "network; give its learner that classmethod (rlkit.algos.base.Learner)")
    return build


def load(run_dir, overrides=None, policy_file=None) -> Policy:
    """The policy of a run directory (its policy.pt, or policy_file), with config overrides for the env
    (["env.kwargs.X=1", ...] or {"env.kwargs.X": 1}): evaluating under a changed env."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise PolicyFileError(f"{run_dir}: not a run directory (no config.yaml); give the directory `rlkit train` "
                              "or `rlkit run` wrote, e.g. results/<experiment>/seed0")
    cfg = load_config(run_dir / "config.yaml", overrides)
    acting_network(cfg.algo.name, run_dir)  # an algorithm rlkit.load cannot rebuild: that, not a missing file
    path = Path(policy_file) if policy_file else run_dir / "policy.pt"
    if not path.is_file():
        why = ("it has a checkpoint.pt from an rlkit that did not write policy.pt; resume it briefly "
               "(rlkit train --resume) with a newer rlkit" if (run_dir / "checkpoint.pt").exists() and not policy_file
               else "the run has not reached its first evaluation or checkpoint yet")
        raise PolicyFileError(f"{path}: no policy file ({why})")
    return Policy(cfg, read_policy(path), run_dir)
