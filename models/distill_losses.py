"""FlowDistill loss terms: teacher-bounded loss (eq. 2), spatial (eq. 10) and temporal (eq. 11)
correlation losses. All tensors are in original units, shaped [B, H_out, N, C]."""
from __future__ import annotations

import numpy as np
import torch

from bench.metrics import masked_mae

TBL_TARGETS = ("truth", "teacher")
TBL_GATES = ("batch", "element")
CORR_MODES = ("difference", "smoothness")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else ValueError naming the allowed values."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; use one of {', '.join(allowed)}")
    return value


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
