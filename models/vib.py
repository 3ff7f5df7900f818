"""Variational information bottleneck head (FlowDistill eq. 6-8; Alemi et al., ICLR 2017)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

EPS_SCALES = ("std", "variance")


def gaussian_kl(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag var) || N(0, I) ), FlowDistill eq. 8, closed form.

    Args:
        mu, var: [..., K]; var > 0.
    Returns:
        0-d tensor: 0.5 * sum_K(-log var - 1 + var + mu^2), averaged over all leading axes
        (batch and regions), as both the FlowDistill and EasyST code reduce it.
    """
    return (0.5 * (-torch.log(var) - 1.0 + var + mu ** 2)).sum(-1).mean()


class VIB(nn.Module):
    """Encoder head giving q(Z|X) = N(mu, sigma^2) with K = `bottleneck` (eq. 6) and a sample (eq. 7).

    Eq. 7 prints Z = mu + sigma^2 * eps. Sampling N(mu, sigma^2) needs Z = mu + sigma * eps, and the
    KL of eq. 8 is that of N(mu, sigma^2); the released FlowDistill and EasyST code also use sigma.
    So `eps_scale="std"` (default) is the sound reading; `eps_scale="variance"` is the literal one.
    The softplus output is taken as sigma^2 as the paper says (variance, non-negative), plus 1e-6.
    In eval mode Z = mu (the posterior mean), so test predictions are deterministic.
    """

    def __init__(self, in_dim: int, bottleneck: int, eps_scale: str = "std"):
        super().__init__()
        if eps_scale not in EPS_SCALES:
            raise ValueError(f"eps_scale={eps_scale!r}; use one of {EPS_SCALES}")
        self.stats = nn.Linear(in_dim, 2 * bottleneck)
        self.eps_scale = eps_scale

    def forward(self, h: torch.Tensor):
        """h [..., in_dim] -> (z [..., K], mu [..., K], var [..., K])."""
        mu, raw = self.stats(h).chunk(2, dim=-1)
        var = F.softplus(raw) + 1e-6
        if not self.training:
            return mu, mu, var
        scale = var.sqrt() if self.eps_scale == "std" else var
        return mu + scale * torch.randn_like(mu), mu, var
