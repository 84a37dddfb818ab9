"""rlkit's MLP actor and critic in numpy, for the CPU: the forward pass and PPO's gradient written out.

At rlkit's sizes (8 to 16 observations per action, a 256-row minibatch, 64-unit layers) a torch
CPU step is mostly per-call overhead: dispatch, autograd graph bookkeeping, and a CPU tanh that is
not vectorised. numpy on the same memory does the same arithmetic with a fraction of the overhead.
The parameters stay torch tensors (the flat buffers of rlkit.optim); the arrays here are views of
them, so the Adam step, checkpoints and the torch path all see one set of weights.

The PPO loss and its gradient are the autograd path's (PPO._autograd_step): tests/test_fused.py
checks both for every supported configuration. `algo.fused_update: false` goes back to autograd,
the place to start when changing the loss; CUDA and RND's conv predictor (image observations) always use it.
Notation: B rows, adv the (normalised) advantages, r = pi / pi_old.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from rlkit.policies import HALF_LOG_2PI


LEAKY_SLOPE = np.float32(0.01)  # nn.LeakyReLU's default negative slope (RND's networks)


def is_mlp(net: nn.Sequential) -> bool:
    """Only Linear layers and the activations MLPArrays knows (a Flatten of vector inputs is a no-op)."""
    return all(isinstance(m, (nn.Linear, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.Flatten)) for m in net) and \
        all(m.negative_slope == LEAKY_SLOPE for m in net if isinstance(m, nn.LeakyReLU))


class MLPArrays:
    """numpy views of an MLP's weights and gradients: nn.Linear layers with `activation` (tanh | relu |
    leaky_relu) between them."""

    def __init__(self, net: nn.Sequential, activation: str):
        layers = [m for m in net if isinstance(m, nn.Linear)]
        self.weights = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in layers]
        self.grads = [(m.weight.grad.numpy(), m.bias.grad.numpy()) for m in layers]
        self.activation = activation

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """[x, h_1, ..., h_k, out]: every layer's output, kept for the backward pass."""
        outs = [x]
        for i, (W, b) in enumerate(self.weights):
            z = outs[-1] @ W.T
            z += b
            if i < len(self.weights) - 1:
                self._activate(z)
            outs.append(z)
        return outs

    def backward(self, outs: list[np.ndarray], d_out: np.ndarray) -> None:
        """Write dL/dW, dL/db of every layer into the gradient buffers, given dL/d(out)."""
        dz, ones = d_out, np.ones(len(d_out), np.float32)
        for i in range(len(self.weights) - 1, -1, -1):
            (W, _), (dW, db), h_in = self.weights[i], self.grads[i], outs[i]
            np.matmul(dz.T, h_in, out=dW)
            np.matmul(ones, dz, out=db)  # the column sums, as a product: 3x faster than dz.sum(0)
            if i == 0:
                break
            dz = dz @ W  # dL/dh_in, then through the activation
            if self.activation == "tanh":  # tanh' = 1 - h^2
                slope = h_in * h_in
                dz *= np.subtract(1, slope, out=slope)
            elif self.activation == "relu":  # [h > 0]
                dz *= h_in > 0
            else:  # leaky: 1 where h > 0, the slope elsewhere (h has z's sign)
                dz *= np.where(h_in > 0, np.float32(1), LEAKY_SLOPE)

    def _activate(self, z: np.ndarray) -> None:
        if self.activation == "tanh":
            np.tanh(z, out=z)
        elif self.activation == "relu":
            np.maximum(z, 0, out=z)
        else:  # leaky: z - (1 - slope) * min(z, 0)
            z -= (1 - LEAKY_SLOPE) * np.minimum(z, 0)


class ActorCriticArrays:
    """The agent's actor and critic as numpy: sampling and values for the collector, and the PPO step."""

    def __init__(self, actor, critic, activation: str):
        self.actor, self.critic = MLPArrays(actor.net, activation), MLPArrays(critic.net, activation)
        self.continuous, self.heads = actor.has_continuous, critic.heads
        if self.continuous:
            self.log_std, self.log_std_grad = actor.log_std.detach().numpy(), actor.log_std.grad.numpy()

    def values(self, obs: np.ndarray) -> np.ndarray:
        out = self.critic.forward(obs)[-1]
        return out[:, 0] if self.heads == 1 else out

    def sample(self, obs: np.ndarray, uniform_or_normal: np.ndarray):
        """(actions, log pi(actions | obs)): inverse-CDF categorical draws from uniforms [B], or a Gaussian from
        standard normals [B, action_dim]; the random numbers come from the caller's torch generator."""
        out = self.actor.forward(obs)[-1]
        if self.continuous:
            actions = out + np.exp(self.log_std) * uniform_or_normal
            return actions, (-0.5 * uniform_or_normal ** 2 - self.log_std - HALF_LOG_2PI).sum(-1)
        logp_all, probs = log_softmax(out)
        cdf = probs.cumsum(-1)
        actions = np.minimum((cdf < uniform_or_normal[:, None]).sum(-1), out.shape[1] - 1)
        return actions, logp_all[np.arange(len(actions)), actions]

    def mode(self, obs: np.ndarray) -> np.ndarray:
        out = self.actor.forward(obs)[-1]
        return out if self.continuous else out.argmax(-1)

    def ppo_step(self, c, batch: dict, idx: np.ndarray) -> dict:
        """One minibatch: the PPO loss's gradient into the gradient buffers (overwritten, not accumulated);
        returns the step's statistics (the keys PPO.update logs, less the gradient norms)."""
        obs, adv, actions = batch["obs"][idx], batch["advantages"][idx], batch["actions"][idx]
        B = len(idx)
        if c.norm_adv and B > 1:
            adv = adv - mean(adv)
            adv /= np.sqrt(np.dot(adv, adv) / (B - 1)) + 1e-8  # the sample std, as torch's

        # actor forward: log pi(a|s) and the entropy
        a_outs = self.actor.forward(obs)
        out = a_outs[-1]
        if self.continuous:  # z = (a - mu) / sigma; log pi = sum_j -z_j^2/2 - log sigma_j - log(2 pi)/2
            inv_std = np.exp(-self.log_std)
            z = (actions - out) * inv_std
            logp = (-0.5 * z * z - self.log_std - HALF_LOG_2PI).sum(-1)
            entropy = (0.5 + HALF_LOG_2PI + self.log_std).sum()
        else:
            logp_all, probs = log_softmax(out)
            rows = np.arange(B)
            logp = logp_all[rows, actions]
            entropy_each = -(probs * logp_all).sum(-1)
            entropy = mean(entropy_each)

        # clipped surrogate L = mean(max(-adv r, -adv clip(r))): the gradient flows where the unclipped term
        # is the larger (where they tie, r is inside the clip range and both terms are -adv r)
        logratio = logp - batch["logprobs"][idx]
        ratio = np.exp(logratio)
        unclipped, clipped = -adv * ratio, -adv * np.clip(ratio, 1 - c.policy_clip, 1 + c.policy_clip)
        policy_loss = mean(np.maximum(unclipped, clipped))
        d_logp = (-adv / B) * ratio * (unclipped >= clipped)  # dL/dlog pi = dL/dr * r

        # actor backward; the entropy bonus -ent_coef * mean(H) joins it
        if self.continuous:  # dlog pi/dmu = z / sigma, dlog pi/dlog sigma = z^2 - 1, dH/dlog sigma = 1
            d_out = d_logp[:, None] * z * inv_std
            self.log_std_grad[:] = (d_logp[:, None] * (z * z - 1)).sum(0) - c.ent_coef
        else:  # dlog pi_a/dlogits = onehot(a) - p;  dH/dlogits = -p (log p + H)
            d_out = probs * -d_logp[:, None]
            if c.ent_coef:
                d_out += (c.ent_coef / B) * probs * (logp_all + entropy_each[:, None])
            d_out[rows, actions] += d_logp
        self.actor.backward(a_outs, d_out)

        # critic: 0.5 * mean((v - R)^2), or of the larger of it and the clipped error; summed over heads
        c_outs = self.critic.forward(obs)
        values, returns, old_values = c_outs[-1], batch["returns"][idx], batch["values"][idx]
        if self.heads == 1:
            returns, old_values = returns[:, None], old_values[:, None]
        err = values - returns
        if not c.clip_vloss:
            sq, d_values = err * err, err
        else:
            delta = values - old_values
            clipped_err = old_values + np.clip(delta, -c.policy_clip, c.policy_clip) - returns
            use_unclipped = err * err >= clipped_err * clipped_err
            sq = np.where(use_unclipped, err * err, clipped_err * clipped_err)
            d_values = np.where(use_unclipped, err, clipped_err * (np.abs(delta) <= c.policy_clip))
        value_loss = 0.5 * mean(sq) * sq.shape[1]  # the heads' mean squared errors, summed
        d_values *= c.vf_coef / B
        self.critic.backward(c_outs, d_values)

        return {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": entropy,
                "ppo/approx_kl": mean((ratio - 1) - logratio),
                "ppo/clipfrac": mean(np.abs(ratio - 1) > c.policy_clip)}


def log_softmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log p, p) of softmax(x) over the last axis, from one exp."""
    shifted = x - x.max(-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(-1, keepdims=True)
    return shifted - np.log(total), exp / total


def mean(x: np.ndarray) -> float:
    """The mean of all elements (ndarray.mean's Python layer costs ~10 us per call, more than the sum here)."""
    return np.add.reduce(x, None) / x.size
