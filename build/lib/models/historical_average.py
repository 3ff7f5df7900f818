"""Historical average: the mean flow of each region per time of day and day of week over the
training part. A reference forecaster (floor) that needs no training, as in the field's benchmarks
(HA in DCRNN, Li et al., ICLR 2018; STGCN; GraphWaveNet)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class HistoricalAverageConfig(TrainConfig):
    """No hyperparameters: the statistics come from the training windows' targets."""


@register("historical-average", "Floor: mean per time of day and day of week over the training part (no training)")
class HistoricalAverage(nn.Module):
    """yhat[t] = mean of y over the training steps with t's time of day and day of week.

    `observe(batch)` adds a training batch's targets (y [B, H_out, N, C], tod_out/dow_out
    [B, H_out]) to the sums per slot (7 x steps_per_day slots); the runner calls it once per
    training batch (see `bench.protocol.registry`, trainable = False). A slot never observed (at ratio 0.1
    the 6 training days of NYCTaxi miss one weekday) takes the mean of its time of day over all
    weekdays seen, and a time of day never seen takes the overall mean.

    forward_batch: batch with tod_out/dow_out [B, H_out] -> [B, H_out, N, C] z-scored.
    """

    trainable = False
    Config = HistoricalAverageConfig

    def __init__(self, cfg: HistoricalAverageConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        slots, n, c = 7 * info.steps_per_day, info.num_nodes, info.num_channels
        self.register_buffer("sums", torch.zeros(slots, n, c, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(slots, dtype=torch.float64))

    def observe(self, batch: dict) -> None:
        slot = (batch["dow_out"] * self.info.steps_per_day + batch["tod_out"]).flatten()   # [B * H_out]
        y = batch["y"].flatten(0, 1).to(torch.float64)                                     # [B * H_out, N, C]
        self.sums.index_add_(0, slot, y)
        self.counts.index_add_(0, slot, torch.ones_like(slot, dtype=torch.float64))

    def averages(self) -> torch.Tensor:
        """The forecast of every slot: [7 * steps_per_day, N, C] in original units."""
        per_day = self.info.steps_per_day
        overall = self.sums.sum(0) / self.counts.sum().clamp(min=1)
        by_tod = self.sums.view(7, per_day, *self.sums.shape[1:]).sum(0)
        tod_counts = self.counts.view(7, per_day).sum(0)[:, None, None]
        by_tod = torch.where(tod_counts > 0, by_tod / tod_counts.clamp(min=1), overall)      # [per_day, N, C]
        mean = self.sums / self.counts[:, None, None].clamp(min=1)
        return torch.where(self.counts[:, None, None] > 0, mean, by_tod.repeat(7, 1, 1))

    def forward_batch(self, batch: dict) -> torch.Tensor:
        slot = batch["dow_out"] * self.info.steps_per_day + batch["tod_out"]                # [B, H_out]
        return self.info.scaler.transform(self.averages()[slot].to(torch.float32))
