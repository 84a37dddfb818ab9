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

from rlkit.fast.jit import compiled


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

    On the CPU the arithmetic runs in one compiled pass over numpy views of the buffers (rlkit/fast/jit.py);
    elsewhere as torch's in-place tensor operations. Both compute the same.
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
        if self.use_numpy:  # weights, grad, exp_avg, exp_avg_sq
            group["views"] = tuple(group[k].numpy() for k in ("weights", "grad", "exp_avg", "exp_avg_sq"))
        self.param_groups.append(group)
        return group

    def zero_grad(self) -> None:
        for g in self.param_groups:
            g["grad"].zero_()

    @torch.no_grad()
    def clip_grad_norm(self, group: dict, max_norm: float):
        """Scale the group's gradient to norm <= max_norm (as nn.utils.clip_grad_norm_); returns the norm before."""
        if self.use_numpy:
            return _clip_norm(group["views"][1], max_norm)
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
                _adam(*g["views"], step_size, bias_correction2_sqrt, beta1, beta2, self.eps)
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


@compiled
def _clip_norm(grad, max_norm):
    """Scale grad in place to norm <= max_norm (nn.utils.clip_grad_norm_'s rule); returns the norm before."""
    norm = math.sqrt(np.dot(grad, grad))  # BLAS's dot: vectorised, where a float64 sum loop is not
    if max_norm < norm + 1e-6:
        scale = max_norm / (norm + 1e-6)
        for i in range(grad.size):
            grad[i] *= scale
    return norm


@compiled
def _adam(weights, grad, m, v, step_size, bias_correction2_sqrt, beta1, beta2, eps):
    """m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  w -= step_size m / (sqrt(v) / sqrt(bc2) + eps)."""
    for i in range(weights.size):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        weights[i] -= step_size * m[i] / (math.sqrt(v[i]) / bias_correction2_sqrt + eps)
