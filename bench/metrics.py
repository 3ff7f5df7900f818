"""Masked metrics on the original scale, as BasicTS and LargeST compute them.

Entries whose ground truth equals `null_value` (0: no flow recorded) are left out of every mean.
"""
from __future__ import annotations

import torch


def _mask(truth: torch.Tensor, null_value: float) -> torch.Tensor:
    return ~torch.isclose(truth, torch.full_like(truth, null_value))


def masked_mae(pred: torch.Tensor, truth: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean |pred - truth| over entries with truth != null_value; any equal shapes; 0-d tensor.

    Returns 0 when every entry is masked (so a loss stays finite on an all-zero batch).
    """
    mask = _mask(truth, null_value)
    return (pred - truth).abs()[mask].sum() / mask.sum().clamp(min=1)


def masked_rmse(pred: torch.Tensor, truth: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """sqrt of the mean squared error over entries with truth != null_value."""
    mask = _mask(truth, null_value)
    return ((pred - truth) ** 2)[mask].sum().div(mask.sum().clamp(min=1)).sqrt()


def masked_mape(pred: torch.Tensor, truth: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean |pred - truth| / |truth| over entries with truth != null_value, in percent."""
    mask = _mask(truth, null_value)
    return ((pred - truth).abs()[mask] / truth.abs()[mask]).sum().div(mask.sum().clamp(min=1)) * 100.0


def evaluate(pred: torch.Tensor, truth: torch.Tensor, buckets=None) -> list[dict]:
    """Overall, per-horizon and per-volume-bucket metrics.

    Args:
        pred, truth: [W, H_out, N, C] in original units.
        buckets: optional [N] int bucket of each region (0 = lowest volume), see
            `bench.protocol.volume_buckets`.
    Returns:
        rows {"horizon", "bucket", "mae", "rmse", "mape" (percent), "mae_unmasked", "rmse_unmasked"
        (every entry, zeros included: the paper's eq. 13)}: first horizon "all" and bucket
        "all", then horizons 1..H_out (bucket "all"), then buckets "q1".. (horizon "all").
    """
    if pred.shape != truth.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape")
    rows = [_row("all", "all", pred, truth)]
    rows += [_row(h + 1, "all", pred[:, h], truth[:, h]) for h in range(pred.shape[1])]
    if buckets is not None:
        buckets = torch.as_tensor(buckets)
        rows += [_row("all", f"q{b + 1}", pred[:, :, buckets == b], truth[:, :, buckets == b])
                 for b in range(int(buckets.max()) + 1)]
    return rows


def _row(horizon, bucket, pred, truth) -> dict:
    return {"horizon": horizon, "bucket": bucket, "mae": float(masked_mae(pred, truth)),
            "rmse": float(masked_rmse(pred, truth)), "mape": float(masked_mape(pred, truth)),
            "mae_unmasked": float((pred - truth).abs().mean()), "rmse_unmasked": float((pred - truth).pow(2).mean().sqrt())}


def masked_huber(pred: torch.Tensor, truth: torch.Tensor, beta: float = 1.0, null_value: float = 0.0) -> torch.Tensor:
    """SmoothL1 (Huber, `beta`) averaged over entries with truth != null_value: the Huber losses of
    STWA and EasyST under this protocol's mask."""
    mask = _mask(truth, null_value)
    return torch.nn.functional.smooth_l1_loss(pred[mask], truth[mask], beta=beta) if mask.any() else pred.sum() * 0.0


def window_mae(pred: torch.Tensor, truth: torch.Tensor, null_value: float = 0.0) -> list[float]:
    """Masked MAE of each window: [W, H_out, N, C] -> W floats (NaN for a window whose truth is all
    null). The paired tests of `bench.stats` compare two models on these."""
    mask = _mask(truth, null_value)
    err = ((pred - truth).abs() * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)
    return [float(v) for v in err]
