"""Actor and critic: separate MLPs, as the seed's separate learning rates imply."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, hidden: list, out_dim: int, activation: str, out_gain: float) -> nn.Sequential:
    """Orthogonal init with gain sqrt(2) in hidden layers, a small gain on the output (Andrychowicz et al., 2021)."""
    layers, last = [], in_dim
    for h in hidden:
        layers += [_init(nn.Linear(last, h), np.sqrt(2)), ACTIVATIONS[activation]()]
        last = h
    layers.append(_init(nn.Linear(last, out_dim), out_gain))
    return nn.Sequential(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Actor(nn.Module):
    """Categorical over action_dim actions, or a diagonal Gaussian in [-1, 1] units scaled to the Box bounds."""

    def __init__(self, observ_dim, action_dim, has_continuous, hidden, activation, log_std_init=0.0):
        super().__init__()
        self.has_continuous = has_continuous
        self.net = mlp(observ_dim, hidden, action_dim, activation, out_gain=0.01)
        if has_continuous:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor):
        out = self.net(obs)
        if self.has_continuous:
            return Normal(out, self.log_std.exp().expand_as(out))
        return Categorical(logits=out)

    def log_prob(self, dist, actions):
        if self.has_continuous:
            return dist.log_prob(actions).sum(-1)
        return dist.log_prob(actions.long().squeeze(-1) if actions.dim() > 1 else actions.long())

    def entropy(self, dist):
        return dist.entropy().sum(-1) if self.has_continuous else dist.entropy()

    def mode(self, obs: torch.Tensor):
        out = self.net(obs)
        return out if self.has_continuous else out.argmax(-1)


class Critic(nn.Module):
    """State value; `heads` > 1 gives one value per reward stream (RND: extrinsic, intrinsic)."""

    def __init__(self, observ_dim, hidden, activation, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.net = mlp(observ_dim, hidden, heads, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        return out.squeeze(-1) if self.heads == 1 else out


class ActionScaler:
    """Map the policy's [-1, 1] actions to the env's Box: low + (a + 1) / 2 * (high - low).

    For the symmetric bounds of the seed's example this is a * action_scaling. Samples are
    clipped to [-1, 1] for the env only; the memory keeps the raw sample for its log-prob.
    """

    def __init__(self, low, high):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)
