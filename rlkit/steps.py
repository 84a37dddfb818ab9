"""Step counters with the semantics of docs/design.md, "Steps".

W ranks, each with T threads owning E envs. One iteration = every env takes one action:
  policy_step   += W*T*E              actions chosen by the policy
  env_step       = policy_step * action_repeat * frames_per_step   frames the simulator computed
  gradient_step += W per optimizer update        parameter updates summed over ranks
Hyper-parameters count policy steps unless named per_rank_*.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class StepCounter:
    world_size: int = 1  # W
    num_threads: int = 1  # T
    envs_per_thread: int = 1  # E
    action_repeat: int = 1
    frames_per_step: int = 1  # frames per env step the env skips itself (ALE frameskip, AtariPreprocessing)
    policy_step: int = 0
    gradient_step: int = 0
    iteration: int = 0
    update: int = 0  # training phases

    @property
    def policy_steps_per_iteration(self) -> int:
        return self.world_size * self.num_threads * self.envs_per_thread

    @property
    def env_step(self) -> int:
        return self.policy_step * self.action_repeat * self.frames_per_step

    @property
    def replay_ratio(self) -> float:
        return self.gradient_step / self.policy_step if self.policy_step else 0.0

    def step_iteration(self) -> None:
        self.iteration += 1
        self.policy_step += self.policy_steps_per_iteration

    def step_gradient(self, n: int = 1) -> None:
        """n optimizer updates on every rank."""
        self.gradient_step += n * self.world_size

    def step_update(self) -> None:
        self.update += 1

    def as_row(self) -> dict:
        return {"policy_step": self.policy_step, "env_step": self.env_step, "gradient_step": self.gradient_step}

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        state = {"frames_per_step": 1, **state}  # checkpoints from before frames_per_step counted one frame per step
        layout = ("world_size", "num_threads", "envs_per_thread", "action_repeat", "frames_per_step")
        for key in layout:
            if state[key] != getattr(self, key):
                raise ValueError(f"checkpoint was written with {key}={state[key]}, this run has {getattr(self, key)}; "
                                 f"resume with the same layout")
        for key, value in state.items():
            setattr(self, key, value)


@dataclass(frozen=True)
class Schedule:
    """When to act randomly, train, log, evaluate, checkpoint and stop — all in policy steps."""
    total_steps: int
    learning_starts: int
    train_every: int  # on-policy: the rollout x W (PPO: batch_size * W)
    rollout_len: int  # on-policy: iterations per rollout (PPO: batch_size / (T*E))
    gradient_steps: int  # per rank per training phase
    pretrain_steps: int  # per rank, first training phase

    def done(self, c: StepCounter) -> bool:
        """Training stops at the first iteration boundary where policy_step >= total_steps."""
        return c.policy_step >= self.total_steps

    def random_actions(self, c: StepCounter) -> bool:
        return c.policy_step < self.learning_starts

    def gradient_steps_for(self, c: StepCounter) -> int:
        return self.pretrain_steps if c.update == 0 else self.gradient_steps


def make_schedule(cfg, train_every: int, rollout_len: int, gradient_steps: int) -> Schedule:
    """The schedule of a learner that trains every train_every policy steps, gradient_steps updates per rank a
    phase unless algo.per_rank_gradient_steps says otherwise (algo.per_rank_pretrain_steps: the first phase)."""
    gradient_steps = cfg.algo.per_rank_gradient_steps or gradient_steps
    return Schedule(
        total_steps=cfg.total_steps,
        learning_starts=cfg.learning_starts,
        train_every=train_every,
        rollout_len=rollout_len,
        gradient_steps=gradient_steps,
        pretrain_steps=cfg.algo.per_rank_pretrain_steps or gradient_steps,
    )


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of `every` lies in (before, after]: periodic events at step granularity."""
    return every > 0 and after // every > before // every


def minibatch_indices(batch_size: int, mini_batch_size: int, n_updates: int, rng):
    """Yield n_updates index arrays from reshuffled epochs of the batch (the last one of an epoch may be short)."""
    done = 0
    per_epoch = math.ceil(batch_size / mini_batch_size)
    while done < n_updates:
        perm = rng.permutation(batch_size)
        for k in range(per_epoch):
            if done == n_updates:
                return
            yield perm[k * mini_batch_size:(k + 1) * mini_batch_size]
            done += 1
