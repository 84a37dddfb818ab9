"""DQN (Mnih et al., 2015) on the off-policy learner (rlkit.algos.offpolicy): a Q-network, a target network,
epsilon-greedy exploration on a schedule in policy steps, the Huber loss; double Q (van Hasselt et al., 2016)
and n-step returns as options.

The defaults are Stable-Baselines3's DQN (Adam lr 1e-4, batch 32, gamma 0.99, a hard target copy every
10,000 policy steps, training every 4 policy steps, gradient norm 10, 64-64 ReLU), with the epsilon decay
given in policy steps rather than as a fraction of the run. The Q-network is algo.network's (an MLP, or the
CNN for images: MinAtar, Atari).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.algos.base import algorithm_keys
from rlkit.algos.offpolicy import OffPolicyKeys, OffPolicyLearner, adam, load_modules, polyak
from rlkit.config import ConfigError
from rlkit.nn.networks import Float32Linear, build_network, distribution
from rlkit.steps import crossed


@dataclass
class DQNKeys(OffPolicyKeys):
    """algo.kwargs of a DQN run."""
    learning_rate: float = 1e-4  # Adam's, for the Q-network
    target_update_interval: int = 10_000  # policy steps between target updates
    tau: float = 1.0  # target <- tau Q + (1 - tau) target at each update (1: a copy)
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 100_000  # policy steps over which epsilon falls linearly from start to end
    double_q: bool = False  # the online network picks the next action, the target network values it
    n_step: int = 1  # rewards summed over n steps before the bootstrap

    def __post_init__(self):
        super().__post_init__()
        for key, ok, rule in (
                ("learning_rate", self.learning_rate > 0, "> 0"),
                ("target_update_interval", self.target_update_interval >= 1, ">= 1"),
                ("tau", 0 < self.tau <= 1, "in (0, 1]"),
                ("epsilon_start", 0 <= self.epsilon_start <= 1, "in [0, 1]"),
                ("epsilon_end", 0 <= self.epsilon_end <= 1, "in [0, 1]"),
                ("epsilon_decay_steps", self.epsilon_decay_steps >= 0, ">= 0"),
                ("n_step", self.n_step >= 1, ">= 1")):
            if not ok:
                raise ConfigError(f"'algo.kwargs.{key}' must be {rule}, got {getattr(self, key)}")


def td_loss(q_net: nn.Module, target_net: nn.Module, batch: dict, double_q: bool):
    """The Huber loss between Q(s, a) and r + discount * Q_target(s', a'): DQN's one loss. discount is gamma^k,
    k the steps summed (n_step, fewer where the episode ended inside them), 0 where it terminated; a' is the
    target's argmax, or the online network's with double_q."""
    q = q_net(batch["obs"]).gather(1, batch["actions"].long().view(-1, 1)).squeeze(1)
    with torch.no_grad():
        next_q = target_net(batch["next_obs"])
        if double_q:
            next_value = next_q.gather(1, q_net(batch["next_obs"]).argmax(1, keepdim=True)).squeeze(1)
        else:
            next_value = next_q.max(1).values
        target = batch["rewards"] + batch["discounts"] * next_value
    loss = nn.functional.smooth_l1_loss(q, target)
    return loss, {"loss/q": loss.detach(), "dqn/q": q.detach().mean()}


class QNetwork(nn.Sequential):
    """build_network's layers, obs -> [B, n] action values, that also act: mode is the greedy action and sample
    epsilon-greedy at `epsilon` (the schedule's final epsilon_end), what the run's evaluations play with
    eval.deterministic true and false. A Sequential of the same layers, so its weights keep the plain
    network's names (checkpoints from before it load)."""

    def __init__(self, net: nn.Sequential, n_actions: int, epsilon: float):
        super().__init__(*net)
        self.n_actions, self.epsilon = n_actions, epsilon

    def mode(self, obs):
        return self(obs).argmax(-1)

    def sample(self, obs, generator=None):
        """(epsilon-greedy actions, None): no log-probability, which nothing that acts needs."""
        actions = self.mode(obs)
        device = generator.device if generator is not None else actions.device
        random = torch.rand(len(actions), generator=generator, device=device) < self.epsilon
        draws = torch.randint(0, self.n_actions, (len(actions),), generator=generator, device=device)
        return torch.where(random.to(actions.device), draws.to(actions.device), actions), None


class DQN(OffPolicyLearner):
    Keys = DQNKeys
    defaults = {"gamma": 0.99, "mini_batch_size": 32, "max_grad_norm": 10.0, "hidden_sizes": [64, 64],
                "activation": "relu", "buffer_size": 1_000_000}
    train_iterations = 4  # SB3's train_freq 4 (one env: every 4 policy steps)
    action_dtype = np.int64

    @classmethod
    def check_spaces(cls, cfg, env_info) -> None:
        space = env_info.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(f"'algo.name' dqn needs a Discrete action space; {cfg.env.id} has {space}: use sac for "
                              "continuous actions, or ppo")

    @classmethod
    def acting_network(cls, cfg, env_info):
        """(the Q-network, the map of its indices to the Discrete space's, from its start): what build() trains
        and rlkit.load rebuilds."""
        space, epsilon = env_info.action_space, algorithm_keys(cfg).epsilon_end
        q_net = QNetwork(build_network(env_info.obs_space, int(space.n), cfg.algo, out_gain=1.0, out_layer=Float32Linear),
                         int(space.n), epsilon)
        return q_net, distribution(space, cfg.algo)[1]  # the one place an action space's offset is read

    def build(self, env_info) -> None:
        k = self.keys
        self.n_actions = int(env_info.action_space.n)
        q_net, self.offset = self.acting_network(self.cfg, env_info)
        self.q_net = q_net.to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = adam(self.q_net.parameters(), k.learning_rate)
        self.n_step = k.n_step

    def epsilon(self, policy_step: int) -> float:
        k = self.keys
        frac = min(1.0, policy_step / k.epsilon_decay_steps) if k.epsilon_decay_steps else 1.0
        return k.epsilon_start + frac * (k.epsilon_end - k.epsilon_start)

    def acting_module(self) -> nn.Module:
        return self.q_net

    def random_actions(self, n: int) -> np.ndarray:
        return self.act_rng.integers(0, self.n_actions, n)

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray, q_net: nn.Module | None = None) -> np.ndarray:
        return (self.q_net if q_net is None else q_net)(torch.as_tensor(obs, device=self.device)).argmax(1).cpu().numpy()

    def explore(self, obs: np.ndarray, counter) -> np.ndarray:
        """Epsilon-greedy, epsilon at this policy step."""
        n = len(obs)
        random = self.act_rng.random(n) < self.epsilon(counter.policy_step)
        # no forward pass when every env acts randomly (most steps early on, with one env)
        actions = self.greedy(obs, self.behaviour) if not random.all() else np.empty(n, np.int64)
        actions[random] = self.act_rng.integers(0, self.n_actions, int(random.sum()))
        return actions

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return self.offset(actions)

    @torch.inference_mode()
    def evaluate_actions(self, obs: np.ndarray, generator=None) -> np.ndarray:
        """Greedy; with a generator, epsilon-greedy at the schedule's final epsilon (QNetwork.sample)."""
        obs = torch.as_tensor(obs, device=self.device)
        actions = self.q_net.mode(obs) if generator is None else self.q_net.sample(obs, generator)[0]
        return actions.cpu().numpy()

    def before_phase(self, counter) -> None:
        """The target network at the policy steps SB3 and CleanRL update it: every target_update_interval (the
        weights do not change between phases, so an update due since the last phase is taken now)."""
        if crossed(counter.policy_step - self.schedule.train_every, counter.policy_step, self.keys.target_update_interval):
            polyak(self.target_net, self.q_net, self.keys.tau)

    def one_gradient_step(self, batch: dict) -> dict:
        loss, stats = td_loss(self.q_net, self.target_net, batch, self.keys.double_q)
        stats["dqn/grad_norm"] = self.optimize("q", loss, self.optimizer, self.cfg.algo.max_grad_norm)
        return stats

    def modules(self) -> list:
        return [self.q_net]

    def targets(self) -> list:
        return [(self.target_net, self.q_net)]

    def optimizers(self) -> dict:
        return {"q": self.optimizer}

    def phase_metrics(self, counter) -> dict:
        return {"dqn/epsilon": self.epsilon(counter.policy_step)}

    def agent_state(self) -> dict:
        return {"q_net": self.q_net.state_dict(), "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_agent_state(self, state: dict) -> None:
        load_modules({"q_net": self.q_net, "target_net": self.target_net}, state)
        self.optimizer.load_state_dict(state["optimizer"])
