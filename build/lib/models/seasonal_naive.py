"""Seasonal naive forecasts: the same step one week (or one day) earlier. Reference forecasters
(floors) that need no training, as in the field's benchmarks (e.g. the "repeat last week"
baseline of Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", section 5.2)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class SeasonalNaiveConfig(TrainConfig):
    """period_days: the season in days (7: same step last week, 1: yesterday).
    eval_batch_size 64: a batch carries period x steps_per_day history steps per window."""

    period_days: int = 7
    eval_batch_size: int = 64


@register("seasonal-naive-week", "Floor: the same step one week earlier (no training)")
@register("seasonal-naive-day", "Floor: the same step one day earlier (no training)", period_days=1)
class SeasonalNaive(nn.Module):
    """yhat[t] = y[t - P] with P = period_days x steps_per_day steps.

    forward_batch: batch["history"] [B, P, N, C] (original units, the P steps up to the last
    input step; see `bench.protocol.registry`, lookback = P) -> [B, H_out, N, C] z-scored. Target step
    s + H_in + h reads history position h (P >= H_out is required). Where that step lies before
    step 0 of the series (the first training windows at large ratios), the forecast is the last
    observed input step instead (persistence).

    Raises:
        ValueError: a period shorter than H_out (the forecast would read its own targets).
    """

    trainable = False
    Config = SeasonalNaiveConfig

    def __init__(self, cfg: SeasonalNaiveConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.lookback = cfg.period_days * info.steps_per_day
        if self.lookback < info.h_out:
            raise ValueError(f"period of {self.lookback} steps is shorter than H_out = {info.h_out}")

    def forward_batch(self, batch: dict) -> torch.Tensor:
        history = batch["history"]
        season = history[:, :self.info.h_out]                      # steps s + H_in + h - P
        last = history[:, -1:].expand_as(season)                   # persistence where P reaches before 0
        return self.info.scaler.transform(torch.where(torch.isnan(season), last, season))
