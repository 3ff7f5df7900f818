"""Masked metrics on the original scale, as BasicTS and LargeST compute them.

Entries whose ground truth equals `null_value` (0: no flow recorded) are left out of every mean.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.protocol.split import Windows, volume_buckets


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
            `bench.protocol.split.volume_buckets`.
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
    null). The paired tests of `bench.protocol.stats` compare two models on these."""
    mask = _mask(truth, null_value)
    err = ((pred - truth).abs() * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)
    return [float(v) for v in err]


def window_mse(pred: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Unmasked mean squared error of each window: [W, H_out, N, C] -> W floats (the unit of the
    paired test of an MSE column, e.g. SDKD's tables)."""
    return [float(v) for v in (pred - truth).pow(2).flatten(1).mean(1)]


def window_rel_l2(pred: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Relative L2 error of each window, ||pred - truth||_2 / ||truth||_2 over all its steps, cells
    and channels (unmasked): [W, H_out, N, C] -> W floats, NaN for a window whose truth is all 0.
    Their mean is FNO's test metric (Li et al., ICLR 2021, Table 1: `LpLoss.rel` of
    neuraloperator/neuraloperator `utilities3.py`, on each test sample's 10
    predicted frames flattened, averaged over samples)."""
    diff, norm = (pred - truth).double().flatten(1).norm(dim=1), truth.double().flatten(1).norm(dim=1)
    return [float(v) for v in torch.where(norm > 0, diff / norm, torch.full_like(norm, float("nan")))]


# Frequency bands of grid fields (SDKD, Li et al., ICCV 2025; ../shared/paper/sdkd-summary.md 4.1, 9.3):
# rfft2 over (H, W), "ortho" norm; low band = radial frequency <= k_c x Nyquist, high band = the rest.
BAND_CUTOFF = 0.25


def low_band(h: int, w: int, k_c: float, device=None) -> torch.Tensor:
    """Bool mask [h, w // 2 + 1] of the rfft2 coefficients whose radial frequency
    sqrt(f_y^2 + f_x^2) / 0.5 (1 = Nyquist) is at most `k_c`.

    Raises:
        ValueError: k_c not in (0, sqrt 2).
    """
    if not 0.0 < k_c < 2 ** 0.5:
        raise ValueError(f"k_c={k_c}: the cut-off is a fraction of the Nyquist frequency, in (0, 1.41); e.g. 0.25")
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    return torch.sqrt(fy ** 2 + fx ** 2) / 0.5 <= k_c + 1e-9


def _rfft_weights(w: int, device=None) -> torch.Tensor:
    """[w // 2 + 1] multiplicity of each rfft column in the full spectrum (1 for the zero and, for
    even w, the Nyquist column; 2 for the others, which stand for a conjugate pair)."""
    weights = torch.full((w // 2 + 1,), 2.0, device=device)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    return weights


def band_errors(a: torch.Tensor, b: torch.Tensor, k_c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared difference of two fields split into (low band, high band).

    a, b: [..., H, W] (any leading axes: batch, frames, channels). Returns two 0-d tensors whose
    sum equals ((a - b) ** 2).mean() (Plancherel), up to float rounding.
    """
    diff = a - b
    h, w = diff.shape[-2:]
    spec = torch.fft.rfft2(diff, norm="ortho")
    energy = spec.real ** 2 + spec.imag ** 2
    energy = energy * _rfft_weights(w, diff.device)
    low = low_band(h, w, k_c, diff.device)
    n = diff.numel()
    return energy[..., low].sum() / n, energy[..., ~low].sum() / n


# PDEBench's frequency bands of the error (Takamoto et al., NeurIPS 2022 Datasets and Benchmarks,
# "fRMSE"; `metric_func` of pdebench/PDEBench `pdebench/models/metrics.py`, iLow=4, iHigh=12)
FRMSE_BANDS = (4, 12)


def frmse_bands(pred: torch.Tensor, truth: torch.Tensor, i_low: int = FRMSE_BANDS[0],
                i_high: int = FRMSE_BANDS[1]) -> dict:
    """PDEBench's fRMSE in its low, mid and high band, as `metric_func` computes it for 2-D fields.

    pred, truth: [B, T, C, H, W] (samples, steps, channels, grid). The error's unnormalised 2-D FFT
    over (H, W) is summed, as |.|^2, into radial shells s = floor(sqrt(i^2 + j^2)) over the
    quadrant 0 <= i < H // 2, 0 <= j < W // 2 (PDEBench counts that quadrant only: modes with
    kx ky < 0 stay out), shells s < min(H, W) // 2; each shell's RMSE over the samples,
    sqrt(mean_B(sum)) / (H W), is averaged over the shells of a band: low s < i_low, mid
    i_low <= s < i_high, high s >= i_high; then over steps and channels. A unit-amplitude cosine
    of wavenumber (k, 0) contributes 0.5 to its shell.

    Returns {"low", "mid", "high"} floats; NaN for a band without shells (a grid with
    min(H, W) // 2 <= i_high has no high band).
    """
    h, w = pred.shape[-2:]
    spec = torch.fft.rfft2((pred - truth).double())[..., : h // 2, : w // 2]
    energy = spec.real ** 2 + spec.imag ** 2                              # [B, T, C, H/2, W/2]
    i, j = torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), indexing="ij")
    shell = torch.sqrt((i ** 2 + j ** 2).double()).floor().long()
    shells = min(h // 2, w // 2)
    keep = shell < shells
    sums = torch.zeros(*energy.shape[:3], shells, dtype=torch.float64)
    sums.index_add_(3, shell[keep], energy[..., keep])
    rmse = sums.mean(0).sqrt() / (h * w)                                  # [T, C, shells]
    bands = {"low": (0, min(i_low, shells)), "mid": (min(i_low, shells), min(i_high, shells)), "high": (i_high, shells)}
    return {name: float(rmse[..., a:b].mean()) if b > a else float("nan") for name, (a, b) in bands.items()}


def grid_metrics(pred: torch.Tensor, truth: torch.Tensor, grid: tuple[int, int], k_c: float = BAND_CUTOFF) -> dict:
    """Image metrics of forecasts on a grid (SDKD's tables): pred, truth [W, H_out, N, C] in original
    units, N = H * W row-major.

    Returns {"mse": unmasked mean squared error, "ssim": structural similarity (torchmetrics;
    Gaussian window of 11 cells, sigma 1.5, or on a grid narrower than 11 the largest odd size k that
    fits with sigma 1.5 k / 11; NaN when k < 3; data range = truth's max - min)
    averaged over windows, steps and channels, "err_low" / "err_high": the MSE's share in the low
    and the high frequency band (`band_errors`, they sum to "mse"), "rel_l2": the mean of
    `window_rel_l2` (FNO's metric), "frmse_low" / "frmse_mid" / "frmse_high": PDEBench's bands
    (`frmse_bands`, the test windows as one batch)}.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim
    h, w = grid
    frames = lambda t: t.permute(0, 1, 3, 2).reshape(-1, 1, h, w).double()   # [W * H_out * C, 1, H, W]
    p, t = frames(pred), frames(truth)
    kernel = min(11, min(h, w) - (1 - min(h, w) % 2))          # odd, at most the grid's short side
    data_range = float(t.max() - t.min()) or 1.0
    low, high = band_errors(p.squeeze(1), t.squeeze(1), k_c)
    value = float("nan") if kernel < 3 else float(ssim(p, t, data_range=data_range, sigma=1.5 * kernel / 11))
    frmse = frmse_bands(*(x.reshape(pred.shape[0], pred.shape[1], pred.shape[3], h, w) for x in (p, t)))
    return {"mse": float((p - t).pow(2).mean()), "ssim": value, "err_low": float(low), "err_high": float(high),
            "rel_l2": float(np.nanmean(window_rel_l2(pred, truth))),
            **{f"frmse_{band}": value for band, value in frmse.items()}}


def score(pred: torch.Tensor, test: Windows, data, split) -> list[dict]:
    """The metric rows of test predictions pred [W, H_out, N, C] (original units) of the `test`
    windows: `evaluate` per horizon and volume bucket, the grid metrics (`grid_metrics`) on the
    overall row of a dataset with a grid, and on that row, for the paired tests of
    `bench.protocol.stats`: `window_mae` and `window_mse` (per test window; on a grid also
    `window_rel_l2`), `window_every` (every
    n-th window is non-overlapping: H_out on a series, 1 on independent samples) and
    `window_block` (consecutive windows per block of the test: one day of steps on a series, 1 on
    independent samples)."""
    truth = test.targets()
    rows = evaluate(pred, truth, volume_buckets(data.flow, split))
    if data.meta.get("grid"):
        rows[0] |= {k: round(v, 6) for k, v in grid_metrics(pred, truth, data.grid).items()}
    rows[0]["window_mae"] = window_mae(pred, truth)
    rows[0]["window_mse"] = window_mse(pred, truth)
    if data.meta.get("grid"):
        rows[0]["window_rel_l2"] = window_rel_l2(pred, truth)
    rows[0]["window_every"] = 1 if data.meta.get("sample_len") else test.h_out
    rows[0]["window_block"] = 1 if data.meta.get("sample_len") else int(data.steps_per_day)
    return rows
