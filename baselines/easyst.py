"""EasyST: MLP student with information bottleneck distilled from a graph teacher (Tang et al.,
"EasyST: A Simple Framework for Spatio-Temporal Prediction", CIKM 2024). Facts read from the
official code, github HKUDS/EasyST @ ee565cc (methods/student/DMLP_Stu_IB.py, engine.py,
config/student/dmlp_ib/pems07/stgcn/student.yaml).

Deviations, each for a reason:
- teacher: STWA by default (the paper's STGCN is not in this registry yet); any registered model
  can be named with config `teacher=`.
- the series embedding reads the z-scored flows only; the code also feeds the raw tod/dow indices
  into it, which duplicates the tod/dow embeddings and mixes unscaled integers into a linear map.
- z-score fitted on the training part (the code uses a global min-max over the whole series).
- the SmoothL1 losses are masked where the truth is 0, as every training loss under this protocol.
- in eval mode Z = mu (the code evaluates one noisy sample).
- early stopping on validation MAE from epoch 1 (the code waits until epoch 100, on MAPE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from bench.protocol.metrics import masked_huber, masked_mae
from bench.protocol.registry import ModelInfo, TrainConfig, register
from models.flowdistill import (TBL_GATES, TBL_TARGETS, HorizonHead, ResidualMLP, STIDEmbedding, gaussian_kl,
                                teacher_bounded_loss)


def smooth_l1(pred, target):
    """SmoothL1 (beta 1) element-wise: EasyST's regression error."""
    return F.smooth_l1_loss(pred, target, reduction="none", beta=1.0)


@dataclass
class EasySTConfig(TrainConfig):
    """Official defaults: embeddings 64 (series, node, DNE, tod, dow -> hidden 320), 3 layers,
    dropout 0.15, K = hidden / 2 = 160, teacher-bounded margin delta 0.1 and lambda 0.3, KL weight
    2 x 0.001, SmoothL1 loss, Adam 2e-3 halved at epochs 1, 20, 50, batch 32, 200 epochs."""

    embed_dim: int = 64
    node_dim: int = 64
    tod_dim: int = 64
    dow_dim: int = 64
    dne_dim: int = 64
    num_layers: int = 3
    dropout: float = 0.15
    delta: float = 0.1
    lambda_tbl: float = 0.3
    info_beta: float = 1e-3
    lr: float = 2e-3
    lr_decay: float = 0.5
    lr_milestones: tuple[int, ...] | None = (1, 20, 50)
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 20
    teacher: str | None = "stwa"
    tbl_target: str = "truth"         # the released code; "teacher": regress to the teacher's forecast
    tbl_gate: str = "batch"           # the released code; "element": the bound per element

    CHOICES = {"tbl_gate": TBL_GATES, "tbl_target": TBL_TARGETS}


@register("easyst", "EasyST (CIKM 2024): IB-MLP student with teacher-bounded loss")
class EasyST(nn.Module):
    """EasyST student. forward: x [B, H_in, N, C] z-scored, tod/dow [B, H_in] -> [B, H_out, N, C].

    Blocks: E = FC(X) || E_node || DNE || E_tod || E_dow (the code's order: it decides which
    embeddings the residual stream carries into the mu half and which into the std half), where
    the dynamic node encoding DNE = softmax over regions of a 1x(H_in) temporal FC of
    P1[tod] x Pk x P2 (a Tucker-style product of time-of-day, region and core tensors); residual
    MLP encoder; the hidden vector is split into mu and softplus std (K = hidden / 2),
    Z = mu + std * eps; head FC(Z).
    """

    Config = EasySTConfig

    def __init__(self, cfg: EasySTConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        n, m = info.num_nodes, cfg.dne_dim
        self.embedding = STIDEmbedding(n, info.h_in, info.num_channels, info.steps_per_day,
                                       cfg.embed_dim, cfg.node_dim, cfg.tod_dim, cfg.dow_dim)
        self.dne_time = nn.Parameter(torch.randn(info.steps_per_day, m))
        self.dne_node = nn.Parameter(torch.randn(n, m))
        self.dne_core = nn.Parameter(torch.randn(m, m, m))
        self.dne_steps = nn.Linear(info.h_in, 1)
        hidden = self.embedding.out_dim + m
        if hidden % 2:
            raise ValueError(f"EasyST hidden size {hidden} must be even (mu and std halves)")
        self.encoder = nn.Sequential(*[ResidualMLP(hidden, cfg.dropout) for _ in range(cfg.num_layers)])
        self.head = HorizonHead(hidden // 2, info.h_out, info.num_channels)

    def dynamic_node_encoding(self, tod):
        """tod [B, H_in] -> [B, N, dne_dim]."""
        w = torch.einsum("btm,mkd->btkd", self.dne_time[tod], self.dne_core)     # [B, T, m, m]
        e = torch.einsum("nk,btkd->bdnt", self.dne_node, w)                       # [B, m, N, T]
        return self.dne_steps(e).squeeze(-1).softmax(dim=-1).transpose(1, 2)     # softmax over regions

    def encode(self, x, tod, dow):
        s = self.embedding(x, tod, dow)                                  # FC(X) || E_node || E_tod || E_dow
        k = self.cfg.embed_dim + self.cfg.node_dim
        e = torch.cat([s[..., :k], self.dynamic_node_encoding(tod), s[..., k:]], dim=-1)   # the code's order
        mu, raw = self.encoder(e).chunk(2, dim=-1)
        std = F.softplus(raw) + 1e-6
        z = mu + std * torch.randn_like(std) if self.training else mu
        return z, mu, std

    def forward(self, x, tod, dow):
        return self.head(self.encode(x, tod, dow)[0])

    def forward_train(self, batch):
        """The training pass: (z-scored prediction [B, H_out, N, C], {mu, std} of the bottleneck)."""
        z, mu, std = self.encode(batch["x"], batch["tod"], batch["dow"])
        return self.head(z), {"mu": mu, "std": std}

    def training_loss(self, pred, batch, mu, std):
        """engine.py reg_loss_1: (1 + lambda) * L_student if L_teacher - L_student < delta else
        L_student (SmoothL1, original units, one decision per batch), all over ln 2, plus
        2 * info_beta * KL / ln 2. The teacher term is `teacher_bounded_loss` with SmoothL1 errors,
        so `tbl_gate` and `tbl_target` apply as in FlowDistill (defaults: the released code)."""
        student = masked_huber(pred, batch["y"])
        reg, logs = student, {"huber": student.item(), "mae": masked_mae(pred.detach(), batch["y"]).item()}
        if "y_teacher" in batch:
            tbl, active, _ = teacher_bounded_loss(pred, batch["y_teacher"], batch["y"], self.cfg.delta,
                                                  self.cfg.tbl_target, self.cfg.tbl_gate, smooth_l1)
            reg = student + self.cfg.lambda_tbl * tbl
            logs |= {"tbl_active": active, "teacher_mae": masked_mae(batch["y_teacher"], batch["y"]).item()}
        kl = gaussian_kl(mu, std ** 2)
        loss = reg / math.log(2) + 2 * self.cfg.info_beta * kl / math.log(2)
        return loss, logs | {"kl": kl.item()}
