"""Statistics more than one algorithm or hook computes: explained variance, normalised advantages."""
from __future__ import annotations

import torch


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]: 1 is a perfect critic, <= 0 no better than a constant."""
    var = returns.var().item()
    return float("nan") if var == 0 else 1.0 - (returns - values).var().item() / var


def normalised_advantages(adv: torch.Tensor) -> torch.Tensor:
    """(A - mean) / (std + 1e-8) over the minibatch, std with Bessel's correction (torch's .std())."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)
