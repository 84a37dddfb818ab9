"""The edits the mutation tests make to the built-in loss and networks (tests/integration/test_mutations.py,
tests/unit/algos/test_fast_path.py)."""
import torch
from torch import nn

from rlkit.algos.ppo import PPOLoss


def kl_penalty(estimator: str, coef: float = 5.0):
    """PPO with a KL penalty: k1 = -log r, k3 = (r - 1) - log r (Schulman's estimators)."""
    original = PPOLoss.__call__

    def __call__(self, actor, critic, mb):
        loss, stats = original(self, actor, critic, mb)
        logprob, _ = actor.evaluate(mb["obs"], mb["actions"])
        logratio = logprob - mb["logprobs"]
        kl = -logratio if estimator == "k1" else (logratio.exp() - 1) - logratio
        return loss + coef * kl.mean(), stats
    return "__call__", __call__


def clip_constant(clip=0.05):
    def policy_loss(self, adv, ratio):
        return torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    return "policy_loss", policy_loss


def clipped_value_loss():
    """The value clip written into the loss (not through algo.clip_vloss)."""
    def value_loss(self, new_values, returns, old_values):
        clipped = old_values + (new_values - old_values).clamp(-0.1, 0.1)
        return 0.5 * torch.max((new_values - returns) ** 2, (clipped - returns) ** 2).mean(0).sum()
    return "value_loss", value_loss


def entropy_term():
    """An entropy bonus of its own, whatever algo.ent_coef says."""
    original = PPOLoss.__call__

    def __call__(self, actor, critic, mb):
        loss, stats = original(self, actor, critic, mb)
        _, entropy = actor.evaluate(mb["obs"], mb["actions"])
        return loss - 0.05 * entropy.mean(), stats
    return "__call__", __call__


LOSS_EDITS = {"kl_k1": lambda: kl_penalty("k1"), "kl_k3": lambda: kl_penalty("k3"), "clip_0.05": clip_constant,
              "clipped_value_loss": clipped_value_loss, "entropy_term": entropy_term}



class Scaled(nn.Sequential):
    """An nn.Sequential whose own forward divides the output by 10: numpy must not run its layers instead."""

    def forward(self, x):
        return super().forward(x) / 10


def mlp(out: int, activation=nn.Tanh, bias=True, norm=False, cls=nn.Sequential):
    layers = [nn.Linear(4, 32, bias=bias), *([nn.LayerNorm(32)] if norm else []), activation(),
              nn.Linear(32, 32, bias=bias), activation(), nn.Linear(32, out, bias=bias)]
    return cls(*layers)


NETWORK_EDITS = {
    "sequential_with_its_own_forward": dict(cls=Scaled),
    "linear_without_bias": dict(bias=False),
    "layer_norm": dict(norm=True),
    "relu": dict(activation=nn.ReLU),
    "elu": dict(activation=nn.ELU),
    "gelu": dict(activation=nn.GELU),
}
