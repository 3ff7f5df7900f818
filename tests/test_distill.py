"""Distillation mechanics: the teacher's forecast in the student's loss, the distill suite end to end on
a slice of real NYCTaxi, its paired test, the converged flag and the errors a user can hit."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from bench import suites
from bench.execution import teacher as teacher_mod
from bench.cli import main
from bench.protocol.split import H_IN, H_OUT, TEACHER_DATA, ProtocolError, split_steps, teacher_split, window_starts
from bench.execution.results import read_trials, trials_path
from bench.execution.train import fit, predict, set_seed, training_loss
from bench.execution.context import build_context
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial


def _student(config, teacher_offset=None, epochs=4, seed=0):
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill", ratio=0.1, num_nodes=16, seed=seed,
                     config={"teacher": "seasonal-naive-week"} | config, max_epochs=epochs)
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    truth = torch.cat([b["y"] for b in parts["train"].batches(512)])
    parts["train"].attach_teacher((truth + teacher_offset).numpy())
    fit(model, cfg, parts["train"], parts["val"], set_seed(seed))
    return predict(model, parts["train"]), truth


def test_the_teachers_forecast_reaches_the_student_through_the_teacher_target():
    # same seed, same data: a teacher that forecasts the truth + 20 pulls the student's forecasts up
    # against a teacher that forecasts the truth; with the truth as target the offset changes nothing
    kd = {"tbl_target": "teacher", "tbl_gate": "element", "lambda_tbl": 1.0, "delta": 100.0}
    exact, truth = _student(kd, 0.0)
    shifted, _ = _student(kd, 20.0)
    assert (shifted - truth).mean() > (exact - truth).mean() + 3.0
    plain = {"tbl_target": "truth", "tbl_gate": "element", "lambda_tbl": 1.0, "delta": 100.0}
    a, _ = _student(plain, 0.0)
    b, _ = _student(plain, 20.0)
    torch.testing.assert_close(a, b)


def test_converged_flag_follows_early_stopping():
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill-wo-tb", ratio=0.1, num_nodes=8,
                     config={"patience": 1, "lr": 0.05})
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    per_epoch = len(range(0, len(parts["train"]), cfg.batch_size))
    stopped = fit(model, cfg, parts["train"], parts["val"], set_seed(0))
    assert stopped.converged and stopped.epochs < cfg.max_epochs and stopped.steps == stopped.epochs * per_epoch
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill-wo-tb", ratio=0.1, num_nodes=8, max_epochs=2)
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    capped = fit(model, cfg, parts["train"], parts["val"], set_seed(0))
    assert not capped.converged and capped.epochs == 2 and capped.steps == 2 * per_epoch
    # a step budget ends training mid-epoch: the partial epoch is validated, and it did not converge
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    budget = per_epoch + 1
    stepped = fit(model, cfg, parts["train"], parts["val"], set_seed(0), max_steps=budget)
    assert (stepped.steps, stepped.epochs, stepped.converged, len(stepped.history)) == (budget, 2, False, 2)
    # rounds of max_batches steps: an epoch is at most that many steps
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    rounds = fit(model, cfg, parts["train"], parts["val"], set_seed(0), max_batches=1)
    assert (rounds.steps, rounds.epochs) == (2, 2)
    # fixed rounds: exactly max_batches steps each, the shuffle carrying on into the next epoch's;
    # without them a round stops at the epoch's end
    longer = 2 * per_epoch + 1
    for fixed, steps in ((True, 2 * longer), (False, 2 * per_epoch)):
        ctx = build_context(spec)
        fitted = fit(ctx.model, ctx.cfg, ctx.parts["train"], ctx.parts["val"], set_seed(0),
                     max_batches=longer, fixed_rounds=fixed)
        assert (fitted.steps, fitted.epochs) == (steps, 2), fixed


def test_distill_suite_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(suites.distill, "DISTILL_VARIANTS", suites.DISTILL_VARIANTS[:2])   # two variants keep it short
    out = tmp_path / "results"
    argv = ["run", "--no-report", "--suite", "distill", "--teacher", "seasonal-naive-week", "--ratios", "0.1", "--nodes", "6",
            "--epochs", "2", "--seeds", "2", "--executor", "inline", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    df = read_trials(trials_path(out, "distill"))
    overall = df[(df["horizon"] == "all") & (df["bucket"] == "all")]
    # wo-tb and its oracle x 2 seeds, 2 variants and their shuffled twins x 2 seeds, the 3 floors x 1 seed
    assert sorted(overall["model"].value_counts().items()) == [
        ("flowdistill", 8), ("flowdistill-wo-tb", 4), ("historical-average", 1), ("seasonal-naive-day", 1),
        ("seasonal-naive-week", 1)]
    floor = run_trial(TrialSpec(suite="t", dataset="NYCTaxi", model="seasonal-naive-week", ratio=0.1, num_nodes=6))
    teacher_mae = floor[0]["mae"]
    students = overall[overall["model"] == "flowdistill"]
    assert (students["teacher_data"] == "disjoint").all()
    assert (students["teacher"] == "seasonal-naive-week").all()
    assert students["teacher_mae"].to_numpy() == pytest.approx(teacher_mae, abs=1e-3)
    assert students["gate_open"].between(0, 1).all() and (students["train_mae"] > 0).all()
    assert (students["teacher_train_mae"] > 0).all() and (students["converged"] == "False").all()
    assert (overall.loc[overall["model"] == "flowdistill-wo-tb", "teacher_mae"].isna()).all()
    history = json.loads((out / "distill" / "history" / f"{students['trial_id'].iloc[0]}.json").read_text())
    assert len(history["window_mae"]) == len(history["window_mse"]) == len(history["teacher_window_mae"]) > 200
    assert history["window_block"] == 48
    table = suites.distill_frame(df, out / "distill" / "history")
    # no teacher, the floors, the oracle, then each variant beside its shuffled-teacher twin
    assert list(table["what"]) == ["baseline", "floor", "floor", "floor",
                                   "oracle (no teacher, trained on the teacher's data)",
                                   "output KD", "output KD, shuffled teacher",
                                   "output KD (element gate)", "output KD (element gate), shuffled teacher"]
    floors = table.iloc[1:4]
    assert (floors["teacher"] == "(floor)").all() and floors["MAE"].iloc[0] == f"{teacher_mae:.2f}"
    students = table.iloc[[5, 7]]
    assert students["teacher MAE"].iloc[0] == f"{teacher_mae:.2f}"
    # each comparison: "difference [interval] p=..." after Holm; the student against its teacher too
    for column in ("vs no teacher", "vs shuffled teacher", "vs teacher"):
        assert students[column].str.contains(r"^[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] p", regex=True).all()
    assert (table.iloc[[6, 8]]["vs shuffled teacher"] == "").all()
    numbers = suites.distill_numbers(df, out / "distill" / "history")
    assert (numbers["family"] == numbers[["vs_none", "vs_shuffled", "vs_teacher"]].notna().sum().sum()).all()
    raw = [t["p"] for c in ("vs_none", "vs_shuffled", "vs_teacher") for t in numbers[c] if t is not None]
    assert numbers[["p_none", "p_shuffled", "p_teacher"]].min().min() >= min(raw)          # Holm never lowers a p
    seeds = suites.distill.seed_frame(df, out / "distill" / "history")
    assert list(seeds.columns[-2:]) == ["seed 0", "seed 1"]
    # the report's first page: the oracle, each variant's three comparisons and a verdict for the teacher
    from bench.suites.summary import summary_lines
    page = "\n".join(summary_lines(out, ["distill"]))
    assert "ratio 0.1: oracle of seasonal-naive-week" in page and "after Holm" in page
    assert "ratio 0.1: verdict for seasonal-naive-week:" in page and "vs shuffled teacher" in page
    assert f"adjusted by Holm over its {int(numbers['family'].iloc[0])} comparisons" in page
    assert "eq. 2's delta 10 against a teacher" in page and "did not converge" in page
    assert "vs no teacher" in printed and "element" in printed
    assert main(argv) == 0                                        # a rerun skips every finished trial
    assert "resuming: 15 of 15 trials already finished" in capsys.readouterr().out


def test_distill_table_says_how_much_of_the_gap_a_student_closes():
    rows = []
    for seed, (base, student) in enumerate([(20.0, 14.0), (22.0, 16.0)]):
        common = {"suite": "distill", "dataset": "NYCTaxi", "ratio": 0.1, "seed": seed, "horizon": "all",
                  "bucket": "all", "status": "ok", "rmse": 1.0, "trial_id": f"t{seed}"}
        rows.append(common | {"model": "flowdistill-wo-tb", "teacher": "", "mae": base, "config": "",
                              "teacher_mae": float("nan"), "gate_open": float("nan")})
        rows.append(common | {"model": "flowdistill", "teacher": "seasonal-naive-week", "mae": student,
                              "config": json.dumps({"teacher": "seasonal-naive-week", "tbl_target": "teacher"}),
                              "teacher_mae": 12.0, "gate_open": 0.5})
    import pandas as pd
    table = suites.distill_frame(pd.DataFrame(rows))
    row = table.iloc[1]
    # no teacher 21, student 15, teacher 12: (21 - 15) / (21 - 12) = 67 %
    assert (row["target"], row["gate"], row["MAE"], row["vs no teacher"], row["gap to teacher closed"]) == (
        "teacher", "batch", "15.00 ± 1.41", "-6.00", "67 %")
    assert row["what"] == "output KD"
    assert row["better in seeds"] == "2/2"
    worse = suites.distill_frame(pd.DataFrame([r | {"teacher_mae": 25.0} if r["teacher"] else r for r in rows]))
    assert worse.iloc[1]["gap to teacher closed"] == "no gap (teacher worse)"       # not -150 %


def test_a_teacher_cache_without_the_students_windows_is_refused(tmp_path):
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill", ratio=0.1, num_nodes=4,
                     config={"teacher": "seasonal-naive-week"}, cache_dir=str(tmp_path))
    t_spec = teacher_mod.teacher_spec(spec, "seasonal-naive-week")
    key, path = teacher_mod.locate(t_spec)
    teacher_mod.save_predictions(path, np.arange(10), np.zeros((10, 12, 4, 2), np.float32), key, {"test_mae": 1.0})
    ctx = build_context(spec)
    parts = ctx.parts
    with pytest.raises(teacher_mod.TeacherCacheError,
                       match=r"seasonal-naive-week for NYCTaxi at ratio 0.1 lacks 265 of the 265 training windows"):
        teacher_mod.attach(parts, t_spec)


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "distill", "--set", "tbl_gate=window"], "tbl_gate='window'; use one of batch, element"),
    (["run", "--suite", "distill", "--set", "tbl_target=both"], "tbl_target='both'; use one of truth, teacher"),
    (["run", "--suite", "data-efficiency", "--models", "seasonal-naive-week", "--set", "lr=0.1"],
     "reference forecasters are not trained"),
    (["run", "--suite", "data-efficiency", "--models", "historical-average", "--epochs", "3"],
     "historical-average is a reference forecaster: not trained, so no epochs"),
    (["run", "--suite", "distill", "--models", "bigst"], "bigst' is not one (use flowdistill)"),
])
def test_distill_bad_input_names_the_allowed_values(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("total", [2880, 4392, 600])
def test_no_teacher_data_reaches_validation_or_test_and_disjoint_avoids_the_students_part(total):
    for ratio in (0.05, 0.1, 0.3, 0.5, 0.7, 0.8):
        split = split_steps(total, ratio)
        student = window_starts(split, "train")
        for option in TEACHER_DATA:
            t_split = teacher_split(split, option)
            starts = window_starts(t_split, "train")
            if option == "same":
                np.testing.assert_array_equal(starts, student)
            assert option != "none" or not len(starts)           # a teacher from elsewhere: no step of the target
            if not len(starts):
                continue
            last_step = starts.max() + H_IN + H_OUT - 1          # the last step any teacher window reads
            assert starts.min() >= 0 and last_step < split.val_start
            if option == "disjoint":
                assert last_step < split.train_start
            if option == "all":
                assert starts.min() == 0 and last_step == split.val_start - 1
    with pytest.raises(ProtocolError, match="teacher_data='mine'; use one of disjoint, same, all, none"):
        teacher_split(split, "mine")


def test_a_disjoint_teacher_is_fitted_before_the_students_part(tmp_path):
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill", ratio=0.1, num_nodes=4,
                     config={"teacher": "historical-average"}, cache_dir=str(tmp_path))
    metas = {}
    for option in ("disjoint", "same"):
        t_spec = teacher_mod.teacher_spec(dataclasses.replace(spec, teacher_data=option), "historical-average")
        teacher_mod.fit_teacher(t_spec)
        metas[option] = teacher_mod.load_predictions(t_spec)[2]
    split = split_steps(2880, 0.1)
    assert metas["disjoint"]["teacher_train_steps"] == [0, split.train_start]
    assert metas["same"]["teacher_train_steps"] == [split.train_start, split.val_start]
    assert metas["disjoint"]["teacher_data"] == "disjoint" and metas["disjoint"]["test_mae"] != metas["same"]["test_mae"]
    late = teacher_mod.teacher_spec(dataclasses.replace(spec, ratio=0.8), "historical-average")
    with pytest.raises(teacher_mod.TeacherCacheError, match="teacher_data=disjoint leaves teacher historical-average no"):
        teacher_mod.fit_teacher(late)


def test_easyst_keeps_its_released_loss_by_default_and_takes_the_element_gate():
    import math

    from bench.protocol.metrics import masked_huber
    from models.flowdistill import gaussian_kl
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="easyst", ratio=0.1, num_nodes=6)
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    batch = parts["train"].batch(list(range(8)))
    batch["y_teacher"] = batch["y"] + 0.5                       # a close teacher: the gate opens
    model.eval()                                               # z = mu: the same forward twice
    loss, logs = training_loss(model, batch)
    z, mu, std = model.encode(batch["x"], batch["tod"], batch["dow"])
    student = masked_huber(ctx.scaler.inverse(model.head(z)), batch["y"])
    expected = (1 + cfg.lambda_tbl) * student / math.log(2) + 2 * cfg.info_beta * gaussian_kl(mu, std ** 2) / math.log(2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and logs["tbl_active"] == 1.0
    model.cfg.tbl_gate = "element"                             # delta 0.1 on SmoothL1 errors, per element
    _, logs = training_loss(model, batch)
    assert 0.0 < logs["tbl_active"] < 1.0


def test_fixing_a_variant_key_narrows_the_students_and_keeps_the_baselines_trials():
    """`--set lambda_tbl=1` keeps the lambda_tbl = 1 variants only; the student without teacher,
    which has no teacher to weigh, keeps the trial ids of a run without the setting."""
    plain = suites.build_specs(suites.SUITES["distill"], "NYCTaxi", "quick", ratios=[0.3])
    fixed = suites.build_specs(suites.SUITES["distill"], "NYCTaxi", "quick", ratios=[0.3],
                               settings={"lambda_tbl": 1.0})
    assert {s.trial_id for s in fixed} < {s.trial_id for s in plain}
    students = [s for s in fixed if s.model == "flowdistill"]
    assert len(students) == 4 * 2 * 5                # 2 gates x 2 targets, each with its shuffled twin, x 5 seeds
    assert sum(s.model_config().teacher_shuffle for s in students) == 4 * 5
    assert all(s.model_config().lambda_tbl == 1.0 for s in students)
    baselines = [s for s in fixed if s.model == suites.DISTILL_BASELINE]
    assert len(baselines) == 2 * 5                   # the student without teacher and its teacher's oracle
    assert sorted(str(s.model_config().oracle_of) for s in baselines) == ["None"] * 5 + ["seasonal-naive-week"] * 5
    assert [s.seed for s in fixed][:3] == [0, 0, 0]  # seed by seed: a run cut short holds whole seeds


def test_a_variant_named_by_settings_is_the_same_trial_as_in_the_full_plan():
    """`--set tbl_gate=batch --set tbl_target=truth --set lambda_tbl=0.1` (every key at its default)
    and `--set lambda_tbl=1` (an int, as YAML reads it) name trials of the plan without settings, so
    that the full suite run afterwards into the same folder skips them."""
    plain = {s.trial_id for s in suites.build_specs(suites.SUITES["distill"], "NYCTaxi", "full", ratios=[0.1],
                                                    teacher="seasonal-naive-week")}
    for settings, students in (({"tbl_gate": "batch", "tbl_target": "truth", "lambda_tbl": 0.1}, 1),
                               ({"tbl_gate": "element", "tbl_target": "teacher", "lambda_tbl": 1}, 1),
                               ({"lambda_tbl": 1}, 4)):
        fixed = suites.build_specs(suites.SUITES["distill"], "NYCTaxi", "full", ratios=[0.1],
                                   teacher="seasonal-naive-week", settings=settings)
        assert {s.trial_id for s in fixed} <= plain, settings
        assert len([s for s in fixed if s.model == "flowdistill"]) == students * 2 * 5


def test_the_delta_suite_runs_eq2_as_printed_at_each_delta():
    from bench.suites.delta import DELTAS
    specs = suites.build_specs(suites.SUITES["distill-delta"], "NYCTaxi", "quick")
    students = [s for s in specs if s.model == "flowdistill"]
    assert sorted({s.model_config().delta for s in students}) == sorted(DELTAS)
    assert all((c.tbl_gate, c.tbl_target, c.lambda_tbl, c.teacher) == ("batch", "truth", 1.0, "seasonal-naive-week")
               for c in (s.model_config() for s in students))
    assert len(students) == len(DELTAS) * 2 and {s.seed for s in students} == {0, 1}     # quick: 2 seeds
    narrowed = suites.build_specs(suites.SUITES["distill-delta"], "NYCTaxi", "quick", settings={"lambda_tbl": 0.1})
    assert {s.model_config().lambda_tbl for s in narrowed if s.model == "flowdistill"} == {0.1}
