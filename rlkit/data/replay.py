"""Replay memory: a preallocated ring per env for off-policy learners (rlkit.algos.offpolicy).

Layout: arrays [slots, num_envs, ...], one slot per iteration, every env writing its own column, so each
env's transitions are consecutive in its column. Each observation is stored once: the observation after
slot t is slot t + 1's, unless the episode ended at t. A terminated episode needs no next observation (its
bootstrap is cut); a truncated one (a time limit) keeps its true final observation in a small side ring,
`finals`, for its bootstrap. Images keep the envs' dtype (uint8): the networks scale them.

The slot being written next (`pos`) already holds the current observation (the one the policy acts on), so
every stored transition has its next observation and can be sampled at once; when the ring is full that slot
is the oldest one, and it is left out of sampling.

While a training thread samples, the envs may go on writing (parallel.overlap): `view(ahead)` fixes what a
phase samples from when it starts, leaving out the `ahead` slots the envs will write before it ends (the
oldest ones, once the ring has wrapped), so the phase reads only rows nobody writes.
"""
from __future__ import annotations

import math

import numpy as np


def replay_slots(capacity: int, num_envs: int) -> int:
    """Slots per env for a capacity in transitions (algo.buffer_size), at least 2."""
    return max(2, math.ceil(capacity / num_envs))


def final_slots(slots: int, episode_limit: int | None) -> int:
    """Side-ring entries per env for truncated episodes' final observations. An episode cut by a time limit of L
    policy steps is L slots long, so a ring of `slots` holds at most slots // L + 1 of them (one more for the
    slot being written); without a known limit every slot may need one. A phase sampling a `view` while the
    envs write needs no more: the view and the slots written meanwhile span slots - 1 slots."""
    return slots if not episode_limit else min(slots, slots // episode_limit + 2)


def replay_arrays(capacity: int, num_envs: int, obs_shape, obs_dtype, action_shape, action_dtype,
                  episode_limit: int | None) -> dict:
    """{name: (shape, dtype)} of the arrays a ReplayMemory of these sizes allocates."""
    slots = replay_slots(capacity, num_envs)
    shape = (slots, num_envs)
    return {"obs": ((*shape, *obs_shape), np.dtype(obs_dtype)),
            "actions": ((*shape, *action_shape), np.dtype(action_dtype)),
            "rewards": (shape, np.dtype(np.float32)),
            "terminated": (shape, np.dtype(bool)),
            "truncated": (shape, np.dtype(bool)),
            "final_index": (shape, np.dtype(np.int32)),  # where a truncated slot's final observation is in finals
            "finals": ((final_slots(slots, episode_limit), num_envs, *obs_shape), np.dtype(obs_dtype))}


def nbytes(arrays: dict) -> int:
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in arrays.values())


def replay_bytes(capacity: int, num_envs: int, obs_shape, obs_dtype, action_shape, action_dtype,
                 episode_limit: int | None) -> int:
    """Bytes a ReplayMemory of these sizes allocates (before it does)."""
    return nbytes(replay_arrays(capacity, num_envs, obs_shape, obs_dtype, action_shape, action_dtype, episode_limit))


class ReplayMemory:
    """A ring of `slots` iterations for num_envs envs; `add` one iteration at a time, `sample` transitions."""

    def __init__(self, capacity: int, num_envs: int, obs_shape, action_shape, obs_dtype=np.float32,
                 action_dtype=np.float32, episode_limit: int | None = None):
        self.slots, self.num_envs = replay_slots(capacity, num_envs), num_envs
        self.allocate(replay_arrays(capacity, num_envs, obs_shape, obs_dtype, action_shape, action_dtype,
                                    episode_limit))
        self.final_pos = np.zeros(num_envs, np.int64)
        self.pos, self.full = 0, False
        self._envs = np.arange(num_envs)

    def allocate(self, arrays: dict) -> None:
        """The arrays, in RAM (rlkit.data.replay_map keeps them in files)."""
        for name, (shape, dtype) in arrays.items():
            setattr(self, name, np.zeros(shape, dtype))
        self.final_index.fill(-1)

    # ------------------------------------------------------------------ writing
    def set_obs(self, obs: np.ndarray) -> None:
        """The observations the policy acts on now (copied: the vector reuses its buffer)."""
        self.obs[self.pos] = obs

    def add(self, actions, rewards, terminated, truncated, final_obs, next_obs) -> None:
        """Complete the current slot with what the step returned, then move on: next_obs (the reset observation
        where an episode ended) becomes the next slot's observation."""
        t = self.pos
        self.actions[t], self.rewards[t] = actions, rewards
        self.terminated[t], self.truncated[t] = terminated, truncated
        self.final_index[t] = -1
        for env in np.flatnonzero(truncated & ~terminated):  # a time limit: keep the true last observation
            k = self.final_pos[env]
            self.finals[k, env] = final_obs[env]
            self.final_index[t, env] = k
            self.final_pos[env] = (k + 1) % len(self.finals)
        self.pos = (t + 1) % self.slots
        self.full = self.full or self.pos == 0
        self.obs[self.pos] = next_obs

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Transitions that can be sampled (with their next observation)."""
        return self.num_envs * (self.slots - 1 if self.full else self.pos)

    def view(self, ahead: int = 0) -> tuple[int, int]:
        """(first slot, slots per env) that can be sampled now and stay unwritten for the next `ahead` slots
        the envs add: those slots, and the observation after them, are left out."""
        if not self.full and self.pos + ahead < self.slots:  # nothing written yet would be overwritten
            return 0, self.pos
        return (self.pos + ahead + 1) % self.slots, self.slots - 1 - ahead

    def sample(self, batch_size: int, rng: np.random.Generator, gamma: float, n_step: int = 1,
               view: tuple[int, int] | None = None) -> dict:
        """batch_size transitions drawn uniformly (with replacement) as numpy arrays: obs, actions, the n-step
        discounted reward sum, next_obs (the observation n steps on, or where the episode ended) and discount
        (gamma^k up to it, 0 where it terminated). view: `view()`'s (first slot, slots), fixed earlier; None:
        everything stored now."""
        start, stored = view if view is not None else self.view()
        per_env = stored - (n_step - 1)
        if per_env < 1:
            raise ValueError(f"the replay memory holds {stored} steps per env, fewer than n_step ({n_step})")
        t = (start + rng.integers(0, per_env, batch_size)) % self.slots
        env = rng.integers(0, self.num_envs, batch_size)
        # the sum's first step is every sampled slot's own (a phase samples every few policy steps, so the
        # one-step sum, the common case, is a handful of array operations)
        reward, discount = self.rewards[t, env], np.full(batch_size, gamma, np.float32)
        last = t  # the slot whose step ends the sum
        for j in range(1, n_step):
            alive = ~(self.terminated[last, env] | self.truncated[last, env])  # not ended within the sum so far
            tj = (t + j) % self.slots
            reward = reward + np.where(alive, discount * self.rewards[tj, env], 0.0)
            last = np.where(alive, tj, last)
            discount = np.where(alive, discount * gamma, discount)
        terminated, truncated = self.terminated[last, env], self.truncated[last, env] & ~self.terminated[last, env]
        next_obs = self.obs[(last + 1) % self.slots, env]
        if truncated.any():
            next_obs[truncated] = self.finals[self.final_index[last[truncated], env[truncated]], env[truncated]]
        discount[terminated] = 0.0
        return {"obs": self.obs[t, env], "actions": self.actions[t, env], "rewards": reward,
                "next_obs": next_obs, "discounts": discount}

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """The written part only (a memory that is not full saves its first pos + 1 slots)."""
        n = self.slots if self.full else self.pos + 1
        arrays = {name: getattr(self, name)[:n].copy() for name in
                  ("obs", "actions", "rewards", "terminated", "truncated", "final_index")}
        return {**arrays, "finals": self.finals.copy(), "final_pos": self.final_pos.copy(), "pos": self.pos,
                "full": self.full, "slots": self.slots}

    def load_state_dict(self, state: dict) -> None:
        if state["slots"] != self.slots or state["finals"].shape != self.finals.shape:
            raise ValueError(f"the checkpoint's replay memory has {state['slots']} slots per env, this run's "
                             f"{self.slots}; resume with the same algo.buffer_size and env")
        for name in ("obs", "actions", "rewards", "terminated", "truncated", "final_index"):
            getattr(self, name)[:len(state[name])] = state[name]
        self.finals[:], self.final_pos[:] = state["finals"], state["final_pos"]
        self.pos, self.full = state["pos"], state["full"]
