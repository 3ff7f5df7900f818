import math

import pytest
import torch

from bench.protocol.metrics import evaluate, masked_mae, masked_mape, masked_rmse


def test_masked_metrics_against_hand_computed_values():
    truth = torch.tensor([0.0, 2.0, 4.0, 10.0])
    pred = torch.tensor([5.0, 3.0, 2.0, 10.0])
    # truth == 0 is left out: errors 1, 2, 0 on truths 2, 4, 10
    assert math.isclose(masked_mae(pred, truth).item(), 1.0)
    assert math.isclose(masked_rmse(pred, truth).item(), math.sqrt(5 / 3), rel_tol=1e-6)
    assert math.isclose(masked_mape(pred, truth).item(), 100 * (0.5 + 0.5 + 0) / 3, rel_tol=1e-6)


def test_all_masked_batch_gives_zero_not_nan():
    assert masked_mae(torch.ones(3), torch.zeros(3)).item() == 0.0


def test_evaluate_overall_and_per_horizon():
    truth = torch.ones(2, 3, 4, 2)
    pred = truth.clone()
    pred[:, 1] += 2.0                               # only horizon 2 is off, by 2
    rows = evaluate(pred, truth)
    assert [r["horizon"] for r in rows] == ["all", 1, 2, 3] and {r["bucket"] for r in rows} == {"all"}
    assert math.isclose(rows[0]["mae"], 2 / 3, rel_tol=1e-6)
    assert rows[1]["mae"] == 0 and rows[2]["mae"] == 2 and math.isclose(rows[2]["mape"], 200.0)


def test_evaluate_per_volume_bucket():
    truth = torch.ones(2, 3, 4, 1)
    pred = truth.clone()
    pred[:, :, 3] += 4.0                            # region 3 (bucket q2) is off by 4
    rows = evaluate(pred, truth, buckets=[0, 0, 1, 1])
    by_bucket = {r["bucket"]: r["mae"] for r in rows if r["bucket"] != "all"}
    assert by_bucket == {"q1": 0.0, "q2": 2.0}
    assert all(r["horizon"] == "all" for r in rows if r["bucket"] != "all")


def test_evaluate_gives_unmasked_metrics_as_eq_13():
    truth = torch.tensor([0.0, 2.0, 4.0, 10.0]).view(1, 1, 4, 1)
    pred = torch.tensor([5.0, 3.0, 2.0, 10.0]).view(1, 1, 4, 1)
    row = evaluate(pred, truth)[0]
    assert math.isclose(row["mae"], 1.0) and math.isclose(row["mae_unmasked"], (5 + 1 + 2 + 0) / 4)
    assert math.isclose(row["rmse_unmasked"], math.sqrt((25 + 1 + 4) / 4), rel_tol=1e-6)


def test_relative_l2_per_window_against_hand_computed_values():
    from bench.protocol.metrics import window_rel_l2
    truth = torch.zeros(3, 2, 4, 1)
    truth[0, 0, :, 0] = torch.tensor([3.0, 0.0, 0.0, 0.0])      # ||truth|| = 5 (3, 4 over its two steps)
    truth[0, 1, :, 0] = torch.tensor([0.0, 4.0, 0.0, 0.0])
    truth[1] = 2.0                                               # ||truth|| = sqrt(8 * 4)
    pred = truth.clone()
    pred[0, 0, 0, 0] += 1.0                                      # ||error|| = 1: 1 / 5
    pred[1] += 0.5                                               # ||error|| = sqrt(8 * 0.25): 0.25
    out = window_rel_l2(pred, truth)
    assert out[0] == pytest.approx(0.2) and out[1] == pytest.approx(0.25)
    assert math.isnan(out[2])                                    # a window whose truth is all 0: no ratio


def test_pdebench_frequency_bands_against_hand_computed_values():
    from bench.protocol.metrics import frmse_bands, grid_metrics
    n = 32                                                       # shells 0..15: low 0-3, mid 4-11, high 12-15
    x, y = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    wave = lambda kx, ky: torch.cos(2 * math.pi * (kx * x + ky * y) / n)[None, None, None]
    zero = torch.zeros(1, 1, 1, n, n, dtype=torch.float64)
    # a unit cosine puts |FFT| = n^2 / 2 on mode (kx, ky) of the counted quadrant: 0.5 in its shell,
    # averaged over the band's shells (PDEBench: iLow = 4, iHigh = 12)
    assert frmse_bands(wave(2, 0), zero) == pytest.approx({"low": 0.5 / 4, "mid": 0.0, "high": 0.0}, abs=1e-12)
    assert frmse_bands(wave(5, 3), zero) == pytest.approx({"low": 0.0, "mid": 0.5 / 8, "high": 0.0}, abs=1e-12)
    assert frmse_bands(3 * wave(0, 13), zero) == pytest.approx({"low": 0.0, "mid": 0.0, "high": 1.5 / 4}, abs=1e-12)
    assert frmse_bands(wave(5, -3), zero)["mid"] == pytest.approx(0.0, abs=1e-12)   # PDEBench's quadrant only
    # RMS over samples within a shell: errors 1 and 0 on two samples give sqrt(0.5) x the one-sample value
    two = torch.cat([wave(2, 0), 0 * wave(2, 0)])
    assert frmse_bands(two, torch.zeros_like(two))["low"] == pytest.approx(0.5 / 4 * math.sqrt(0.5))
    # on a grid dataset's rows: forecasts [W, H_out, N, C], the grid row-major
    truth = torch.ones(2, 1, n * n, 1, dtype=torch.float64)
    pred = truth + wave(2, 0).reshape(1, 1, n * n, 1)
    m = grid_metrics(pred, truth, (n, n))
    assert m["frmse_low"] == pytest.approx(0.125) and m["frmse_mid"] == pytest.approx(0.0, abs=1e-12)
    assert m["rel_l2"] == pytest.approx(math.sqrt(0.5))       # ||cos|| / ||1|| = sqrt(mean cos^2) = sqrt(1/2)
