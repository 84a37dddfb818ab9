"""Parts a params file names by import path (algo.loss / algo.actor / algo.critic: {type: "custom_parts:...",
kwargs: {...}}), and parts that break their contracts."""
import torch
from torch import nn

from rlkit.algos.ppo import PPOLoss


class TaggedLoss(PPOLoss):
    """PPO's loss as written, plus a metric that says which loss trained: custom/tag = tag."""

    def __init__(self, algo, tag: float = 1.0):
        super().__init__(algo)
        self.tag = tag

    def __call__(self, actor, critic, mb):
        loss, stats = super().__call__(actor, critic, mb)
        return loss, {**stats, "custom/tag": torch.tensor(float(self.tag))}


def kl_penalty_loss(actor, critic, mb, kl_coef: float = 1.0):
    """A function loss: the unclipped surrogate with a k3 KL penalty, and the value loss."""
    logprob, entropy = actor.evaluate(mb["obs"], mb["actions"])
    logratio = logprob - mb["logprobs"]
    ratio = logratio.exp()
    kl = ((ratio - 1) - logratio).mean()
    policy = -(mb["advantages"] * ratio).mean() + kl_coef * kl
    value = 0.5 * ((critic(mb["obs"]) - mb["returns"]) ** 2).mean(0).sum()
    return policy + 0.5 * value, {"loss/policy": policy.detach(), "loss/value": value.detach(),
                                  "custom/kl": kl.detach()}


def returns_a_float(actor, critic, mb):
    return 1.0, {}


class WideMLP(nn.Sequential):
    """An actor or critic built as type(obs_space, out_dim, **kwargs)."""

    def __init__(self, obs_space, out_dim, width: int = 32):
        n = obs_space.shape[0]
        super().__init__(nn.Linear(n, width), nn.ELU(), nn.Linear(width, out_dim))


def wrong_width(obs_space, out_dim):
    return nn.Linear(obs_space.shape[0], out_dim + 1)


NOT_CALLABLE = 3
