"""Refactors keep behaviour: a few trials give, to 1e-5, the metrics recorded before the trial
context and the module split of issue 15 (2026-12-02, commit 3153b4a)."""
import pytest

from bench.execution import teacher
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial

# model -> (config, [overall MAE, overall RMSE, horizon-3 MAE]) at ratio 0.2, 12 regions, seed 1,
# 2 rounds of 5 steps, early stopping on 16 validation windows
RECORDED = {
    "flowdistill": ({"teacher": "seasonal-naive-week"}, [19.641357, 33.547089, 17.507738]),
    "flowdistill-wo-tb": ({}, [19.775616, 32.167149, 15.530889]),
    "easyst": ({"teacher": "historical-average"}, [23.936676, 40.99781, 19.50543]),
    "bigst": ({}, [33.902527, 55.075367, 32.841228]),
    "historical-average": ({}, [7.492151, 12.904318, 7.396384]),
}


@pytest.mark.parametrize("model", sorted(RECORDED))
def test_metrics_match_those_recorded_before_the_refactor(model, tmp_path):
    config, expected = RECORDED[model]
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model=model, ratio=0.2, num_nodes=12, seed=1, max_epochs=2,
                     max_batches=5, max_val_windows=16, cache_dir=str(tmp_path), config=config)
    if config.get("teacher"):
        teacher.fit_teacher(teacher.teacher_spec(spec, config["teacher"]))
    rows = run_trial(spec)
    assert rows[0]["status"] == "ok", rows[0]["error"]
    assert rows[3]["horizon"] == 3
    got = [rows[0]["mae"], rows[0]["rmse"], rows[3]["mae"]]
    assert got == pytest.approx(expected, abs=1e-5)
