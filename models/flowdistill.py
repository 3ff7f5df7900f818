"""FlowDistill student: VIB-MLP with STID-style embeddings (Yu et al., "FlowDistill: Scalable Traffic
Flow Prediction via Distillation from LLMs", arXiv 2504.02094, section 2.4-2.5).

One training step of the student reads in two files: the loop in bench/execution/train.py (`fit`) calls
`FlowDistill.training_loss` here, and everything that loss runs is below it in this file: the
blocks (STID embeddings, residual MLP encoder, variational bottleneck, horizon head) and the loss
terms (eq. 2, 8, 10, 11; masked MAE is the protocol's, bench.protocol.metrics). EasyST's student, the
VIB-MLP FlowDistill builds on, reuses the blocks and eq. 2 from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench.protocol.metrics import masked_mae
from bench.protocol.registry import ModelInfo, TrainConfig, check_choice, register

TBL_TARGETS = ("truth", "teacher")
TBL_GATES = ("batch", "element")
CORR_MODES = ("difference", "smoothness")
EPS_SCALES = ("std", "variance")


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
    (truth | teacher), see `teacher_bounded_loss` below.

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

    def forward_train(self, batch):
        """The training pass: (z-scored prediction [B, H_out, N, C], {mu, var} of the bottleneck)."""
        z, mu, var = self.encode(batch["x"], batch["tod"], batch["dow"])
        return self.head(z), {"mu": mu, "var": var}

    def inference_graph(self) -> nn.Module:
        """The deployable forward pass (`StudentInference`): `forward` in eval mode with only what
        inference needs; build it after training (it copies the bottleneck's mean weights)."""
        return StudentInference(self)

    def training_loss(self, pred, batch, mu, var):
        """Eq. 12 on a training batch, `pred` [B, H_out, N, C] in original units (the runner maps it
        back); logs each term and, with a teacher, `tbl_active` (the share of unmasked elements
        where eq. 2's gate is open) and `teacher_mae` (the teacher's masked MAE on the batch)."""
        cfg = self.cfg
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

# ---- blocks: STID (Shao et al., CIKM 2022) and the variational bottleneck (eq. 6-7) ----

class STIDEmbedding(nn.Module):
    """E = FC(X) || E_s || E_tod || E_dow (FlowDistill eq. 3, STID).

    forward: x [B, H_in, N, C], tod/dow [B, H_in] int64 -> [B, N, out_dim]; the time-of-day and
    day-of-week embeddings are those of the last input step. node [N, node_dim] replaces the
    module's own E_s (a model that reads several datasets keeps one table per dataset and
    builds this module with num_nodes 0: no table of its own).
    """

    def __init__(self, num_nodes: int, h_in: int, channels: int, steps_per_day: int,
                 embed_dim: int, node_dim: int, tod_dim: int, dow_dim: int):
        super().__init__()
        self.series_fc = nn.Linear(h_in * channels, embed_dim)
        self.node_emb = nn.Parameter(torch.empty(num_nodes, node_dim)) if num_nodes else None
        self.tod_emb = nn.Parameter(torch.empty(steps_per_day, tod_dim))
        self.dow_emb = nn.Parameter(torch.empty(7, dow_dim))
        for p in (self.node_emb, self.tod_emb, self.dow_emb):
            if p is not None:
                nn.init.xavier_uniform_(p)
        self.out_dim = embed_dim + node_dim + tod_dim + dow_dim

    def forward(self, x, tod, dow, node=None):
        b, _, n, _ = x.shape
        node = self.node_emb if node is None else node
        return torch.cat([self.series_fc(x.permute(0, 2, 1, 3).reshape(b, n, -1)),
                          node.expand(b, -1, -1),
                          self.tod_emb[tod[:, -1]].unsqueeze(1).expand(-1, n, -1),
                          self.dow_emb[dow[:, -1]].unsqueeze(1).expand(-1, n, -1)], dim=-1)


class ResidualMLP(nn.Module):
    """STID encoder block: h + FC(Dropout(ReLU(FC(h)))), on [..., dim]."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, h):
        return h + self.body(h)

    def without_dropout(self) -> nn.Sequential:
        """The residual branch FC(ReLU(FC(h))) as at inference (shared layers, no dropout)."""
        return nn.Sequential(self.body[0], self.body[1], self.body[3])


class HorizonHead(nn.Module):
    """FC from a per-region vector to every horizon step at once: [B, N, in_dim] -> [B, H_out, N, C]."""

    def __init__(self, in_dim: int, h_out: int, channels: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, h_out * channels)
        self.h_out = h_out

    def forward(self, z):
        b, n, _ = z.shape
        return self.fc(z).reshape(b, n, self.h_out, -1).permute(0, 2, 1, 3)


class VIB(nn.Module):
    """Encoder head giving q(Z|X) = N(mu, sigma^2) with K = `bottleneck` (eq. 6) and a sample (eq. 7).

    Eq. 7 prints Z = mu + sigma^2 * eps. Sampling N(mu, sigma^2) needs Z = mu + sigma * eps, and the
    KL of eq. 8 is that of N(mu, sigma^2); the released FlowDistill and EasyST code also use sigma.
    So `eps_scale="std"` (default) is the sound reading; `eps_scale="variance"` is the literal one.
    The softplus output is taken as sigma^2 as the paper says (variance, non-negative), plus 1e-6.
    In eval mode Z = mu (the posterior mean), so test predictions are deterministic.
    """

    def __init__(self, in_dim: int, bottleneck: int, eps_scale: str = "std"):
        super().__init__()
        if eps_scale not in EPS_SCALES:
            raise ValueError(f"eps_scale={eps_scale!r}; use one of {EPS_SCALES}")
        self.stats = nn.Linear(in_dim, 2 * bottleneck)
        self.eps_scale = eps_scale

    def forward(self, h: torch.Tensor):
        """h [..., in_dim] -> (z [..., K], mu [..., K], var [..., K])."""
        mu, raw = self.stats(h).chunk(2, dim=-1)
        var = F.softplus(raw) + 1e-6
        if not self.training:
            return mu, mu, var
        scale = var.sqrt() if self.eps_scale == "std" else var
        return mu + scale * torch.randn_like(mu), mu, var


class StudentInference(nn.Module):
    """The student's inference graph: x [B, H_in, N, C] z-scored, tod/dow [B, H_in] int64 ->
    [B, H_out, N, C] z-scored, equal to `FlowDistill.forward` in eval mode. Z = mu is computed alone
    (the mu rows of the bottleneck's linear map: no variance, no sampling), the encoder has no
    dropout and nothing of the loss is left. It shares the embeddings, encoder and head with the
    student and holds a copy of the mu rows, so it is built from trained weights and not trained.
    """

    def __init__(self, student: FlowDistill):
        super().__init__()
        k = student.cfg.bottleneck
        stats = student.vib.stats
        self.embedding, self.head = student.embedding, student.head
        self.blocks = nn.ModuleList(block.without_dropout() for block in student.encoder)
        self.mu = nn.Linear(stats.in_features, k).to(stats.weight.device)
        with torch.no_grad():
            self.mu.weight.copy_(stats.weight[:k])
            self.mu.bias.copy_(stats.bias[:k])
        self.eval()

    def forward(self, x, tod, dow):
        h = self.embedding(x, tod, dow)
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.mu(h))

# ---- loss terms: eq. 8 (KL), eq. 2 (teacher-bounded), eq. 10-11 (correlation); original units ----

def gaussian_kl(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag var) || N(0, I) ), FlowDistill eq. 8, closed form.

    Args:
        mu, var: [..., K]; var > 0.
    Returns:
        0-d tensor: 0.5 * sum_K(-log var - 1 + var + mu^2), averaged over all leading axes
        (batch and regions), as both the FlowDistill and EasyST code reduce it.
    """
    return (0.5 * (-torch.log(var) - 1.0 + var + mu ** 2)).sum(-1).mean()


def absolute_error(pred, target):
    """|pred - target| element-wise: FlowDistill's L_reg before the masked mean."""
    return (pred - target).abs()


def teacher_bounded_loss(pred, teacher, truth, delta: float, target: str = "truth", gate: str = "batch",
                         error=absolute_error):
    """Teacher-bounded regression loss, FlowDistill eq. 2 (after Chen et al., NeurIPS 2017).

    The gate is open where L_reg(teacher, Y) - L_reg(student, Y) < delta, i.e. unless the student
    already beats the teacher by delta or more (the student's error is detached: the gate is a
    decision, not a gradient path). Every mean is masked like L_reg (truth == 0 left out).
    - gate="batch": one decision per batch on the batch's masked MAEs, as the released FlowDistill
      and EasyST code do;
    - gate="element": one decision per window, region, step and channel on |.| errors, the bound of
      Chen et al. (2017, eq. 5) taken per output.
    Where the gate is open the loss is |student - Y| for target="truth" (eq. 2 as printed, Chen
    et al. and both released codes: the teacher gates extra weight on the ground-truth error), or
    |student - teacher| for target="teacher" (the student regresses to the teacher's forecast).
    The loss is the sum over open, unmasked elements divided by the number of unmasked elements.

    Args:
        pred, teacher, truth: [B, H_out, N, C] in original units; delta in the same units.
        error: element-wise error (pred, target) -> tensor, |.| by default (EasyST: SmoothL1).
    Returns:
        (loss 0-d tensor, share of unmasked elements where the gate is open (float, 0..1),
        the teacher's masked mean error on the batch (float; MAE with the default error)).
    Raises:
        ValueError: an unknown target or gate (names the allowed values).
    """
    check_choice("tbl_target", target, TBL_TARGETS)
    check_choice("tbl_gate", gate, TBL_GATES)
    mask = truth != 0
    count = mask.sum().clamp(min=1)
    teacher_abs = error(teacher, truth)
    student_abs = error(pred.detach(), truth)
    teacher_mae = (teacher_abs * mask).sum() / count
    if gate == "batch":
        gap = teacher_mae - (student_abs * mask).sum() / count
        open_ = mask & bool(gap < delta)
    else:
        open_ = mask & (teacher_abs - student_abs < delta)
    err = error(pred, truth if target == "truth" else teacher)
    loss = (err * open_).sum() / count
    return loss, float(open_.sum() / count), float(teacher_mae)


def neighbours(adjacency: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The up-to-k strongest neighbours of every region (self excluded).

    Args:
        adjacency: [N, N]; a positive entry is an edge, its value the weight.
    Returns:
        index [N, k] int64 (padded with the region itself) and valid [N, k] bool.
    """
    adj = np.array(adjacency, dtype=np.float64)
    np.fill_diagonal(adj, 0.0)
    n = adj.shape[0]
    order = np.argsort(-adj, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(adj, order, axis=1) > 0
    index = np.where(valid, order, np.arange(n)[:, None])
    return torch.as_tensor(index, dtype=torch.int64), torch.as_tensor(valid)


def spatial_correlation_loss(pred, truth, index, valid, mode: str = "difference"):
    """Spatial correlation loss over the K_r nearest regions, FlowDistill eq. 10.

    mode="difference" (default): mean |(yhat_s - yhat_k) - (y_s - y_k)| over valid neighbour
    pairs: predictions must keep the true contrast between neighbours; it is zero at the truth,
    so it does not bias the forecast. mode="smoothness": mean |yhat_s - yhat_k|, the literal reading
    that pulls neighbours' forecasts together even where the truth differs.

    Args:
        pred, truth: [B, H, N, C]; index, valid: [N, K_r] from `neighbours`.
    """
    check_choice("corr_mode", mode, CORR_MODES)
    diff = pred.unsqueeze(-2) - pred[:, :, index]              # [B, H, N, K_r, C]
    if mode == "difference":
        diff = diff - (truth.unsqueeze(-2) - truth[:, :, index])
    w = valid.to(pred.dtype)[None, None, :, :, None]
    return (diff.abs() * w).sum() / (w.sum() * pred.shape[0] * pred.shape[1] * pred.shape[-1]).clamp(min=1)


def temporal_correlation_loss(pred, truth, window: int = 12, mode: str = "difference"):
    """Temporal correlation loss within a window of H steps, FlowDistill eq. 11.

    Pairs (t, t+l) for 1 <= l <= H/2 inside the forecast horizon (l and -l give the same pair).
    mode="difference": mean |(yhat_t - yhat_{t+l}) - (y_t - y_{t+l})|; mode="smoothness":
    mean |yhat_t - yhat_{t+l}|. Args: pred, truth [B, H_out, N, C].
    """
    check_choice("corr_mode", mode, CORR_MODES)
    terms = []
    for lag in range(1, min(window // 2, pred.shape[1] - 1) + 1):
        d = pred[:, :-lag] - pred[:, lag:]
        if mode == "difference":
            d = d - (truth[:, :-lag] - truth[:, lag:])
        terms.append(d.abs().flatten())
    return torch.cat(terms).mean() if terms else pred.sum() * 0.0
