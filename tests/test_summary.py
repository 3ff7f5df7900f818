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
    assert "significantly better (p<1e-4, 20 windows)" in text
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
    from bench.suites.summary import _steps_line

    steps = np.array([160, 200, 240, 280, 320, 360, 400, 440])
    rho, p = rank_correlation(steps, 20 - steps / 100)          # strictly falling: rho -1
    assert rho == -1.0 and p < 0.01
    assert np.isnan(rank_correlation([1, 2], [3, 4])[0]) and np.isnan(rank_correlation([1, 1, 1], [1, 2, 3])[0])
    rows = pd.DataFrame({"ratio": 0.1, "model": "flowdistill", "steps": steps, "mae": 20 - steps / 100})
    line = _steps_line(rows, 0.1)
    assert len(line) == 1 and "Spearman rho -1.00" in line[0] and "160 to 440 steps" in line[0]
    rows["mae"] = [14.0, 13.1, 13.9, 13.2, 13.8, 13.3, 13.7, 13.4]     # no trend with the steps: no warning
    assert _steps_line(rows, 0.1) == []


def test_the_distill_page_states_the_papers_setting_and_the_criterion_either_way():
    import pandas as pd

    from bench.suites.summary import _criterion_lines, _paper_setting_lines

    def row(gate, target, lam, mae, diff, p, closed, worse=False, seeds=3):
        return {"teacher": "seasonal-naive-week", "teacher_mae": 11.99, "gate": gate, "target": target,
                "lambda_tbl": lam, "mae_cell": f"{mae:.2f} ± 0.10", "diff": diff, "p": p, "closed": closed,
                "teacher_worse": worse, "seeds": seeds, "seeds_better": 3 if diff < 0 else 0, "seeds_paired": seeds}

    students = pd.DataFrame([row("batch", "truth", 0.1, 13.36, -0.14, 0.2, 9.0),
                             row("batch", "teacher", 1.0, 11.66, -1.84, 1e-5, 122.0),
                             row("element", "teacher", 1.0, 12.86, -0.64, 1e-5, 42.0)])
    paper = _paper_setting_lines(0.1, students)
    assert len(paper) == 1 and "MAE 13.36 ± 0.10, -0.14, p=0.2" in paper[0]
    assert paper[0].endswith("not separated from no teacher.")
    crit = _criterion_lines(0.1, students)
    assert crit == ["ratio 0.1: 1 of 3 variants with a better teacher close half or more of the gap to it with "
                    "p < 0.01 over 3 or more seeds (seasonal-naive-week batch/teacher/1: 122 %)."]

    students.loc[0, ["diff", "p"]] = [0.42, 0.003]                 # the paper's setting, significantly worse
    assert _paper_setting_lines(0.1, students)[0].endswith("worse than no teacher.")
    students.loc[1, "seeds"] = 2                                   # too few seeds: the criterion is not met
    assert _criterion_lines(0.1, students)[0].startswith("ratio 0.1: no variant closes half the gap")
    students["teacher_worse"] = True                               # no better teacher: nothing to state
    assert _criterion_lines(0.1, students) == []
