"""ASTGCN: attention-based spatial-temporal graph convolutional network (Guo et al., "Attention
Based Spatial-Temporal Graph Convolutional Networks for Traffic Flow Forecasting", AAAI 2019),
the recent-component model of the official PyTorch code, github guoshnBJTU/ASTGCN-r-pytorch
@ 768732e (model/ASTGCN_r.py, lib/utils.py, configurations/PEMS04_astgcn.conf). Facts read, not
copied.

Block order (as the code): temporal attention E over the block input; spatial attention S on the
temporally attended input; Chebyshev graph convolution of the *original* block input with
T_k (.) S (no bias, ReLU); a (1 x 3) time convolution; a (1 x 1) residual convolution of the
input; ReLU(sum), LayerNorm over channels. Two blocks, then a convolution across the time axis
maps to the H_out steps. Initialisation as the code: Xavier-uniform for tensors of two or more
dimensions, U[0, 1) for the rest (vectors, biases, LayerNorm).

torch-geometric: the Laplacian comes from its `get_laplacian`. Its `ChebConv` cannot carry the
spatial attention, which multiplies each polynomial T_k entry by entry per sample, so the
convolution is ours; without attention (S = 1) it equals `ChebConv(normalization=None)` with the
exact lambda_max (tests/test_baselines.py checks this).

Deviations, each for a reason:
- `cheb`: "matmul" (default) builds T_k = 2 L~ T_{k-1} - T_{k-2} with matrix products, as the
  paper defines Chebyshev polynomials (and LibCity's port does); the official code multiplies
  element by element (numpy `*`), kept as `cheb="hadamard"`.
- two output channels (inflow, outflow): the final convolution maps to H_out x C outputs; the
  code predicts one channel (flow).
- z-scored targets (the runner's contract) instead of raw-scale outputs; the loss is MSE (as the
  code) on the original scale, masked where the truth is 0 as every loss under this protocol.
- the code trains all 80 epochs and tests the best-validation epoch; here patience 80 does the
  same within the runner's early stopping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register


@dataclass
class ASTGCNConfig(TrainConfig):
    """Official PEMS04/08 configuration: K = 3, 64 Chebyshev and 64 time filters, 2 blocks, time
    stride 1, batch 32, Adam lr 1e-3 without decay, 80 epochs, MSE loss."""

    cheb_k: int = 3
    cheb_filters: int = 64
    time_filters: int = 64
    num_blocks: int = 2
    cheb: str = "matmul"              # "matmul" (paper) or "hadamard" (official code)
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 80
    patience: int = 80


def scaled_laplacian(adjacency: np.ndarray) -> np.ndarray:
    """L~ = 2 L / lambda_max - I with L = D - A (D: row sums), lambda_max the largest eigenvalue
    of L (lib/utils.py scaled_Laplacian). adjacency [N, N] -> [N, N] float64. L comes from
    torch-geometric's `get_laplacian` (no normalisation); lambda_max is computed exactly, as the
    official code does, not set to 2 as torch-geometric's ChebConv assumes.

    Raises:
        ValueError: a graph without edges (lambda_max = 0).
    """
    # imported here, not at the top: torch-geometric takes about 2.5 s to import, and every process
    # that loads the model registry (each Ray trial, each scalability point) would pay it
    from torch_geometric.utils import dense_to_sparse, get_laplacian, to_dense_adj

    a = torch.as_tensor(np.asarray(adjacency, dtype=np.float64))
    n = len(a)
    edge_index, weight = dense_to_sparse(a)
    edge_index, weight = get_laplacian(edge_index, weight, normalization=None, num_nodes=n)
    lap = to_dense_adj(edge_index, edge_attr=weight, max_num_nodes=n)[0].numpy()
    lam = float(np.max(np.linalg.eigvals(lap).real))
    if lam <= 0:
        raise ValueError("ASTGCN needs a graph with at least one edge (largest Laplacian eigenvalue is 0)")
    return 2 * lap / lam - np.eye(n)


def chebyshev_polynomials(lap: np.ndarray, k: int, mode: str = "matmul") -> np.ndarray:
    """[K, N, N]: T_0 = I, T_1 = L~, T_k = 2 L~ T_{k-1} - T_{k-2} (matrix product, or element-wise
    product for mode="hadamard", as the official code computes it)."""
    if mode not in ("matmul", "hadamard"):
        raise ValueError(f"cheb must be 'matmul' or 'hadamard', not {mode!r}")
    polys = [np.eye(len(lap)), lap]
    for _ in range(2, k):
        prod = lap @ polys[-1] if mode == "matmul" else lap * polys[-1]
        polys.append(2 * prod - polys[-2])
    return np.stack(polys[:k])


class SpatialAttention(nn.Module):
    """S = softmax_dim1(V_s sigmoid((X W1) W2 (W3 X)^T + b_s)): x [B, N, F, T] -> [B, N, N]."""

    def __init__(self, n: int, f: int, t: int):
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Parameter(torch.empty(t)), nn.Parameter(torch.empty(f, t)), nn.Parameter(torch.empty(f))
        self.bs, self.vs = nn.Parameter(torch.empty(1, n, n)), nn.Parameter(torch.empty(n, n))

    def forward(self, x):
        lhs = torch.matmul(torch.matmul(x, self.w1), self.w2)               # [B, N, T]
        rhs = torch.matmul(self.w3, x).transpose(-1, -2)                    # [B, T, N]
        return torch.softmax(torch.matmul(self.vs, torch.sigmoid(torch.matmul(lhs, rhs) + self.bs)), dim=1)


class TemporalAttention(nn.Module):
    """E = softmax_dim1(V_e sigmoid(((X^T U1) U2)(U3 X) + b_e)): x [B, N, F, T] -> [B, T, T]."""

    def __init__(self, n: int, f: int, t: int):
        super().__init__()
        self.u1, self.u2, self.u3 = nn.Parameter(torch.empty(n)), nn.Parameter(torch.empty(f, n)), nn.Parameter(torch.empty(f))
        self.be, self.ve = nn.Parameter(torch.empty(1, t, t)), nn.Parameter(torch.empty(t, t))

    def forward(self, x):
        lhs = torch.matmul(torch.matmul(x.permute(0, 3, 2, 1), self.u1), self.u2)   # [B, T, N]
        rhs = torch.matmul(self.u3, x)                                              # [B, N, T]
        return torch.softmax(torch.matmul(self.ve, torch.sigmoid(torch.matmul(lhs, rhs) + self.be)), dim=1)


class ChebConvWithAttention(nn.Module):
    """sum_k ((T_k (.) S)^T X_t) Theta_k for each step t, then ReLU; no bias.
    x [B, N, F_in, T], s [B, N, N] -> [B, N, F_out, T]."""

    def __init__(self, polys: torch.Tensor, f_in: int, f_out: int):
        super().__init__()
        self.register_buffer("polys", polys)                                 # [K, N, N]
        self.theta = nn.Parameter(torch.empty(len(polys), f_in, f_out))

    def forward(self, x, s):
        weighted = self.polys[None] * s[:, None]                             # [B, K, N, N]
        mixed = torch.einsum("bkmn,bmft->bknft", weighted, x)                # (T_k . S)^T X
        return torch.relu(torch.einsum("bknft,kfo->bnot", mixed, self.theta))


class ASTGCNBlock(nn.Module):
    def __init__(self, polys, n: int, f_in: int, t: int, cheb_filters: int, time_filters: int):
        super().__init__()
        self.tat, self.sat = TemporalAttention(n, f_in, t), SpatialAttention(n, f_in, t)
        self.cheb = ChebConvWithAttention(polys, f_in, cheb_filters)
        self.time_conv = nn.Conv2d(cheb_filters, time_filters, (1, 3), padding=(0, 1))
        self.residual = nn.Conv2d(f_in, time_filters, (1, 1))
        self.norm = nn.LayerNorm(time_filters)

    def forward(self, x):                                                    # [B, N, F, T]
        b, n, f, t = x.shape
        e = self.tat(x)
        x_tat = torch.matmul(x.reshape(b, -1, t), e).reshape(b, n, f, t)
        g = self.cheb(x, self.sat(x_tat))                                    # [B, N, F_cheb, T]
        out = self.time_conv(g.permute(0, 2, 1, 3)) + self.residual(x.permute(0, 2, 1, 3))   # [B, F, N, T]
        return self.norm(torch.relu(out).permute(0, 3, 2, 1)).permute(0, 2, 3, 1)           # [B, N, F, T]


@register("astgcn", "ASTGCN (AAAI 2019): spatial/temporal attention with Chebyshev graph convolution")
class ASTGCN(nn.Module):
    """ASTGCN (recent component). forward: x [B, H_in, N, C] z-scored -> [B, H_out, N, C] z-scored.

    Raises:
        ValueError: an adjacency without edges, or an unknown `cheb` mode.
    """

    Config = ASTGCNConfig

    def __init__(self, cfg: ASTGCNConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        polys = torch.tensor(chebyshev_polynomials(scaled_laplacian(info.adjacency), cfg.cheb_k, cfg.cheb),
                             dtype=torch.float32)
        n, t = info.num_nodes, info.h_in
        blocks = [ASTGCNBlock(polys, n, info.num_channels, t, cfg.cheb_filters, cfg.time_filters)]
        blocks += [ASTGCNBlock(polys, n, cfg.time_filters, t, cfg.cheb_filters, cfg.time_filters)
                   for _ in range(cfg.num_blocks - 1)]
        self.blocks = nn.ModuleList(blocks)
        self.final = nn.Conv2d(t, info.h_out * info.num_channels, (1, cfg.time_filters))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
            else:
                nn.init.uniform_(p)

    def forward(self, x, tod=None, dow=None):
        h = x.permute(0, 2, 3, 1)                                            # [B, N, C, T]
        for block in self.blocks:
            h = block(h)
        out = self.final(h.permute(0, 3, 1, 2))[..., 0]                      # [B, H_out * C, N]
        b, _, n = out.shape
        return out.reshape(b, self.info.h_out, self.info.num_channels, n).permute(0, 1, 3, 2)

    def training_loss(self, pred, batch: dict):
        """Masked MSE in original units (the official code trains with MSE)."""
        y = batch["y"]
        mask = (y != 0).float()
        loss = ((pred - y) ** 2 * mask).sum() / mask.sum().clamp(min=1)
        return loss, {"mse": loss.item()}
