"""Persistence: the last input step repeated over the horizon. The simplest reference forecaster
(floor), needing no calendar: the floor of datasets without one, such as the Navier-Stokes
samples (Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", section 5.2, the
naive method)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class PersistenceConfig(TrainConfig):
    """No settings: a reference forecaster is not trained."""


@register("persistence", "Floor: the last input step repeated over the horizon (no training)")
class Persistence(nn.Module):
    """forward: x [B, H_in, N, C] z-scored -> [B, H_out, N, C] z-scored, every step equal to x[:, -1]."""

    trainable = False
    Config = PersistenceConfig

    def __init__(self, cfg: PersistenceConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info

    def forward(self, x: torch.Tensor, tod=None, dow=None) -> torch.Tensor:
        return x[:, -1:].expand(-1, self.info.h_out, -1, -1)
