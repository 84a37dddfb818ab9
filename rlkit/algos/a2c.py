"""A2C (Mnih et al., 2016), the synchronous advantage actor-critic: an Agent on the on-policy learner.

Each rollout is n_steps per env; one gradient step on the whole rollout, through autograd, in torch's
RMSprop. The defaults are Stable-Baselines3's A2C (RMSprop alpha 0.99 eps 1e-5, lr 7e-4, 5 steps per env,
gamma 0.99, GAE lambda 1.0 (plain n-step returns), entropy 0.0, value 0.5, gradient norm 0.5, advantages
not normalised). GAE, the truncation bootstrap, the reward filter and the hooks are the learner's
(rlkit.algos.onpolicy); the keys A2C shares with PPO keep their names (algo.gamma, algo.actor_lr, ...) and
take A2C's defaults where the params file leaves them out; its own keys are under algo.kwargs (A2CKeys).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlkit.algos.actor_critic import ActorCriticAgent
from rlkit.algos.stats import explained_variance, normalised_advantages
from rlkit.config import ConfigError, build_section
from rlkit.nn.networks import build_actor_critic
from rlkit.steps import minibatch_indices


@dataclass
class A2CKeys:
    """algo.kwargs of an A2C run."""
    n_steps: int = 5  # policy steps per env per rollout: a rollout is n_steps x T x E transitions
    rms_alpha: float = 0.99  # RMSprop's smoothing constant
    rms_eps: float = 1e-5  # RMSprop's epsilon (torch's default 1e-8 is unstable here; SB3 and the paper's code)

    def __post_init__(self):
        for key, ok, rule in (("n_steps", self.n_steps >= 1, ">= 1"), ("rms_alpha", 0 <= self.rms_alpha < 1, "in [0, 1)"),
                              ("rms_eps", self.rms_eps > 0, "> 0")):
            if not ok:
                raise ConfigError(f"'algo.kwargs.{key}' must be {rule}, got {getattr(self, key)}")


def keys(algo) -> A2CKeys:
    return build_section(A2CKeys, algo.kwargs, "algo.kwargs.")


class A2CLoss:
    """-A log pi(a|s) - ent_coef H + vf_coef (V - R)^2: the one definition of A2C's loss.

    `loss(actor, critic, minibatch) -> (scalar loss, {name: 0-dim tensor})` as for PPO (rlkit.algos.ppo.PPOLoss);
    the value term is the mean squared error of each head, summed over the heads."""

    def __init__(self, algo):
        self.cfg = algo

    def __call__(self, actor, critic, mb: dict):
        c = self.cfg
        adv = mb["advantages"]
        if c.norm_adv and len(adv) > 1:
            adv = normalised_advantages(adv)
        logprob, entropy = actor.evaluate(mb["obs"], mb["actions"])
        policy_loss = -(adv * logprob).mean()
        entropy = entropy.mean()
        value_loss = ((critic(mb["obs"]) - mb["returns"]) ** 2).mean(0).sum()
        loss = policy_loss - c.ent_coef * entropy + c.vf_coef * value_loss
        return loss, {"loss/policy": policy_loss.detach(), "loss/value": value_loss.detach(),
                      "loss/entropy": entropy.detach()}


class A2C(ActorCriticAgent):
    """The agent (the contract in rlkit.algos.base): acts for the collector, one RMSprop step per rollout."""

    Keys = A2CKeys
    defaults = {"actor_lr": 7e-4, "critic_lr": 7e-4, "gamma": 0.99, "GAE_lambda": 1.0, "ent_coef": 0.0,
                "vf_coef": 0.5, "max_grad_norm": 0.5, "norm_adv": False}

    @staticmethod
    def rollout(cfg) -> tuple[int, int]:
        """(n_steps x T x E transitions per rank, one gradient step per phase)."""
        return keys(cfg.algo).n_steps * cfg.num_envs, 1

    def __init__(self, algo, obs_space, action_space, device, value_heads: int = 1, actor=None, critic=None,
                 loss=None):
        self.cfg, self.device, k = algo, torch.device(device), keys(algo)
        self.actor, self.critic, self.env_actions = build_actor_critic(obs_space, action_space, algo, self.device,
                                                                       value_heads, actor, critic)
        self.loss = A2CLoss(algo) if loss is None else loss(algo) if isinstance(loss, type) else loss
        self.optimizer = torch.optim.RMSprop([{"params": self.actor.parameters(), "lr": algo.actor_lr},
                                              {"params": self.critic.parameters(), "lr": algo.critic_lr}],
                                             alpha=k.rms_alpha, eps=k.rms_eps)
        self.base_lrs = [algo.actor_lr, algo.critic_lr]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.sync_gradients = None  # several ranks: averages the gradients over them (rlkit.runs.distributed)

    def add_param_group(self, params, lr: float) -> dict:
        """Train more parameters in the same RMSprop step (RND's predictor); lr annealing leaves them alone."""
        params = [p for p in params if p.requires_grad]
        self.params += params
        self.optimizer.add_param_group({"params": params, "lr": lr})
        return self.optimizer.param_groups[-1]

    def set_lr_fraction(self, frac: float) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = frac * lr

    def update(self, batch: dict, n_updates: int, rng: np.random.Generator, extra_losses=()) -> dict:
        """n_updates gradient steps, each on the whole rollout (in a random order: a hook's share of it, RND's
        predictor sample, is then a random one)."""
        per_update = []
        n = batch["obs"].shape[0]
        for idx in minibatch_indices(n, n, n_updates, rng):
            idx = torch.as_tensor(idx, device=self.device)
            loss, stats = self.loss(self.actor, self.critic, {k: v[idx] for k, v in batch.items()})
            for term in extra_losses:
                extra, extra_stats = term(idx)
                loss, stats = loss + extra, {**stats, **extra_stats}
            self.optimizer.zero_grad()
            loss.backward()
            if self.sync_gradients is not None:  # before clipping: every rank clips and steps the same mean
                self.sync_gradients()
            stats["a2c/grad_norm"] = nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
            self.optimizer.step()
            per_update.append([float(v.detach()) if torch.is_tensor(v) else float(v) for v in stats.values()])
        out = dict(zip(stats, np.mean(per_update, 0).tolist()))
        out["a2c/explained_variance"] = explained_variance(batch["values"][:, 0], batch["returns"][:, 0])
        return out
