"""PPO update (Schulman et al., 2017): clipped surrogate, separate actor and critic optimizers."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rlkit.policies import Actor, Critic
from rlkit.steps import minibatch_indices

# Argument validation builds and checks a constraint per distribution call: pure overhead on the hot path.
torch.distributions.Distribution.set_default_validate_args(False)


class PPO:
    def __init__(self, algo, obs_dim: int, device, value_heads: int = 1):
        self.cfg = algo
        self.device = device
        self.actor = Actor(obs_dim, algo.action_dim, algo.has_continuous, algo.hidden_sizes,
                           algo.activation, algo.log_std_init).to(device)
        self.critic = Critic(obs_dim, algo.hidden_sizes, algo.activation, heads=value_heads).to(device)
        # One Adam, two parameter groups: the seed's separate learning rates at half the per-step overhead;
        # fused kernels update every tensor in one call instead of a Python loop over parameters.
        self.optimizer = torch.optim.Adam([{"params": self.actor.parameters(), "lr": algo.actor_lr},
                                           {"params": self.critic.parameters(), "lr": algo.critic_lr}],
                                          eps=1e-5, fused=True)
        # Several ranks: a callable that averages the gradients over the ranks (rlkit.distributed); None with one
        self.average_gradients = None

    # ALGO LOGIC: action logic (one batched forward for every env, never one per env)
    @torch.inference_mode()
    def act(self, obs: np.ndarray, generator: torch.Generator):
        obs_t = torch.as_tensor(obs, device=self.device)
        dist = self.actor.distribution(obs_t)
        if self.cfg.has_continuous:
            noise = torch.randn(dist.mean.shape, generator=generator, device=self.device)
            actions = dist.mean + dist.stddev * noise
        else:
            actions = torch.multinomial(dist.probs, 1, generator=generator).squeeze(-1)
        logprobs = self.actor.log_prob(dist, actions)
        return actions.cpu().numpy(), logprobs.cpu().numpy(), self.critic(obs_t).cpu().numpy()

    @torch.inference_mode()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.critic(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    @torch.inference_mode()
    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        return self.actor.mode(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def set_lr_fraction(self, frac: float) -> None:
        """Linear annealing: frac = 1 at the start, -> 0 at total_steps."""
        for group, lr in zip(self.optimizer.param_groups, (self.cfg.actor_lr, self.cfg.critic_lr)):
            group["lr"] = frac * lr

    # Optimizing the policy and value network
    def update(self, batch: dict, n_updates: int, rng: np.random.Generator, aux=None) -> dict:
        """aux(idx) -> {name: float}: an extra step on each minibatch (RND's predictor), averaged into the stats."""
        c = self.cfg
        size = batch["obs"].shape[0]
        stats = {k: 0.0 for k in ("loss/policy", "loss/value", "loss/entropy", "ppo/approx_kl",
                                  "ppo/clipfrac", "ppo/grad_norm_actor", "ppo/grad_norm_critic")}
        for idx in minibatch_indices(size, c.mini_batch_size, n_updates, rng):
            idx = torch.as_tensor(idx, device=self.device)
            obs, adv = batch["obs"][idx], batch["advantages"][idx]
            if c.norm_adv and len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)

            dist = self.actor.distribution(obs)
            logratio = self.actor.log_prob(dist, batch["actions"][idx]) - batch["logprobs"][idx]
            ratio = logratio.exp()
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.policy_clip, 1 + c.policy_clip)).mean()
            entropy = self.actor.entropy(dist).mean()
            value_loss = self._value_loss(self.critic(obs), batch["returns"][idx], batch["values"][idx])

            self.optimizer.zero_grad(set_to_none=True)
            (policy_loss - c.ent_coef * entropy + c.vf_coef * value_loss).backward()
            if self.average_gradients is not None:  # before clipping: every rank clips and steps the same mean
                self.average_gradients()
            gn_actor = nn.utils.clip_grad_norm_(self.actor.parameters(), c.max_grad_norm, foreach=True)
            gn_critic = nn.utils.clip_grad_norm_(self.critic.parameters(), c.max_grad_norm, foreach=True)
            self.optimizer.step()

            with torch.no_grad():  # approx KL (Schulman's k3 estimator), mean over the update
                stats["ppo/approx_kl"] += ((ratio - 1) - logratio).mean().item()
                stats["ppo/clipfrac"] += ((ratio - 1).abs() > c.policy_clip).float().mean().item()
            stats["loss/policy"] += policy_loss.item()
            stats["loss/value"] += value_loss.item()
            stats["loss/entropy"] += entropy.item()
            stats["ppo/grad_norm_actor"] += gn_actor.item()
            stats["ppo/grad_norm_critic"] += gn_critic.item()
            if aux is not None:
                for k, v in aux(idx).items():
                    stats[k] = stats.get(k, 0.0) + v
        stats = {k: v / n_updates for k, v in stats.items()}
        if self.critic.heads == 1:
            stats["ppo/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        else:  # RND: extrinsic and intrinsic heads
            stats["ppo/explained_variance"] = explained_variance(batch["values"][:, 0], batch["returns"][:, 0])
            stats["ppo/explained_variance_int"] = explained_variance(batch["values"][:, 1], batch["returns"][:, 1])
        return stats

    def _value_loss(self, new_values, returns, old_values):
        if not self.cfg.clip_vloss:
            err = (new_values - returns) ** 2
        else:
            clipped = old_values + (new_values - old_values).clamp(-self.cfg.policy_clip, self.cfg.policy_clip)
            err = torch.max((new_values - returns) ** 2, (clipped - returns) ** 2)
        # several heads [B, heads] (RND): the loss is the sum of each head's loss
        return 0.5 * (err.mean() if self.critic.heads == 1 else err.mean(0).sum())

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]: 1 is a perfect critic, <= 0 no better than a constant."""
    var = returns.var().item()
    return float("nan") if var == 0 else 1.0 - (returns - values).var().item() / var
