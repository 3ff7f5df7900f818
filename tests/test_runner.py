import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

ROWS = 1 + 12 + 4          # overall, horizons 1..12, volume buckets q1..q4

from bench.execution import runner, teacher
from bench.execution.results import append_rows, read_trials
from bench.suites import LIGHT_MODELS, QUICK_STEP_BUDGETS, SUITES, breakdown_table, build_specs, ratio_table
from bench.execution.results import error_rows
from bench.execution.spec import TrialSpec


def specs_for(tmp_path, models, ratios=(0.4,), preset="full", **kw):
    kw.setdefault("teacher", "stwa")
    return build_specs(SUITES["data-efficiency"], "NYCTaxi", preset, list(models), list(ratios), epochs=1,
                       num_nodes=8, cache_dir=str(tmp_path / "teachers"), **kw)


def test_inline_suite_distils_from_a_cached_teacher_and_resume_skips(tmp_path, monkeypatch):
    specs = specs_for(tmp_path, ["flowdistill", "flowdistill-wo-tb", "stwa"])
    path = runner.run(specs, str(tmp_path), executor="inline", log=lambda *_: None)
    df = read_trials(path)
    assert len(df) == 3 * ROWS and (df["status"] == "ok").all()
    assert np.isfinite(df[["mae", "rmse", "mape"]].to_numpy(float)).all()
    overall = df[(df["horizon"] == "all") & (df["bucket"] == "all")].set_index("model")
    assert overall.loc["flowdistill", "teacher"] == "stwa" and overall.loc["flowdistill-wo-tb", "teacher"] == ""
    assert list((tmp_path / "teachers" / "NYCTaxi").glob("stwa-r0.4-*.npz"))
    assert "flowdistill (teacher: stwa, disjoint data)" in ratio_table(df)
    fd = next(s for s in specs if s.model == "flowdistill")
    history = json.loads((path.parent / "history" / f"{fd.trial_id}.json").read_text())["history"]
    assert len(history) == 1 and 0.0 <= history[0]["tbl_active"] <= 1.0 and history[0]["val_mae"] > 0

    def must_not_run(spec_dict):
        raise AssertionError(f"finished trial rerun: {spec_dict['model']}")
    monkeypatch.setattr(runner, "run_trial", must_not_run)
    monkeypatch.setattr(teacher, "fit_teacher", must_not_run)
    runner.run(specs, str(tmp_path), executor="inline", log=lambda *_: None)
    assert read_trials(path).equals(df)


def test_interrupted_suite_reruns_only_unfinished_trials(tmp_path, monkeypatch):
    specs = specs_for(tmp_path, ["flowdistill-wo-tb"], ratios=(0.3, 0.4))
    assert [s.ratio for s in specs] == [0.4, 0.3]           # the largest ratio first: the longest trial starts first
    first = [s for s in specs if s.ratio == 0.3]
    runner.run(first, str(tmp_path), executor="inline", log=lambda *_: None)   # stopped after trial 1
    ran = []
    real = runner.run_trial
    monkeypatch.setattr(runner, "run_trial", lambda spec, progress=None: ran.append(spec.ratio) or real(spec))
    path = runner.run(specs, str(tmp_path), executor="inline", log=lambda *_: None)
    assert ran == [0.4]
    assert sorted(read_trials(path).query("horizon == 'all' and bucket == 'all'")["ratio"]) == [0.3, 0.4]


def test_failing_trial_is_recorded_and_the_suite_goes_on(tmp_path):
    good = specs_for(tmp_path, ["flowdistill-wo-tb"])[0]
    bad = TrialSpec(**{**good.to_dict(), "config": {"lambda_kl": math.nan}})
    path = runner.run([bad, good], str(tmp_path), executor="inline", log=lambda *_: None)
    df = read_trials(path)
    status = df.groupby("trial_id")["status"].first()
    assert status[bad.trial_id] == "error" and status[good.trial_id] == "ok"
    assert "TrainingError" in df.loc[df["trial_id"] == bad.trial_id, "error"].iloc[0]
    assert not list(path.parent.glob(".trials-*"))                 # no temporary file left behind
    assert (df["node"] != "").all()                                # where each trial ran


def test_a_node_without_the_data_root_fails_its_trial_naming_the_path(tmp_path):
    good = specs_for(tmp_path, ["flowdistill-wo-tb"])[0]
    elsewhere = TrialSpec(**{**good.to_dict(), "seed": 1, "data_dir": str(tmp_path / "no-data-here")})
    path = runner.run([elsewhere, good], str(tmp_path), executor="inline", log=lambda *_: None)
    df = read_trials(path).groupby("trial_id").first()
    assert df.loc[good.trial_id, "status"] == "ok"
    assert df.loc[elsewhere.trial_id, "status"] == "error"
    assert str(tmp_path / "no-data-here") in df.loc[elsewhere.trial_id, "error"]


def test_teacher_and_settings_become_config_overrides(tmp_path):
    # delta means different things in flowdistill and in easyst (the teacher here): scoped
    specs = specs_for(tmp_path, ["flowdistill", "flowdistill-wo-tb", "stwa"], teacher="easyst",
                      settings={"flowdistill.delta": 3.0, "hidden": 8})
    config = {s.model: s.config for s in specs}
    assert config["flowdistill"] == {"delta": 3.0, "teacher": "easyst"}
    assert config["flowdistill-wo-tb"] == {"delta": 3.0}          # no teacher to replace
    assert config["stwa"] == {"hidden": 8}
    assert len({s.trial_id for s in specs}) == 3


def test_same_seed_gives_the_same_metrics(tmp_path):
    # under the quick preset too: its budgets count optimiser steps, not seconds
    spec = specs_for(tmp_path, ["flowdistill-wo-tb"], preset="quick")[0]
    assert spec.max_batches == 20 and spec.max_val_windows == 64
    first, second = runner.run_trial(spec), runner.run_trial(spec)
    for a, b in zip(first, second):
        for metric in ("mae", "rmse", "mape"):
            assert abs(a[metric] - b[metric]) <= 1e-6
    other = runner.run_trial(TrialSpec(**{**spec.to_dict(), "seed": 1}))
    assert abs(other[0]["mae"] - first[0]["mae"]) > 1e-6


def test_append_replaces_rows_of_a_retried_trial(tmp_path):
    path = tmp_path / "s" / "trials.csv"
    row = {"trial_id": "a", "status": "error", "horizon": "all", "mae": float("nan")}
    append_rows(path, [row])
    append_rows(path, [row | {"status": "ok", "mae": 1.5}, {"trial_id": "b", "status": "ok", "horizon": "all"}])
    df = pd.read_csv(path)
    assert df["trial_id"].tolist() == ["a", "b"] and df["status"].tolist() == ["ok", "ok"]


def test_teacher_cache_key_follows_data_ratio_and_config(tmp_path):
    spec = teacher.teacher_spec(specs_for(tmp_path, ["flowdistill"])[0], "stwa")
    key = teacher.cache_key(spec, "data-a")
    assert key != teacher.cache_key(spec, "data-b")
    assert key != teacher.cache_key(TrialSpec(**{**spec.to_dict(), "ratio": 0.3}), "data-a")
    assert key != teacher.cache_key(TrialSpec(**{**spec.to_dict(), "config": {"hidden": 8}}), "data-a")
    assert key != teacher.cache_key(TrialSpec(**{**spec.to_dict(), "max_epochs": 2}), "data-a")


def test_stale_or_missing_teacher_cache_is_refused(tmp_path):
    spec = teacher.teacher_spec(specs_for(tmp_path, ["flowdistill"])[0], "stwa")
    with pytest.raises(teacher.TeacherCacheError, match="no cached predictions"):
        teacher.load_predictions(spec)
    path = teacher.fit_teacher(spec)
    starts, pred, meta = teacher.load_predictions(spec)
    assert pred.shape == (len(starts), 12, 8, 2) and meta["teacher"] == "stwa"
    teacher.save_predictions(path, starts, pred, "0" * 64, meta)     # a cache written for other data
    with pytest.raises(teacher.TeacherCacheError, match="made for other data"):
        teacher.load_predictions(spec)


def test_suites_and_presets_choose_ratios():
    ablation = build_specs(SUITES["ablation"], "NYCTaxi", "quick")
    assert {s.ratio for s in ablation} == {0.5} and len(ablation) == 5 * 2     # 2 seeds: the suite compares
    assert len(build_specs(SUITES["ablation"], "NYCTaxi", "full")) == 5
    first = build_specs(SUITES["data-efficiency"], "NYCTaxi", "quick", seeds=2)
    # the first run: the light models, most expensive first, and the floors; none with a step budget
    assert sorted({s.ratio for s in first}) == [0.1, 0.5] and len(first) == 2 * 7 * 2
    assert [s.model for s in first if s.ratio == 0.5 and s.seed == 0] == list(LIGHT_MODELS)
    assert all(s.max_steps is None for s in first)
    quick = build_specs(SUITES["data-scalability"], "NYCTaxi", "quick", seeds=2)
    assert sorted({s.ratio for s in quick}) == [0.1, 0.5, 0.7] and len(quick) == 3 * 11 * 2
    assert "st-mlp" not in {s.model for s in quick}
    assert all(s.max_batches == 20 and s.train_stride is None and s.max_val_windows == 64 for s in quick)
    budget = dict(QUICK_STEP_BUDGETS)
    # budgets in optimiser steps: the heavy models a fixed number, the light ones until early stopping
    assert {s.model: s.max_steps for s in quick if s.max_steps} == {m: budget[m] for m in ("stwa", "astgcn", "stsgcn",
                                                                                           "flowdistill-teacher")}
    # the quick preset's students learn from the teacher that needs no fit, unless --teacher names one
    fd = next(s for s in quick if s.model == "flowdistill")
    easyst = next(s for s in quick if s.model == "easyst")
    assert fd.config["teacher"] == easyst.config["teacher"] == "seasonal-naive-week"
    assert fd.max_steps is None and fd.teacher_max_steps is None
    assert fd.model_config().patience == 5 and fd.model_config().max_epochs == 150
    llm = build_specs(SUITES["data-scalability"], "NYCTaxi", "quick", ["flowdistill"], teacher="flowdistill-teacher")[0]
    assert llm.teacher_max_steps == budget["flowdistill-teacher"]
    t = teacher.teacher_spec(llm, "flowdistill-teacher")
    assert t.max_steps == budget["flowdistill-teacher"] and t.teacher_max_steps is None
    assert t.model_config().val_windows == 16 and llm.model_config().val_windows == 64
    sdkd = build_specs(SUITES["sdkd"], "NYCTaxi", "quick", ["sdkd-unet-kd"])[0]
    assert "teacher" not in sdkd.config and sdkd.max_steps is None     # other teachers stay
    full = build_specs(SUITES["data-efficiency"], "NYCTaxi", "full")
    assert sorted({s.ratio for s in full}) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert all(s.max_steps is None and s.teacher_max_steps is None and s.max_patience is None for s in full)
    assert next(s for s in full if s.model == "flowdistill").model_config().patience == 25


def test_table_of_a_run_with_failed_and_finished_trials(tmp_path):
    path = tmp_path / "s" / "trials.csv"
    spec = specs_for(tmp_path, ["flowdistill"])[0]
    append_rows(path, error_rows(spec, "boom"))
    append_rows(path, [{"trial_id": "b", "status": "ok", "horizon": "all", "bucket": "all", "mae": 1.0,
                        "rmse": 2.0, "model": "stwa", "teacher": "", "ratio": 0.4}])
    df = read_trials(path)
    assert df["mae"].dtype.kind == "f" and np.isnan(df["mae"].iloc[0])
    table = ratio_table(df)
    assert "stwa" in table and "1.00" in table and "flowdistill" not in table


def test_robustness_suite_prints_horizon_and_bucket_breakdown(tmp_path):
    specs = build_specs(SUITES["robustness"], "NYCTaxi", "quick", models=["flowdistill-wo-tb"], epochs=1,
                        num_nodes=8, cache_dir=str(tmp_path / "teachers"))
    assert [s.ratio for s in specs] == [0.5]
    path = runner.run(specs, str(tmp_path), executor="inline", log=lambda *_: None)
    df = read_trials(path)
    table = breakdown_table(df)
    header = table.splitlines()[0]
    assert "h1" in header and "h12" in header and "q1" in header and "q4" in header
    row = df[(df["horizon"] == "3") & (df["bucket"] == "all")]["mae"].iloc[0]
    assert f"{row:.2f}" in table.splitlines()[2]


def _append_many(path, start, n):
    from bench.execution.results import append_rows
    for i in range(start, start + n):
        append_rows(path, [{"trial_id": f"t{i}", "suite": "race", "mae": i, "status": "ok"}])


def test_two_writers_at_once_lose_no_row(tmp_path):
    import multiprocessing

    from bench.execution.results import read_trials
    path = tmp_path / "race" / "trials.csv"
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_many, args=(path, start, 30)) for start in (0, 30)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    df = read_trials(path)
    assert len(df) == 60 and sorted(df["trial_id"]) == sorted(f"t{i}" for i in range(60))


def test_set_scoped_by_model_and_ambiguous_bare_keys_refused():
    from bench.suites import SuiteError, model_overrides
    # a bare key of one meaning reaches every model that has it, variants included
    assert model_overrides(["flowdistill", "flowdistill-wo-tb"], settings={"delta": 3}) == {
        "flowdistill": {"delta": 3}, "flowdistill-wo-tb": {"delta": 3}}
    # FlowDistill's delta (gate threshold in MAE units) and EasyST's (SmoothL1 units) differ: scope them
    with pytest.raises(SuiteError, match=r"--set delta: fields of different meaning in flowdistill "
                                         r"\(FlowDistillConfig\), easyst \(EasySTConfig\).*--set flowdistill.delta=3"):
        model_overrides(["flowdistill", "easyst"], settings={"delta": 3})
    out = model_overrides(["flowdistill", "flowdistill-kd", "easyst"],
                          settings={"flowdistill.delta": 3, "easyst.delta": 0.5, "tbl_gate": "element"})
    assert out == {"flowdistill": {"delta": 3, "tbl_gate": "element"}, "flowdistill-kd": {"delta": 3, "tbl_gate": "element"},
                   "easyst": {"delta": 0.5, "tbl_gate": "element"}}
    # training fields mean the same everywhere, and a scoped key reaches a teacher
    teachers = {}
    assert model_overrides(["easyst"], settings={"lr": 0.01, "stwa.patience": 3}, teacher_configs=teachers) == {
        "easyst": {"lr": 0.01}}
    assert teachers == {"easyst": {"lr": 0.01, "patience": 3}}
    with pytest.raises(SuiteError, match="--set flowdistill.delta: no model of this run"):
        model_overrides(["easyst"], settings={"flowdistill.delta": 3})


def test_trials_request_a_gpu_where_the_cluster_has_one(tmp_path):
    specs = specs_for(tmp_path, ["flowdistill-wo-tb"])
    on_cpu = [dataclasses.replace(s, device="cpu") for s in specs]
    assert runner.default_gpus(specs, cluster_gpus=8) == 1.0       # a GPU cluster, whatever the driver has
    assert runner.default_gpus(specs, cluster_gpus=0) == 0.0
    assert runner.default_gpus(on_cpu, cluster_gpus=8) == 0.0      # --device cpu asks for none
