"""The paired test over seeds and day blocks of test windows, on synthetic series with known
answers; Holm's correction against hand-computed values; the distill suite's controls (the
oracle's training part, the shuffled teacher) on real NYCTaxi indices."""
import json

import numpy as np
import pandas as pd
import pytest

from bench.execution import teacher as teacher_mod
from bench.execution.context import build_context, oracle_train_start
from bench.execution.spec import TrialSpec
from bench.protocol import stats
from bench.protocol.split import H_IN, H_OUT, split_for, teacher_split

SEEDS, WINDOWS, DAY = 5, 277, 48          # NYCTaxi's test set: 277 windows, 48 windows a day


def _ar(rng, n, rho):
    """A stationary AR(1) series of unit variance."""
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = rho * x[i - 1] + np.sqrt(1 - rho ** 2) * rng.normal()
    return x


def _rejections(draw, n=300, seed=0):
    rng = np.random.default_rng(seed)
    p = np.array([stats.two_level_test(*draw(rng), DAY)["p"] for _ in range(n)])
    assert np.isfinite(p).all()
    return p


def test_independent_equal_forecasts_reject_about_as_often_as_the_level():
    p = _rejections(lambda rng: (rng.normal(10, 1, (SEEDS, WINDOWS)), rng.normal(10, 1, (SEEDS, WINDOWS))))
    assert 0.005 <= (p < 0.05).mean() <= 0.08
    assert 0.35 <= np.median(p) <= 0.65                    # p-values spread over (0, 1), centred near 0.5


def test_an_autocorrelated_null_with_seed_effects_rejects_no_more_than_its_level():
    # per-window differences shared by every seed (AR(1), rho 0.95 between consecutive windows: the
    # overlap of windows), a seed effect and noise; the Wilcoxon test on every 12th window of the
    # seed-averaged errors rejects such a null far more often than 5 %
    def draw(rng):
        a = _ar(rng, WINDOWS, 0.95)[None] + 0.5 * rng.normal(size=(SEEDS, 1)) + 0.3 * rng.normal(size=(SEEDS, WINDOWS))
        return a, np.zeros((SEEDS, WINDOWS))
    p = _rejections(draw)
    assert (p < 0.05).mean() <= 0.085                       # the level, plus two Monte Carlo standard errors
    from scipy.stats import wilcoxon
    rng = np.random.default_rng(1)
    naive = [wilcoxon(a.mean(0)[::H_OUT]).pvalue for a, _ in (draw(rng) for _ in range(200))]
    assert (np.array(naive) < 0.05).mean() > 0.15


def test_a_real_shift_is_found_and_its_interval_covers_it():
    rng = np.random.default_rng(3)
    b = 12 + _ar(rng, WINDOWS, 0.9)[None] + 0.2 * rng.normal(size=(SEEDS, WINDOWS))
    a = b - 0.5 + 0.05 * rng.normal(size=(SEEDS, 1)) + 0.1 * rng.normal(size=(SEEDS, WINDOWS))
    out = stats.two_level_test(a, b, DAY)
    assert out["p"] < 0.001 and out["lo"] < -0.5 < out["hi"] and out["diff"] == pytest.approx(-0.5, abs=0.05)
    assert out["seeds"] == SEEDS and out["blocks"] == WINDOWS // DAY and len(out["seed_diffs"]) == SEEDS


def test_seed_spread_enters_the_interval():
    # the same window-level differences, once with every seed agreeing and once with seeds spread
    # around the same mean: the spread widens the interval and raises p
    rng = np.random.default_rng(4)
    common = -0.3 + 0.05 * rng.normal(size=(1, WINDOWS))
    agree = stats.two_level_test(np.repeat(common, SEEDS, 0), np.zeros((SEEDS, WINDOWS)), DAY)
    spread = stats.two_level_test(common + np.array([[-1.2], [0.9], [0.4], [-0.6], [0.5]]),
                                  np.zeros((SEEDS, WINDOWS)), DAY)
    assert spread["hi"] - spread["lo"] > 5 * (agree["hi"] - agree["lo"])
    assert agree["p"] < 1e-4 < 0.05 < spread["p"]


def test_pairing_by_seed_and_a_single_forecast_against_every_seed():
    a = np.array([[1.0, 2, 3, 4], [2, 3, 4, 5]])
    b = np.array([[0.0, 1, 2, 3], [9, 9, 9, 9]])
    out = stats.two_level_test(a, b, 1, seeds_a=[3, 7], seeds_b=[7, 3])       # seed 3 with seed 3, 7 with 7
    assert out["seed_diffs"] == pytest.approx([2.5 - 9, 3.5 - 1.5])
    one = stats.two_level_test(a, np.array([[1.0, 1, 1, 1]]), 1)              # a teacher's single forecast
    assert one["seed_diffs"] == pytest.approx([1.5, 2.5]) and one["diff"] == pytest.approx(2.0)
    assert stats.two_level_test(a, a, 1)["p"] == 1.0
    with pytest.raises(ValueError, match="no seed in common"):
        stats.two_level_test(a, b, 1, seeds_a=[0, 1], seeds_b=[2, 3])
    with pytest.raises(ValueError, match="windows differ"):
        stats.two_level_test(a, b[:, :3], 1)


def test_block_means_cover_every_window_in_blocks_of_at_least_a_day():
    errors = np.arange(2 * 100, dtype=float).reshape(2, 100)
    m = stats.block_means(errors, 48)
    assert m.shape == (2, 2) and m[0] == pytest.approx([24.5, 74.5])
    assert stats.block_means(errors, 1).shape == (2, 100)


def test_holm_against_hand_computed_values():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> max(0.06, 0.04)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[4])


def test_compare_reads_history_files(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for model, shift in (("a", 0.0), ("b", 1.0)):
        for seed in range(3):
            tid = f"{model}{seed}"
            errors = 10 + shift + rng.normal(0, 0.1, WINDOWS)
            (tmp_path / f"{tid}.json").write_text(json.dumps({"spec": {"seed": seed}, "window_mae": list(errors),
                                                              "window_mse": list(errors ** 2), "window_block": DAY,
                                                              "teacher_window_mae": [10.5] * WINDOWS}))
            rows.append({"model": model, "trial_id": tid, "seed": seed})
    df = pd.DataFrame(rows)
    out = stats.compare(tmp_path, df[df.model == "a"], df[df.model == "b"])
    assert out["diff"] == pytest.approx(-1.0, abs=0.05) and out["p"] < 1e-3 and out["block"] == DAY
    mse = stats.compare(tmp_path, df[df.model == "a"], df[df.model == "b"], metric="mse")
    assert mse["diff"] == pytest.approx(100 - 121, abs=1.5)
    teacher = stats.compare_teacher(tmp_path, df[df.model == "a"])
    assert teacher["diff"] == pytest.approx(-0.5, abs=0.05) and teacher["seeds"] == 3
    assert np.isnan(stats.compare(None, df, df)["p"])


def test_the_oracle_extends_the_training_part_by_the_teachers_lag_only(taxi):
    split = split_for(taxi, 0.1)
    week = 7 * taxi.steps_per_day
    start = oracle_train_start(taxi, split, "seasonal-naive-week", "disjoint")
    assert start == split.train_start - week                      # the lag, nothing more
    assert oracle_train_start(taxi, split, "seasonal-naive-day", "disjoint") == split.train_start - taxi.steps_per_day
    assert oracle_train_start(taxi, split, "historical-average", "disjoint") == split.train_start
    # a fitted teacher: its teacher_data part joined to the student's
    assert oracle_train_start(taxi, split, "flowdistill-teacher-wo-lm", "disjoint") == 0
    assert oracle_train_start(taxi, split, "flowdistill-teacher-wo-lm", "same") == split.train_start
    assert teacher_split(split, "disjoint").val_start == split.train_start
    ctx = build_context(TrialSpec("t", "NYCTaxi", "flowdistill-wo-tb", 0.1, num_nodes=4,
                                  config={"oracle_of": "seasonal-naive-week"}))
    train = ctx.parts["train"].starts
    # the teacher's forecasts of the student's training targets (steps t - week) are now targets
    assert train.min() == start and train.max() + H_IN + H_OUT <= split.val_start
    assert ctx.split.val_start == split.val_start and ctx.split.test_start == split.test_start
    assert np.array_equal(ctx.parts["test"].starts, build_context(
        TrialSpec("t", "NYCTaxi", "flowdistill-wo-tb", 0.1, num_nodes=4)).parts["test"].starts)


def test_the_oracle_is_a_trial_of_its_own():
    plain = TrialSpec("distill", "NYCTaxi", "flowdistill-wo-tb", 0.1)
    oracle = TrialSpec("distill", "NYCTaxi", "flowdistill-wo-tb", 0.1, config={"oracle_of": "flowdistill-teacher"})
    other = TrialSpec("distill", "NYCTaxi", "flowdistill-wo-tb", 0.1, config={"oracle_of": "flowdistill-teacher"},
                      teacher_data="all")
    assert len({plain.trial_id, oracle.trial_id, other.trial_id}) == 3


def test_a_derangement_moves_every_window():
    for n in (2, 3, 10, 265):
        for seed in range(5):
            perm = teacher_mod.derangement(n, seed)
            assert sorted(perm) == list(range(n)) and not (perm == np.arange(n)).any()


def test_the_shuffled_teacher_keeps_the_values_and_breaks_the_pairing(tmp_path):
    spec = TrialSpec("t", "NYCTaxi", "flowdistill", 0.1, num_nodes=4, cache_dir=str(tmp_path),
                     config={"teacher": "seasonal-naive-week"})
    t_spec = teacher_mod.teacher_spec(spec, "seasonal-naive-week")
    teacher_mod.fit_teacher(t_spec)
    aligned, shuffled = build_context(spec), build_context(spec)
    meta = teacher_mod.attach(aligned.parts, t_spec)
    meta_s = teacher_mod.attach(shuffled.parts, t_spec, shuffle_seed=1)
    a, s = aligned.parts["train"].teacher.numpy(), shuffled.parts["train"].teacher.numpy()
    assert np.array_equal(np.sort(a.ravel()), np.sort(s.ravel()))              # the same values
    assert not any(np.array_equal(a[i], s[i]) for i in range(len(a)))          # no window keeps its own
    assert meta_s["shuffled"] and "shuffled" not in meta
    assert len(meta["test_window_mae"]) == len(aligned.parts["test"])
    assert np.mean(meta["test_window_mae"]) == pytest.approx(meta["test_mae"], rel=0.05)


def test_minimum_detectable_effect_has_its_power_on_synthetic_data():
    from scipy.stats import norm
    from statsmodels.stats.power import TTestPower
    # many df: (z_0.975 + z_0.8) standard errors
    assert stats.min_detectable_effect({"se": 0.5, "df": 1e7}) == pytest.approx(0.5 * (norm.ppf(0.975) + norm.ppf(0.8)),
                                                                                 rel=1e-4)
    # one seed, 12 independent test samples (df 11): statsmodels' one-sample answer, d * sqrt(n) SE
    rng = np.random.default_rng(0)
    sample = rng.normal(0.0, 2.0, (1, 12))
    test = stats.two_level_test(sample, np.zeros((1, 12)), 1)
    assert test["df"] == 11 and test["se"] == pytest.approx(sample.std(ddof=1) / np.sqrt(12))
    mde = stats.min_detectable_effect(test)
    assert mde / test["se"] == pytest.approx(TTestPower().solve_power(nobs=12, alpha=0.05, power=0.8) * np.sqrt(12),
                                             rel=1e-5)
    assert stats.min_detectable_effect(test, alpha=0.005) > mde               # a stricter level needs a larger effect
    # and that effect is found 80 % of the time: 12 samples of sd 2 (SE 2 / sqrt 12), true shift = the MDE
    true_mde = stats.min_detectable_effect({"se": 2 / np.sqrt(12), "df": 11})
    found = np.mean([stats.two_level_test(rng.normal(true_mde, 2.0, (1, 12)), np.zeros((1, 12)), 1)["p"] < 0.05
                     for _ in range(2000)])
    assert abs(found - 0.8) < 0.03
    assert np.isnan(stats.min_detectable_effect(stats.two_level_test(np.ones((1, 1)), np.zeros((1, 1)), 1)))
