"""SAC (Haarnoja et al., 2018) on the off-policy learner (rlkit.algos.offpolicy): twin Q-networks with
Polyak-averaged targets, a squashed (tanh) Gaussian actor, and the entropy temperature alpha tuned toward a
target entropy.

The defaults are Stable-Baselines3's SAC (Adam lr 3e-4 for the actor, the critics and alpha, batch 256,
gamma 0.99, tau 0.005, one gradient step per policy step, alpha tuned from 1.0 toward -dim(A), 256-256 ReLU).
Actions are kept in the actor's [-1, 1] units and mapped to the env's Box (rlkit.nn.networks.ActionScaler).
Observations go through algo.network's encoder (an MLP's flatten, or the CNN for images).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.algos.offpolicy import OffPolicyKeys, OffPolicyLearner, adam, load_modules, polyak
from rlkit.config import ConfigError
from rlkit.nn.networks import ACTIVATIONS, ActionScaler, Float32Linear, build_network, encoder, in_float32, \
    network_kind

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # the actor's log std, squashed into this range (CleanRL's)
LOG_2 = math.log(2.0)


@dataclass
class SACKeys(OffPolicyKeys):
    """algo.kwargs of a SAC run (the actor's and critics' learning rates are algo.actor_lr and algo.critic_lr)."""
    tau: float = 0.005  # target <- tau Q + (1 - tau) target after every gradient step
    alpha_lr: float = 3e-4  # Adam's, for log alpha
    alpha: float = 1.0  # the temperature's initial value (its fixed value with tune_alpha false)
    tune_alpha: bool = True  # tune alpha toward target_entropy
    target_entropy: float | None = None  # None: -dim(A)

    def __post_init__(self):
        super().__post_init__()
        for key, ok, rule in (("tau", 0 < self.tau <= 1, "in (0, 1]"), ("alpha_lr", self.alpha_lr > 0, "> 0"),
                              ("alpha", self.alpha > 0, "> 0")):
            if not ok:
                raise ConfigError(f"'algo.kwargs.{key}' must be {rule}, got {getattr(self, key)}")


class SquashedGaussianActor(nn.Module):
    """obs -> (mean, log std) of a Gaussian whose samples are squashed by tanh into [-1, 1]."""

    def __init__(self, obs_space, action_dim: int, algo):
        super().__init__()
        self.net = build_network(obs_space, 2 * action_dim, algo, out_gain=0.01, out_layer=Float32Linear)

    def forward(self, obs):
        mean, log_std = self.net(obs).chunk(2, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs, generator=None, noise=None, with_logp: bool = True):
        """(tanh(u), log pi(tanh(u) | obs)) with u = mean + std * noise reparameterised (its gradient flows); noise
        is a standard normal draw from generator, or the one given (a gradient step's, drawn outside it).
        with_logp False: (tanh(u), None), the same action without the log-probability acting has no use for."""
        mean, log_std = self(obs)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        u = mean + log_std.exp() * noise
        if not with_logp:
            return torch.tanh(u), None
        # log N(u) - sum log(1 - tanh(u)^2), the correction in its stable form 2 (log 2 - u - softplus(-2u))
        logp = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (LOG_2 - u - nn.functional.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), logp

    def mode(self, obs):
        return torch.tanh(self(obs)[0])


class EnsembleLinear(nn.Module):
    """n independent linear layers applied to n batches at once: x [n, B, in] -> [n, B, out] in one batched
    matmul (the twin critics' layers: half the calls of two separate networks)."""

    def __init__(self, n: int, in_dim: int, out_dim: int, gain: float, float32_output: bool = False):
        super().__init__()
        self.float32_output = float32_output  # the Q head's: float32 under autocast too (rlkit.nn.networks.in_float32)
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, out_dim))
        for w in self.weight.data:  # orthogonal, as rlkit.nn.networks.init_layer
            nn.init.orthogonal_(w, gain)
        # a batched matmul with a vector side (the Q head's one output) runs several times slower on the CPU than
        # one plain matmul per network (measured in docs/algorithms.md, "Throughput"): those layers loop
        self.batched = min(in_dim, out_dim) >= 8

    def forward(self, x):
        return in_float32(self.matmul, x) if self.float32_output else self.matmul(x)

    def matmul(self, x):
        if self.batched:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.stack([torch.addmm(b, xi, w) for b, xi, w in zip(self.bias, x, self.weight)])


class TwinQ(nn.Module):
    """Two Q(s, a) networks: each its own encoder of the observation (none for vectors), then two MLPs over
    [features, action] evaluated together (EnsembleLinear)."""

    def __init__(self, obs_space, action_dim: int, algo):
        super().__init__()
        kind = network_kind(obs_space, algo.network)
        self.encoders = nn.ModuleList()
        for _ in range(2):
            layers, width = encoder(obs_space, kind, algo)
            self.encoders.append(nn.Sequential(*layers))
        sizes, layers = [width + action_dim, *algo.hidden_sizes], []
        for i, o in zip(sizes, sizes[1:]):
            layers += [EnsembleLinear(2, i, o, math.sqrt(2)), ACTIVATIONS[algo.activation]()]
        self.head = nn.Sequential(*layers, EnsembleLinear(2, sizes[-1], 1, 1.0, float32_output=True))
        self.shared_input = all(len(e) == 0 for e in self.encoders)  # vectors: one [obs, action] for both

    def forward(self, obs, actions):
        """[2, B]: Q_1 and Q_2."""
        if self.shared_input:
            x = torch.cat([obs.flatten(1), actions], -1).expand(2, -1, -1).contiguous()
        else:
            x = torch.stack([torch.cat([e(obs), actions], -1) for e in self.encoders])
        return self.head(x).squeeze(-1)


def critic_loss(sac: "SAC", batch: dict, alpha, next_noise):
    """0.5 sum over the twins of (Q_i(s, a) - y)^2, y = r + discount (min_i Q_target_i(s', a') - alpha log pi(a'|s')),
    a' ~ pi(s') drawn with next_noise: SAC's one critic loss (discount gamma, 0 where the episode terminated)."""
    with torch.no_grad():
        next_actions, next_logp = sac.actor.sample(batch["next_obs"], noise=next_noise)
        next_q = sac.target(batch["next_obs"], next_actions).min(0).values - alpha * next_logp
        target = batch["rewards"] + batch["discounts"] * next_q
    q = sac.critic(batch["obs"], batch["actions"])  # [2, B]
    loss = 0.5 * (q - target).pow(2).mean(1).sum()
    return loss, {"loss/critic": loss.detach(), "sac/q": q[0].detach().mean()}


def actor_loss(sac: "SAC", obs, actions, logp, alpha):
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(s) reparameterised: SAC's one actor loss."""
    loss = (alpha * logp - sac.critic(obs, actions).min(0).values).mean()
    return loss, {"loss/actor": loss.detach()}


def alpha_loss(log_alpha, logp, target_entropy: float):
    """-log alpha (log pi + target entropy): raises alpha when the policy's entropy is below the target."""
    loss = -(log_alpha * (logp.detach() + target_entropy)).mean()
    return loss, {"loss/alpha": loss.detach()}


class SAC(OffPolicyLearner):
    Keys = SACKeys
    defaults = {"gamma": 0.99, "mini_batch_size": 256, "actor_lr": 3e-4, "critic_lr": 3e-4,
                "hidden_sizes": [256, 256], "activation": "relu", "buffer_size": 1_000_000}

    @classmethod
    def check_spaces(cls, cfg, env_info) -> None:
        space = env_info.action_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ConfigError(f"'algo.name' sac needs a 1-D Box action space; {cfg.env.id} has {space}: use dqn for "
                              "discrete actions, or ppo")

    @classmethod
    def acting_network(cls, cfg, env_info):
        """(the actor, the map of its [-1, 1] actions to the env's Box): what build() trains and rlkit.load
        rebuilds. Greedy: tanh(mean); sampled: tanh of a Gaussian draw, as in the run's evaluations."""
        space = env_info.action_space
        return SquashedGaussianActor(env_info.obs_space, space.shape[0], cfg.algo), ActionScaler(space.low, space.high)

    def build(self, env_info) -> None:
        a, k = self.cfg.algo, self.keys
        self.action_dim = env_info.action_space.shape[0]
        actor, self.scaler = self.acting_network(self.cfg, env_info)  # first: the same initial weights as ever
        self.actor = actor.to(self.device)
        self.critic = TwinQ(env_info.obs_space, self.action_dim, a).to(self.device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_params, self.target_params = list(self.critic.parameters()), list(self.target.parameters())
        self.log_alpha = torch.tensor(math.log(k.alpha), device=self.device, requires_grad=k.tune_alpha)
        self.target_entropy = -float(self.action_dim) if k.target_entropy is None else k.target_entropy
        self.actor_params = list(self.actor.parameters())
        self.actor_opt = adam(self.actor_params, a.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), a.critic_lr)
        self.alpha_opt = adam([self.log_alpha], k.alpha_lr) if k.tune_alpha else None

    def acting_module(self) -> nn.Module:
        return self.actor

    def random_actions(self, n: int) -> np.ndarray:
        return self.act_rng.uniform(-1, 1, (n, self.action_dim)).astype(np.float32)

    @torch.inference_mode()
    def explore(self, obs: np.ndarray, counter) -> np.ndarray:
        obs = torch.as_tensor(obs, device=self.device)
        return self.behaviour.sample(obs, self.act_generator, with_logp=False)[0].cpu().numpy()

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return self.scaler(actions)

    @torch.inference_mode()
    def evaluate_actions(self, obs: np.ndarray, generator=None) -> np.ndarray:
        obs = torch.as_tensor(obs, device=self.device)
        actions = self.actor.mode(obs) if generator is None else self.actor.sample(obs, generator, with_logp=False)[0]
        return actions.cpu().numpy()

    def random_draws(self, batch: dict) -> tuple:
        """The actor's standard normal noise for the batch's observations and for its next observations."""
        shape = (len(batch["obs"]), self.action_dim)
        return tuple(torch.randn(shape, generator=self.generator, device=self.device) for _ in range(2))

    def one_gradient_step(self, batch: dict, noise, next_noise) -> dict:
        """SB3's order: the temperature, the critics (with the new temperature), the actor (on the new critics),
        then the targets. Each optimizer steps on the gradient of its own parameters only (`optimize`): the
        actor's loss goes through the critics, whose weight gradients would be computed for nothing."""
        actions, logp = self.actor.sample(batch["obs"], noise=noise)
        stats = {}
        if self.alpha_opt is not None:
            loss, stats = alpha_loss(self.log_alpha, logp, self.target_entropy)
            self.optimize("alpha", loss, self.alpha_opt)
        alpha = self.log_alpha.detach().exp()
        loss, critic_stats = critic_loss(self, batch, alpha, next_noise)
        self.optimize("critic", loss, self.critic_opt)
        loss, actor_stats = actor_loss(self, batch["obs"], actions, logp, alpha)
        self.optimize("actor", loss, self.actor_opt)
        polyak(self.target_params, self.critic_params, self.keys.tau)
        return {**stats, **critic_stats, **actor_stats, "sac/alpha": alpha, "sac/entropy": -logp.detach().mean()}

    def modules(self) -> list:
        return [self.actor, self.critic]

    def targets(self) -> list:
        return [(self.target, self.critic)]

    def optimizers(self) -> dict:
        optimizers = {"actor": self.actor_opt, "critic": self.critic_opt}
        return {**optimizers, "alpha": self.alpha_opt} if self.alpha_opt is not None else optimizers

    def replicate(self, world_size: int) -> None:
        super().replicate(world_size)
        if self.alpha_opt is not None:
            import torch.distributed as dist
            with torch.no_grad():
                dist.broadcast(self.log_alpha, src=0)

    def agent_state(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "target": self.target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict() if self.alpha_opt is not None else None}

    def load_agent_state(self, state: dict) -> None:
        load_modules({"actor": self.actor, "critic": self.critic, "target": self.target}, state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        if self.alpha_opt is not None:
            self.alpha_opt.load_state_dict(state["alpha_opt"])
