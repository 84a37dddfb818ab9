"""Networks built from the env's spaces: CNN trunks from 7x7 grids to Atari frames, bytes scaled inside the
network, one-hot and Dict observations, and the action distributions against torch's own.

tests/unit/algos/test_parts.py has the neighbouring checks made through rlkit.train (a CNN that learns, the user's
own modules, the network choice); the two CNN-shape tests differ: here the stored dtypes and the conv count,
there the auto choice and the trunk's width per layout.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces as gs

from rlkit.config import AlgoConfig, ConfigError
from rlkit.envs.spaces import PackLayout
from rlkit.nn.networks import build_actor_critic, build_network, input_shape

IMAGE = gs.Box(0, 255, (7, 7, 3), np.uint8)
@pytest.mark.parametrize("space, convs", [
    (gs.Box(0, 255, (7, 7, 3), np.uint8), 3),  # MiniGrid
    (gs.Box(0, 1, (10, 10, 4), bool), 3),  # MinAtar
    (gs.Box(0, 255, (4, 84, 84), np.uint8), 3),  # Atari, stacked
    (gs.Box(0, 255, (84, 84), np.uint8), 3),  # one frame
])
def test_cnn_forward_shapes_from_small_grids_to_atari_frames(space, convs):
    net = build_network(space, 5, AlgoConfig(), out_gain=1.0)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == convs
    x = torch.as_tensor(np.stack([space.sample() for _ in range(6)]))  # stored dtype: uint8 or bool
    assert net(x).shape == (6, 5)
    if space.shape[-1] == 84:  # the Nature CNN: 8x8/4, 4x4/2, 3x3/1 -> 7x7x64
        kernels = [m.kernel_size for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert kernels == [(8, 8), (4, 4), (3, 3)]


def test_uint8_frames_are_scaled_to_unit_range_inside_the_network():
    space = gs.Box(0, 255, (84, 84), np.uint8)
    net = build_network(space, 1, AlgoConfig(), out_gain=1.0)
    full = torch.full((1, 84, 84), 255, dtype=torch.uint8)
    assert torch.allclose(net(full), net[1:](torch.ones(1, 84, 84)))  # 255 as a byte is 1.0 after ScaleBytes


def test_discrete_observations_are_one_hot_and_dict_parts_encoded_by_kind():
    algo = AlgoConfig(hidden_sizes=[8])
    net = build_network(gs.Discrete(16), 2, algo, out_gain=1.0)
    first = net[0](torch.tensor([[3], [15]], dtype=torch.uint8))
    assert first.shape == (2, 16) and first[0, 3] == 1 and first[1, 15] == 1 and first.sum() == 2
    space = gs.Dict({"image": IMAGE, "direction": gs.Discrete(4), "pos": gs.Box(-1, 1, (2,), np.float32)})
    net = build_network(space, 3, algo, out_gain=1.0)
    encoder = net[0]
    assert isinstance(encoder.parts["image"][1][1], torch.nn.Conv2d)  # image -> CNN (after ScaleBytes), dense
    assert encoder.width == AlgoConfig().cnn_features + 4 + 2  # CNN features + one-hot + the vector
    layout = PackLayout(space)
    x = torch.as_tensor(np.stack([layout.pack(space.sample()) for _ in range(4)]))
    assert x.shape == (4, *input_shape(space)) and net(x).shape == (4, 3)
    bits = build_network(gs.MultiBinary(5), 2, algo, out_gain=1.0)
    assert bits(torch.ones(3, 5, dtype=torch.uint8)).shape == (3, 2)


def test_multidiscrete_and_multibinary_distributions_match_torch():
    torch.manual_seed(0)
    algo = AlgoConfig()
    obs = torch.randn(64, 3)
    for space, reference in [
        (gs.MultiDiscrete([3, 2, 4]), lambda out: [torch.distributions.Categorical(logits=p)
                                                   for p in out.split([3, 2, 4], -1)]),
        (gs.MultiBinary(4), lambda out: [torch.distributions.Bernoulli(logits=out)]),
    ]:
        actor, _, to_env = build_actor_critic(gs.Box(-1, 1, (3,), np.float32), space, algo, "cpu")
        actions, logp = actor.sample(obs, torch.Generator().manual_seed(1))
        assert all(space.contains(np.asarray(a, np.int64)) for a in to_env(actions.numpy()))
        logp2, entropy = actor.evaluate(obs, actions.float())  # the memory stores actions as float32
        out = actor.net(obs)
        dists = reference(out)
        if len(dists) == 1:
            want_logp, want_entropy = dists[0].log_prob(actions.float()).sum(-1), dists[0].entropy().sum(-1)
        else:
            want_logp = sum(d.log_prob(actions[:, k]) for k, d in enumerate(dists))
            want_entropy = sum(d.entropy() for d in dists)
        assert torch.allclose(logp, want_logp, atol=1e-5) and torch.allclose(logp2, want_logp, atol=1e-5)
        assert torch.allclose(entropy, want_entropy, atol=1e-5)
        random = actor.dist.random(np.random.default_rng(0), 5)
        assert all(space.contains(np.asarray(a, np.int64)) for a in random)


def test_an_action_space_without_a_distribution_names_a_wrapper():
    with pytest.raises(ConfigError, match="rlkit.envs.wrappers.DictAction"):
        build_actor_critic(gs.Box(-1, 1, (3,), np.float32), gs.Dict({"a": gs.Discrete(2)}), AlgoConfig(), "cpu")
