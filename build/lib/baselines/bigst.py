"""BigST: linear-complexity spatio-temporal GNN (Han et al., "BigST: Linear Complexity
Spatio-Temporal Graph Neural Network for Traffic Forecasting on Large-Scale Road Networks",
PVLDB 17(5), 2024). Facts read from the official code, github usail-hkust/BigST @ 830cb52
(model.py, run.py, trainer.py, util.py), not copied.

Structure (the README's `run.py --use_residual --use_bn`):
- input: the flows of the 12 input steps with the time-of-day fraction and day of week of each
  step (the code's value / tod / dow channels), flattened and mapped by a linear layer to 32;
  node, time-of-day and day-of-week embeddings (32 each; tod/dow of the last input step);
- the adaptive graph: query and key vectors W_1 [e_node, e_tod, e_dow], W_2 [...] (96 -> 32),
  divided by sqrt(tau); positive orthogonal random features (Performer FAVOR+, 64 features) give
  phi(q), phi(k) with phi(q) . phi(k) ~ exp(q . k / sqrt(d)), so that the linearized convolution
  out_i = phi(q_i)^T sum_j phi(k_j) h_j^T / phi(q_i)^T sum_j phi(k_j) is softmax attention over
  all nodes at O(N) cost (no N x N matrix);
- 3 layers: gate sigmoid(W_in h) * W_out h, dropout 0.3, linearized convolution, residual,
  LayerNorm (128 channels);
- head: ReLU of the first and last layer's features (256) -> linear to H_out steps.
Loss: masked MAE in original units (as the code). The long-history encoder (`--use_long`) and the
spatial regulariser (`--use_spatial`) are off in the README's command, and off here.

Deviations, each for a reason:
- two output channels (inflow, outflow); the code predicts one value channel;
- the random projection is drawn from a local generator seeded from the query vectors as the
  code does, without reseeding torch's global generator (the code calls torch.manual_seed in
  forward, which also resets dropout's randomness);
- per-channel z-score fitted on the training part (the code: one global mean and std);
- the QR blocks of the random projection get their signs fixed (columns times sign(diag R)); the
  code's plain QR makes the directions non-uniform, which biases the softmax estimate (max error
  of attention weights 0.065 against 0.001 after the fix, 200k features, tests/test_baselines.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class BigSTConfig(TrainConfig):
    """Official run.py defaults: hidden 32 (node/time embeddings 32), 3 layers, tau 0.25, 64
    random features, dropout 0.3, Adam lr 1e-3 with weight decay 1e-4, lr x 0.1 at epochs 80 and
    100, batch 16, grad clip 5, 100 epochs, patience 30."""

    hidden: int = 32
    num_layers: int = 3
    tau: float = 0.25
    random_features: int = 64
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay: float = 0.1
    lr_milestones: tuple[int, ...] | None = (80, 100)
    batch_size: int = 16
    grad_clip: float | None = 5.0
    max_epochs: int = 100
    patience: int = 30


def orthogonal_random_matrix(m: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """[m, d]: m / d stacked blocks of orthonormal rows (QR of a Gaussian matrix, signs fixed so that
    the directions are uniform), each row scaled by the norm of an independent Gaussian d-vector
    (Performer's orthogonal random features)."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        q, r = torch.linalg.qr(torch.randn(d, d, generator=generator))
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    w = torch.cat(blocks)[:m]
    return w * torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)


def random_feature_map(v: torch.Tensor, w: torch.Tensor, is_query: bool) -> torch.Tensor:
    """Positive softmax-kernel features phi(v) = m^-1/2 (exp(w v' - |v'|^2 / 2 - stab) + 1e-6) with
    v' = v d^-1/4; stab: max over features per node (query) or over features and nodes (key).
    v [B, N, d] -> [B, N, m]."""
    d, m = v.shape[-1], w.shape[0]
    v = v * d ** -0.25
    proj = v @ w.T
    sq = (v ** 2).sum(-1, keepdim=True) / 2
    stab = proj.amax(dim=-1, keepdim=True) if is_query else proj.amax(dim=(-1, -2), keepdim=True)
    return (torch.exp(proj - sq - stab) + 1e-6) / math.sqrt(m)


def linear_kernel(q: torch.Tensor, k: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """out_i = q_i^T (sum_j k_j h_j^T) / (q_i^T sum_j k_j): attention with weights q_i . k_j,
    normalised over j, at O(N m c). q, k [B, N, m], h [B, N, c] -> [B, N, c]."""
    kv = torch.einsum("bnm,bnc->bmc", k, h)
    norm = torch.einsum("bnm,bm->bn", q, k.sum(dim=1))
    return torch.einsum("bnm,bmc->bnc", q, kv) / norm[..., None]


class LinearizedConv(nn.Module):
    def __init__(self, c: int, dropout: float):
        super().__init__()
        self.fc_in, self.fc_out, self.drop = nn.Linear(c, c), nn.Linear(c, c), nn.Dropout(dropout)

    def forward(self, x, q, k):
        return linear_kernel(q, k, self.drop(torch.sigmoid(self.fc_in(x)) * self.fc_out(x)))


@register("bigst", "BigST (VLDB 2024): linearized adaptive-graph convolution, linear in the number of nodes")
class BigST(nn.Module):
    """BigST. forward: x [B, H_in, N, C] z-scored, tod/dow [B, H_in] -> [B, H_out, N, C] z-scored."""

    Config = BigSTConfig

    def __init__(self, cfg: BigSTConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        d = cfg.hidden
        self.node_emb = nn.Parameter(torch.empty(info.num_nodes, d))
        self.tod_emb = nn.Parameter(torch.empty(info.steps_per_day, d))
        self.dow_emb = nn.Parameter(torch.empty(7, d))
        for p in (self.node_emb, self.tod_emb, self.dow_emb):
            nn.init.xavier_uniform_(p)
        self.input = nn.Linear(info.h_in * (info.num_channels + 2), d)
        self.w1, self.w2 = nn.Linear(3 * d, d), nn.Linear(3 * d, d)
        self.layers = nn.ModuleList(LinearizedConv(4 * d, cfg.dropout) for _ in range(cfg.num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(4 * d) for _ in range(cfg.num_layers))
        self.head = nn.Linear(8 * d, info.h_out * info.num_channels)

    def forward(self, x, tod, dow):
        b, t, n, c = x.shape
        steps = torch.cat([x, (tod.float() / self.info.steps_per_day)[:, :, None, None].expand(b, t, n, 1),
                           dow.float()[:, :, None, None].expand(b, t, n, 1)], dim=-1)      # [B, T, N, C + 2]
        flat = steps.permute(0, 2, 1, 3).reshape(b, n, -1)
        node = self.node_emb.expand(b, n, -1)
        time = torch.cat([self.tod_emb[tod[:, -1]], self.dow_emb[dow[:, -1]]], -1)[:, None].expand(b, n, -1)
        graph_in = torch.cat([node, time], -1)                                              # [B, N, 3d]
        h = torch.cat([self.input(flat), graph_in], -1)                                     # [B, N, 4d]
        scale = math.sqrt(self.cfg.tau)
        q, k = self.w1(graph_in) / scale, self.w2(graph_in) / scale
        seed = int(math.ceil(abs(q.detach().sum().item()) * 1e8)) % (2 ** 31)
        w = orthogonal_random_matrix(self.cfg.random_features, q.shape[-1], torch.Generator().manual_seed(seed))
        qf, kf = random_feature_map(q, w.to(q), True), random_feature_map(k, w.to(k), False)
        first = h
        for layer, norm in zip(self.layers, self.norms):
            h = norm(layer(h, qf, kf) + h)
        out = self.head(torch.relu(torch.cat([first, h], -1)))                              # [B, N, H_out * C]
        return out.reshape(b, n, self.info.h_out, c).permute(0, 2, 1, 3)
