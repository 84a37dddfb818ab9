"""Adam over flat parameter groups.

Each group's parameters are moved into one contiguous buffer (each parameter becomes a view of it),
and so are their gradients. Clearing, clipping and the Adam step are then a handful of whole-buffer
operations per group instead of a loop over tensors: at rlkit's sizes (a few thousand weights)
torch.optim.Adam's Python bookkeeping cost more than its arithmetic, several times over.

The arithmetic is torch.optim.Adam's (Kingma & Ba, 2015; eps added after the square root, bias
corrections on both moments); tests/test_optim.py compares the two step by step.
"""
from __future__ import annotations

import math

import torch


def pack(params) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, gradients): flat buffers that the parameters' data and .grad become views of. The
    views stay valid through load_state_dict and in-place updates; the module must already be on its device."""
    params = [p for p in params if p.requires_grad]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)
        p.grad = grad[offset:offset + n].view_as(p)  # backward accumulates into it in place: zero it, never None
        offset += n
    return flat, grad


class FlatAdam:
    """Adam with one flat weight/gradient buffer per parameter group (one per network), each with its own lr."""

    def __init__(self, eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999)):
        self.eps, self.betas = eps, betas
        self.param_groups: list[dict] = []  # {"lr", "weights", "grad", "exp_avg", "exp_avg_sq"}
        self.steps = 0

    def add_param_group(self, params, lr: float) -> dict:
        weights, grad = pack(params)
        group = {"lr": lr, "weights": weights, "grad": grad,
                 "exp_avg": torch.zeros_like(weights), "exp_avg_sq": torch.zeros_like(weights)}
        self.param_groups.append(group)
        return group

    def zero_grad(self) -> None:
        for g in self.param_groups:
            g["grad"].zero_()

    @torch.no_grad()
    def clip_grad_norm(self, group: dict, max_norm: float) -> torch.Tensor:
        """Scale the group's gradient to norm <= max_norm (as nn.utils.clip_grad_norm_); returns the norm before."""
        norm = group["grad"].norm()
        group["grad"].mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1 ** self.steps
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        for g in self.param_groups:
            m, v, grad = g["exp_avg"], g["exp_avg_sq"], g["grad"]
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            g["weights"].addcdiv_(m, denom, value=-g["lr"] / bias_correction1)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "groups": [{k: g[k].clone() if torch.is_tensor(g[k]) else g[k]
                                                 for k in ("lr", "exp_avg", "exp_avg_sq")} for g in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["groups"]) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(state['groups'])} parameter groups, this model "
                             f"{len(self.param_groups)}: the checkpoint is from a different configuration")
        self.steps = state["steps"]
        for g, saved in zip(self.param_groups, state["groups"]):
            g["lr"] = saved["lr"]
            g["exp_avg"].copy_(saved["exp_avg"])
            g["exp_avg_sq"].copy_(saved["exp_avg_sq"])
