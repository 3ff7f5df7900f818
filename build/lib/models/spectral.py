"""Frequency bands of grid fields and SDKD's frequency-aligned distillation loss (Li et al.,
"Frequency-Aligned Knowledge Distillation for Lightweight Spatiotemporal Forecasting", ICCV 2025,
arXiv 2507.02939; ../shared/paper/sdkd-summary.md sections 4.1 and 9.3).

The notes give L_KD = ||Psi_h(G(X)) - Psi_h(F(X))||^2 + alpha ||Psi_l(G(X)) - Psi_l(F(X))||^2 and a
"fixed cut-off frequency" but not how Psi is built. Our choice (inferred, as the notes suggest):
torch.fft.rfft2 over (H, W) with "ortho" norm, low band = radial frequency <= k_c (a fraction of
the Nyquist frequency 0.5 cycles per cell), high band = the rest (`bench.protocol.metrics.band_errors`, also
the per-band error the report shows). Band energies are weighted so that, by Plancherel, low +
high equals the spatial mean squared difference exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.protocol.metrics import band_errors


def sdkd_loss(student: torch.Tensor, teacher: torch.Tensor, k_c: float, alpha: float) -> tuple[torch.Tensor, dict]:
    """SDKD's L_KD = E_high + alpha * E_low of student - teacher (notes section 4.1), fields
    [..., H, W]; the teacher is detached. Returns (loss, {"kd_low", "kd_high"})."""
    low, high = band_errors(student, teacher.detach(), k_c)
    return high + alpha * low, {"kd_low": low.item(), "kd_high": high.item()}


def align_latent(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A student feature map [B, c, h, w] resized to the teacher latent's (H', W') (bilinear; the
    1x1-conv adapter to the teacher's width is the student's own layer)."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
