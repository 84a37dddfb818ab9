"""Adam over flat parameter groups.

Each group's parameters are moved into one contiguous buffer (each parameter becomes a view of it),
and so are their gradients. Clearing, clipping and the Adam step are then a handful of whole-buffer
operations per group instead of a loop over tensors: at rlkit's sizes (a few thousand weights)
torch.optim.Adam's Python bookkeeping cost more than its arithmetic, several times over. On the CPU
the operations run on numpy views of the buffers (a microsecond or two each, a third of torch's).

The arithmetic is torch.optim.Adam's (Kingma & Ba, 2015; eps added after the square root, bias
corrections on both moments); tests/test_optim.py compares the two step by step.
"""
from __future__ import annotations

import math

import numpy as np
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
    """Adam with one flat weight/gradient buffer per parameter group (one per network), each with its own lr.

    On the CPU the arithmetic runs in numpy on views of the buffers, in place into one scratch buffer per
    group (no temporaries); elsewhere as torch's in-place tensor operations. Both compute the same.
    """

    def __init__(self, eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999), use_numpy: bool | None = None):
        self.eps, self.betas = eps, betas
        self.use_numpy = use_numpy  # None: numpy for CPU buffers
        self.param_groups: list[dict] = []  # {"lr", "weights", "grad", "exp_avg", "exp_avg_sq", "views"}
        self.steps = 0

    def add_param_group(self, params, lr: float) -> dict:
        weights, grad = pack(params)
        group = {"lr": lr, "weights": weights, "grad": grad,
                 "exp_avg": torch.zeros_like(weights), "exp_avg_sq": torch.zeros_like(weights)}
        if self.use_numpy is None:
            self.use_numpy = weights.device.type == "cpu"
        if self.use_numpy:  # weights, grad, exp_avg, exp_avg_sq, scratch
            group["views"] = tuple(group[k].numpy() for k in ("weights", "grad", "exp_avg", "exp_avg_sq")) + \
                (np.empty(weights.numel(), np.float32),)
        self.param_groups.append(group)
        return group

    def zero_grad(self) -> None:
        for g in self.param_groups:
            g["grad"].zero_()

    @torch.no_grad()
    def clip_grad_norm(self, group: dict, max_norm: float):
        """Scale the group's gradient to norm <= max_norm (as nn.utils.clip_grad_norm_); returns the norm before."""
        if self.use_numpy:
            grad = group["views"][1]
            norm = math.sqrt(np.dot(grad, grad))
            if max_norm < norm + 1e-6:
                grad *= max_norm / (norm + 1e-6)
            return norm
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
            step_size = g["lr"] / bias_correction1
            if self.use_numpy:
                weights, grad, m, v, scratch = g["views"]
                m *= beta1  # m = beta1 m + (1 - beta1) g
                m += np.multiply(grad, 1 - beta1, out=scratch)
                v *= beta2  # v = beta2 v + (1 - beta2) g^2
                np.multiply(grad, grad, out=scratch)
                scratch *= 1 - beta2
                v += scratch
                np.sqrt(v, out=scratch)  # w -= step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps)
                scratch /= bias_correction2_sqrt
                scratch += self.eps
                np.divide(m, scratch, out=scratch)
                scratch *= step_size
                weights -= scratch
            else:
                m, v = g["exp_avg"], g["exp_avg_sq"]
                m.lerp_(g["grad"], 1 - beta1)
                v.mul_(beta2).addcmul_(g["grad"], g["grad"], value=1 - beta2)
                denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
                g["weights"].addcdiv_(m, denom, value=-step_size)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "groups": [{k: g[k].clone() if torch.is_tensor(g[k]) else g[k]
                                                 for k in ("lr", "exp_avg", "exp_avg_sq")} for g in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        if "groups" not in state:  # torch.optim.Adam's layout: {"state", "param_groups"}
            raise ValueError("the checkpoint's optimizer state is torch.optim.Adam's, written by an older rlkit: "
                             "resume it with that version, or start the run over (--force)")
        if len(state["groups"]) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(state['groups'])} parameter groups, this model "
                             f"{len(self.param_groups)}: the checkpoint is from a different configuration")
        self.steps = state["steps"]
        for g, saved in zip(self.param_groups, state["groups"]):
            g["lr"] = saved["lr"]
            g["exp_avg"].copy_(saved["exp_avg"])
            g["exp_avg_sq"].copy_(saved["exp_avg_sq"])
