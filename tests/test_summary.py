"""The report's first page, "What this run shows", written from a small hand-made results set: it
states what those numbers say, and says something else when they change."""
import json

import numpy as np

from bench.execution.results import append_rows, trials_path
from bench.suites.summary import summary_lines

WINDOWS = 240          # per-window test MAE; every 12th (20 windows) enters the paired test


def _write(results, rows, windows, command="bench run --suite data-efficiency --quick"):
    """Rows of one data-efficiency run: (model, seed, mae, converged, extra fields); windows: trial_id -> errors."""
    suite = results / "data-efficiency"
    full = []
    for model, seed, mae, converged, extra in rows:
        tid = f"{model}-{seed}"
        full.append({"suite": "data-efficiency", "dataset": "NYCTaxi", "model": model, "ratio": 0.1, "seed": seed,
                     "horizon": "all", "bucket": "all", "mae": mae, "rmse": mae * 2, "status": "ok", "trial_id": tid,
                     "teacher": extra.get("teacher", ""), "converged": converged} | extra)
        (suite / "history").mkdir(parents=True, exist_ok=True)
        (suite / "history" / f"{tid}.json").write_text(json.dumps({"window_mae": list(windows[model])}))
    append_rows(trials_path(results, "data-efficiency"), full)
    (suite / "commands.log").write_text(f"2026-12-02T00:00:00  {command}\n")


def _run(tmp_path, student_gain: float, floor: float):
    rng = np.random.default_rng(0)
    base = 14.0 + rng.random(WINDOWS)
    windows = {"flowdistill-wo-tb": base, "flowdistill": base - student_gain + rng.normal(0, 0.5, WINDOWS),
               "seasonal-naive-week": np.full(WINDOWS, floor), "stwa": base + 30}
    teacher = {"teacher": "flowdistill-teacher", "teacher_desc": "SmolLM2, 1/30 blocks", "teacher_mae": 60.0,
               "gate_open": 0.25}
    rows = [("flowdistill-wo-tb", 0, float(base.mean()), True, {}),
            ("flowdistill", 0, float(windows["flowdistill"].mean()), True, teacher),
            ("seasonal-naive-week", 0, floor, True, {}),
            ("stwa", 0, float(base.mean() + 30), False, {})]
    _write(tmp_path, rows, windows)
    return "\n".join(summary_lines(tmp_path, ["data-efficiency"]))


def test_summary_states_a_distillation_gain_that_holds(tmp_path):
    text = _run(tmp_path, student_gain=2.0, floor=20.0)
    assert "preset: quick" in text and "One seed per cell" in text
    assert "best trained model flowdistill (MAE 12." in text
    assert "best floor seasonal-naive-week 20.00: the best model is 37 % below it; 2 of 3 trained models beat it" in text
    assert "significantly better (p<1e-4; 1 seed x 5 blocks of 48 test windows)" in text
    assert "teacher flowdistill-teacher (SmolLM2, 1/30 blocks): test MAE 60.00; eq. 2's gate open on 25% of the training" in text
    assert "did not converge" in text and "stwa@0.1 (1 of 1)" in text
    assert "heavy models (stwa) a fixed budget" in text and "are left out" not in text
    assert "holds on this run" in text and ": met." in text and "reproduced" not in text


def test_summary_changes_when_the_numbers_do(tmp_path):
    text = _run(tmp_path, student_gain=0.0, floor=11.99)
    assert "best trained model" in text and "0 of 3 trained models beat it" in text
    assert "not significantly different" in text
    assert "is not shown by this run" in text and "not met" in text
    assert "against the floor seasonal-naive-week 11.99" in text


def test_summary_of_a_first_run_without_heavy_models_says_where_they_are(tmp_path):
    rows = [("flowdistill-wo-tb", 0, 14.0, True, {}), ("seasonal-naive-week", 0, 12.0, True, {})]
    _write(tmp_path, rows, {"flowdistill-wo-tb": np.full(WINDOWS, 14.0), "seasonal-naive-week": np.full(WINDOWS, 12.0)})
    text = "\n".join(summary_lines(tmp_path, ["data-efficiency"]))
    assert "are left out" in text and "data-scalability --quick" in text and "a fixed budget" not in text
    assert "--fixed-rounds" not in text


def test_the_first_page_says_when_a_run_trained_in_fixed_rounds(tmp_path):
    rows = [("flowdistill-wo-tb", 0, 14.0, True, {}), ("seasonal-naive-week", 0, 12.0, True, {})]
    _write(tmp_path, rows, {"flowdistill-wo-tb": np.full(WINDOWS, 14.0), "seasonal-naive-week": np.full(WINDOWS, 12.0)},
           command="bench run --suite data-efficiency --quick --fixed-rounds")
    text = "\n".join(summary_lines(tmp_path, ["data-efficiency"]))
    assert "1 of the 1 runs here used --fixed-rounds" in text and "patience is 100 steps" in text


def test_the_distill_page_warns_when_the_students_mae_follows_their_training_steps():
    import pandas as pd

    from bench.protocol.stats import rank_correlation
    from bench.suites.lines import steps_line as _steps_line

    steps = np.array([160, 200, 240, 280, 320, 360, 400, 440])
    rho, p = rank_correlation(steps, 20 - steps / 100)          # strictly falling: rho -1
    assert rho == -1.0 and p < 0.01
    assert np.isnan(rank_correlation([1, 2], [3, 4])[0]) and np.isnan(rank_correlation([1, 1, 1], [1, 2, 3])[0])
    rows = pd.DataFrame({"ratio": 0.1, "model": "flowdistill", "steps": steps, "mae": 20 - steps / 100})
    line = _steps_line(rows, 0.1)
    assert len(line) == 1 and "Spearman rho -1.00" in line[0] and "160 to 440 steps" in line[0]
    rows["mae"] = [14.0, 13.1, 13.9, 13.2, 13.8, 13.3, 13.7, 13.4]     # no trend with the steps: no warning
    assert _steps_line(rows, 0.1) == []


def _distill_run(results, shuffled_gain: float):
    """A hand-made distill results folder at ratio 0.1, 3 seeds: the student without teacher
    (14 + noise), its oracle (-2), output KD (-1) and its shuffled twin (-shuffled_gain), the
    teacher's forecast at 13 on every window."""
    rng = np.random.default_rng(0)
    suite = results / "distill"
    (suite / "history").mkdir(parents=True, exist_ok=True)
    kd = {"teacher": "seasonal-naive-week", "tbl_target": "teacher", "lambda_tbl": 1.0}
    entries = [("flowdistill-wo-tb", {}, 0.0), ("flowdistill-wo-tb", {"oracle_of": "seasonal-naive-week"}, -2.0),
               ("flowdistill", kd, -1.0), ("flowdistill", kd | {"teacher_shuffle": True}, -shuffled_gain)]
    rows = []
    for i, (model, config, gain) in enumerate(entries):
        for seed in range(3):
            tid = f"t{i}-{seed}"
            errors = 14.0 + gain + rng.normal(0, 0.3, WINDOWS) + 0.05 * seed
            (suite / "history" / f"{tid}.json").write_text(json.dumps(
                {"spec": {"seed": seed}, "window_mae": list(errors), "window_block": 48,
                 "teacher_window_mae": [13.0] * WINDOWS}))
            teacher = {"teacher": "seasonal-naive-week", "teacher_mae": 13.0, "gate_open": 1.0,
                       "teacher_data": "disjoint"} if config.get("teacher") else {}
            rows.append({"suite": "distill", "dataset": "NYCTaxi", "model": model, "ratio": 0.1, "seed": seed,
                         "horizon": "all", "bucket": "all", "mae": float(errors.mean()), "rmse": 1.0, "status": "ok",
                         "trial_id": tid, "config": json.dumps(config) if config else "", "steps": 600,
                         "converged": True} | teacher)
    append_rows(trials_path(results, "distill"), rows)
    return "\n".join(summary_lines(results, ["distill"]))


def test_the_distill_verdict_needs_a_gain_over_the_shuffled_teacher(tmp_path):
    text = _distill_run(tmp_path / "a", shuffled_gain=0.0)
    assert "ratio 0.1: oracle of seasonal-naive-week" in text and "a gain" in text
    assert "verdict for seasonal-naive-week: transfers knowledge (output KD lambda_tbl 1" in text
    import re
    assert 45 <= int(re.search(r"(\d+) % of the gap to the oracle closed", text).group(1)) <= 55
    assert "adjusted by Holm over its 5 comparisons" in text       # oracle, KD x 3 tests, shuffled twin
    # the same gain, but the shuffled teacher does as well: regularisation, not knowledge
    text = _distill_run(tmp_path / "b", shuffled_gain=1.0)
    assert "verdict for seasonal-naive-week: no transfer of knowledge shown" in text
    assert "vs shuffled teacher" in text and "(not separated)" in text

