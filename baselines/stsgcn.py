"""STSGCN: spatial-temporal synchronous graph convolutional network (Song et al., "Spatial-Temporal
Synchronous Graph Convolutional Networks: A New Framework for Spatial-Temporal Network Data
Forecasting", AAAI 2020). Facts read from the official MXNet code, github Davidham3/STSGCN
@ 3f825f6 (models/stsgcn.py, utils.py, main.py, config/PEMS08/individual_GLU_mask_emb.json),
not copied.

Structure (the default "individual_GLU_mask_emb" configuration):
- input FC (C -> 64) with ReLU;
- 4 STSGCLs; each adds a learnable temporal [T, 64] and spatial [N, 64] embedding, then slides a
  3-step window over time (T -> T - 2) with a separate STSGCM per window position (28 in all);
- an STSGCM runs 3 graph convolutions on the localized spatio-temporal graph (3N x 3N: the
  adjacency in each step, each node linked to itself at the neighbouring steps, self-loops; no
  degree normalisation) times a learnable mask (initialised to 1 on edges), each with a GLU
  (FC to twice the width, first half x sigmoid(second half)), crops the middle step's N rows of
  every convolution and takes their element-wise maximum;
- one output head per horizon step: FC(4 x 64 -> 128), ReLU, FC(128 -> C).
The graph product runs as a sparse matrix product over the graph's edges (the same result as the
code's dense product; the mask stays a dense 3N x 3N parameter, of which only the entries on edges
receive gradients, as in the code). Weights are initialised as the code's Xavier(magnitude 3e-4): uniform(+-sqrt(3e-4 / mean fan)),
with MXNet's fans (shape[1] and shape[0], each times the product of the remaining dimensions: for the
spatial embedding [1, 1, N, 64] both are N x 64); biases zero. Loss: Huber (delta 1) in original units.

Deviations, each for a reason:
- two output channels per head (inflow, outflow); the code predicts one (flow);
- constant learning rate: the code's one-epoch linear warm-up and power-2 polynomial decay are not
  in the shared training loop (Adam 1e-3 as the code);
- per-channel z-score on the training part (the code uses one scalar mean and std) and
  z-scored outputs (the runner's contract); the Huber loss is masked where the truth is 0 and
  averaged (the code sums it, which only rescales Adam's steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.protocol.metrics import masked_huber
from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class STSGCNConfig(TrainConfig):
    """Official configuration: embedding 64, filters [64, 64, 64] in each of 4 layers, output
    hidden 128, mask and both embeddings on, Adam lr 1e-3, batch 32, 200 epochs (best validation
    epoch kept: patience = epochs)."""

    embed_dim: int = 64
    gcn_layers: int = 3
    num_layers: int = 4
    head_hidden: int = 128
    use_mask: bool = True
    init_magnitude: float = 3e-4
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 200


def localized_adjacency(adjacency: np.ndarray, steps: int = 3) -> np.ndarray:
    """The localized spatio-temporal graph [steps*N, steps*N] (index = step * N + node): the binary
    symmetric adjacency in every diagonal block, node i linked to itself at adjacent steps, and
    ones on the diagonal (utils.py construct_adj)."""
    a = (np.asarray(adjacency) != 0).astype(np.float32)
    a = np.maximum(a, a.T)
    n = len(a)
    out = np.zeros((steps * n, steps * n), dtype=np.float32)
    for k in range(steps):
        out[k * n:(k + 1) * n, k * n:(k + 1) * n] = a
    for k in range(steps - 1):
        idx = np.arange(n)
        out[k * n + idx, (k + 1) * n + idx] = 1
        out[(k + 1) * n + idx, k * n + idx] = 1
    np.fill_diagonal(out, 1)
    return out


def graph_product(adj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """adj @ h for every batch element: adj [M, M] dense or sparse COO, h [B, M, D] -> [B, M, D]."""
    if not adj.is_sparse:
        return torch.matmul(adj, h)
    b, m, d = h.shape
    return torch.sparse.mm(adj, h.permute(1, 0, 2).reshape(m, b * d)).reshape(m, b, d).permute(1, 0, 2)


class STSGCM(nn.Module):
    """Graph convolutions with GLU on the localized graph, middle-step crop, max over layers.
    forward(h [B, 3N, D], adj [3N, 3N]) -> [B, N, D]."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(layers))

    def forward(self, h, adj):
        n = h.shape[1] // 3
        outs = []
        for fc in self.fcs:
            lhs, rhs = fc(graph_product(adj, h)).chunk(2, dim=-1)
            h = lhs * torch.sigmoid(rhs)
            outs.append(h[:, n:2 * n])
        return torch.stack(outs).amax(dim=0)


class STSGCL(nn.Module):
    """Position embeddings, then one STSGCM per 3-step window: [B, T, N, D] -> [B, T - 2, N, D]."""

    def __init__(self, t: int, n: int, dim: int, layers: int):
        super().__init__()
        self.temporal = nn.Parameter(torch.empty(1, t, 1, dim))
        self.spatial = nn.Parameter(torch.empty(1, 1, n, dim))
        self.modules_ = nn.ModuleList(STSGCM(dim, layers) for _ in range(t - 2))

    def forward(self, x, adj):
        x = x + self.temporal + self.spatial
        b, t, n, d = x.shape
        return torch.stack([m(x[:, i:i + 3].reshape(b, 3 * n, d), adj) for i, m in enumerate(self.modules_)], dim=1)


@register("stsgcn", "STSGCN (AAAI 2020): synchronous graph convolution on a localized 3-step graph")
class STSGCN(nn.Module):
    """STSGCN. forward: x [B, H_in, N, C] z-scored -> [B, H_out, N, C] z-scored.

    Raises:
        ValueError: H_in too short for the layers (each removes 2 steps).
    """

    Config = STSGCNConfig

    def __init__(self, cfg: STSGCNConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        n, c, d = info.num_nodes, info.num_channels, cfg.embed_dim
        t_last = info.h_in - 2 * cfg.num_layers
        if t_last < 1:
            raise ValueError(f"STSGCN with {cfg.num_layers} layers needs H_in > {2 * cfg.num_layers}, got {info.h_in}")
        adj = torch.tensor(localized_adjacency(info.adjacency))
        self.register_buffer("adj", adj)
        self.register_buffer("edges", adj.nonzero().T.contiguous(), persistent=False)    # [2, E]
        self.mask = nn.Parameter((adj != 0).float()) if cfg.use_mask else None
        self.inp = nn.Linear(c, d)
        self.layers = nn.ModuleList(STSGCL(info.h_in - 2 * i, n, d, cfg.gcn_layers) for i in range(cfg.num_layers))
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(t_last * d, cfg.head_hidden), nn.ReLU(),
                                                 nn.Linear(cfg.head_hidden, c)) for _ in range(info.h_out))
        for name, p in self.named_parameters():
            if name == "mask":
                continue
            if name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                hw = math.prod(p.shape[2:])                     # MXNet's Xavier fans: dims 0 / 1 x the rest
                fan_out, fan_in = p.shape[0] * hw, p.shape[1] * hw
                bound = math.sqrt(cfg.init_magnitude / ((fan_in + fan_out) / 2))
                nn.init.uniform_(p, -bound, bound)

    def forward(self, x, tod=None, dow=None):
        rows, cols = self.edges
        values = self.adj[rows, cols] * (self.mask[rows, cols] if self.mask is not None else 1.0)
        adj = torch.sparse_coo_tensor(self.edges, values, self.adj.shape, check_invariants=False,
                                      is_coalesced=True)               # mask (.) adj on the edges (sorted)
        h = torch.relu(self.inp(x))                                            # [B, T, N, D]
        for layer in self.layers:
            h = layer(h, adj)
        b, t, n, d = h.shape
        flat = h.permute(0, 2, 1, 3).reshape(b, n, t * d)
        return torch.stack([head(flat) for head in self.heads], dim=1)          # [B, H_out, N, C]

    def training_loss(self, pred, batch: dict):
        """Masked Huber (delta 1) in original units, as the code's loss."""
        loss = masked_huber(pred, batch["y"])
        return loss, {"huber": loss.item()}
