"""PPO's loss gradient written out in numpy for the CPU: a second copy of PPOLoss, run only while provably equal.

At rlkit's sizes a torch gradient step is mostly per-call overhead (about 840 us against 220 us here for
the CartPole zoo settings, benchmarks/throughput.py case 7). But it is a copy of rlkit.algos.ppo.PPOLoss,
and a copy is a trap for whoever edits the loss. So it runs only behind three gates
(rlkit.algos.ppo.PPO.numpy_gradient_refused and PPO.update):
  1. the loss is exactly PPOLoss (not a subclass, no attribute of its own), the networks pass
     NumpyActorCritic's gate (rlkit/nn/numpy_mlp.py), and an RND predictor's loss its own;
  2. the source of PPOLoss and of everything it calls is the source this file was derived from
     (LOSS_SOURCE; rlkit/fast/fingerprint.py): editing the file, replacing a method on the class or in a
     notebook switches the copy off before the first step;
  3. autograd checks it while it runs: on the run's first minibatch with the old log-probabilities and
     values moved apart (so the ratio is away from 1, clipping and the value clip are active, and a KL
     term has a gradient), and again on the last minibatch of every training phase, where the policy has
     moved. A mismatch trains that step and the rest of the run through autograd and says so in one line.
Notation: B rows, adv the (normalised) advantages, r = pi / pi_old.
"""
from __future__ import annotations

import math

import numpy as np

from rlkit.fast.jit import compiled
from rlkit.nn.networks import HALF_LOG_2PI
from rlkit.nn.numpy_mlp import NumpyActorCritic, _log_sum_exp

# the fingerprint of PPOLoss as it was when ppo_gradient was derived from it (gate 2); if
# tests/unit/algos/test_fast_path.py says it changed, ppo_gradient must be derived anew before it may run
LOSS_SOURCE = "bac160b33b77e4c5ed964fb9d3dc6fe9dadad7b54ea20c1c39dfdeba6c868260"


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
