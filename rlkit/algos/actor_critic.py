"""What every actor-critic agent of the kit does the same way: act, value and greedy actions through the torch
modules, random warm-up actions, and the state a checkpoint holds. PPO and A2C subclass it and add their loss,
optimizer and update (PPO also a numpy path for the collector, rlkit/nn/numpy_mlp.py)."""
from __future__ import annotations

import numpy as np
import torch


class ActorCriticAgent:
    """Needs self.actor, self.critic, self.optimizer and self.device (set by the subclass's __init__)."""

    def modules(self) -> list:
        return [self.actor, self.critic]

    # ALGO LOGIC: action logic (one batched forward for every env, never one per env)
    @torch.inference_mode()
    def act(self, obs: np.ndarray, generator: torch.Generator):
        """(actions, log pi(actions | obs)) for a batch of observations; the values come later, batched (value)."""
        actions, logprobs = self.actor.sample(torch.as_tensor(obs, device=self.device), generator)
        return actions.cpu().numpy(), logprobs.cpu().numpy()

    @torch.inference_mode()
    def value(self, obs: np.ndarray) -> np.ndarray:
        """[B, heads]"""
        return self.critic(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    @torch.inference_mode()
    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        return self.actor.mode(torch.as_tensor(obs, device=self.device)).cpu().numpy()

    def random_actions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform actions in the policy's units (the learning_starts warm-up)."""
        return self.actor.dist.random(rng, n)

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.actor.load_state_dict(state["actor"])
            self.critic.load_state_dict(state["critic"])
        except RuntimeError as e:
            raise ValueError("the checkpoint's networks do not fit this run's (another network, or a checkpoint of "
                             f"an older rlkit): {str(e).splitlines()[0]}; start the run over (--force)") from None
        self.optimizer.load_state_dict(state["optimizer"])
