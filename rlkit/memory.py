"""Rollout memory: preallocated arrays [rollout_len, num_envs, ...] and GAE next to them."""
from __future__ import annotations

import numpy as np
import torch


def compute_gae(rewards, values, last_values, dones, gamma, lam, final_values=None, truncated=None):
    """Generalised advantage estimation over [T, N] arrays (Schulman et al., 2016, eq. 16).

    dones[t]: the episode ended after action t (terminated or truncated); the next stored value
    then belongs to a new episode and is cut. A truncated episode did not really end, so its
    last step is bootstrapped from the value of the final observation: r + gamma * V(s_final).
    Pass dones=None for a non-episodic stream (RND's intrinsic reward).
    """
    T = rewards.shape[0]
    if truncated is not None:
        rewards = rewards + gamma * final_values * truncated
    not_done = np.ones_like(rewards) if dones is None else 1.0 - dones.astype(np.float32)
    advantages = np.zeros_like(rewards, dtype=np.float32)
    last_gae = np.zeros_like(last_values, dtype=np.float32)
    for t in reversed(range(T)):
        next_values = last_values if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_values * not_done[t] - values[t]
        last_gae = delta + gamma * lam * not_done[t] * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


class RolloutMemory:
    """One slot per (iteration, env), written by the training thread; nothing is appended."""

    def __init__(self, rollout_len: int, num_envs: int, obs_shape, action_shape, extra_fields=(), obs_dtype=np.float32):
        shape = (rollout_len, num_envs)
        self.rollout_len, self.num_envs = rollout_len, num_envs
        # the observations' own storage dtype: images stay uint8 here and are scaled by the network on the fly
        self.obs = np.zeros((*shape, *obs_shape), obs_dtype)
        self.actions = np.zeros((*shape, *action_shape), np.float32)
        self.logprobs = np.zeros(shape, np.float32)
        self.rewards = np.zeros(shape, np.float32)
        self.values = np.zeros(shape, np.float32)
        self.dones = np.zeros(shape, bool)
        self.truncated = np.zeros(shape, bool)
        self.final_values = np.zeros(shape, np.float32)  # V(s_final) where truncated, else 0
        self.extra = {name: np.zeros(shape, np.float32) for name in extra_fields}
        self.advantages = np.zeros(shape, np.float32)
        self.returns = np.zeros(shape, np.float32)
        self.pos = 0

    @property
    def full(self) -> bool:
        return self.pos == self.rollout_len

    def compute_returns(self, last_values, gamma, lam):
        self.advantages, self.returns = compute_gae(
            self.rewards, self.values, last_values, self.dones, gamma, lam, self.final_values, self.truncated)

    def batch(self, device, fields=("obs", "actions", "logprobs", "advantages", "returns", "values")) -> dict:
        """Flatten [T, N, ...] to [T*N, ...] tensors on device, once per training phase."""
        out = {}
        for name in fields:
            array = getattr(self, name) if hasattr(self, name) else self.extra[name]
            out[name] = torch.as_tensor(array.reshape(self.rollout_len * self.num_envs, *array.shape[2:]),
                                        device=device)
        return out
