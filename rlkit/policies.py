"""Actor and critic: separate MLPs, as the seed's separate learning rates imply."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


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
    """Categorical over action_dim actions, or a diagonal Gaussian in [-1, 1] units scaled to the Box bounds.

    Log-probabilities and entropies are the closed forms, written out: torch.distributions builds an
    object (and, for Categorical, normalises the logits) on every call, which dominates at these sizes.
    """

    def __init__(self, observ_dim, action_dim, has_continuous, hidden, activation, log_std_init=0.0):
        super().__init__()
        self.has_continuous = has_continuous
        self.net = mlp(observ_dim, hidden, action_dim, activation, out_gain=0.01)
        if has_continuous:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def sample(self, obs: torch.Tensor, generator: torch.Generator):
        """(actions, log pi(actions | obs)) for a batch of observations."""
        out = self.net(obs)
        if self.has_continuous:
            noise = torch.randn(out.shape, generator=generator, device=out.device)
            actions = out + self.log_std.exp() * noise
            return actions, self._gaussian_log_prob(out, actions)
        logp_all = out.log_softmax(-1)
        actions = torch.multinomial(logp_all.exp(), 1, generator=generator)
        return actions.squeeze(-1), logp_all.gather(-1, actions).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """(log pi(actions | obs), entropy of pi(. | obs)), each [batch]."""
        out = self.net(obs)
        if self.has_continuous:
            entropy = (0.5 + HALF_LOG_2PI + self.log_std).sum().expand(out.shape[0])
            return self._gaussian_log_prob(out, actions), entropy
        logp_all = out.log_softmax(-1)
        logp = logp_all.gather(-1, actions.long().view(-1, 1)).squeeze(-1)
        return logp, -(logp_all.exp() * logp_all).sum(-1)

    def _gaussian_log_prob(self, mean, actions):
        # log N(a; mu, sigma) = -(a - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2, summed over action dims
        z = (actions - mean) * (-self.log_std).exp()
        return (-0.5 * z.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)

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
        self.half_range = 0.5 * (self.high - self.low)  # x * 0.5 is exact: the same bits as ((a + 1) * 0.5) * range

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        # in place on one new array, and np.clip's arithmetic without its Python wrapper: once per env step
        scaled = np.minimum(np.maximum(actions, -1.0), 1.0)
        scaled += 1.0
        scaled *= self.half_range
        scaled += self.low
        return scaled
