"""PPO (Schulman et al., 2017): the loss, written once in torch (PPOLoss), and the agent that trains with it.

Actor and critic have their own learning rates: one Adam over flat parameter groups, one per network
(an exploration bonus's predictor can join as another group, rlkit.algos.rnd). On the CPU with plain MLPs the
collector's forward passes run in numpy, and so does the built-in loss's gradient (rlkit/nn/numpy_mlp.py),
checked against autograd on the run's first minibatch; every other loss goes through autograd.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from rlkit.nn.networks import build_actor_critic
from rlkit.nn.numpy_mlp import NumpyActorCritic, PackedBatch, ppo_gradient
from rlkit.nn.optim import FlatAdam
from rlkit.algos.stats import explained_variance  # noqa: F401 (also imported from here)
from rlkit.steps import minibatch_indices

log = logging.getLogger(__name__)
GRADIENT_RTOL = 1e-3  # numpy's and torch's float32 gradients agree to ~1e-6 of their norm; an edited loss is far off


class PPOLoss:
    """The clipped-surrogate loss with the value and entropy terms: the one definition of PPO's loss.

    `loss(actor, critic, minibatch) -> (scalar loss, {name: 0-dim tensor})`, minibatch a dict of tensors:
    obs, actions, logprobs (at collection), advantages [B], returns and values (at collection) [B, heads].
    To change the loss, subclass this (override __call__, policy_loss or value_loss) or write any callable
    with this signature, and pass it as rlkit.train(..., loss=...): a loss other than this class itself
    always trains through autograd.
    """

    def __init__(self, algo):
        self.cfg = algo

    def __call__(self, actor, critic, mb: dict):
        c = self.cfg
        adv = mb["advantages"]
        if c.norm_adv and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logprob, entropy = actor.evaluate(mb["obs"], mb["actions"])
        logratio = logprob - mb["logprobs"]
        ratio = logratio.exp()
        policy_loss = self.policy_loss(adv, ratio)
        entropy = entropy.mean()
        value_loss = self.value_loss(critic(mb["obs"]), mb["returns"], mb["values"])
        loss = policy_loss - c.ent_coef * entropy + c.vf_coef * value_loss
        with torch.no_grad():  # approx KL: Schulman's k3 estimator
            stats = {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": entropy,
                     "ppo/approx_kl": ((ratio - 1) - logratio).mean(),
                     "ppo/clipfrac": ((ratio - 1).abs() > c.policy_clip).float().mean()}
        return loss, stats

    def policy_loss(self, adv, ratio):
        clip = self.cfg.policy_clip
        return torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()

    def value_loss(self, new_values, returns, old_values):
        """0.5 x the mean squared error of each head [B, heads], summed over the heads."""
        if not self.cfg.clip_vloss:
            err = (new_values - returns) ** 2
        else:
            clip = self.cfg.policy_clip
            clipped = old_values + (new_values - old_values).clamp(-clip, clip)
            err = torch.max((new_values - returns) ** 2, (clipped - returns) ** 2)
        return 0.5 * err.mean(0).sum()


class PPO:
    """The agent (the contract in rlkit.algos.base): acts for the collector, trains on a rollout's batch."""

    def __init__(self, algo, obs_space, action_space, device, value_heads: int = 1, actor=None, critic=None,
                 loss=None):
        self.cfg, self.device = algo, torch.device(device)
        self.actor, self.critic, self.env_actions = build_actor_critic(obs_space, action_space, algo, self.device,
                                                                       value_heads, actor, critic)
        self.loss = PPOLoss(algo) if loss is None else loss(algo) if isinstance(loss, type) else loss
        self.optimizer = FlatAdam(eps=1e-5)
        self.params = []  # every trained parameter, in group order (gradient averaging over ranks)
        self.actor_group = self.add_param_group(self.actor.parameters(), algo.actor_lr)
        self.critic_group = self.add_param_group(self.critic.parameters(), algo.critic_lr)
        # CPU and plain MLPs: numpy views of the same weights run the collector's forward passes, and the built-in
        # loss's gradient (checked against autograd on the first minibatch of the run, see update)
        plain = self.device.type == "cpu" and NumpyActorCritic.supports(self.actor, self.critic)
        self.numpy = NumpyActorCritic(self.actor, self.critic) if plain else None
        self.noise_buffers = {}  # rows -> a CPU tensor the numpy sampler's random numbers are drawn into
        self.numpy_gradient = plain and type(self.loss) is PPOLoss and algo.numpy_gradient
        self.gradient_checked = False
        self.sync_gradients = None  # several ranks: averages the gradients over them (rlkit.runs.distributed.replicate)

    def add_param_group(self, params, lr: float) -> dict:
        """Train more parameters in the same Adam step (RND's predictor); lr annealing leaves them alone."""
        params = [p for p in params if p.requires_grad]
        self.params += params
        return self.optimizer.add_param_group(params, lr)

    def modules(self) -> list:
        return [self.actor, self.critic]

    # ALGO LOGIC: action logic (one batched forward for every env, never one per env)
    def act(self, obs: np.ndarray, generator: torch.Generator):
        """(actions, log pi(actions | obs)) for a batch of observations; the values come later, batched (value)."""
        if self.numpy is not None:
            obs = np.asarray(obs, np.float32)
            return self.numpy.sample(obs, self._noise(len(obs), generator))
        with torch.inference_mode():
            actions, logprobs = self.actor.sample(torch.as_tensor(obs, device=self.device), generator)
            return actions.cpu().numpy(), logprobs.cpu().numpy()

    def _noise(self, rows: int, generator: torch.Generator) -> np.ndarray:
        """Standard normals [rows, action_dim] (Gaussian) or uniforms [rows] (categorical) from the generator, drawn
        in place into a buffer kept per batch size: the numbers torch.randn / torch.rand would give, without a
        new tensor every step."""
        buffer = self.noise_buffers.get(rows)
        if buffer is None:
            shape = (rows, self.actor.dist.num_params) if self.numpy.continuous else (rows,)
            buffer = self.noise_buffers[rows] = torch.empty(shape)
        (buffer.normal_ if self.numpy.continuous else buffer.uniform_)(generator=generator)
        return buffer.numpy()

    def value(self, obs: np.ndarray) -> np.ndarray:
        """[B, heads]"""
        if self.numpy is not None:
            return self.numpy.values(np.asarray(obs, np.float32))
        with torch.inference_mode():
            return self.critic(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        if self.numpy is not None:
            return self.numpy.mode(np.asarray(obs, np.float32))
        with torch.inference_mode():
            return self.actor.mode(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def random_actions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform actions in the policy's units (the learning_starts warm-up)."""
        return self.actor.dist.random(rng, n)

    def set_lr_fraction(self, frac: float) -> None:
        """Linear annealing: frac = 1 at the start, -> 0 at total_steps."""
        for group, lr in zip(self.optimizer.param_groups, (self.cfg.actor_lr, self.cfg.critic_lr)):
            group["lr"] = frac * lr

    # Optimizing the policy and value network
    def update(self, batch: dict, n_updates: int, rng: np.random.Generator, extra_losses=()) -> dict:
        """n_updates minibatch steps on a rollout's batch (values and returns [N, heads]).

        extra_losses: more loss terms that join each minibatch's gradient and Adam step (RND's predictor,
        rlkit.algos.rnd.PredictorLoss): term(idx) -> (loss, {name: 0-dim tensor}) through autograd; where
        term.arrays is not None, term.numpy_gradient(idx) -> {name: value} writes its gradient itself."""
        c, on_cpu = self.cfg, self.device.type == "cpu"
        use_numpy = self.numpy_gradient and all(term.arrays is not None for term in extra_losses)
        if use_numpy:  # the batch's fields side by side, once per phase: a minibatch is one gather
            packed = PackedBatch(batch)
        per_update = []  # a row of statistics per update, averaged once per phase (no .item() per update on a GPU)
        for idx in minibatch_indices(batch["obs"].shape[0], c.mini_batch_size, n_updates, rng):
            if use_numpy:
                step = ppo_gradient(self.numpy, c, packed.rows(idx))
                for term in extra_losses:
                    step.update(term.numpy_gradient(idx))
                if not self.gradient_checked:
                    use_numpy, step = self._check_numpy_gradient(batch, idx, extra_losses, step)
            else:
                step = self._autograd_step(batch, torch.as_tensor(idx, device=self.device), extra_losses)
            if self.sync_gradients is not None:  # before clipping: every rank clips and steps the same mean
                self.sync_gradients()
            step["ppo/grad_norm_actor"] = self.optimizer.clip_grad_norm(self.actor_group, c.max_grad_norm)
            step["ppo/grad_norm_critic"] = self.optimizer.clip_grad_norm(self.critic_group, c.max_grad_norm)
            self.optimizer.step()
            per_update.append(np.array([float(v) for v in step.values()]) if on_cpu else
                              torch.stack([torch.as_tensor(v, device=self.device).float() for v in step.values()]))
        means = np.mean(per_update, 0) if on_cpu else torch.stack(per_update).mean(0)
        stats = dict(zip(step, means.tolist()))
        stats["ppo/explained_variance"] = explained_variance(batch["values"][:, 0], batch["returns"][:, 0])
        if self.numpy is not None:  # whether this phase's gradients were numpy's (1) or autograd's (0)
            stats["ppo/numpy_gradient"] = float(use_numpy)
        return stats

    def _autograd_step(self, batch: dict, idx: torch.Tensor, extra_losses) -> dict:
        """The loss through autograd, its gradient into the flat gradient buffers."""
        loss, stats = self.loss(self.actor, self.critic, {k: v[idx] for k, v in batch.items()})
        for term in extra_losses:
            extra, extra_stats = term(idx)
            loss, stats = loss + extra, {**stats, **extra_stats}
        self.optimizer.zero_grad()
        loss.backward()
        return {k: v.detach() if torch.is_tensor(v) else v for k, v in stats.items()}

    def _check_numpy_gradient(self, batch, idx, extra_losses, numpy_step):
        """Once per run, on its first minibatch: the written-out gradient now in the buffers against autograd's.
        Equal: keep numpy's and go on with it. Different (the loss was edited, not the written-out copy): keep
        autograd's, say so in one line, and train through autograd for the rest of the run."""
        self.gradient_checked = True
        grads = [g["grad"] for g in self.optimizer.param_groups]
        written = [g.clone() for g in grads]
        autograd_step = self._autograd_step(batch, torch.as_tensor(idx), extra_losses)
        errors = [float((w - g).norm() / (g.norm() + 1e-12)) for w, g in zip(written, grads)]
        if max(errors) <= GRADIENT_RTOL:
            for g, w in zip(grads, written):
                g.copy_(w)
            return True, numpy_step
        self.numpy_gradient = False
        log.warning("the PPO loss's gradient differs from its numpy copy in rlkit/nn/numpy_mlp.py (relative error "
                    "%.2g): this run trains through autograd, which follows the loss as written", max(errors))
        return False, autograd_step

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.actor.load_state_dict(state["actor"])
            self.critic.load_state_dict(state["critic"])
        except RuntimeError as e:
            raise ValueError("the checkpoint's networks do not fit this run's (another network, or a checkpoint of "
                             f"an older rlkit): {str(e).splitlines()[0]}; start the run over (--force)") from None
        self.optimizer.load_state_dict(state["optimizer"])

