"""PPO update (Schulman et al., 2017): clipped surrogate; actor and critic with their own learning rates
(one Adam over flat parameter groups, one per network; RND's predictor joins as a third)."""
from __future__ import annotations

import numpy as np
import torch

from rlkit.fused import ActorCriticArrays
from rlkit.optim import FlatAdam
from rlkit.policies import Actor, Critic
from rlkit.steps import minibatch_indices


class PPO:
    def __init__(self, algo, obs_dim: int, device, value_heads: int = 1):
        self.cfg = algo
        self.device = device
        self.actor = Actor(obs_dim, algo.action_dim, algo.has_continuous, algo.hidden_sizes,
                           algo.activation, algo.log_std_init).to(device)
        self.critic = Critic(obs_dim, algo.hidden_sizes, algo.activation, heads=value_heads).to(device)
        # One Adam, a flat group per network: the seed's separate learning rates, a few buffer-wide operations per step
        self.optimizer = FlatAdam(eps=1e-5)
        self.actor_group = self.optimizer.add_param_group(self.actor.parameters(), algo.actor_lr)
        self.critic_group = self.optimizer.add_param_group(self.critic.parameters(), algo.critic_lr)
        # CPU: numpy views of the same weights run the collector's forward passes and, unless fused_update is
        # off (or RND's predictor is a conv net), the PPO step (rlkit/fused.py); elsewhere torch and autograd do
        self.arrays = ActorCriticArrays(self.actor, self.critic, algo.activation) if self.device.type == "cpu" else None
        # Several ranks: a callable that averages the gradients over the ranks (rlkit.distributed); None with one
        self.average_gradients = None

    def add_param_group(self, params, lr: float) -> None:
        """Train more parameters in the same Adam step (RND's predictor); lr annealing leaves them alone."""
        self.optimizer.add_param_group(params, lr)

    # ALGO LOGIC: action logic (one batched forward for every env, never one per env)
    def act(self, obs: np.ndarray, generator: torch.Generator):
        """(actions, log pi(actions | obs), values) for a batch of observations."""
        if self.arrays is not None:
            obs = np.asarray(obs, np.float32)
            shape = (len(obs), self.cfg.action_dim) if self.cfg.has_continuous else (len(obs),)
            noise = (torch.randn if self.cfg.has_continuous else torch.rand)(shape, generator=generator).numpy()
            actions, logprobs = self.arrays.sample(obs, noise)
            return actions, logprobs, self.arrays.values(obs)
        with torch.inference_mode():
            obs_t = torch.as_tensor(obs, device=self.device)
            actions, logprobs = self.actor.sample(obs_t, generator)
            return actions.cpu().numpy(), logprobs.cpu().numpy(), self.critic(obs_t).cpu().numpy()

    def value(self, obs: np.ndarray) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays.values(np.asarray(obs, np.float32))
        with torch.inference_mode():
            return self.critic(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays.mode(np.asarray(obs, np.float32))
        with torch.inference_mode():
            return self.actor.mode(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def set_lr_fraction(self, frac: float) -> None:
        """Linear annealing: frac = 1 at the start, -> 0 at total_steps."""
        for group, lr in zip(self.optimizer.param_groups, (self.cfg.actor_lr, self.cfg.critic_lr)):
            group["lr"] = frac * lr

    # Optimizing the policy and value network
    def update(self, batch: dict, n_updates: int, rng: np.random.Generator, aux=None) -> dict:
        """aux: an extra loss on each minibatch (RND's predictor, rlkit.rnd.PredictorLoss) that joins the same
        gradient step and Adam step, as in the RND paper's implementation; its stats are averaged in.
        aux(idx) -> (loss, {name: 0-dim tensor}) through autograd; aux.fused(idx) -> {name: value} writes its
        gradient itself (aux.arrays is None where it cannot)."""
        c = self.cfg
        size = batch["obs"].shape[0]
        on_cpu = self.arrays is not None
        fused = on_cpu and c.fused_update and (aux is None or aux.arrays is not None)
        if fused:  # numpy views of the batch, taken once; discrete actions as indices
            arrays = {k: v.numpy() for k, v in batch.items()}
            if not c.has_continuous:
                arrays["actions"] = arrays["actions"].astype(np.int64)
        per_update = []  # a row of statistics per update, averaged once per phase (no .item() per update on a GPU)
        for idx in minibatch_indices(size, c.mini_batch_size, n_updates, rng):
            if fused:  # the same loss and gradient, written out (rlkit/fused.py)
                step = self.arrays.ppo_step(c, arrays, idx)
                if aux is not None:
                    step.update(aux.fused(idx))
            else:
                step = self._autograd_step(batch, torch.as_tensor(idx, device=self.device), aux)
            if self.average_gradients is not None:  # before clipping: every rank clips and steps the same mean
                self.average_gradients()
            step["ppo/grad_norm_actor"] = self.optimizer.clip_grad_norm(self.actor_group, c.max_grad_norm)
            step["ppo/grad_norm_critic"] = self.optimizer.clip_grad_norm(self.critic_group, c.max_grad_norm)
            self.optimizer.step()
            per_update.append(np.array([float(v) for v in step.values()]) if on_cpu
                              else torch.stack([v.float() for v in step.values()]))
        means = np.mean(per_update, 0) if on_cpu else torch.stack(per_update).mean(0)
        stats = dict(zip(step, means.tolist()))
        if self.critic.heads == 1:
            stats["ppo/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        else:  # RND: extrinsic and intrinsic heads
            stats["ppo/explained_variance"] = explained_variance(batch["values"][:, 0], batch["returns"][:, 0])
            stats["ppo/explained_variance_int"] = explained_variance(batch["values"][:, 1], batch["returns"][:, 1])
        return stats

    def _autograd_step(self, batch: dict, idx: torch.Tensor, aux) -> dict:
        """The loss through autograd, its gradient into .grad: any loss (aux: RND's predictor) works here."""
        c = self.cfg
        obs, adv = batch["obs"][idx], batch["advantages"][idx]
        if c.norm_adv and len(idx) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        logprob, entropy = self.actor.evaluate(obs, batch["actions"][idx])
        logratio = logprob - batch["logprobs"][idx]
        ratio = logratio.exp()
        policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.policy_clip, 1 + c.policy_clip)).mean()
        entropy = entropy.mean()
        value_loss = self._value_loss(self.critic(obs), batch["returns"][idx], batch["values"][idx])

        loss = policy_loss - c.ent_coef * entropy + c.vf_coef * value_loss
        extra = {}
        if aux is not None:
            aux_loss, extra = aux(idx)
            loss = loss + aux_loss
        self.optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():  # approx KL: Schulman's k3 estimator
            stats = {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": entropy,
                     "ppo/approx_kl": ((ratio - 1) - logratio).mean(),
                     "ppo/clipfrac": ((ratio - 1).abs() > c.policy_clip).float().mean(), **extra}
            return {k: v.detach() for k, v in stats.items()}

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
