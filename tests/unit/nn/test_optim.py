"""FlatAdam against torch.optim.Adam and nn.utils.clip_grad_norm_, and the flat buffers' views."""
import pytest
import torch
from torch import nn

from rlkit.nn.optim import FlatAdam


def two_nets(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)), nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1))


def params(nets):
    return [p for net in nets for p in net.parameters()]


def loss_of(nets, x):
    return sum(net(x).pow(2).sum() for net in nets)


@pytest.mark.parametrize("use_numpy", [True, False])  # numpy on the CPU; torch's in-place ops elsewhere (GPU)
def test_steps_equal_torch_adam_with_two_learning_rates(use_numpy):
    mine, ref = two_nets(), two_nets()
    opt = FlatAdam(eps=1e-5, use_numpy=use_numpy)
    groups = [opt.add_param_group(mine[0].parameters(), 1e-2), opt.add_param_group(mine[1].parameters(), 3e-3)]
    ref_opt = torch.optim.Adam([{"params": ref[0].parameters(), "lr": 1e-2},
                                {"params": ref[1].parameters(), "lr": 3e-3}], eps=1e-5)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(10):
        opt.zero_grad()
        loss_of(mine, x).backward()  # autograd accumulates into the flat gradient buffers
        norms = [opt.clip_grad_norm(g, 0.5) for g in groups]
        opt.step()
        ref_opt.zero_grad()
        loss_of(ref, x).backward()
        ref_norms = [nn.utils.clip_grad_norm_(net.parameters(), 0.5) for net in ref]
        ref_opt.step()
        torch.testing.assert_close(torch.tensor([float(n) for n in norms]), torch.stack(ref_norms))
    start = two_nets()
    for a, b, a0 in zip(params(mine), params(ref), params(start)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, a0)  # ten steps moved every parameter


def test_parameters_are_views_of_the_flat_buffer():
    net = two_nets()[0]
    opt = FlatAdam()
    group = opt.add_param_group(net.parameters(), 1e-3)
    group["weights"].zero_()
    assert all(p.abs().sum() == 0 for p in net.parameters())
    net.load_state_dict(two_nets(seed=3)[0].state_dict())  # loading copies into the views
    assert torch.equal(group["weights"][:24], two_nets(seed=3)[0][0].weight.detach().reshape(-1))


def test_state_dict_round_trip_continues_identically():
    nets_a, nets_b = two_nets(), two_nets()
    x = torch.randn(4, 3)
    opts = []
    for nets in (nets_a, nets_b):
        opt = FlatAdam()
        for net in nets:
            opt.add_param_group(net.parameters(), 1e-2)
        opts.append(opt)
    for _ in range(3):
        opts[0].zero_grad()
        loss_of(nets_a, x).backward()
        opts[0].step()
    for net_a, net_b in zip(nets_a, nets_b):
        net_b.load_state_dict(net_a.state_dict())
    opts[1].load_state_dict(opts[0].state_dict())
    for opt, nets in zip(opts, (nets_a, nets_b)):
        opt.zero_grad()
        loss_of(nets, x).backward()
        opt.step()
    for a, b in zip(params(nets_a), params(nets_b)):
        assert torch.equal(a, b)


def test_loading_state_with_other_groups_names_the_cause():
    opt = FlatAdam()
    opt.add_param_group(two_nets()[0].parameters(), 1e-3)
    with pytest.raises(ValueError, match="different configuration"):
        opt.load_state_dict({"steps": 1, "groups": []})
    old = torch.optim.Adam(two_nets()[1].parameters()).state_dict()  # a checkpoint from before FlatAdam
    with pytest.raises(ValueError, match="older rlkit.*--force"):
        opt.load_state_dict(old)
