"""Rollout memory: preallocated arrays [rollout_len, num_envs, ...] and GAE next to them."""
from __future__ import annotations

import numpy as np
import torch

from rlkit.fast.jit import compiled


def compute_gae(rewards, values, last_values, dones, gamma, lam, final_values=None, truncated=None):
    """Generalised advantage estimation over [T, N] arrays (Schulman et al., 2016, eq. 16).

    dones[t]: the episode ended after action t (terminated or truncated); the next stored value
    then belongs to a new episode and is cut. A truncated episode did not really end, so its
    last step is bootstrapped from the value of the final observation: r + gamma * V(s_final).
    Pass dones=None for a non-episodic stream (RND's intrinsic reward).
    """
    if truncated is not None:
        rewards = rewards + gamma * final_values * truncated
    not_done = np.ones_like(rewards) if dones is None else 1.0 - dones.astype(np.float32)
    advantages = _gae_recursion(rewards.astype(np.float32, copy=False), values, np.asarray(last_values, np.float32),
                                not_done, gamma, lam)
    return advantages, advantages + values


@compiled
def _gae_recursion(rewards, values, last_values, not_done, gamma, lam):
    """A_t = delta_t + gamma lam (1 - done_t) A_{t+1}, delta_t = r_t + gamma (1 - done_t) V_{t+1} - V_t, from the
    last step back (V_T = last_values); a compiled loop: at one env a rollout is thousands of scalar steps."""
    T, N = rewards.shape
    advantages = np.empty((T, N), np.float32)
    for n in range(N):
        last_gae = 0.0
        for t in range(T - 1, -1, -1):
            next_value = last_values[n] if t == T - 1 else values[t + 1, n]
            delta = rewards[t, n] + gamma * next_value * not_done[t, n] - values[t, n]
            last_gae = delta + gamma * lam * not_done[t, n] * last_gae
            advantages[t, n] = last_gae
    return advantages


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
