"""Plain MLP actor-critics in numpy, for the CPU: the collector's forward passes without torch's overhead.

At rlkit's sizes (8 to 16 observations per action, a 256-row minibatch, 64-unit layers) a torch
CPU step is mostly per-call overhead: dispatch, autograd graph bookkeeping, and a CPU tanh that is
not vectorised. numpy on the same memory does the same arithmetic with a fraction of the overhead.
The parameters stay torch tensors (the flat buffers of rlkit.nn.optim); the arrays here are views of
them, so the Adam step, checkpoints and the torch path all see one set of weights.

This is a second implementation of the networks' forward, so it runs only where it is provably the same
computation (`supports`): modules of exactly the kit's types (a subclass may override forward, so
isinstance is not enough), layers numpy knows (Linear with or without bias, one activation kind), no
hooks or parametrisations, and the source of the kit's Actor, Critic and distributions unchanged since
this file was written against them (FORWARD_SOURCE, rlkit/fast/fingerprint.py). Anything else runs in
torch. PPO's written-out gradient (rlkit/algos/ppo_numpy.py) builds on the same arrays.
The per-row arithmetic between the matrix products runs in compiled loops (rlkit/fast/jit.py).
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn
from torch.nn.utils import parametrize

from rlkit.fast.fingerprint import class_functions, fingerprint
from rlkit.fast.jit import compiled
from rlkit.nn.networks import HALF_LOG_2PI, Actor, Categorical, Critic, DiagGaussian

LEAKY_SLOPE = np.float32(0.01)  # nn.LeakyReLU's default negative slope (RND's networks)
ACTIVATION_NAMES = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu"}
ACTIVATION_CODES = {"tanh": 0, "relu": 1, "leaky_relu": 2}  # for the compiled derivative
# the fingerprint of the classes whose forward this file reimplements, as they were when it was written; if
# tests/unit/nn/test_numpy_mlp.py says it changed, this file's forward must be checked against them anew
FORWARD_SOURCE = "82346d3375a8b5330ad9d5a684d4b15a79c528e234efd909fdcad9f328afd175"


def forward_source() -> str:
    """The fingerprint of Actor, Critic, Categorical and DiagGaussian as they are bound now."""
    return fingerprint({**class_functions(Actor), **class_functions(Critic), **class_functions(Categorical),
                        **class_functions(DiagGaussian)})


def plain_module(m: nn.Module) -> bool:
    """No forward hooks, no parametrisation (weight norm, ...), no method replaced on the instance, and every
    parameter trained: what numpy reads off the module is all that its forward does."""
    hooks = (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, getattr(m, "_backward_pre_hooks", {}))
    return (not any(hooks) and not parametrize.is_parametrized(m) and "forward" not in vars(m)
            and all(p.requires_grad for p in m.parameters(recurse=False)))


def mlp_activation(net: nn.Module) -> str | None:
    """The activation's name if net is a plain MLP numpy can run: exactly an nn.Sequential of (an optional
    Flatten of vector inputs, then) Linear, activation, ..., Linear, one activation kind throughout, every
    module plain (see plain_module); None otherwise."""
    if type(net) is not nn.Sequential or not plain_module(net):
        return None
    layers = list(net)
    if layers and type(layers[0]) is nn.Flatten and (layers[0].start_dim, layers[0].end_dim) == (1, -1):
        layers = layers[1:]
    if not layers or len(layers) % 2 == 0 or not all(plain_module(m) for m in layers):
        return None
    linears, activations = layers[0::2], layers[1::2]
    kinds = {type(m) for m in activations}
    if not all(type(m) is nn.Linear for m in linears) or len(kinds) > 1 or not kinds <= set(ACTIVATION_NAMES):
        return None
    if any(type(m) is nn.LeakyReLU and m.negative_slope != LEAKY_SLOPE for m in activations):
        return None
    return ACTIVATION_NAMES[kinds.pop()] if kinds else "tanh"  # no hidden layer: no activation is applied


class MLPArrays:
    """numpy views of a plain MLP's weights and gradients (see mlp_activation). The gradient views exist once the
    parameters joined a FlatAdam (rlkit.nn.optim.pack gives every parameter a .grad buffer). A Linear without
    bias has None in place of its bias and of its bias gradient."""

    def __init__(self, net: nn.Sequential):
        self.activation = mlp_activation(net)
        if self.activation is None:
            raise TypeError(f"not a plain MLP: {net}")
        layers = [m for m in net if isinstance(m, nn.Linear)]
        self.weights = [(m.weight.detach().numpy(), None if m.bias is None else m.bias.detach().numpy())
                        for m in layers]
        self.grads = [(m.weight.grad.numpy() if m.weight.grad is not None else None,
                       m.bias.grad.numpy() if m.bias is not None and m.bias.grad is not None else None)
                      for m in layers]
        self.code = ACTIVATION_CODES[self.activation]
        self._ones = {}  # rows -> a vector of ones: the output layer's bias gradient is ones @ dL/d(out)
        self._scratch = {}  # rows -> column sums nobody needs (the layer below has no bias)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """[x, h_1, ..., h_k, out]: every layer's output, kept for the backward pass."""
        outs = [x]
        for i, (W, b) in enumerate(self.weights):
            z = np.dot(outs[-1], W.T)  # np.dot: the same product as @, with less of numpy's dispatch around it
            if b is not None:
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
            if b is not None:
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
        if self.grads[last][1] is not None:
            np.dot(ones, d_out, out=self.grads[last][1])  # the column sums, as a product: 3x faster than .sum(0)
        dz = d_out
        for i in range(last, -1, -1):
            (W, _), (dW, _), h_in = self.weights[i], self.grads[i], outs[i]
            np.dot(dz.T, h_in, out=dW)
            if i == 0:
                break
            dz = np.dot(dz, W)  # dL/dh_in, then through the activation, which also sums the layer below's bias gradient
            sums = self.grads[i - 1][1]
            if sums is None:
                sums = self._scratch.get(dz.shape[1])
                if sums is None:
                    sums = self._scratch[dz.shape[1]] = np.empty(dz.shape[1], np.float32)
            _through_activation(dz, h_in, self.code, LEAKY_SLOPE, sums)

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
        self.continuous = type(actor.dist) is DiagGaussian
        if self.continuous:
            self.log_std, self.log_std_grad = actor.dist.log_std.detach().numpy(), actor.dist.log_std.grad.numpy()

    @staticmethod
    def unsupported(actor, critic) -> str | None:
        """Why numpy cannot stand in for these modules' forward (None: it can). The CPU is the caller's test."""
        if type(actor) is not Actor or type(critic) is not Critic:
            return "the actor or critic is not rlkit's own Actor / Critic class"
        if type(actor.dist) not in (Categorical, DiagGaussian):
            return f"numpy has no {type(actor.dist).__name__} distribution"
        if not all(plain_module(m) for m in (actor, critic, actor.dist)):
            return "a module carries hooks, a parametrisation, an instance-level method or frozen parameters"
        for name, net in (("actor", actor.net), ("critic", critic.net)):
            if mlp_activation(net) is None:
                return (f"the {name} network is not exactly nn.Sequential(Linear, activation, ..., Linear) with one "
                        "of tanh, relu, leaky relu")
        if forward_source() != FORWARD_SOURCE:
            return "rlkit's Actor, Critic or distribution classes differ from the code numpy_mlp.py was written for"
        return None

    @staticmethod
    def supports(actor, critic) -> bool:
        return NumpyActorCritic.unsupported(actor, critic) is None

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


def mean(x: np.ndarray) -> float:
    """The mean of all elements (ndarray.mean's Python layer costs ~10 us per call, more than the sum here)."""
    return np.add.reduce(x, None) / x.size


# ---------------------------------------------------------------- compiled per-row arithmetic

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
