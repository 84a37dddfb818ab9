"""The parts a researcher swaps: networks from the spaces (MLP, CNN), their own actor/critic modules, their own loss,
all through rlkit.train with no change to the trainer."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit import ConfigError, load_config, train
from rlkit.runs.checkpoint import load_checkpoint
from rlkit.runs.metrics import read_metrics
from rlkit.nn.networks import build_network, conv_trunk, network_kind
from rlkit.algos.ppo import PPO, PPOLoss


class BrightSide(gym.Env):
    """One-step episodes on an 8x8 grey image with a bright 2x2 patch in its left or right half: reward 1 for the
    action naming the half (0 left, 1 right), else 0. A random policy scores 0.5; only a policy that reads the
    image scores 1."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._draw(), {}

    def _draw(self):
        self.side = int(self.np_random.integers(2))
        image = np.full((8, 8, 1), 40, np.uint8)
        row, col = self.np_random.integers(0, 7), self.np_random.integers(0, 3) + 4 * self.side
        image[row:row + 2, col:col + 2] = 255
        return image

    def step(self, action):
        reward = float(int(action) == self.side)
        return self._draw(), reward, True, False, {}


gym.register("rlkit-tests/BrightSide-v0", entry_point=BrightSide, max_episode_steps=10)


def _algo(**overrides):
    return load_config({"algo": overrides}).algo


@pytest.mark.parametrize("shape, kind", [((7, 7, 3), "hwc"), ((3, 7, 7), "chw"), ((10, 10), "hw"),
                                         ((10, 10, 1), "hwc"), ((84, 84, 4), "hwc"), ((4, 84, 84), "chw")])
def test_cnn_forward_shapes(shape, kind):
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    assert network_kind(space, "auto") == "cnn"
    net = build_network(space, 5, _algo(), out_gain=0.01)
    out = net(torch.zeros(3, *shape))
    assert out.shape == (3, 5)
    _, width = conv_trunk(shape)
    if 84 in shape:  # the Nature CNN: 64 channels of 7x7
        assert width == 64 * 7 * 7
    else:  # padded 3x3 convs, one stride 2: ceil(side / 2)^2 positions of 64 channels
        side = shape[0] if kind != "chw" else shape[1]
        assert width == 64 * ((side + 1) // 2) ** 2


def test_uint8_images_are_scaled_inside_the_network():
    space = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    torch.manual_seed(0)
    net = build_network(space, 2, _algo(), out_gain=1.0)
    pixels = torch.randint(0, 256, (4, 7, 7, 3)).float()
    assert isinstance(net[0], nn.Module) and torch.allclose(net[0](pixels), pixels / 255)
    assert float(net[0](pixels).max()) <= 1.0


def test_network_choice_and_bad_cnn_settings():
    vector = gym.spaces.Box(-1, 1, (4,))
    assert network_kind(vector, "auto") == "mlp"
    with pytest.raises(ConfigError, match="'algo.network' is cnn"):
        build_network(vector, 2, _algo(network="cnn"), out_gain=1.0)
    with pytest.raises(ConfigError, match="'algo.cnn_layers'"):  # an 8x8 kernel cannot fit a 7x7 grid
        build_network(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), 2,
                      _algo(network="cnn", cnn_layers=[[16, 8, 4]]), out_gain=1.0)
    with pytest.raises(ConfigError, match="'algo.network' must be auto, mlp or cnn"):
        load_config({"algo": {"network": "transformer"}})


def test_cnn_learns_an_image_task_end_to_end(tmp_path):
    """algo.network: cnn on uint8 HWC frames, through rlkit.train as it is: the greedy policy reads the image."""
    run = train({"env": {"id": "rlkit-tests/BrightSide-v0"}, "total_steps": 3072, "seed": 0,
                 "parallel": {"num_threads": 1, "envs_per_thread": 8}, "eval": {"every": 1024, "episodes": 20},
                 "checkpoint_every": 0, "algo": {"network": "cnn", "cnn_features": 64, "batch_size": 256,
                                                 "mini_batch_size": 64, "k_epochs": 4, "gamma": 0.9}},
                tmp_path / "r", progress=False)
    evals = read_metrics(run / "metrics.csv").query("metric == 'eval/return'").value.tolist()
    assert evals[-1] >= 0.9, evals  # random: 0.5
    actor = load_checkpoint(run / "checkpoint.pt")["agent"]["actor"]
    assert any(k.endswith("weight") and v.dim() == 4 for k, v in actor.items())  # conv layers were trained


class UserActor(nn.Module):
    """Not an nn.Sequential: the agent runs it through torch, whatever its layers are."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 32)
        self.out = nn.Linear(32, 2)
        self.calls = 0

    def forward(self, obs):
        self.calls += 1
        return self.out(torch.relu(self.hidden(obs)))


class UserCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, obs):
        return self.body(obs)


def test_cartpole_trains_with_user_modules(tmp_path):
    torch.manual_seed(0)
    actor, critic = UserActor(), UserCritic()
    start = [p.detach().clone() for p in actor.parameters()]
    run = train("params/cartpole.yaml", tmp_path / "r", actor=actor, critic=critic, progress=False,
                overrides={"total_steps": 8192, "eval.every": 4096, "checkpoint_every": 0})
    evals = read_metrics(run / "metrics.csv").query("metric == 'eval/return'").value.tolist()
    assert max(evals) >= 100, evals  # a random policy lasts ~22 steps
    assert actor.calls > 1000  # every action and update went through the user's module
    assert all(not torch.equal(a, b) for a, b in zip(start, actor.parameters()))
    saved = load_checkpoint(run / "checkpoint.pt")["agent"]["actor"]
    assert torch.equal(saved["net.hidden.weight"], actor.hidden.weight.detach())


def test_user_modules_that_break_the_contract_are_named():
    space, actions = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    with pytest.raises(ConfigError, match=r"the critic network returns shape \(2, 3\).*\[B, 1\]"):
        PPO(_algo(), space, actions, "cpu", critic=nn.Linear(4, 3))


def test_a_plain_sequential_takes_the_numpy_path_with_its_own_activation():
    """A user's Linear/ReLU MLP with algo.activation tanh: numpy reads the activation off the module."""
    space = gym.spaces.Box(-1, 1, (4,))
    torch.manual_seed(0)
    agent = PPO(_algo(activation="tanh"), space, gym.spaces.Discrete(3), "cpu",
                actor=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)),
                critic=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)))
    assert agent.numpy is not None
    obs = np.random.default_rng(0).standard_normal((6, 4), dtype=np.float32)
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(agent.value(obs)), agent.critic(torch.as_tensor(obs)))
        torch.testing.assert_close(torch.as_tensor(agent.deterministic_action(obs)),
                                   agent.actor.mode(torch.as_tensor(obs)))


def test_a_wrapped_loss_takes_effect_through_train_on_the_cpu(tmp_path, tiny):
    """A callable wrapping the built-in loss, passed to rlkit.train with no other setting: every gradient step
    goes through it (autograd), and what it adds shows in the metrics."""
    calls = []

    def loss(actor, critic, minibatch):
        value, stats = builtin(actor, critic, minibatch)
        calls.append(len(minibatch["obs"]))
        return value, {**stats, "loss/wrapped": torch.tensor(1.0)}

    builtin = PPOLoss(load_config("params/cartpole.yaml", tiny).algo)
    run = train("params/cartpole.yaml", tmp_path / "r", overrides=tiny, progress=False, loss=loss)
    df = read_metrics(run / "metrics.csv")
    assert len(calls) == 32 and set(calls) == {32}  # 8 phases x 4 minibatch steps, as the counters say
    assert (df[df.metric == "loss/wrapped"].value == 1.0).all() and (df.metric == "loss/wrapped").sum() == 8
    assert (df[df.metric == "ppo/numpy_gradient"].value == 0.0).all()


class CountingPPO(PPO):
    """A stand-in for a new on-policy algorithm: a module of its own and one registry line, nothing in the trainer."""

    updates = 0

    def update(self, batch, n_updates, rng, extra_losses=()):
        type(self).updates += 1
        return {**super().update(batch, n_updates, rng, extra_losses), "mine/updates": float(type(self).updates)}


def test_a_registered_agent_is_chosen_by_algo_name(tmp_path, tiny, monkeypatch):
    from rlkit.algos import base as agent

    monkeypatch.setitem(agent.AGENTS, "counting_ppo", f"{__name__}:CountingPPO")
    run = train("params/cartpole.yaml", tmp_path / "r", overrides={**tiny, "algo.name": "counting_ppo"}, progress=False)
    df = read_metrics(run / "metrics.csv")
    assert df[df.metric == "mine/updates"].value.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    with pytest.raises(ConfigError, match="'algo.name' is 'trpo'; known algorithms: ppo, a2c, dqn, sac, counting_ppo"):
        train("params/cartpole.yaml", tmp_path / "bad", overrides={**tiny, "algo.name": "trpo"}, progress=False)
    assert not (tmp_path / "bad").exists()
