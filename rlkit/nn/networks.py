"""Networks: actor and critic built from the gymnasium observation and action spaces and the config.

Two choices, each made in one function:
  - `encoder(obs_space, kind, algo)`: what turns an observation into a feature vector (flatten for
    vectors, a conv trunk for images scaled from bytes to [0, 1], one-hot for a Discrete index, each
    part of a Dict by its own kind, concatenated); new observation spaces get their encoder there.
  - `distribution(action_space, algo)`: what the actor's outputs parameterise (Categorical for
    Discrete, one categorical per dimension for MultiDiscrete, Bernoullis for MultiBinary, a diagonal
    Gaussian for Box); new action spaces get their distribution there.

The forward contract, for the built-in networks and for modules a user passes to `rlkit.train`:
  actor(obs)  -> [B, distribution.num_params] (the logits, or the Gaussian's mean in [-1, 1] units)
  critic(obs) -> [B, value_heads]             (value_heads is 1, or 2 with RND: extrinsic, intrinsic)
with obs a tensor [B, *input_shape(observation_space)] in the storage dtype of rlkit.envs.spaces (uint8
images stay uint8 until the encoder scales them; Dict, Discrete and MultiBinary observations come
packed into one flat array, PackLayout.unpack takes them apart). The Gaussian's log std is a
parameter of the distribution, not of the user's module.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.envs import spaces
from rlkit.config import ConfigError
from rlkit.fast.jit import compiled

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
NATURE_CONVS = [[32, 8, 4], [64, 4, 2], [64, 3, 1]]  # Mnih et al., 2015: frames of 36 pixels and more
SMALL_CONVS = [[32, 3, 1], [64, 3, 2], [64, 3, 1]]  # padded 3x3 convs: any grid from 1x1 up keeps a size >= 1


def init_layer(layer, gain: float):
    """Orthogonal weights, zero bias (Andrychowicz et al., 2021): sqrt(2) in hidden layers, small on outputs."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp_layers(in_dim: int, hidden: list, out_dim: int, activation: str, out_gain: float,
               out_layer=nn.Linear) -> list[nn.Module]:
    layers, last = [], in_dim
    for h in hidden:
        layers += [init_layer(nn.Linear(last, h), math.sqrt(2)), ACTIVATIONS[activation]()]
        last = h
    layers.append(init_layer(out_layer(last, out_dim), out_gain))
    return layers


def in_float32(fn, x: torch.Tensor):
    """fn(x) computed in float32 even under torch.autocast (algo.kwargs.precision: bf16-mixed), else fn(x) as ever.
    For the off-policy networks' output layers: a TD error is a small difference of two large outputs, and
    bfloat16's 8-bit mantissa rounds a Q-value near 300 to a multiple of 2 where the rewards are near 3. The
    output layers are the networks' smallest, so keeping them in float32 costs little."""
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return fn(x.float())
    return fn(x)


class Float32Linear(nn.Linear):
    """nn.Linear whose output keeps float32's precision under autocast (in_float32); the same weights and names."""

    def forward(self, x):
        return in_float32(super().forward, x)


# ---------------------------------------------------------------- observations -> features

def image_layout(obs_shape) -> str | None:
    """'chw', 'hwc' or 'hw' for image-shaped observations (channels: a dim of 1, 3 or 4 at one end), None for vectors."""
    if len(obs_shape) == 2:
        return "hw"
    if len(obs_shape) != 3:
        return None
    return "hwc" if obs_shape[-1] in (1, 3, 4) and obs_shape[0] not in (1, 3, 4) else "chw"


class ToChannelsFirst(nn.Module):
    """[B, H, W, C] or [B, H, W] -> [B, C, H, W], the layout nn.Conv2d reads."""

    def __init__(self, layout: str):
        super().__init__()
        self.layout = layout

    def forward(self, x):
        if self.layout == "hw":
            return x.unsqueeze(1)
        return x.permute(0, 3, 1, 2) if self.layout == "hwc" else x  # a view: channels-last in memory


class Contiguous(nn.Module):
    """The last convolution's output laid out [B, C, H, W] in memory, before its activation. From channels-last
    input (ToChannelsFirst's view of HWC images) the convolution returns channels-last output, which is the fast
    layout for the convolution itself; but Flatten's gradient comes back contiguous, and the activation's
    backward between the two layouts takes a slow strided path (a quarter of a MinAtar update, measured)."""

    def forward(self, x):
        return x.contiguous()


class ScaleBytes(nn.Module):
    """uint8 observations (pixels 0..255) -> [0, 1]; whatever dtype the memory stored them in."""

    def forward(self, x):
        return x.float() * (1.0 / 255.0)


def conv_trunk(obs_shape, convs=None, activation=nn.ReLU) -> tuple[nn.Sequential, int]:
    """(conv layers ending in Flatten, their output width) for an image observation of obs_shape.
    convs: [[channels, kernel, stride], ...]; None: the Nature CNN's from 36 pixels, padded 3x3 convs below."""
    layout = image_layout(obs_shape)
    if layout == "hw":
        c, h, w = 1, *obs_shape
    else:
        c, h, w = obs_shape if layout == "chw" else (obs_shape[2], obs_shape[0], obs_shape[1])
    small = convs is None and min(h, w) < 36
    layers = [ToChannelsFirst(layout)] if layout != "chw" else []
    convs = convs or (SMALL_CONVS if small else NATURE_CONVS)
    for i, (channels, kernel, stride) in enumerate(convs):
        conv = nn.Conv2d(c, channels, kernel, stride, padding=kernel // 2 if small else 0)
        layers += [init_layer(conv, math.sqrt(2)), *([Contiguous()] if i == len(convs) - 1 else []), activation()]
        c = channels
    layers.append(nn.Flatten())
    trunk = nn.Sequential(*layers)
    try:
        with torch.no_grad():
            width = trunk(torch.zeros(1, *obs_shape)).shape[1]
    except RuntimeError as e:
        raise ConfigError(f"'algo.cnn_layers' {convs} do not fit observations of shape {tuple(obs_shape)} ({e}); "
                          "use smaller kernels and strides, or remove algo.cnn_layers") from None
    return trunk, width


def network_kind(obs_space: gym.Space, network: str) -> str:
    """'mlp' or 'cnn' for algo.network (auto: cnn for image-shaped Box observations; a Dict's images get
    their CNN inside its encoder whatever this says, and an MLP head over the joined parts)."""
    if network != "auto":
        return "mlp" if isinstance(obs_space, spaces.PACKED) else network
    return "cnn" if isinstance(obs_space, gym.spaces.Box) and image_layout(obs_space.shape) else "mlp"


class ToFloat(nn.Module):
    """Booleans and integers (MinAtar's channels, MultiBinary bits) as float32, unscaled."""

    def forward(self, x):
        return x.float()


class OneHot(nn.Module):
    """A Discrete observation's index [B] or [B, 1] -> [B, n] one-hot: each value its own input."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        return nn.functional.one_hot(x.reshape(-1).long(), self.n).float()


class DictEncoder(nn.Module):
    """A packed Dict observation (rlkit.envs.spaces.PackLayout) -> each part encoded by its kind, concatenated."""

    def __init__(self, space: gym.spaces.Dict, network: str, algo):
        super().__init__()
        self.layout = spaces.PackLayout(space)
        self.parts = nn.ModuleDict()
        self.width = 0
        for key, sub in space.spaces.items():
            layers, width = encoder(sub, network_kind(sub, network), algo)
            self.parts[key] = nn.Sequential(*layers)
            self.width += width

    def forward(self, x):
        parts = self.layout.unpack(x)
        return torch.cat([self.parts[key](parts[key]) for key in self.parts], -1)


def input_shape(obs_space: gym.Space) -> tuple:
    """The shape of one observation as the networks receive it: packed for Dict / Discrete / MultiBinary."""
    if isinstance(obs_space, spaces.PACKED):
        return spaces.PackLayout(obs_space).box.shape
    return tuple(obs_space.shape)


def encoder(obs_space: gym.Space, kind: str, algo) -> tuple[list[nn.Module], int]:
    """(layers, feature width) that turn a batch of observations into features: the one place an
    observation space is interpreted (the spaces themselves are checked in rlkit.envs.spaces)."""
    if isinstance(obs_space, gym.spaces.Dict):
        dict_encoder = DictEncoder(obs_space, algo.network, algo)
        return [dict_encoder], dict_encoder.width
    if isinstance(obs_space, gym.spaces.Discrete):
        return [OneHot(int(obs_space.n))], int(obs_space.n)
    if isinstance(obs_space, gym.spaces.MultiBinary):
        return [ToFloat(), nn.Flatten()], int(np.prod(obs_space.shape))
    if not isinstance(obs_space, gym.spaces.Box):
        spaces.check_observation_space(obs_space)  # raises, naming a wrapper that makes it work
    shape = tuple(obs_space.shape)
    scale = [ScaleBytes()] if obs_space.dtype == np.uint8 else [ToFloat()] if obs_space.dtype == np.bool_ else []
    if kind == "cnn":
        if image_layout(shape) is None:
            raise ConfigError(f"'algo.network' is cnn but observations of shape {shape} are not images "
                              "(2 or 3 dims); set algo.network: mlp or auto")
        trunk, width = conv_trunk(shape, algo.cnn_layers)
        dense = [init_layer(nn.Linear(width, algo.cnn_features), math.sqrt(2)), nn.ReLU()]
        return [*scale, trunk, *dense], algo.cnn_features
    flatten = [nn.Flatten()] if len(shape) > 1 else []
    return [*scale, *flatten], int(np.prod(shape))


def build_network(obs_space: gym.Space, out_dim: int, algo, out_gain: float, out_layer=nn.Linear) -> nn.Sequential:
    """encoder -> hidden layers (algo.hidden_sizes; none after the CNN's dense layer) -> out_dim outputs (an
    out_layer: Float32Linear for the off-policy networks)."""
    kind = network_kind(obs_space, algo.network)
    layers, width = encoder(obs_space, kind, algo)
    hidden = algo.hidden_sizes if kind == "mlp" else []
    return nn.Sequential(*layers, *mlp_layers(width, hidden, out_dim, algo.activation, out_gain, out_layer))


# ---------------------------------------------------------------- features -> actions

class Categorical(nn.Module):
    """Discrete actions from logits. Log-probabilities and entropies are the closed forms, written out:
    torch.distributions builds an object (and normalises the logits) on every call, which dominates here."""

    def __init__(self, n: int):
        super().__init__()
        self.num_params = n

    def sample(self, logits, generator):
        logp_all = logits.log_softmax(-1)
        actions = torch.multinomial(logp_all.exp(), 1, generator=generator)
        return actions.squeeze(-1), logp_all.gather(-1, actions).squeeze(-1)

    def log_prob_entropy(self, logits, actions):
        logp_all = logits.log_softmax(-1)
        logp = logp_all.gather(-1, actions.long().view(-1, 1)).squeeze(-1)
        return logp, -(logp_all.exp() * logp_all).sum(-1)

    def mode(self, logits):
        return logits.argmax(-1)

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.num_params, n)


class DiagGaussian(nn.Module):
    """Continuous actions: N(mean, exp(log_std)^2) per dim in [-1, 1] units (ActionScaler maps them to the Box);
    the log std is a learned parameter of its own, not an output."""

    def __init__(self, dim: int, log_std_init: float = 0.0):
        super().__init__()
        self.num_params = dim
        self.log_std = nn.Parameter(torch.full((dim,), float(log_std_init)))

    def sample(self, mean, generator):
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        actions = mean + self.log_std.exp() * noise
        return actions, self.log_prob(mean, actions)

    def log_prob(self, mean, actions):
        # log N(a; mu, sigma) = -(a - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2, summed over action dims
        z = (actions - mean) * (-self.log_std).exp()
        return (-0.5 * z.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)

    def log_prob_entropy(self, mean, actions):
        entropy = (0.5 + HALF_LOG_2PI + self.log_std).sum().expand(mean.shape[0])
        return self.log_prob(mean, actions), entropy

    def mode(self, mean):
        return mean

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(-1, 1, (n, self.num_params)).astype(np.float32)


class MultiCategorical(nn.Module):
    """MultiDiscrete actions: one independent categorical per dimension (a factored distribution), its logits
    side by side in the actor's output; log-probabilities and entropies are the sums over the dimensions."""

    def __init__(self, nvec):
        super().__init__()
        self.sizes = [int(n) for n in nvec]
        self.num_params = sum(self.sizes)

    def _logp(self, logits):
        return [part.log_softmax(-1) for part in logits.split(self.sizes, -1)]

    def sample(self, logits, generator):
        actions, logp = [], 0.0
        for logp_all in self._logp(logits):
            a = torch.multinomial(logp_all.exp(), 1, generator=generator)
            actions.append(a)
            logp = logp + logp_all.gather(-1, a).squeeze(-1)
        return torch.cat(actions, -1), logp

    def log_prob_entropy(self, logits, actions):
        actions = actions.long().view(len(logits), len(self.sizes))
        logp, entropy = 0.0, 0.0
        for k, logp_all in enumerate(self._logp(logits)):
            logp = logp + logp_all.gather(-1, actions[:, k:k + 1]).squeeze(-1)
            entropy = entropy - (logp_all.exp() * logp_all).sum(-1)
        return logp, entropy

    def mode(self, logits):
        return torch.stack([part.argmax(-1) for part in logits.split(self.sizes, -1)], -1)

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.sizes, (n, len(self.sizes)))


class Bernoulli(nn.Module):
    """MultiBinary actions: an independent Bernoulli per bit, the actor's outputs their logits."""

    def __init__(self, n: int):
        super().__init__()
        self.num_params = n

    def sample(self, logits, generator):
        u = torch.rand(logits.shape, generator=generator, device=logits.device)
        actions = (u < torch.sigmoid(logits)).to(torch.int64)
        return actions, self.log_prob_entropy(logits, actions)[0]

    def log_prob_entropy(self, logits, actions):
        a = actions.float().view_as(logits)
        # log p(a) = a log sigmoid(l) + (1 - a) log sigmoid(-l), summed over the bits
        log_p1, log_p0 = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
        logp = (a * log_p1 + (1 - a) * log_p0).sum(-1)
        entropy = -(log_p1.exp() * log_p1 + log_p0.exp() * log_p0).sum(-1)
        return logp, entropy

    def mode(self, logits):
        return (logits > 0).to(torch.int64)

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, 2, (n, self.num_params))


class ActionScaler:
    """Map the policy's [-1, 1] actions to the env's Box: low + (a + 1) / 2 * (high - low).

    For symmetric bounds this is a * action_scaling. Samples are clipped to [-1, 1] for the env
    only; the memory keeps the raw sample for its log-prob.
    """

    def __init__(self, low, high):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.half_range = 0.5 * (self.high - self.low)  # x * 0.5 is exact: the same bits as ((a + 1) * 0.5) * range

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, np.float32)
        return _to_box(actions.reshape(-1, self.low.size), self.low, self.half_range).reshape(actions.shape)


@compiled
def _to_box(actions, low, half_range):
    """low + (clip(a, -1, 1) + 1) * half_range, row by row, in float32; once per env step, so one compiled call
    rather than five numpy ones."""
    out = np.empty_like(actions)
    for b in range(actions.shape[0]):
        for j in range(actions.shape[1]):
            a = min(max(actions[b, j], np.float32(-1.0)), np.float32(1.0))
            out[b, j] = (a + np.float32(1.0)) * half_range[j] + low[j]
    return out


def _unchanged(actions):
    return actions


def distribution(action_space: gym.Space, algo):
    """(the actor's distribution, the map from its samples to env actions): the one place an action space is read."""
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            return Categorical(int(action_space.n)), _Offset(int(action_space.start))
        return Categorical(int(action_space.n)), _unchanged
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        to_env = _Offset(action_space.start) if np.any(action_space.start != 0) else _unchanged
        return MultiCategorical(action_space.nvec), to_env
    if isinstance(action_space, gym.spaces.MultiBinary) and len(action_space.shape) == 1:
        return Bernoulli(int(action_space.n)), _unchanged
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return DiagGaussian(action_space.shape[0], algo.log_std_init), ActionScaler(action_space.low, action_space.high)
    spaces.check_action_space(action_space)  # raises for every other space, naming a wrapper
    raise ConfigError(f"'env.id': action space {spaces.one_line(action_space)} has no distribution; "
                      "use Discrete, a 1-D Box, MultiDiscrete or a 1-D MultiBinary")


class _Offset:
    """Discrete / MultiDiscrete spaces that count from `start`: the policy's indices from 0, shifted for the env."""

    def __init__(self, start):
        self.start = np.asarray(start, np.int64)

    def __call__(self, actions):
        return actions + self.start


# ---------------------------------------------------------------- actor and critic

class Actor(nn.Module):
    """net(obs) -> the distribution's parameters; sampling, log-probabilities and the greedy action from them."""

    def __init__(self, net: nn.Module, dist: nn.Module):
        super().__init__()
        self.net, self.dist = net, dist

    def sample(self, obs, generator):
        """(actions, log pi(actions | obs)) for a batch of observations."""
        return self.dist.sample(self.net(obs), generator)

    def evaluate(self, obs, actions):
        """(log pi(actions | obs), entropy of pi(. | obs)), each [B]."""
        return self.dist.log_prob_entropy(self.net(obs), actions)

    def mode(self, obs):
        return self.dist.mode(self.net(obs))


class Critic(nn.Module):
    """State values [B, heads]: one per reward stream (RND adds an intrinsic one)."""

    def __init__(self, net: nn.Module, heads: int = 1):
        super().__init__()
        self.net, self.heads = net, heads

    def forward(self, obs):
        return self.net(obs)


def build_actor(obs_space, action_space, algo, net: nn.Module | None = None) -> tuple[Actor, object]:
    """(Actor, map to env actions): the on-policy agents' actor (around the user's net when given), and what
    rlkit.load rebuilds to load their policy.pt into."""
    dist, to_env = distribution(action_space, algo)
    net = net if net is not None else build_network(obs_space, dist.num_params, algo, out_gain=0.01)
    return Actor(net, dist), to_env


def build_actor_critic(obs_space, action_space, algo, device, value_heads: int = 1, actor=None, critic=None):
    """(Actor, Critic, map to env actions) on device: built from the spaces and algo.network, or around the
    user's modules (actor=, critic=: nn.Modules that follow the forward contract above)."""
    actor, to_env = build_actor(obs_space, action_space, algo, actor)  # first: the same initial weights as ever
    critic_net = critic if critic is not None else build_network(obs_space, value_heads, algo, out_gain=1.0)
    actor, critic = actor.to(device), Critic(critic_net, value_heads).to(device)
    _check_contract(actor, critic, obs_space, device)
    return actor, critic, to_env


def _check_contract(actor: Actor, critic: Critic, obs_space, device) -> None:
    """One forward on a zero observation: a user's module that breaks the forward contract fails here, named."""
    with torch.no_grad():
        obs = torch.zeros(2, *input_shape(obs_space), device=device)
        for name, out, want in (("actor", actor.net(obs), actor.dist.num_params), ("critic", critic(obs), critic.heads)):
            if tuple(out.shape) != (2, want):
                raise ConfigError(f"the {name} network returns shape {tuple(out.shape)} for 2 observations; it must "
                                  f"return [B, {want}] (see rlkit.nn.networks for the forward contract)")
