"""Mutation tests: what a researcher writes is what trains, on the default CPU path.

Each edit below is applied to the built-in loss or networks, and a run on the default CPU path (numpy forward
and written-out gradient wherever the kit lets them run) must end on the weights of the same run with
`algo.numpy_gradient: false`, whose gradients come from autograd, which follows the code as written. (Both
sample actions with the same sampler, so their trajectories can be compared step by step; that the numpy
forward equals the modules' own is tests/unit/algos/test_fast_path.py's part.) The loss edits are made on
PPOLoss itself (replacing a method on the class, as editing rlkit/algos/ppo.py does), the case a check of the
class's identity cannot see; the network edits are modules passed to rlkit.train, as a user passes them.
"""
import numpy as np
import pytest
import torch

from rlkit import train
from rlkit.algos.ppo import PPO, PPOLoss
from rlkit.runs.checkpoint import load_checkpoint
from mutations import LOSS_EDITS, NETWORK_EDITS, Scaled, mlp  # tests/support

# 8 training phases of 16 minibatch steps each on CartPole (discrete) or Pendulum (continuous)
RUN = {"total_steps": 2048, "log_every": 512, "checkpoint_every": 0, "eval.every": 0,
       "parallel.num_threads": 1, "parallel.envs_per_thread": 4,
       "algo.batch_size": 256, "algo.mini_batch_size": 64, "algo.k_epochs": 4, "algo.hidden_sizes": [32, 32]}


def _weights(run_dir) -> torch.Tensor:
    agent = load_checkpoint(run_dir / "checkpoint.pt")["agent"]
    return torch.cat([v.reshape(-1) for part in ("actor", "critic") for v in agent[part].values()])


def train_both(tmp_path, monkeypatch, env="CartPole-v1", loss=None, actor=None, critic=None, **overrides):
    """(default CPU path's weights, the autograd reference's weights, the default run's directory).

    On the default run it also checks, at the start of every training phase (when the policy is still the one
    that collected the rollout), that the log-probabilities stored by the collector are the actor's own as
    written: a collector that ran other arithmetic than the network's forward would leave ratios != 1."""
    runs, collected_off = {}, []
    original = PPO.update

    def update(agent, batch, *args, **kwargs):
        with torch.no_grad():
            logprob, _ = agent.actor.evaluate(batch["obs"], batch["actions"])
        collected_off.append(float((logprob - batch["logprobs"]).abs().max()))
        return original(agent, batch, *args, **kwargs)

    for name, numpy_gradient in (("default", True), ("reference", False)):
        torch.manual_seed(0)  # a user's modules are built before train seeds torch: the same ones both times
        modules = {k: (f() if f else None) for k, f in (("actor", actor), ("critic", critic))}
        with monkeypatch.context() as m:
            if name == "default":
                m.setattr(PPO, "update", update)
            runs[name] = train({"env": {"id": env}}, tmp_path / name, progress=False, loss=loss, **modules,
                               overrides={**RUN, **overrides, "algo.numpy_gradient": numpy_gradient})
    assert len(collected_off) == 8 and max(collected_off) < 1e-4, \
        f"the collector's log-probs are not the actor's as written (off by up to {max(collected_off):.3g})"
    return _weights(runs["default"]), _weights(runs["reference"]), runs["default"]


def assert_trains_as_autograd(default, reference):
    assert not torch.equal(default, torch.zeros_like(default))
    torch.testing.assert_close(default, reference, rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------- the loss, edited in place

@pytest.fixture(scope="module")
def unedited(tmp_path_factory):
    """The default path's weights without any edit, per env: what each edit must move away from."""
    cache = {}

    def weights(env):
        if env not in cache:
            run = train({"env": {"id": env}}, tmp_path_factory.mktemp("unedited"), progress=False, overrides=RUN)
            cache[env] = _weights(run)
        return cache[env]
    return weights


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("edit", list(LOSS_EDITS))
def test_an_edit_of_ppo_loss_trains_as_written(tmp_path, monkeypatch, unedited, edit, env):
    baseline = unedited(env)
    name, method = LOSS_EDITS[edit]()
    monkeypatch.setattr(PPOLoss, name, method)
    default, reference, _ = train_both(tmp_path, monkeypatch, env)
    assert_trains_as_autograd(default, reference)
    assert not torch.allclose(default, baseline, rtol=1e-3, atol=1e-4)  # the edit changed what was trained


class KLPenaltyLoss(PPOLoss):
    """A loss that reads a key of its own (kl_coef), given when the loss is made."""

    def __init__(self, algo, kl_coef: float = 5.0):
        super().__init__(algo)
        self.kl_coef = kl_coef

    def __call__(self, actor, critic, mb):
        loss, stats = super().__call__(actor, critic, mb)
        logratio = actor.evaluate(mb["obs"], mb["actions"])[0] - mb["logprobs"]
        return loss + self.kl_coef * ((logratio.exp() - 1) - logratio).mean(), stats


def test_a_loss_with_a_key_of_its_own_trains_as_written(tmp_path, monkeypatch, unedited):
    default, reference, run = train_both(tmp_path, monkeypatch, loss=KLPenaltyLoss)
    assert_trains_as_autograd(default, reference)
    assert not torch.allclose(default, unedited("CartPole-v1"), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- the networks, given by the user

@pytest.mark.parametrize("edit", list(NETWORK_EDITS))
def test_a_network_of_the_users_trains_as_written(tmp_path, monkeypatch, edit):
    kwargs = NETWORK_EDITS[edit]
    default, reference, _ = train_both(tmp_path, monkeypatch, actor=lambda: mlp(2, **kwargs),
                                       critic=lambda: mlp(1, **kwargs))
    assert_trains_as_autograd(default, reference)


def test_the_references_differ_from_the_edits(tmp_path, monkeypatch):
    """The comparison can fail: a network whose forward the fast path ignored (the division by 10) ends on
    other weights than the same layers without it."""
    scaled, _, _ = train_both(tmp_path / "scaled", monkeypatch, actor=lambda: mlp(2, cls=Scaled),
                              critic=lambda: mlp(1, cls=Scaled))
    plain, _, _ = train_both(tmp_path / "plain", monkeypatch, actor=lambda: mlp(2), critic=lambda: mlp(1))
    assert not torch.allclose(scaled, plain, rtol=1e-3, atol=1e-4)
    assert np.isfinite(scaled.numpy()).all()
