"""FlowDistill student: VIB-MLP with STID-style embeddings (Yu et al., "FlowDistill: Scalable Traffic
Flow Prediction via Distillation from LLMs", arXiv 2504.02094, section 2.4-2.5)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.metrics import masked_mae
from bench.registry import ModelInfo, TrainConfig, register
from models.distill_losses import (CORR_MODES, TBL_GATES, TBL_TARGETS, check_choice, neighbours,
                                   spatial_correlation_loss, teacher_bounded_loss, temporal_correlation_loss)
from models.stid import HorizonHead, ResidualMLP, STIDEmbedding
from models.vib import EPS_SCALES, VIB, gaussian_kl


@dataclass
class FlowDistillConfig(TrainConfig):
    """Defaults: paper section 4.1.4 and 4.5 (d = 64, 3 layers, K = 64, delta = 10, lambdas,
    lr 0.0055 decayed by 0.6, batch 80). lr_step = 15 epochs and grad_clip = 15 follow the
    released code (the paper gives no step); dropout 0.15 is STID's."""

    embed_dim: int = 64
    node_dim: int = 64
    tod_dim: int = 64
    dow_dim: int = 64
    num_layers: int = 3
    bottleneck: int = 64
    dropout: float = 0.15
    vib: bool = True                  # False: Z = mu, no sampling, no KL (ablation w/o-IB)
    eps_scale: str = "std"            # eq. 7: "std" (sound) or "variance" (as printed)
    delta: float = 10.0
    lambda_tbl: float = 0.1
    lambda_kl: float = 1e-3
    lambda_spa: float = 0.6
    lambda_tem: float = 0.35
    k_neighbours: int = 8             # K_r of eq. 10
    tem_window: int = 12              # H of eq. 11
    tbl_target: str = "truth"         # eq. 2: "truth" (as printed) or "teacher" (regress to its forecast)
    tbl_gate: str = "batch"           # eq. 2's bound: "batch" (released code) or "element" (Chen et al. 2017)
    corr_mode: str = "difference"     # eq. 10-11: "difference" (sound) or "smoothness" (literal)
    lr: float = 0.0055
    lr_decay: float = 0.6
    lr_step: int = 15
    batch_size: int = 80
    max_epochs: int = 200
    patience: int = 25
    grad_clip: float | None = 15.0
    teacher: str | None = "flowdistill-teacher"   # the LLM teacher (section 2.2); --teacher stwa swaps it

    CHOICES = {"tbl_gate": TBL_GATES, "tbl_target": TBL_TARGETS, "corr_mode": CORR_MODES, "eps_scale": EPS_SCALES}


@register("flowdistill", "FlowDistill student (VIB-MLP) distilled from its teacher")
@register("flowdistill-element", "FlowDistill student, eq. 2's bound decided per element (Chen et al. 2017)",
          tbl_gate="element")
@register("flowdistill-kd", "FlowDistill student regressing to the teacher's forecast where eq. 2's bound is open",
          tbl_target="teacher")
@register("flowdistill-kd-element", "FlowDistill student regressing to the teacher's forecast, bound per element",
          tbl_target="teacher", tbl_gate="element")
@register("flowdistill-wo-tb", "FlowDistill student without teacher (ablation w/o-TB)", teacher=None)
@register("flowdistill-wo-ib", "FlowDistill without the information bottleneck (ablation w/o-IB)", vib=False)
@register("flowdistill-wo-sc", "FlowDistill without spatial correlation loss (ablation w/o-SC)", lambda_spa=0.0)
@register("flowdistill-wo-tc", "FlowDistill without temporal correlation loss (ablation w/o-TC)", lambda_tem=0.0)
class FlowDistill(nn.Module):
    """VIB-MLP student of FlowDistill.

    forward: x [B, H_in, N, C] (z-scored), tod/dow [B, H_in] -> [B, H_out, N, C] (z-scored).
    Blocks as the paper draws them: embeddings E = FC(X) || E_s || E_tod || E_dow (eq. 3), MLP
    encoder to q(Z|X) = N(mu, sigma^2) with K = bottleneck (eq. 6-7), head Y = FC(Z) (eq. 9).
    Loss (eq. 12): L_reg + lambda_tbl L_tbl + lambda_kl KL + lambda_spa L_spa + lambda_tem L_tem,
    with L_reg = masked MAE in original units; L_tbl is dropped when no teacher is given (w/o-TB).
    How the teacher enters L_tbl is config: `tbl_gate` (batch | element) and `tbl_target`
    (truth | teacher), see `models.distill_losses.teacher_bounded_loss`.

    Raises:
        ValueError: an unknown tbl_gate, tbl_target, corr_mode or eps_scale (names the allowed values).
    """

    Config = FlowDistillConfig

    def __init__(self, cfg: FlowDistillConfig, info: ModelInfo):
        super().__init__()
        check_choice("tbl_gate", cfg.tbl_gate, TBL_GATES)
        check_choice("tbl_target", cfg.tbl_target, TBL_TARGETS)
        check_choice("corr_mode", cfg.corr_mode, CORR_MODES)
        self.cfg, self.info = cfg, info
        self.embedding = STIDEmbedding(info.num_nodes, info.h_in, info.num_channels, info.steps_per_day,
                                       cfg.embed_dim, cfg.node_dim, cfg.tod_dim, cfg.dow_dim)
        hidden = self.embedding.out_dim
        self.encoder = nn.Sequential(*[ResidualMLP(hidden, cfg.dropout) for _ in range(cfg.num_layers)])
        self.vib = VIB(hidden, cfg.bottleneck, cfg.eps_scale)
        self.head = HorizonHead(cfg.bottleneck, info.h_out, info.num_channels)
        index, valid = neighbours(info.adjacency, cfg.k_neighbours)
        self.register_buffer("nbr_index", index, persistent=False)
        self.register_buffer("nbr_valid", valid, persistent=False)

    def encode(self, x, tod, dow):
        """Returns (z, mu, var), each [B, N, K]; z = mu without the bottleneck (w/o-IB)."""
        z, mu, var = self.vib(self.encoder(self.embedding(x, tod, dow)))
        return (z if self.cfg.vib else mu), mu, var

    def forward(self, x, tod, dow):
        return self.head(self.encode(x, tod, dow)[0])

    def training_loss(self, batch):
        """Eq. 12 on a training batch; logs each term and, with a teacher, `tbl_active` (the share of
        unmasked elements where eq. 2's gate is open) and `teacher_mae` (the teacher's masked MAE
        on the batch)."""
        cfg = self.cfg
        z, mu, var = self.encode(batch["x"], batch["tod"], batch["dow"])
        pred = self.info.scaler.inverse(self.head(z))
        y = batch["y"]
        reg = masked_mae(pred, y)
        kl = gaussian_kl(mu, var) if cfg.vib else reg * 0.0
        spa = spatial_correlation_loss(pred, y, self.nbr_index, self.nbr_valid, cfg.corr_mode)
        tem = temporal_correlation_loss(pred, y, cfg.tem_window, cfg.corr_mode)
        loss = reg + cfg.lambda_kl * kl + cfg.lambda_spa * spa + cfg.lambda_tem * tem
        logs = {"mae": reg.item(), "kl": kl.item(), "spa": spa.item(), "tem": tem.item()}
        if "y_teacher" in batch and cfg.lambda_tbl:
            tbl, active, teacher_mae = teacher_bounded_loss(pred, batch["y_teacher"], y, cfg.delta, cfg.tbl_target,
                                                            cfg.tbl_gate)
            loss = loss + cfg.lambda_tbl * tbl
            logs |= {"tbl": tbl.item(), "tbl_active": active, "teacher_mae": teacher_mae}
        return loss, logs
