"""FlowDistill loss terms: teacher-bounded loss (eq. 2), spatial (eq. 10) and temporal (eq. 11)
correlation losses. All tensors are in original units, shaped [B, H_out, N, C]."""
from __future__ import annotations

import numpy as np
import torch

from bench.metrics import masked_mae

TBL_TARGETS = ("truth", "teacher")
CORR_MODES = ("difference", "smoothness")


def teacher_bounded_loss(pred, teacher, truth, delta: float, target: str = "truth"):
    """Teacher-bounded regression loss, FlowDistill eq. 2 (after Chen et al., NeurIPS 2017).

    Active when L_reg(teacher, Y) - L_reg(student, Y) < delta, i.e. unless the student already
    beats the teacher by delta or more; L_reg is masked MAE over the batch (one decision per batch,
    as in the released FlowDistill and EasyST code).
    When active the loss is L_reg(student, Y) for target="truth" (eq. 2 as printed, Chen et al.,
    and both released codes: the teacher gates extra weight on the ground-truth error), or
    L_reg(student, teacher) for target="teacher" (the student regresses to the teacher's forecast).

    Returns:
        (loss 0-d tensor, active bool).
    """
    if target not in TBL_TARGETS:
        raise ValueError(f"tbl_target={target!r}; use one of {TBL_TARGETS}")
    student_err = masked_mae(pred, truth)
    teacher_err = masked_mae(teacher, truth)
    active = bool(teacher_err - student_err.detach() < delta)
    if not active:
        return pred.sum() * 0.0, False
    return (student_err if target == "truth" else (pred - teacher).abs().mean()), True


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
    if mode not in CORR_MODES:
        raise ValueError(f"corr_mode={mode!r}; use one of {CORR_MODES}")
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
    if mode not in CORR_MODES:
        raise ValueError(f"corr_mode={mode!r}; use one of {CORR_MODES}")
    terms = []
    for lag in range(1, min(window // 2, pred.shape[1] - 1) + 1):
        d = pred[:, :-lag] - pred[:, lag:]
        if mode == "difference":
            d = d - (truth[:, :-lag] - truth[:, lag:])
        terms.append(d.abs().flatten())
    return torch.cat(terms).mean() if terms else pred.sum() * 0.0
