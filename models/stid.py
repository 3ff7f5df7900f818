"""STID building blocks shared by the MLP students (Shao et al., "Spatial-Temporal Identity: A
Simple yet Effective Baseline for Multivariate Time Series Forecasting", CIKM 2022)."""
from __future__ import annotations

import torch
from torch import nn


class STIDEmbedding(nn.Module):
    """E = FC(X) || E_s || E_tod || E_dow (FlowDistill eq. 3, STID).

    forward: x [B, H_in, N, C], tod/dow [B, H_in] int64 -> [B, N, out_dim]; the time-of-day and
    day-of-week embeddings are those of the last input step.
    """

    def __init__(self, num_nodes: int, h_in: int, channels: int, steps_per_day: int,
                 embed_dim: int, node_dim: int, tod_dim: int, dow_dim: int):
        super().__init__()
        self.series_fc = nn.Linear(h_in * channels, embed_dim)
        self.node_emb = nn.Parameter(torch.empty(num_nodes, node_dim))
        self.tod_emb = nn.Parameter(torch.empty(steps_per_day, tod_dim))
        self.dow_emb = nn.Parameter(torch.empty(7, dow_dim))
        for p in (self.node_emb, self.tod_emb, self.dow_emb):
            nn.init.xavier_uniform_(p)
        self.out_dim = embed_dim + node_dim + tod_dim + dow_dim

    def forward(self, x, tod, dow):
        b, _, n, _ = x.shape
        return torch.cat([self.series_fc(x.permute(0, 2, 1, 3).reshape(b, n, -1)),
                          self.node_emb.expand(b, -1, -1),
                          self.tod_emb[tod[:, -1]].unsqueeze(1).expand(-1, n, -1),
                          self.dow_emb[dow[:, -1]].unsqueeze(1).expand(-1, n, -1)], dim=-1)


class ResidualMLP(nn.Module):
    """STID encoder block: h + FC(Dropout(ReLU(FC(h)))), on [..., dim]."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, h):
        return h + self.body(h)


class HorizonHead(nn.Module):
    """FC from a per-region vector to every horizon step at once: [B, N, in_dim] -> [B, H_out, N, C]."""

    def __init__(self, in_dim: int, h_out: int, channels: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, h_out * channels)
        self.h_out = h_out

    def forward(self, z):
        b, n, _ = z.shape
        return self.fc(z).reshape(b, n, self.h_out, -1).permute(0, 2, 1, 3)
