"""The gates in front of the CPU's numpy fast paths (rlkit/nn/numpy_mlp.py, rlkit/algos/ppo_numpy.py): each one
can refuse on its own, and a refusal trains what the code says, through torch and autograd."""
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.algos import ppo as ppo_module
from rlkit.algos.ppo import PPO, PPOLoss, loss_source
from rlkit.algos.ppo_numpy import LOSS_SOURCE
from rlkit.algos.rnd import PREDICTOR_SOURCE, predictor_source
from rlkit.config import load_config
from rlkit.fast.fingerprint import fingerprint, source_tokens
from rlkit.nn.numpy_mlp import FORWARD_SOURCE, NumpyActorCritic, forward_source
from mutations import LOSS_EDITS, mlp  # tests/support

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)


def make_agent(continuous=False, actor=None, critic=None, loss=None, **algo):
    torch.manual_seed(0)
    cfg = load_config({"algo": {"hidden_sizes": [16, 16], **algo}}).algo
    action_space = gym.spaces.Box(-1, 1, (2,)) if continuous else gym.spaces.Discrete(2)
    return PPO(cfg, OBS_SPACE, action_space, "cpu", actor=actor, critic=critic, loss=loss)


def rollout_batch(agent, rows=128):
    """A batch as a rollout leaves it: the old log-probs and values are the current policy's (ratio 1)."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(rows, 4, generator=g)
    actions, logprobs = agent.act(obs.numpy(), g)
    values = torch.as_tensor(agent.value(obs.numpy()))
    return {"obs": obs, "actions": torch.as_tensor(actions, dtype=torch.float32), "logprobs": torch.as_tensor(logprobs),
            "advantages": torch.randn(rows, generator=g), "returns": values + torch.randn(rows, 1, generator=g),
            "values": values}


def weights(agent):
    return torch.cat([g["weights"].clone() for g in agent.optimizer.param_groups])


def test_the_fingerprints_are_those_the_fast_paths_were_written_for():
    """If this fails, PPOLoss, RND's predictor loss or the Actor / Critic / distribution classes were edited: that
    edit trains as written (autograd), and the numpy copy no longer runs. To make the copy run again, change it
    to match (rlkit/algos/ppo_numpy.py, rlkit/algos/rnd.py, rlkit/nn/numpy_mlp.py), run tests/unit/algos and
    tests/unit/nn, and record the new fingerprint printed here."""
    assert forward_source() == FORWARD_SOURCE, f"FORWARD_SOURCE is now {forward_source()}"
    assert loss_source() == LOSS_SOURCE, f"LOSS_SOURCE is now {loss_source()}"
    assert predictor_source() == PREDICTOR_SOURCE, f"PREDICTOR_SOURCE is now {predictor_source()}"


def test_a_fingerprint_ignores_comments_and_sees_code(tmp_path, monkeypatch):
    sources = {"edit_a": "def f(x):\n    return 2 * x  # twice\n",
               "edit_b": "def f(x):\n    # the same, commented\n\n    return 2 * x\n",
               "edit_c": "def f(x):\n    return 3 * x\n"}
    for name, text in sources.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    import edit_a
    import edit_b
    import edit_c
    assert source_tokens(edit_a.f) == source_tokens(edit_b.f) != source_tokens(edit_c.f)
    namespace = {}
    exec("def d(x):\n    return 2 * x\n", namespace)  # no file behind it: never taken for the reviewed code
    assert fingerprint({"f": namespace["d"]}).startswith("unverifiable")
    monkeypatch.setattr(PPOLoss, "value_loss", edit_c.f)
    assert loss_source() != LOSS_SOURCE


def test_the_built_in_loss_keeps_the_numpy_gradient_through_every_check(capfd, monkeypatch):
    agent = make_agent()
    checks = []
    original = PPO._check_numpy_gradient
    monkeypatch.setattr(PPO, "_check_numpy_gradient", lambda self, *a: checks.append(a[-1]) or original(self, *a))
    for phase in range(3):
        stats = agent.update(rollout_batch(agent), 8, np.random.default_rng(phase))
        assert stats["ppo/numpy_gradient"] == 1.0
    # the first check with the ratio moved away from 1, then the last minibatch of every phase
    assert checks == ["its first check"] + ["a phase's last minibatch"] * 3
    assert agent.update_path.startswith("numpy gradient") and capfd.readouterr().err == ""


@pytest.mark.parametrize("edit", ["clip_0.05", "kl_k3", "clipped_value_loss"])
def test_the_running_check_alone_catches_edits_that_vanish_at_ratio_1(monkeypatch, capfd, edit):
    """The fingerprint made blind (as if the edit were somewhere it does not read): the check on the first
    minibatch, with the old log-probs and values moved apart, still finds edits that have no effect on a fresh
    rollout (clipping inactive, a k3 KL of zero gradient, a value clip that does not bite), trains that step
    and the rest through autograd, and says so in one line."""
    name, method = LOSS_EDITS[edit]()
    monkeypatch.setattr(PPOLoss, name, method)
    monkeypatch.setattr(ppo_module, "LOSS_SOURCE", loss_source())
    agent, reference = make_agent(), make_agent(numpy_gradient=False)
    assert agent.numpy_gradient  # gates 1 and 2 passed
    for phase in range(2):
        stats = agent.update(rollout_batch(agent), 8, np.random.default_rng(phase))
        reference.update(rollout_batch(reference), 8, np.random.default_rng(phase))
    err = capfd.readouterr().err.strip().splitlines()
    assert stats["ppo/numpy_gradient"] == 0.0 and agent.update_path.startswith("autograd: the numpy gradient differed")
    assert [line for line in err if "warning" in line] == [err[-1]] and "its first check" in err[-1]
    torch.testing.assert_close(weights(agent), weights(reference), rtol=1e-4, atol=1e-6)


class Scaled(nn.Sequential):
    def forward(self, x):
        return super().forward(x) / 10


def frozen_first_layer():
    net = mlp(2)
    net[0].weight.requires_grad_(False)
    return net


def hooked():
    net = mlp(2)
    net.register_forward_hook(lambda module, args, out: out * 2)
    return net


def weight_normed():
    net = mlp(2)
    torch.nn.utils.parametrizations.weight_norm(net[0])
    return net


REFUSED = {
    "a subclass with its own forward": lambda: mlp(2, cls=Scaled),
    "a LayerNorm": lambda: mlp(2, norm=True),
    "ELU": lambda: mlp(2, activation=nn.ELU),
    "GELU": lambda: mlp(2, activation=nn.GELU),
    "a forward hook": hooked,
    "a parametrisation": weight_normed,
    "a frozen layer": frozen_first_layer,
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_networks_numpy_cannot_run_exactly_run_in_torch(case):
    agent = make_agent(actor=REFUSED[case](), critic=mlp(1))
    assert agent.numpy is None and not agent.numpy_gradient
    assert agent.update_path.startswith("autograd: ")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = agent.actor.net(torch.as_tensor(obs)).argmax(-1).numpy()
    assert (agent.deterministic_action(obs) == expected).all()  # the collector acts with the network as written


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_linear_without_bias_runs_in_numpy_and_equals_torch(activation):
    agent = make_agent(actor=mlp(2, activation=activation, bias=False), critic=mlp(1, activation=activation,
                                                                                 bias=False))
    assert agent.numpy is not None and agent.numpy_gradient
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(agent.value(obs), agent.critic(torch.as_tensor(obs)).numpy(), rtol=1e-5, atol=1e-6)
    reference = make_agent(actor=mlp(2, activation=activation, bias=False), numpy_gradient=False,
                           critic=mlp(1, activation=activation, bias=False))
    for phase in range(2):
        agent.update(rollout_batch(agent), 8, np.random.default_rng(phase))
        reference.update(rollout_batch(reference), 8, np.random.default_rng(phase))
    torch.testing.assert_close(weights(agent), weights(reference), rtol=1e-4, atol=1e-6)


def test_a_method_replaced_on_an_instance_is_refused():
    agent = make_agent()
    agent.actor.forward = lambda obs: obs  # noqa: E731 (what a notebook may do)
    assert NumpyActorCritic.unsupported(agent.actor, agent.critic) is not None


def test_an_edited_distribution_class_switches_the_numpy_forward_off(monkeypatch):
    from rlkit.nn import networks
    monkeypatch.setattr(networks.Categorical, "mode", lambda self, logits: logits.argmin(-1))
    agent = make_agent()
    assert agent.numpy is None and "classes differ" in agent.update_path
    assert sys.modules["rlkit.nn.numpy_mlp"].forward_source() != FORWARD_SOURCE


def test_a_collector_whose_forward_is_not_the_networks_is_caught_at_the_next_phase(monkeypatch, capfd):
    """The gates made blind to a network edit (the subclass check and fingerprints bypassed): the log-probs numpy
    stored at collection are not the actor's own, which the phase's first step sees; both numpy paths stop."""
    from rlkit.nn import numpy_mlp
    monkeypatch.setattr(NumpyActorCritic, "unsupported", staticmethod(lambda actor, critic: None))
    monkeypatch.setattr(numpy_mlp, "mlp_activation", lambda net: "tanh")
    agent = make_agent(actor=mlp(2, cls=Scaled), critic=mlp(1))
    assert agent.numpy is not None  # fooled
    stats = agent.update(rollout_batch(agent), 8, np.random.default_rng(0))
    assert agent.numpy is None and stats["ppo/numpy_gradient"] == 0.0
    assert "log-probabilities" in capfd.readouterr().err and agent.update_path.startswith("autograd: the numpy collector")


def test_a_run_says_once_why_its_cpu_fast_path_stepped_aside(tmp_path, capfd, tiny):
    """The path is in status.json, and one line on stderr says why when the CPU's fast path does not run."""
    import json

    from rlkit import train

    torch.manual_seed(0)
    run = train("params/cartpole.yaml", tmp_path / "run", overrides=tiny, progress=False,
                actor=mlp(2, norm=True), critic=mlp(1))
    lines = [line for line in capfd.readouterr().err.splitlines() if "update runs through" in line]
    status = json.loads((run / "status.json").read_text())
    assert len(lines) == 1 and "not exactly nn.Sequential" in lines[0]
    assert status["update_path"].startswith("autograd: the actor network is not exactly")
