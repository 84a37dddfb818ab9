"""Plain MLP actor-critics in numpy, for the CPU: the collector's forward passes and PPO's gradient written out.

At rlkit's sizes (8 to 16 observations per action, a 256-row minibatch, 64-unit layers) a torch
CPU step is mostly per-call overhead: dispatch, autograd graph bookkeeping, and a CPU tanh that is
not vectorised. numpy on the same memory does the same arithmetic with a fraction of the overhead.
The parameters stay torch tensors (the flat buffers of rlkit.nn.optim); the arrays here are views of
them, so the Adam step, checkpoints and the torch path all see one set of weights.

Two parts, used independently:
  - NumpyActorCritic: sampling, values and greedy actions for the collector. They do not depend on
    the loss, so they apply whenever actor and critic are plain MLPs (`supports`) on the CPU.
  - ppo_gradient: the built-in PPO loss's gradient (rlkit.algos.ppo.PPOLoss), derived by hand. It is a
    copy of that loss, so PPO uses it only for the built-in loss, and checks it against autograd on
    the first minibatch of every run (rlkit.algos.ppo.PPO.update); any other loss goes through autograd.
The matrix products and activations run in numpy (BLAS and numpy's vectorised tanh); the per-row
arithmetic between them (the distributions, the loss terms and their derivatives) runs in compiled
loops (rlkit/fast/jit.py), one call each where numpy would take a dozen small ones.
Notation: B rows, adv the (normalised) advantages, r = pi / pi_old.
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from rlkit.fast.jit import compiled
from rlkit.nn.networks import HALF_LOG_2PI, Categorical, DiagGaussian

LEAKY_SLOPE = np.float32(0.01)  # nn.LeakyReLU's default negative slope (RND's networks)
ACTIVATION_NAMES = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu"}
ACTIVATION_CODES = {"tanh": 0, "relu": 1, "leaky_relu": 2}  # for the compiled derivative


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
    parameters joined a FlatAdam (rlkit.nn.optim.pack gives every parameter a .grad buffer)."""

    def __init__(self, net: nn.Sequential):
        self.activation = mlp_activation(net)
        if self.activation is None:
            raise TypeError(f"not a plain MLP: {net}")
        layers = [m for m in net if isinstance(m, nn.Linear)]
        self.weights = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in layers]
        self.grads = [(m.weight.grad.numpy(), m.bias.grad.numpy()) for m in layers]
        self.code = ACTIVATION_CODES[self.activation]
        self._ones = {}  # rows -> a vector of ones: the output layer's bias gradient is ones @ dL/d(out)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """[x, h_1, ..., h_k, out]: every layer's output, kept for the backward pass."""
        outs = [x]
        for i, (W, b) in enumerate(self.weights):
            z = np.dot(outs[-1], W.T)  # np.dot: the same product as @, with less of numpy's dispatch around it
            _add_bias(z, b)
            if i < len(self.weights) - 1:
                self._activate(z)
            outs.append(z)
        return outs

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The output alone (the collector's passes): forward without keeping the layers' outputs."""
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(self.weights):
            x = np.dot(x, W.T)
            _add_bias(x, b)
            if i < last:
                self._activate(x)
        return x

    def backward(self, outs: list[np.ndarray], d_out: np.ndarray) -> None:
        """Write dL/dW, dL/db of every layer into the gradient buffers, given dL/d(out)."""
        ones = self._ones.get(len(d_out))
        if ones is None:
            ones = self._ones[len(d_out)] = np.ones(len(d_out), np.float32)
        last = len(self.weights) - 1
        np.dot(ones, d_out, out=self.grads[last][1])  # the column sums, as a product: 3x faster than .sum(0)
        dz = d_out
        for i in range(last, -1, -1):
            (W, _), (dW, _), h_in = self.weights[i], self.grads[i], outs[i]
            np.dot(dz.T, h_in, out=dW)
            if i == 0:
                break
            dz = np.dot(dz, W)  # dL/dh_in, then through the activation, which also sums the layer below's bias gradient
            _through_activation(dz, h_in, self.code, LEAKY_SLOPE, self.grads[i - 1][1])

    def _activate(self, z: np.ndarray) -> None:  # numpy: its tanh is vectorised, a compiled loop's is not
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
        return self.critic.predict(obs)

    def sample(self, obs: np.ndarray, uniform_or_normal: np.ndarray):
        """(actions, log pi(actions | obs)): inverse-CDF categorical draws from uniforms [B], or a Gaussian from
        standard normals [B, action_dim]; the random numbers come from the caller's torch generator."""
        out = self.actor.predict(obs)
        if self.continuous:
            return _gaussian_sample(out, self.log_std, uniform_or_normal)
        return _categorical_sample(out, uniform_or_normal)

    def mode(self, obs: np.ndarray) -> np.ndarray:
        out = self.actor.predict(obs)
        return out if self.continuous else out.argmax(-1)


class PackedBatch:
    """A rollout's batch (PPO's fields, tensors on the CPU) as column blocks of one float32 array [N, D], made once
    per training phase: a minibatch is then one gather, and its fields are views of the gathered rows."""

    FIELDS = ("obs", "actions", "logprobs", "advantages", "returns", "values")

    def __init__(self, batch: dict):
        columns, self.blocks, start = [], {}, 0
        for name in self.FIELDS:
            array = batch[name].numpy()
            flat = array.reshape(len(array), -1)
            columns.append(flat)
            # a 1-D field (log-probabilities, advantages) is one column, the others a block of columns
            self.blocks[name] = start if array.ndim == 1 else slice(start, start + flat.shape[1])
            start += flat.shape[1]
        self.data = np.concatenate(columns, 1, dtype=np.float32)  # discrete actions: small integers, exact

    def rows(self, idx: np.ndarray) -> dict:
        gathered = self.data[idx]
        return {name: gathered[:, block] for name, block in self.blocks.items()}


def ppo_gradient(ac: NumpyActorCritic, c, mb: dict) -> dict:
    """One minibatch (PackedBatch.rows): the built-in PPO loss's gradient into the gradient buffers (overwritten,
    not accumulated); returns the loss's statistics. Values and returns [B, heads]."""
    obs, adv = mb["obs"], mb["advantages"]
    adv = _normalised(adv) if c.norm_adv and len(adv) > 1 else adv

    # the policy: actor forward, the clipped surrogate and the entropy bonus, actor backward
    a_outs = ac.actor.forward(obs)
    out = a_outs[-1]
    d_out = np.empty_like(out)
    if ac.continuous:
        policy = _gaussian_policy_gradient(out, mb["actions"], ac.log_std, mb["logprobs"], adv, c.policy_clip,
                                           c.ent_coef, d_out, ac.log_std_grad)
    else:
        policy = _categorical_policy_gradient(out, mb["actions"], mb["logprobs"], adv, c.policy_clip,
                                              c.ent_coef, d_out)
    ac.actor.backward(a_outs, d_out)

    # the critic: 0.5 * mean((v - R)^2), or of the larger of it and the clipped error; summed over heads
    c_outs = ac.critic.forward(obs)
    d_values = np.empty_like(c_outs[-1])
    value_loss = _value_gradient(c_outs[-1], mb["returns"], mb["values"], c.policy_clip, c.clip_vloss, c.vf_coef,
                                 d_values)
    ac.critic.backward(c_outs, d_values)

    policy_loss, entropy, approx_kl, clipfrac = policy
    return {"loss/policy": policy_loss, "loss/value": value_loss, "loss/entropy": entropy,
            "ppo/approx_kl": approx_kl, "ppo/clipfrac": clipfrac}


def mean(x: np.ndarray) -> float:
    """The mean of all elements (ndarray.mean's Python layer costs ~10 us per call, more than the sum here)."""
    return np.add.reduce(x, None) / x.size


# ---------------------------------------------------------------- compiled per-row arithmetic

@compiled
def _normalised(adv):
    """(adv - mean) / (sample std + 1e-8), the std with Bessel's correction, as torch's .std()."""
    mean = 0.0
    for x in adv:
        mean += x
    mean /= adv.size
    ss = 0.0
    for x in adv:
        ss += (x - mean) * (x - mean)
    scale = 1.0 / (math.sqrt(ss / (adv.size - 1)) + 1e-8)
    out = np.empty_like(adv)
    for i in range(adv.size):
        out[i] = (adv[i] - mean) * scale
    return out


@compiled
def _surrogate(logp, old_logp, adv, clip, B):
    """One row of the clipped surrogate L = mean(max(-adv r, -adv clip(r))), r = exp(logp - old_logp):
    (its term, dL/dlog pi, the approx-KL term (r - 1) - log r, whether r lies outside the clip range).
    The gradient flows where the unclipped term is the larger (where they tie, r is inside the range and
    both terms are -adv r); dL/dlog pi = dL/dr * r."""
    logratio = logp - old_logp
    ratio = math.exp(logratio)
    unclipped = -adv * ratio
    clipped = -adv * min(max(ratio, 1.0 - clip), 1.0 + clip)
    d_logp = (-adv / B) * ratio if unclipped >= clipped else 0.0
    return max(unclipped, clipped), d_logp, (ratio - 1.0) - logratio, 1.0 if abs(ratio - 1.0) > clip else 0.0


@compiled
def _gaussian_policy_gradient(mu, actions, log_std, old_logp, adv, clip, ent_coef, d_mu, d_log_std):
    """Diagonal Gaussian: z = (a - mu) / sigma, log pi = sum_j -z_j^2/2 - log sigma_j - log(2 pi)/2;
    dlog pi/dmu = z / sigma, dlog pi/dlog sigma = z^2 - 1, and the entropy bonus -ent_coef * H adds
    -ent_coef to dL/dlog sigma (dH/dlog sigma = 1). Writes d_mu [B, A] and d_log_std [A];
    returns (policy loss, entropy, approx KL, clip fraction)."""
    B, A = mu.shape
    inv_std = np.exp(-log_std.astype(np.float64))
    d_log_std[:] = 0.0
    loss = kl = clipped = 0.0
    for b in range(B):
        logp = 0.0
        for j in range(A):
            z = (actions[b, j] - mu[b, j]) * inv_std[j]
            logp += -0.5 * z * z - log_std[j] - HALF_LOG_2PI
        term, d_logp, kl_b, out = _surrogate(logp, old_logp[b], adv[b], clip, B)
        loss += term
        kl += kl_b
        clipped += out
        for j in range(A):
            z = (actions[b, j] - mu[b, j]) * inv_std[j]
            d_mu[b, j] = d_logp * z * inv_std[j]
            d_log_std[j] += d_logp * (z * z - 1.0)
    entropy = 0.0
    for j in range(A):
        d_log_std[j] -= ent_coef
        entropy += 0.5 + HALF_LOG_2PI + log_std[j]
    return loss / B, entropy, kl / B, clipped / B


@compiled
def _categorical_policy_gradient(logits, actions, old_logp, adv, clip, ent_coef, d_logits):
    """Categorical: dlog pi_a/dlogits = onehot(a) - p; the entropy bonus adds ent_coef/B * p (log p + H)
    (dH/dlogits = -p (log p + H)). Writes d_logits [B, K]; returns (policy loss, mean entropy, approx KL,
    clip fraction)."""
    B, K = logits.shape
    logp_all = np.empty(K)
    loss = kl = clipped = entropy = 0.0
    for b in range(B):
        log_z = _log_sum_exp(logits[b])
        h = 0.0
        for k in range(K):
            logp_all[k] = logits[b, k] - log_z
            h -= math.exp(logp_all[k]) * logp_all[k]
        entropy += h
        a = int(actions[b])  # stored as float32 beside the other fields (PackedBatch)
        term, d_logp, kl_b, out = _surrogate(logp_all[a], old_logp[b], adv[b], clip, B)
        loss += term
        kl += kl_b
        clipped += out
        for k in range(K):
            p = math.exp(logp_all[k])
            d_logits[b, k] = -d_logp * p + (ent_coef / B) * p * (logp_all[k] + h)
        d_logits[b, a] += d_logp
    return loss / B, entropy / B, kl / B, clipped / B


@compiled
def _value_gradient(values, returns, old_values, clip, clip_vloss, vf_coef, d_values):
    """0.5 x the mean over rows of (v - R)^2, or of the larger of it and the clipped error
    (old + clip(v - old, -clip, clip) - R)^2, summed over the heads; writes vf_coef x its gradient into
    d_values [B, heads] and returns the loss."""
    B, H = values.shape
    total = 0.0
    for b in range(B):
        for h in range(H):
            err = values[b, h] - returns[b, h]
            sq, d = err * err, err
            if clip_vloss:
                delta = values[b, h] - old_values[b, h]
                clipped_err = old_values[b, h] + min(max(delta, -clip), clip) - returns[b, h]
                if clipped_err * clipped_err > sq:
                    sq = clipped_err * clipped_err
                    d = clipped_err if abs(delta) <= clip else 0.0
            total += sq
            d_values[b, h] = d * vf_coef / B
    return 0.5 * total / B


@compiled
def _log_sum_exp(x):
    m = x.max()
    total = 0.0
    for v in x:
        total += math.exp(v - m)
    return m + math.log(total)


@compiled
def _gaussian_sample(mu, log_std, noise):
    """a = mu + sigma * noise; log pi(a) = sum_j -noise_j^2/2 - log sigma_j - log(2 pi)/2 (z is the noise)."""
    B, A = mu.shape
    actions = np.empty_like(mu)
    logp = np.empty(B, np.float32)
    for b in range(B):
        total = 0.0
        for j in range(A):
            actions[b, j] = mu[b, j] + np.exp(log_std[j]) * noise[b, j]
            total += -0.5 * noise[b, j] * noise[b, j] - log_std[j] - HALF_LOG_2PI
        logp[b] = total
    return actions, logp


@compiled
def _categorical_sample(logits, uniforms):
    """Inverse-CDF draws: the first action whose cumulative probability reaches u (the last if rounding keeps
    the sum under u); with its log-probability."""
    B, K = logits.shape
    actions = np.empty(B, np.int64)
    logp = np.empty(B, np.float32)
    for b in range(B):
        log_z = _log_sum_exp(logits[b])
        cdf, a = 0.0, K - 1
        for k in range(K):
            cdf += math.exp(logits[b, k] - log_z)
            if cdf >= uniforms[b]:
                a = k
                break
        actions[b] = a
        logp[b] = logits[b, a] - log_z
    return actions, logp


@compiled
def _add_bias(z, b):
    """z += b on every row: a quarter of the time of numpy's broadcasting add at these sizes."""
    for r in range(z.shape[0]):
        for i in range(z.shape[1]):
            z[r, i] += b[i]


@compiled
def _through_activation(dz, h, kind, leaky_slope, column_sums):
    """dz *= the activation's derivative, from its output h: tanh' = 1 - h^2 (kind 0), relu' = [h > 0] (1),
    leaky relu' = 1 where h > 0, the slope elsewhere (2; h has z's sign). Writes the column sums of the
    result (the bias gradient of the layer that made h) into column_sums."""
    column_sums[:] = 0
    for b in range(dz.shape[0]):
        for i in range(dz.shape[1]):
            if kind == 0:
                dz[b, i] *= np.float32(1) - h[b, i] * h[b, i]
            elif h[b, i] <= 0:
                dz[b, i] *= 0 if kind == 1 else leaky_slope
            column_sums[i] += dz[b, i]
