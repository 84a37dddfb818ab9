"""PPO (Schulman et al., 2017): the loss, written once in torch (PPOLoss), and the agent that trains with it.

Actor and critic have their own learning rates: one Adam over flat parameter groups, one per network
(an exploration bonus's predictor can join as another group, rlkit.algos.rnd). On the CPU with plain MLPs the
collector's forward passes run in numpy (rlkit/nn/numpy_mlp.py), and so does the built-in loss's gradient
(rlkit/algos/ppo_numpy.py), each only while it is provably the computation written here: edit PPOLoss, or pass
another loss or network, and that part runs through torch and autograd (`update_path` says which, and why).
"""
from __future__ import annotations

import numpy as np
import torch

from rlkit.algos.actor_critic import ActorCriticAgent
from rlkit.algos.ppo_numpy import LOSS_SOURCE, PackedBatch, ppo_gradient
from rlkit.fast.fingerprint import class_functions, fingerprint
from rlkit.nn.networks import build_actor_critic
from rlkit.nn.numpy_mlp import NumpyActorCritic
from rlkit.nn.optim import FlatAdam
from rlkit.algos import stats
from rlkit.algos.stats import explained_variance, normalised_advantages  # noqa: F401 (also imported from here)
from rlkit.notices import warn
from rlkit.steps import minibatch_indices

# numpy's and torch's float32 gradients agree to ~1e-6 of their norm, and to ~1e-7 per weight (root mean square) where
# a small gradient is the difference of large per-row terms; an edited loss is off by far more than either
GRADIENT_RTOL, GRADIENT_ATOL = 1e-3, 1e-6
COLLECTOR_ATOL = 1e-4  # float32 log-probabilities of numpy's and torch's forward agree to ~1e-6
PROBE_LOGRATIO, PROBE_VALUE = 0.5, 0.3  # how far the first check moves the old log-probs and values apart


class PPOLoss:
    """The clipped-surrogate loss with the value and entropy terms: the one definition of PPO's loss.

    `loss(actor, critic, minibatch) -> (scalar loss, {name: 0-dim tensor})`, minibatch a dict of tensors:
    obs, actions, logprobs (at collection), advantages [B], returns and values (at collection) [B, heads].
    To change the loss, edit this class, subclass it (override __call__, policy_loss or value_loss) or write
    any callable with this signature and pass it as rlkit.train(..., loss=...): whatever you write is what
    trains. The CPU's written-out gradient (rlkit/algos/ppo_numpy.py) runs only for this class as shipped.
    """

    def __init__(self, algo):
        self.cfg = algo

    def __call__(self, actor, critic, mb: dict):
        c = self.cfg
        adv = mb["advantages"]
        if c.norm_adv and len(adv) > 1:
            adv = normalised_advantages(adv)
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


class PPO(ActorCriticAgent):
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
        # CPU and plain MLPs of the kit's own classes: numpy views of the same weights run the collector's forward
        # passes, and the built-in loss's gradient while it is the loss as shipped (checked as it runs, see update)
        forward_refused = "not on the CPU" if self.device.type != "cpu" else \
            NumpyActorCritic.unsupported(self.actor, self.critic)
        self.numpy = NumpyActorCritic(self.actor, self.critic) if forward_refused is None else None
        self.noise_buffers = {}  # rows -> a CPU tensor the numpy sampler's random numbers are drawn into
        refused = forward_refused or self.numpy_gradient_refused()
        self.numpy_gradient = refused is None
        self.update_path = "numpy gradient (rlkit/algos/ppo_numpy.py), checked against autograd" if refused is None \
            else f"autograd: {refused}"
        self.probed = False  # the first check, with the ratio moved away from 1 (see update)
        self.sync_gradients = None  # several ranks: averages the gradients over them (rlkit.runs.distributed)

    def add_param_group(self, params, lr: float) -> dict:
        """Train more parameters in the same Adam step (RND's predictor); lr annealing leaves them alone."""
        params = [p for p in params if p.requires_grad]
        self.params += params
        return self.optimizer.add_param_group(params, lr)

    def numpy_gradient_refused(self) -> str | None:
        """Why the written-out gradient may not train this run's loss (None: it may). Gates 1 and 2 of
        rlkit/algos/ppo_numpy.py; gate 3 runs in update."""
        if not self.cfg.numpy_gradient:
            return "algo.numpy_gradient is false"
        if type(self.loss) is not PPOLoss:
            return f"the loss is {type(self.loss).__name__}, not rlkit's PPOLoss (a loss of your own trains as written)"
        if set(vars(self.loss)) != {"cfg"} or self.loss.cfg is not self.cfg:
            return "the PPOLoss object carries attributes of its own"
        if loss_source() != LOSS_SOURCE:
            return "PPOLoss differs from the code rlkit/algos/ppo_numpy.py was derived from (it trains as written)"
        return None

    # ALGO LOGIC: action logic (one batched forward for every env, never one per env)
    def act(self, obs: np.ndarray, generator: torch.Generator):
        """(actions, log pi(actions | obs)) for a batch of observations; the values come later, batched (value)."""
        if self.numpy is not None:
            obs = np.asarray(obs, np.float32)
            return self.numpy.sample(obs, self._noise(len(obs), generator))
        return super().act(obs, generator)

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
        return super().value(obs)

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        if self.numpy is not None:
            return self.numpy.mode(np.asarray(obs, np.float32))
        return super().deterministic_action(obs)

    def set_lr_fraction(self, frac: float) -> None:
        """Linear annealing: frac = 1 at the start, -> 0 at total_steps."""
        for group, lr in zip(self.optimizer.param_groups, (self.cfg.actor_lr, self.cfg.critic_lr)):
            group["lr"] = frac * lr

    # Optimizing the policy and value network
    def update(self, batch: dict, n_updates: int, rng: np.random.Generator, extra_losses=()) -> dict:
        """n_updates minibatch steps on a rollout's batch (values and returns [N, heads]).

        extra_losses: more loss terms that join each minibatch's gradient and Adam step (RND's predictor,
        rlkit.algos.rnd.PredictorLoss): term(idx) -> (loss, {name: 0-dim tensor}) through autograd; where
        term.arrays is not None, term.numpy_gradient(idx) -> {name: value} writes its gradient itself.
        The written-out gradient is compared with autograd's on the run's first minibatch (moved away from
        ratio 1) and on the last minibatch of every phase; the first mismatch ends it for the run."""
        c, on_cpu = self.cfg, self.device.type == "cpu"
        use_numpy = self.numpy_gradient and all(term.arrays is not None for term in extra_losses)
        if use_numpy:  # the batch's fields side by side, once per phase: a minibatch is one gather
            packed = PackedBatch(batch)
        per_update = []  # a row of statistics per update, averaged once per phase (no .item() per update on a GPU)
        for k, idx in enumerate(minibatch_indices(batch["obs"].shape[0], c.mini_batch_size, n_updates, rng)):
            if k == 0 and self.numpy is not None and not self._collector_matches(batch, idx):
                use_numpy = False
            if use_numpy and not self.probed:
                self.probed = True
                moved = _moved_apart(batch)
                self._numpy_step(PackedBatch(moved).rows(idx), idx, extra_losses)
                use_numpy = self._check_numpy_gradient(moved, idx, extra_losses, "its first check")
            if use_numpy:
                step = self._numpy_step(packed.rows(idx), idx, extra_losses)
                # the phase's last minibatch: the policy has moved since the rollout, the ratio is away from 1
                if k == n_updates - 1 and not self._check_numpy_gradient(batch, idx, extra_losses,
                                                                         "a phase's last minibatch"):
                    use_numpy = False
                    step = self._autograd_step(batch, torch.as_tensor(idx), extra_losses)
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
        if on_cpu:  # whether this phase's gradients were numpy's (1) or autograd's (0)
            stats["ppo/numpy_gradient"] = float(use_numpy)
        return stats

    def _numpy_step(self, rows: dict, idx: np.ndarray, extra_losses) -> dict:
        """The written-out gradient of the loss and of the extra terms into the gradient buffers."""
        step = ppo_gradient(self.numpy, self.cfg, rows)
        for term in extra_losses:
            step.update(term.numpy_gradient(idx))
        return step

    def _autograd_step(self, batch: dict, idx: torch.Tensor, extra_losses) -> dict:
        """The loss through autograd, its gradient into the flat gradient buffers."""
        loss, stats = self.loss(self.actor, self.critic, {k: v[idx] for k, v in batch.items()})
        for term in extra_losses:
            extra, extra_stats = term(idx)
            loss, stats = loss + extra, {**stats, **extra_stats}
        self.optimizer.zero_grad()
        loss.backward()
        return {k: v.detach() if torch.is_tensor(v) else v for k, v in stats.items()}

    def _collector_matches(self, batch: dict, idx: np.ndarray) -> bool:
        """Before the phase's first step the policy is the one that collected the rollout, so the log-probabilities
        the numpy collector stored must be the actor's own as written. If not, numpy's forward is not the network's:
        switch both numpy paths off for the rest of the run, and say so in one line."""
        with torch.no_grad():
            rows = torch.as_tensor(idx)
            logprob, _ = self.actor.evaluate(batch["obs"][rows], batch["actions"][rows])
        error = float((logprob - batch["logprobs"][rows]).abs().max())
        if error <= COLLECTOR_ATOL:
            return True
        self.numpy, self.numpy_gradient = None, False
        self.update_path = f"autograd: the numpy collector's log-probabilities were off the actor's by {error:.2g}"
        warn(f"the PPO collector and update now run in torch: the log-probabilities numpy's forward stored are off "
             f"the actor's own by up to {error:.2g} (rlkit/nn/numpy_mlp.py); the network trains as written")
        return False

    def _check_numpy_gradient(self, batch: dict, idx: np.ndarray, extra_losses, where: str) -> bool:
        """Gate 3: the written-out gradient now in the buffers against autograd's on the same minibatch. Equal:
        numpy's goes back into the buffers, True. Different (the loss or a network was edited in a way gates 1
        and 2 did not see): autograd's stays, one line says so, and the rest of the run trains through
        autograd, which follows the code as written."""
        written = [g["grad"].clone() for g in self.optimizer.param_groups]
        self._autograd_step(batch, torch.as_tensor(idx), extra_losses)
        grads = [g["grad"] for g in self.optimizer.param_groups]
        # how far off, in units of what is allowed: <= 1 passes
        error = max(float((w - g).norm() / (GRADIENT_RTOL * g.norm() + GRADIENT_ATOL * g.numel() ** 0.5))
                    for w, g in zip(written, grads))
        if error <= 1:
            for g, w in zip(grads, written):
                g.copy_(w)
            return True
        self.numpy_gradient = False
        self.update_path = f"autograd: the numpy gradient differed from autograd's on {where} ({error:.3g}x the tolerance)"
        warn(f"the PPO update now runs through autograd, which follows the loss as written: the numpy gradient "
             f"(rlkit/algos/ppo_numpy.py) differed from autograd's on {where} ({error:.3g}x the tolerance)")
        return False


def loss_source() -> str:
    """The fingerprint of PPOLoss and of the kit's functions it calls, as they are bound now (gate 2 of
    rlkit/algos/ppo_numpy.py; the networks' classes are numpy_mlp.py's FORWARD_SOURCE)."""
    return fingerprint({**class_functions(PPOLoss), "stats.normalised_advantages": stats.normalised_advantages})


def _moved_apart(batch: dict) -> dict:
    """The batch with the old log-probabilities and values moved off the current policy's by offsets spread evenly
    over [-PROBE_LOGRATIO, PROBE_LOGRATIO] and [-PROBE_VALUE, PROBE_VALUE] (a fixed low-discrepancy sequence, no
    random draws: the run's streams are untouched). The ratios then cover a range around 1, inside and past any
    clip constant near the usual ones, so the clipped branches, the value clip and a KL term all have gradients
    that differ when the loss does."""
    rows = batch["obs"].shape[0]
    spread = 2 * torch.remainder(torch.arange(rows, dtype=torch.float64) * 0.6180339887498949, 1.0) - 1
    spread = spread.to(batch["logprobs"].device, torch.float32)
    return {**batch, "logprobs": batch["logprobs"] + PROBE_LOGRATIO * spread,
            "values": batch["values"] + PROBE_VALUE * spread.flip(0)[:, None]}
