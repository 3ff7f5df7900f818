"""Training mean: the mean of each region (or grid cell) and channel over the training targets,
repeated over the horizon. A reference forecaster (floor) that needs no calendar and no history:
beside persistence, the floor of datasets of independent samples such as Navier-Stokes (the
"climatology" or mean forecast; Hyndman & Athanasopoulos, "Forecasting: Principles and Practice",
section 5.2, the average method)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class TrainingMeanConfig(TrainConfig):
    """No settings: a reference forecaster is not trained."""


@register("training-mean", "Floor: each region's mean over the training targets, every horizon step (no training)")
class TrainingMean(nn.Module):
    """yhat[h, n, c] = mean of y[:, :, n, c] over every training window and horizon step.

    `observe(batch)` adds a training batch's targets (y [B, H_out, N, C], original units) to the
    sums; the runner calls it once per training batch (`bench.protocol.registry`, trainable =
    False). Overlapping windows of a series count a step once per window that holds it (at most
    H_out times; the windows' edges weigh a little less). Before any batch is observed the
    forecast is 0.

    forward: x [B, H_in, N, C] z-scored -> [B, H_out, N, C] z-scored (the mean, mapped through
    the training scaler).
    """

    trainable = False
    Config = TrainingMeanConfig

    def __init__(self, cfg: TrainingMeanConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.register_buffer("sums", torch.zeros(info.num_nodes, info.num_channels, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def observe(self, batch: dict) -> None:
        y = batch["y"].to(torch.float64)                              # [B, H_out, N, C]
        self.sums += y.sum((0, 1))
        self.count += y.shape[0] * y.shape[1]

    def mean(self) -> torch.Tensor:
        """The forecast of every step: [N, C] in original units."""
        return self.sums / self.count.clamp(min=1)

    def forward(self, x: torch.Tensor, tod=None, dow=None) -> torch.Tensor:
        mean = self.info.scaler.transform(self.mean().to(x.dtype))    # [N, C] z-scored
        return mean.expand(x.shape[0], self.info.h_out, -1, -1)
