"""Plain MLP actor-critics in numpy, for the CPU: the collector's forward passes and PPO's gradient written out.

At rlkit's sizes (8 to 16 observations per action, a 256-row minibatch, 64-unit layers) a torch
CPU step is mostly per-call overhead: dispatch, autograd graph bookkeeping, and a CPU tanh that is
not vectorised. numpy on the same memory does the same arithmetic with a fraction of the overhead.
The parameters stay torch tensors (the flat buffers of rlkit.optim); the arrays here are views of
them, so the Adam step, checkpoints and the torch path all see one set of weights.

Two parts, used independently:
  - NumpyActorCritic: sampling, values and greedy actions for the collector. They do not depend on
    the loss, so they apply whenever actor and critic are plain MLPs (`supports`) on the CPU.
  - ppo_gradient: the built-in PPO loss's gradient (rlkit.ppo.PPOLoss), derived by hand. It is a
    copy of that loss, so PPO uses it only for the built-in loss, and checks it against autograd on
    the first minibatch of every run (rlkit.ppo.PPO.update); any other loss goes through autograd.
Notation: B rows, adv the (normalised) advantages, r = pi / pi_old.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from rlkit.networks import HALF_LOG_2PI, Categorical, DiagGaussian

LEAKY_SLOPE = np.float32(0.01)  # nn.LeakyReLU's default negative slope (RND's networks)
ACTIVATION_NAMES = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu"}


def mlp_activation(net: nn.Module) -> str | None:
    """The activation's name if net is a plain MLP numpy can run: an nn.Sequential of (an optional Flatten of
    vector inputs, then) Linear, activation, ..., Linear, one activation kind throughout; None otherwise."""
    if not isinstance(net, nn.Sequential):
        return None
    layers = list(net)
    if layers and isinstance(layers[0], nn.Flatten):
        layers = layers[1:]
    if not layers or len(layers) % 2 == 0:
        return None
    linears, activations = layers[0::2], layers[1::2]
    kinds = {type(m) for m in activations}
    if not all(type(m) is nn.Linear for m in linears) or len(kinds) > 1 or not kinds <= set(ACTIVATION_NAMES):
        return None
    if any(isinstance(m, nn.LeakyReLU) and m.negative_slope != LEAKY_SLOPE for m in activations):
        return None
    return ACTIVATION_NAMES[kinds.pop()] if kinds else "tanh"  # no hidden layer: no activation is applied


class MLPArrays:
    """numpy views of a plain MLP's weights and gradients (see mlp_activation). The gradient views exist once the
    parameters joined a FlatAdam (rlkit.optim.pack gives every parameter a .grad buffer)."""

    def __init__(self, net: nn.Sequential):
        self.activation = mlp_activation(net)
        if self.activation is None:
            raise TypeError(f"not a plain MLP: {net}")
        layers = [m for m in net if isinstance(m, nn.Linear)]
        self.weights = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in layers]
        self.grads = [(m.weight.grad.numpy(), m.bias.grad.numpy()) for m in layers]

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


class NumpyActorCritic:
    """The agent's actor and critic as numpy: sampling, values and greedy actions for the collector."""

    def __init__(self, actor, critic):
        self.actor, self.critic = MLPArrays(actor.net), MLPArrays(critic.net)
        self.continuous = isinstance(actor.dist, DiagGaussian)
        if self.continuous:
            self.log_std, self.log_std_grad = actor.dist.log_std.detach().numpy(), actor.dist.log_std.grad.numpy()

    @staticmethod
    def supports(actor, critic) -> bool:
        """Plain MLPs with a distribution written out here (the CPU is the caller's test)."""
        return mlp_activation(actor.net) is not None and mlp_activation(critic.net) is not None and \
            type(actor.dist) in (Categorical, DiagGaussian)

    def values(self, obs: np.ndarray) -> np.ndarray:
        """[B, heads]"""
        return self.critic.forward(obs)[-1]

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


def ppo_gradient(ac: NumpyActorCritic, c, batch: dict, idx: np.ndarray) -> dict:
    """One minibatch: the built-in PPO loss's gradient into the gradient buffers (overwritten, not accumulated);
    returns the loss's statistics. batch: numpy arrays, values and returns [N, heads]."""
    obs, adv, actions = batch["obs"][idx], batch["advantages"][idx], batch["actions"][idx]
    B = len(idx)
    if c.norm_adv and B > 1:
        adv = adv - mean(adv)
        adv /= np.sqrt(np.dot(adv, adv) / (B - 1)) + 1e-8  # the sample std, as torch's

    # actor forward: log pi(a|s) and the entropy
    a_outs = ac.actor.forward(obs)
    out = a_outs[-1]
    if ac.continuous:  # z = (a - mu) / sigma; log pi = sum_j -z_j^2/2 - log sigma_j - log(2 pi)/2
        inv_std = np.exp(-ac.log_std)
        z = (actions - out) * inv_std
        logp = (-0.5 * z * z - ac.log_std - HALF_LOG_2PI).sum(-1)
        entropy = (0.5 + HALF_LOG_2PI + ac.log_std).sum()
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
    if ac.continuous:  # dlog pi/dmu = z / sigma, dlog pi/dlog sigma = z^2 - 1, dH/dlog sigma = 1
        d_out = d_logp[:, None] * z * inv_std
        ac.log_std_grad[:] = (d_logp[:, None] * (z * z - 1)).sum(0) - c.ent_coef
    else:  # dlog pi_a/dlogits = onehot(a) - p;  dH/dlogits = -p (log p + H)
        d_out = probs * -d_logp[:, None]
        if c.ent_coef:
            d_out += (c.ent_coef / B) * probs * (logp_all + entropy_each[:, None])
        d_out[rows, actions] += d_logp
    ac.actor.backward(a_outs, d_out)

    # critic: 0.5 * mean((v - R)^2), or of the larger of it and the clipped error; summed over heads
    c_outs = ac.critic.forward(obs)
    values, returns, old_values = c_outs[-1], batch["returns"][idx], batch["values"][idx]
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
    ac.critic.backward(c_outs, d_values)

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
