"""Random Network Distillation (Burda et al., 2018, "Exploration by Random Network Distillation").

A target network f, randomly initialised and never trained, maps an observation to k features;
a predictor f^ is trained to match it on the states the agent visits. Its error on the next
observation is the intrinsic reward,

    i_t = ||f^(s_{t+1}) - f(s_{t+1})||^2 / k,

high on states unlike those seen so far, falling as they become familiar. What the paper found
it needs (§2.3-2.4), all here:
  - observations whitened by their own running mean/std, clipped to [-5, 5], the statistics
    warmed up with random actions before training (the trainer's learning_starts);
  - i_t divided by a running std of the discounted intrinsic return, so its scale stays
    comparable across tasks and over time;
  - a non-episodic intrinsic return (a game over does not end novelty-seeking) with its own
    value head and discount: two GAE passes, A = ext_coef * A_E + int_coef * A_I.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rlkit.fused import MLPArrays, is_mlp, mean
from rlkit.memory import compute_gae
from rlkit.normalize import ObsNormalizer, ReturnFilter
from rlkit.policies import _init


def image_layout(obs_shape) -> str | None:
    """'chw' or 'hwc' for 3-dim observations (channels: a dim of 1, 3 or 4 at one end), None for vectors."""
    if len(obs_shape) != 3:
        return None
    return "hwc" if obs_shape[-1] in (1, 3, 4) and obs_shape[0] not in (1, 3, 4) else "chw"


class _ChannelsFirst(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def rnd_network(obs_shape, hidden, out_dim: int, predictor: bool) -> nn.Sequential:
    """Target, or predictor (= the target's layers + two more hidden layers, as in the paper: it must
    be able to fit the target on the visited states). Leaky ReLU and orthogonal init sqrt(2) as there.
    Images get the paper's conv trunk (32x8/4, 64x4/2, 64x3/1; 3x3 convs below 36 pixels); vectors an MLP."""
    layout = image_layout(obs_shape)
    if layout is None:
        layers, width, sizes = [nn.Flatten()], int(np.prod(obs_shape)), list(hidden)
    else:
        c, h, w = obs_shape if layout == "chw" else (obs_shape[2], obs_shape[0], obs_shape[1])
        convs = [(32, 8, 4), (64, 4, 2), (64, 3, 1)] if min(h, w) >= 36 else [(32, 3, 1), (64, 3, 2), (64, 3, 1)]
        layers = [_ChannelsFirst()] if layout == "hwc" else []
        for channels, kernel, stride in convs:
            layers += [_init(nn.Conv2d(c, channels, kernel, stride), math.sqrt(2)), nn.LeakyReLU()]
            c = channels
        layers.append(nn.Flatten())
        with torch.no_grad():
            width = nn.Sequential(*layers)(torch.zeros(1, *obs_shape)).shape[1]
        sizes = []  # the paper's target goes straight from the convs to the output layer
    if predictor:
        sizes += [out_dim, out_dim]
    for size in sizes:
        layers += [_init(nn.Linear(width, size), math.sqrt(2)), nn.LeakyReLU()]
        width = size
    layers.append(_init(nn.Linear(width, out_dim), math.sqrt(2)))
    return nn.Sequential(*layers)


class RND:
    """Target and predictor, the observation normaliser and the intrinsic return filter. The predictor trains in
    the agent's Adam step (PPO.add_param_group, lr `rnd_lr`) on `predictor_loss`, as in the paper's implementation."""

    def __init__(self, obs_shape, algo, num_envs: int, device):
        self.device, self.update_proportion = device, algo.update_proportion
        self.target = rnd_network(obs_shape, algo.rnd_hidden_sizes, algo.rnd_output_dim, predictor=False).to(device)
        self.target.requires_grad_(False)  # fixed: the randomness of f is what makes its outputs hard to predict
        self.predictor = rnd_network(obs_shape, algo.rnd_hidden_sizes, algo.rnd_output_dim, predictor=True).to(device)
        self.obs_norm = ObsNormalizer(obs_shape, clip=5.0)
        # R_i <- gamma_int * R_i + i_t per env along its own time axis, never reset (non-episodic)
        self.return_filter = ReturnFilter(num_envs, algo.gamma_int, episodic=False)

    def errors(self, obs: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared prediction error over the k features; obs already normalised."""
        return (self.predictor(obs) - self.target(obs)).pow(2).mean(-1)

    @torch.inference_mode()
    def intrinsic_reward(self, next_obs: np.ndarray) -> np.ndarray:
        """Raw i_t for a batch of raw next observations [B, *obs_shape]."""
        return self.errors(torch.as_tensor(self.obs_norm(next_obs), device=self.device)).cpu().numpy()

    def intrinsic_rewards(self, next_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw i_t, i_t / std of the intrinsic return) for a rollout of raw s_{t+1}, [T, N, *obs_shape].

        As in the paper's implementation: one forward for the whole rollout, the return filter run
        over time for each env, then the observation statistics updated with the rollout.
        """
        T, N = next_obs.shape[:2]
        flat = next_obs.reshape(T * N, *next_obs.shape[2:])
        raw = self.intrinsic_reward(flat).reshape(T, N)
        scaled = np.stack([self.return_filter(raw[t]) for t in range(T)])
        self.obs_norm.update(flat)
        return raw, scaled

    @torch.no_grad()
    def target_features(self, obs: torch.Tensor) -> torch.Tensor:
        """f(obs) for a rollout's normalised observations: the target never trains, so once per rollout."""
        return self.target(obs)

    def sample(self, minibatch: torch.Tensor) -> torch.Tensor:
        """The predictor's share of a minibatch: its first `update_proportion` of indices. Minibatches are
        random permutations, so that is a random sample. The paper keeps the predictor's effective batch
        fixed as envs are added this way, so that it does not learn novelty away too fast."""
        return minibatch[:max(1, round(self.update_proportion * len(minibatch)))]

    def predictor_loss(self, obs: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        """The predictor's mean squared error on normalised observations and their target features."""
        return (self.predictor(obs) - target_features).pow(2).mean()

    def predictor_arrays(self) -> MLPArrays | None:
        """numpy views of the predictor for PredictorLoss.fused (CPU, vector observations); None otherwise.
        Built on first use: its gradient buffer exists once the predictor joined the agent's Adam."""
        if not hasattr(self, "_arrays"):
            cpu_mlp = torch.device(self.device).type == "cpu" and is_mlp(self.predictor)
            self._arrays = MLPArrays(self.predictor, "leaky_relu") if cpu_mlp else None
        return self._arrays

    def stats(self) -> dict:
        rms = self.obs_norm.rms
        return {"rnd/obs_mean": float(rms.mean.mean()), "rnd/obs_std": float(rms.std.mean()),
                "rnd/return_std": float(self.return_filter.rms.std)}

    def state_dict(self) -> dict:
        return {"target": self.target.state_dict(), "predictor": self.predictor.state_dict(),
                "obs_norm": self.obs_norm.state_dict(),
                "return_filter": self.return_filter.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        self.return_filter.load_state_dict(state["return_filter"])


class PredictorLoss:
    """RND's loss term in PPO's minibatch step: the predictor's error on the minibatch's share (RND.sample)
    of the rollout's normalised s_{t+1} and their target features. Called by PPO.update on each minibatch,
    through autograd (__call__) or, on the CPU with vector observations, written out (fused)."""

    def __init__(self, rnd: RND, obs: torch.Tensor, target_features: torch.Tensor):
        self.rnd, self.obs, self.targets = rnd, obs, target_features
        self.arrays = rnd.predictor_arrays()
        if self.arrays is not None:
            self.obs_np, self.targets_np = obs.numpy(), target_features.numpy()

    def __call__(self, idx: torch.Tensor):
        sample = self.rnd.sample(idx)
        loss = self.rnd.predictor_loss(self.obs[sample], self.targets[sample])
        return loss, {"rnd/predictor_loss": loss}

    def fused(self, idx: np.ndarray) -> dict:
        """The same loss, mean((f^(s) - f(s))^2), its gradient written into the predictor's gradient buffer."""
        sample = self.rnd.sample(idx)
        outs = self.arrays.forward(self.obs_np[sample])
        err = outs[-1] - self.targets_np[sample]
        loss = mean(err * err)
        err *= 2 / err.size
        self.arrays.backward(outs, err)
        return {"rnd/predictor_loss": loss}


# Rollout fields RND adds to RolloutMemory.extra, each [rollout_len, num_envs]
MEMORY_FIELDS = ("int_rewards_raw", "int_rewards", "int_values", "int_advantages", "int_returns")


def true_next_obs(next_obs: np.ndarray, final_obs: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """s_{t+1}: the final observation where an episode ended (the vector has already reset those envs)."""
    if not dones.any():
        return next_obs  # callers only read it or copy it into the memory
    return np.where(dones.reshape(-1, *[1] * (next_obs.ndim - 1)), final_obs, next_obs)


def two_head_gae(mem, last_values: np.ndarray, gamma: float, gamma_int: float, lam: float) -> None:
    """GAE for both value heads; last_values is [num_envs, 2] (extrinsic, intrinsic).

    Extrinsic: episodic, truncation bootstrapped (RolloutMemory.compute_returns) -> mem.advantages, mem.returns.
    Intrinsic: non-episodic (dones=None), so the return runs on into the next episode, as in the paper
    -> mem.extra["int_advantages"], mem.extra["int_returns"].
    """
    mem.compute_returns(last_values[:, 0], gamma, lam)
    x = mem.extra
    x["int_advantages"], x["int_returns"] = compute_gae(x["int_rewards"], x["int_values"], last_values[:, 1],
                                                        None, gamma_int, lam)
