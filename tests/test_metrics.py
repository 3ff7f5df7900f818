import math

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
