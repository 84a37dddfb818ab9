"""The on-policy learner: what every algorithm that trains on a full rollout shares, around its Agent.

It owns the rollout memory (rlkit/data/rollout.py), the observation normaliser and the reward filter, the
hooks (RND), and the rules of a rollout: random actions before learning_starts (nothing stored), one slot
per env per iteration after, a truncated episode's last step bootstrapped from the value of its true final
observation, one batched critic pass over the whole rollout, GAE, then a phase of the agent's updates when
the memory is full. A checkpoint may be taken only between rollouts. The algorithm itself (PPO, A2C) is an
Agent (rlkit.algos.base): how it acts and how it updates on the batch.
"""
from __future__ import annotations

import math

import numpy as np

from rlkit.algos.base import HOOKS, Phase, algorithm, import_part, load, make_hooks
from rlkit.algos.parts import check_loss, config_parts
from rlkit.config import ConfigError
from rlkit.data.normalize import ObsNormalizer, ReturnFilter
from rlkit.data.rollout import RolloutMemory
from rlkit.nn.networks import build_actor
from rlkit.runs.distributed import replicate
from rlkit.steps import make_schedule

VALUE_CHUNK = 4096  # rows per critic pass over a rollout: bounds the activations of a large CNN rollout


# ---------------------------------------------------------------- the rollout's size and the schedule

def ppo_rollout(cfg) -> tuple[int, int]:
    """PPO's rollout: algo.batch_size transitions per rank, k_epochs x ceil(batch_size / mini_batch_size)
    minibatch steps; the default for an Agent without its own rollout(cfg)."""
    a, p = cfg.algo, cfg.parallel
    if a.mini_batch_size > a.batch_size:
        raise ConfigError(f"'algo.mini_batch_size' ({a.mini_batch_size}) must be <= 'algo.batch_size' ({a.batch_size}); "
                          "lower mini_batch_size or raise batch_size")
    if a.batch_size % cfg.num_envs:
        raise ConfigError(
            f"'algo.batch_size' ({a.batch_size}) must be divisible by parallel.num_threads x "
            f"parallel.envs_per_thread ({p.num_threads} x {p.envs_per_thread} = {cfg.num_envs}): "
            f"the rollout is batch_size / {cfg.num_envs} steps per env; pick a batch_size that is a multiple of {cfg.num_envs}")
    return a.batch_size, default_gradient_steps(cfg)


def default_gradient_steps(cfg) -> int:
    a = cfg.algo
    return a.k_epochs * math.ceil(a.batch_size / a.mini_batch_size)


def rollout_of(cfg) -> tuple[int, int]:
    """(transitions per rank per rollout, gradient steps per phase) of the configured agent."""
    agent = algorithm(cfg.algo.name)
    return agent.rollout(cfg) if hasattr(agent, "rollout") else ppo_rollout(cfg)


def check_train_every(cfg, world_size: int = 1, batch_size: int | None = None) -> int:
    """An on-policy algorithm trains once per rollout: train_every = the rollout x W policy steps (docs/design.md,
    "Steps")."""
    what = "algo.batch_size" if batch_size is None else "the rollout"
    batch_size = cfg.algo.batch_size if batch_size is None else batch_size
    expected = batch_size * world_size
    if cfg.train_every is not None and cfg.train_every != expected:
        raise ConfigError(
            f"'train_every' ({cfg.train_every}) must equal {what} x ranks ({batch_size} x {world_size} = "
            f"{expected}) for {cfg.algo.name}; remove train_every or set it to {expected}")
    return expected


def on_policy_schedule(cfg, world_size: int = 1):
    batch, gradient_steps = rollout_of(cfg)
    train_every = check_train_every(cfg, world_size, None if batch == cfg.algo.batch_size else batch)
    return make_schedule(cfg, train_every, batch // cfg.num_envs, gradient_steps)


# ---------------------------------------------------------------- the learner

class OnPolicyLearner:
    """The Learner (rlkit.algos.base) of every Agent: collects a rollout, then trains the agent on it."""

    @classmethod
    def check_config(cls, cfg, world_size: int) -> int:
        if cfg.parallel.overlap:
            raise ConfigError(f"'parallel.overlap' is for the off-policy algorithms (sac, dqn); {cfg.algo.name} learns "
                              "from the rollout it just collected, so it cannot train while collecting the next: "
                              "set parallel.overlap: false")
        for key in ("loss", "actor", "critic"):  # importable (a batch checks this before its first run)
            spec = getattr(cfg.algo, key)
            if spec is not None:
                import_part(f"algo.{key}.type", spec["type"], "a class or function")
        return on_policy_schedule(cfg, world_size).train_every

    @classmethod
    def check_parts(cls, cfg, env_info) -> None:
        """The params file's actor, critic and loss, built and called once on the CPU (before any run)."""
        if cfg.algo.actor is None and cfg.algo.critic is None and cfg.algo.loss is None:
            return
        heads = 1 + sum(load(entry).value_heads for entry in HOOKS.values() if load(entry).enabled(cfg))
        parts = config_parts(cfg, env_info, heads)
        agent = algorithm(cfg.algo.name)(cfg.algo, env_info.obs_space, env_info.action_space, "cpu",
                                         value_heads=heads, **parts)
        if cfg.algo.loss is not None:
            check_loss(agent, env_info.obs_space)

    def __init__(self, cfg, env_info, device, rng, generator, world_size: int = 1, parts=None, run_dir=None,
                 rank: int = 0):
        self.cfg, self.device, self.rng, self.generator = cfg, device, rng, generator
        n = cfg.num_envs
        self.schedule = on_policy_schedule(cfg, world_size)
        self.obs_norm = ObsNormalizer(env_info.obs_shape, enabled=cfg.algo.normalize_obs)
        self.reward_filter = ReturnFilter(n, cfg.algo.gamma) if cfg.algo.normalize_reward else None
        # the hooks (RND) ride along the rollout; the agent acts and learns
        self.hooks = make_hooks(cfg, env_info, n, device, self.schedule.train_every)
        heads = 1 + sum(hook.value_heads for hook in self.hooks)
        parts = config_parts(cfg, env_info, heads, parts)
        self.agent = algorithm(cfg.algo.name)(cfg.algo, env_info.obs_space, env_info.action_space, device,
                                              value_heads=heads, **parts)
        self.memory = RolloutMemory(self.schedule.rollout_len, n, env_info.obs_shape, env_info.action_shape,
                                    obs_dtype=env_info.obs_dtype)
        for hook in self.hooks:
            hook.attach(self.agent, self.memory)
        self.warmup, self.actions, self.logprobs = False, None, None

    @classmethod
    def acting_network(cls, cfg, env_info):
        """The agents' actor (rlkit.nn.networks.build_actor, which build_actor_critic calls) and its map to env
        actions; a run trained with its own actor module (algo.actor, actor=) loads only with that code."""
        return build_actor(env_info.obs_space, env_info.action_space, cfg.algo)

    def policy_parts(self):
        """What policy.pt holds (rlkit/runs/policy_file.py): the actor and the observation normaliser."""
        return self.agent.actor, self.obs_norm

    @property
    def update_path(self) -> str:
        """Which code computes the agent's gradients, and why (PPO: numpy or autograd, rlkit/algos/ppo_numpy.py)."""
        return getattr(self.agent, "update_path", "autograd")

    # ------------------------------------------------------------------ collection
    def act(self, obs: np.ndarray, counter) -> np.ndarray:
        mem, agent = self.memory, self.agent
        self.warmup = self.schedule.random_actions(counter)
        if self.warmup:  # learning_starts: random actions warm up the normalisers; the steps count
            self.actions = agent.random_actions(self.cfg.num_envs, self.rng)
        else:  # normalised straight into the memory (a copy: the vector overwrites its obs buffer in step())
            self.actions, self.logprobs = agent.act(self.obs_norm(obs, out=mem.obs[mem.pos]), self.generator)
        return agent.env_actions(self.actions)

    def observe(self, next_obs, rewards, terminated, truncated, final_obs, counter) -> None:
        mem = self.memory
        dones = terminated | truncated
        self.obs_norm.update(next_obs)
        for hook in self.hooks:
            hook.on_step(mem, next_obs, final_obs, dones, warmup=self.warmup)
        self.last_obs = next_obs  # the rollout's bootstrap observations, once it is full
        if self.warmup:
            return
        t = mem.pos
        mem.actions[t], mem.logprobs[t] = self.actions, self.logprobs
        if self.reward_filter:
            self.reward_filter(rewards, dones, out=mem.rewards[t])
        else:
            mem.rewards[t] = rewards
        mem.dones[t], mem.truncated[t] = dones, truncated
        mem.final_values[t] = 0.0
        if np.count_nonzero(truncated):  # time limit: bootstrap from the true last observation
            mem.final_values[t, truncated] = self.agent.value(self.obs_norm(final_obs[truncated]))[:, 0]
        mem.pos += 1

    def ready(self, counter) -> bool:
        return self.memory.full

    def resumable(self) -> bool:
        """Checkpoints only between rollouts, when the memory holds nothing half-collected."""
        return self.memory.pos == 0

    # ------------------------------------------------------------------ training
    def train(self, counter) -> Phase:
        cfg, mem = self.cfg, self.memory
        # V(s_t) of every stored observation in one batched pass rather than one small pass per step: the weights
        # do not change during a rollout, so these are the values at collection
        values = self.rollout_values()  # [T, N, heads]
        last_values = self.agent.value(self.obs_norm(self.last_obs))  # [N, heads]
        mem.values[:] = values[..., 0]
        mem.compute_returns(last_values[:, 0], cfg.algo.gamma, cfg.algo.GAE_lambda)
        batch = mem.batch(self.device)
        batch["returns"], batch["values"] = batch["returns"][:, None], batch["values"][:, None]  # [N, heads]
        extra_losses, hook_stats = [], {}
        for hook in self.hooks:
            losses, stats = hook.extend_batch(batch, mem, values, last_values, counter)
            extra_losses += losses
            hook_stats.update(stats)
        if cfg.algo.anneal_lr:
            self.agent.set_lr_fraction(max(0.0, 1.0 - counter.policy_step / cfg.total_steps))
        n_updates = self.schedule.gradient_steps_for(counter)
        stats = self.agent.update(batch, n_updates, self.rng, extra_losses)
        mem.pos = 0
        return Phase(n_updates, stats, hook_stats)

    def rollout_values(self) -> np.ndarray:
        """[T, N, heads]: the critic on the rollout's stored observations, in chunks of VALUE_CHUNK rows."""
        mem = self.memory
        obs = mem.obs.reshape(mem.rollout_len * mem.num_envs, *mem.obs.shape[2:])
        values = np.concatenate([self.agent.value(obs[i:i + VALUE_CHUNK]) for i in range(0, len(obs), VALUE_CHUNK)])
        return values.reshape(mem.rollout_len, mem.num_envs, -1)

    # ------------------------------------------------------------------ evaluation, ranks, state
    def policy(self, obs: np.ndarray, generator=None) -> np.ndarray:
        agent = self.agent
        if generator is None:
            return agent.env_actions(agent.deterministic_action(self.obs_norm(obs)))
        return agent.env_actions(agent.act(self.obs_norm(obs), generator)[0])

    def modules(self) -> list:
        """Every network of the run: the agent's and its hooks'."""
        return [*self.agent.modules(), *(m for hook in self.hooks for m in hook.modules())]

    def replicate(self, world_size: int) -> None:
        stats = [self.obs_norm.rms] + ([self.reward_filter.rms] if self.reward_filter else [])
        replicate(world_size, self.agent, self.hooks, stats)

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "obs_norm": self.obs_norm.state_dict()}

    def local_state_dict(self) -> dict:
        return {"reward_filter": self.reward_filter.state_dict() if self.reward_filter else None,
                **dict.fromkeys(HOOKS), **{hook.name: hook.state_dict() for hook in self.hooks}}

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        for name, part in [("reward_filter", self.reward_filter), *((hook.name, hook) for hook in self.hooks)]:
            if part is not None:
                part.load_state_dict(state[name])

    @staticmethod
    def replicated(state: dict) -> dict:
        """The model, the optimizers and the running statistics (not the per-env returns, which differ)."""
        shared = {"agent": state["agent"], "obs_norm": state["obs_norm"]}
        if state["reward_filter"] is not None:
            shared["reward_filter"] = state["reward_filter"]["rms"]
        for name, entry in HOOKS.items():
            if state.get(name) is not None:
                shared[name] = load(entry).replicated(state[name])
        return shared
