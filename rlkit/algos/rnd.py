"""Random Network Distillation (Burda et al., 2018, "Exploration by Random Network Distillation").

A target network f, randomly initialised and never trained, maps an observation to k features;
a predictor f^ is trained to match it on the states the agent visits. Its error on the next
observation is the intrinsic reward,

    i_t = ||f^(s_{t+1}) - f(s_{t+1})||^2 / k,

high on states unlike those seen so far, falling as they become familiar. What the paper found
it needs (§2.3-2.4), all here:
  - observations whitened by their own running mean/std, clipped to [-5, 5], the statistics
    warmed up with random actions before training (the trainer's learning_starts);
  - i_t divided by a running std of the discounted intrinsic return, so its scale stays
    comparable across tasks and over time;
  - a non-episodic intrinsic return (a game over does not end novelty-seeking) with its own
    value head and discount: two GAE passes, A = ext_coef * A_E + int_coef * A_I.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rlkit.data.rollout import compute_gae
from rlkit.nn.networks import conv_trunk, image_layout, init_layer
from rlkit.data.normalize import ObsNormalizer, ReturnFilter
from rlkit.fast.fingerprint import class_functions, fingerprint
from rlkit.nn.numpy_mlp import MLPArrays, mean, mlp_activation
from rlkit.algos.stats import explained_variance


def rnd_network(obs_shape, hidden, out_dim: int, predictor: bool) -> nn.Sequential:
    """Target, or predictor (= the target's layers + two more hidden layers, as in the paper: it must
    be able to fit the target on the visited states). Leaky ReLU and orthogonal init sqrt(2) as there.
    Images get the networks module's conv trunk (the paper's 32x8/4, 64x4/2, 64x3/1 from 36 pixels,
    padded 3x3 convs below); vectors an MLP."""
    if image_layout(obs_shape) is None:
        layers, width, sizes = [nn.Flatten()], int(np.prod(obs_shape)), list(hidden)
    else:
        trunk, width = conv_trunk(obs_shape, activation=nn.LeakyReLU)
        layers, sizes = [trunk], []  # the paper's target goes straight from the convs to the output layer
    if predictor:
        sizes += [out_dim, out_dim]
    for size in sizes:
        layers += [init_layer(nn.Linear(width, size), math.sqrt(2)), nn.LeakyReLU()]
        width = size
    layers.append(init_layer(nn.Linear(width, out_dim), math.sqrt(2)))
    return nn.Sequential(*layers)


class RND:
    """Target and predictor, the observation normaliser and the intrinsic return filter. The predictor trains in
    the agent's Adam step (Agent.add_param_group, lr `rnd_lr`) on `predictor_loss`, as in the paper's implementation.
    RNDHook wires it into the training loop."""

    def __init__(self, obs_shape, algo, num_envs: int, device):
        self.device, self.update_proportion = device, algo.update_proportion
        self.target = rnd_network(obs_shape, algo.rnd_hidden_sizes, algo.rnd_output_dim, predictor=False).to(device)
        self.target.requires_grad_(False)  # fixed: the randomness of f is what makes its outputs hard to predict
        self.predictor = rnd_network(obs_shape, algo.rnd_hidden_sizes, algo.rnd_output_dim, predictor=True).to(device)
        self.obs_norm = ObsNormalizer(obs_shape, clip=5.0)
        # R_i <- gamma_int * R_i + i_t per env along its own time axis, never reset (non-episodic)
        self.return_filter = ReturnFilter(num_envs, algo.gamma_int, episodic=False)

    def errors(self, obs: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared prediction error over the k features; obs already normalised."""
        return (self.predictor(obs) - self.target(obs)).pow(2).mean(-1)

    @torch.inference_mode()
    def intrinsic_reward(self, next_obs: np.ndarray) -> np.ndarray:
        """Raw i_t for a batch of raw next observations [B, *obs_shape]."""
        return self.errors(torch.as_tensor(self.obs_norm(next_obs), device=self.device)).cpu().numpy()

    def intrinsic_rewards(self, next_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw i_t, i_t / std of the intrinsic return) for a rollout of raw s_{t+1}, [T, N, *obs_shape].

        As in the paper's implementation: one forward for the whole rollout, the return filter run
        over time for each env, then the observation statistics updated with the rollout.
        """
        T, N = next_obs.shape[:2]
        flat = next_obs.reshape(T * N, *next_obs.shape[2:])
        raw = self.intrinsic_reward(flat).reshape(T, N)
        scaled = np.stack([self.return_filter(raw[t]) for t in range(T)])
        self.obs_norm.update(flat)
        return raw, scaled

    @torch.no_grad()
    def target_features(self, obs: torch.Tensor) -> torch.Tensor:
        """f(obs) for a rollout's normalised observations: the target never trains, so once per rollout."""
        return self.target(obs)

    def sample(self, minibatch: torch.Tensor) -> torch.Tensor:
        """The predictor's share of a minibatch: its first `update_proportion` of indices. Minibatches are
        random permutations, so that is a random sample. The paper keeps the predictor's effective batch
        fixed as envs are added this way, so that it does not learn novelty away too fast."""
        return minibatch[:max(1, round(self.update_proportion * len(minibatch)))]

    def predictor_loss(self, obs: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        """The predictor's mean squared error on normalised observations and their target features."""
        return (self.predictor(obs) - target_features).pow(2).mean()

    def predictor_arrays(self) -> MLPArrays | None:
        """numpy views of the predictor for PredictorLoss.numpy_gradient (CPU, vector observations); None otherwise.
        Built on first use: its gradient buffer exists once the predictor joined the agent's flat Adam (an agent
        with a torch optimizer, A2C, allocates none in advance and trains the predictor through autograd)."""
        if not hasattr(self, "_arrays"):
            cpu_mlp = torch.device(self.device).type == "cpu" and mlp_activation(self.predictor) is not None \
                and all(p.grad is not None for p in self.predictor.parameters())
            self._arrays = MLPArrays(self.predictor) if cpu_mlp else None
        return self._arrays

    def stats(self) -> dict:
        rms = self.obs_norm.rms
        return {"rnd/obs_mean": float(rms.mean.mean()), "rnd/obs_std": float(rms.std.mean()),
                "rnd/return_std": float(self.return_filter.rms.std)}

    def state_dict(self) -> dict:
        return {"target": self.target.state_dict(), "predictor": self.predictor.state_dict(),
                "obs_norm": self.obs_norm.state_dict(),
                "return_filter": self.return_filter.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        self.return_filter.load_state_dict(state["return_filter"])


class PredictorLoss:
    """RND's loss term in PPO's minibatch step: the predictor's error on the minibatch's share (RND.sample)
    of the rollout's normalised s_{t+1} and their target features. Called by PPO.update on each minibatch,
    through autograd (__call__) or, on the CPU with vector observations, written out (numpy_gradient)."""

    def __init__(self, rnd: RND, obs: torch.Tensor, target_features: torch.Tensor):
        self.rnd, self.obs, self.targets = rnd, obs, target_features
        # numpy_gradient is a copy of __call__ and of RND.sample / predictor_loss: it runs only while they are the
        # code it was written from (rlkit/fast/fingerprint.py), and PPO.update checks it against autograd as it runs
        self.arrays = rnd.predictor_arrays() if predictor_source() == PREDICTOR_SOURCE else None
        if self.arrays is not None:
            self.obs_np, self.targets_np = obs.numpy(), target_features.numpy()

    def __call__(self, idx: torch.Tensor):
        sample = self.rnd.sample(idx)
        loss = self.rnd.predictor_loss(self.obs[sample], self.targets[sample])
        return loss, {"rnd/predictor_loss": loss}

    def numpy_gradient(self, idx: np.ndarray) -> dict:
        """The same loss, mean((f^(s) - f(s))^2), its gradient written into the predictor's gradient buffer."""
        sample = self.rnd.sample(idx)
        outs = self.arrays.forward(self.obs_np[sample])
        err = outs[-1] - self.targets_np[sample]
        loss = mean(err * err)
        err *= 2 / err.size
        self.arrays.backward(outs, err)
        return {"rnd/predictor_loss": loss}


# the fingerprint of PredictorLoss, RND.sample and RND.predictor_loss when numpy_gradient was written from them
PREDICTOR_SOURCE = "1713fd4f928c8dce24bf69d3c22cc1424baf38dd9977db751a25fef39f62e739"


def predictor_source() -> str:
    functions = class_functions(PredictorLoss)
    functions.update({f"RND.{name}": getattr(RND, name) for name in ("sample", "predictor_loss")})
    return fingerprint(functions)


# Rollout fields RND adds to RolloutMemory.extra, each [rollout_len, num_envs]
MEMORY_FIELDS = ("int_rewards_raw", "int_rewards", "int_values", "int_advantages", "int_returns")


def true_next_obs(next_obs: np.ndarray, final_obs: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """s_{t+1}: the final observation where an episode ended (the vector has already reset those envs)."""
    if not dones.any():
        return next_obs  # callers only read it or copy it into the memory
    return np.where(dones.reshape(-1, *[1] * (next_obs.ndim - 1)), final_obs, next_obs)


def intrinsic_gae(x: dict, last_int_values: np.ndarray, gamma_int: float, lam: float) -> None:
    """The intrinsic stream's GAE: non-episodic (dones=None), so the return runs on into the next episode,
    as in the paper -> x["int_advantages"], x["int_returns"] (x: RolloutMemory.extra)."""
    x["int_advantages"], x["int_returns"] = compute_gae(x["int_rewards"], x["int_values"], last_int_values,
                                                        None, gamma_int, lam)


def two_head_gae(mem, last_values: np.ndarray, gamma: float, gamma_int: float, lam: float) -> None:
    """GAE for both value heads; last_values is [num_envs, 2] (extrinsic, intrinsic).
    Extrinsic: episodic, truncation bootstrapped (RolloutMemory.compute_returns) -> mem.advantages, mem.returns."""
    mem.compute_returns(last_values[:, 0], gamma, lam)
    intrinsic_gae(mem.extra, last_values[:, 1], gamma_int, lam)


class RNDHook:
    """RND in the training loop (the RolloutHook contract, rlkit.algos.base): it keeps each step's s_{t+1}, takes the
    intrinsic values from the rollout's critic pass, turns a rollout into intrinsic rewards, a second GAE and
    the combined advantage, trains the predictor in the agent's minibatch steps, and logs its metrics."""

    name, value_heads = "rnd", 1

    @staticmethod
    def enabled(cfg) -> bool:
        return cfg.algo.use_RND

    def __init__(self, cfg, env_info, num_envs: int, device, train_every: int, value_head: int):
        self.cfg, self.device = cfg, device
        self.train_every, self.head = train_every, value_head
        # what RND sees: the last frame of a frame stack, as the paper's Atari target and predictor do (one
        # 84x84 frame), else the whole observation; kept in the observations' own dtype (uint8 stays bytes)
        self.last_frame = env_info.frame_stack is not None
        self.obs_shape = tuple(env_info.obs_shape[1:] if self.last_frame else env_info.obs_shape)
        self.obs_dtype = env_info.obs_dtype
        self.rnd = RND(self.obs_shape, cfg.algo, num_envs, device)

    def attach(self, agent, memory) -> None:
        agent.add_param_group(self.rnd.predictor.parameters(), self.cfg.algo.rnd_lr)
        shape = (memory.rollout_len, memory.num_envs)
        for name in MEMORY_FIELDS:
            memory.extra[name] = np.zeros(shape, np.float32)
        # raw s_{t+1}: the intrinsic reward and the predictor's data, computed once per rollout
        memory.extra["next_obs"] = np.zeros((*shape, *self.obs_shape), self.obs_dtype)

    def on_step(self, memory, next_obs, final_obs, dones, warmup) -> None:
        """Keep s_{t+1}; in the random warm-up feed it to the RND normaliser instead: it warms up there, as in
        the paper."""
        s_next = true_next_obs(next_obs, final_obs, dones)
        if self.last_frame:
            s_next = s_next[:, -1]
        if warmup:
            self.rnd.obs_norm.update(s_next)
            return
        memory.extra["next_obs"][memory.pos] = s_next

    def exploring(self, counter) -> bool:
        """The phase at this policy step optimises the intrinsic reward alone: its whole rollout lies within
        the first exploration_steps policy steps."""
        return counter.policy_step <= self.cfg.exploration_steps

    def extend_batch(self, batch: dict, memory, values, last_values, counter):
        """The intrinsic GAE, the combined advantage, the intrinsic head's returns and values, the predictor's
        loss term and the phase's RND metrics."""
        a, x = self.cfg.algo, memory.extra
        x["int_values"][:] = values[..., self.head]
        x["int_rewards_raw"], x["int_rewards"] = self.rnd.intrinsic_rewards(x["next_obs"])
        intrinsic_gae(x, last_values[:, self.head], a.gamma_int, a.GAE_lambda)
        exploring = self.exploring(counter)
        int_coef = 1.0 if a.beta is None else a.beta
        if exploring:  # intrinsic reward alone; its weight is 1 so that beta 0 ("explore, then task only") explores
            advantages = x["int_advantages"]
        else:
            advantages = a.ext_coef * memory.advantages + int_coef * x["int_advantages"]

        def flat(array):
            return torch.as_tensor(array.reshape(-1, *array.shape[2:]), device=self.device)

        assert batch["returns"].shape[1] == self.head  # the heads before this one are in the batch already
        batch["advantages"] = flat(advantages)
        batch["returns"] = torch.cat([batch["returns"], flat(x["int_returns"])[:, None]], 1)
        batch["values"] = torch.cat([batch["values"], flat(x["int_values"])[:, None]], 1)
        rnd_obs = flat(self.rnd.obs_norm(x["next_obs"]))  # the predictor learns on this rollout's s_{t+1}
        predictor_loss = PredictorLoss(self.rnd, rnd_obs, self.rnd.target_features(rnd_obs))
        stats = {"rnd/exploring": float(exploring),
                 "rnd/intrinsic_reward": x["int_rewards_raw"].mean(), "rnd/intrinsic_reward_norm": x["int_rewards"].mean(),
                 "value/extrinsic": memory.values.mean(), "value/intrinsic": x["int_values"].mean(),
                 "return/extrinsic": memory.returns.mean(), "return/intrinsic": x["int_returns"].mean(),
                 "ppo/explained_variance_int": explained_variance(batch["values"][:, self.head],
                                                                  batch["returns"][:, self.head]),
                 **self.rnd.stats()}
        # the first phase after the switch (phases are train_every apart; update 0 has no earlier phase)
        previous = counter.policy_step - self.train_every
        if self.cfg.exploration_steps > 0 and not exploring and (counter.update == 0 or previous <= self.cfg.exploration_steps):
            stats["rnd/phase_switch"] = 1.0
        return [predictor_loss], stats

    def modules(self) -> list:
        return [self.rnd.target, self.rnd.predictor]

    def running_stats(self) -> list:
        return [self.rnd.obs_norm.rms, self.rnd.return_filter.rms]

    def state_dict(self) -> dict:
        return self.rnd.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rnd.load_state_dict(state)

    @staticmethod
    def replicated(state: dict) -> dict:
        """Networks and statistics; not the per-env intrinsic returns (each rank's own envs). The predictor's
        Adam state is in the agent's."""
        return {**{k: state[k] for k in ("target", "predictor", "obs_norm")}, "return_filter": state["return_filter"]["rms"]}
