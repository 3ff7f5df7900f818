"""Paired tests between two models on the same test windows, whose unit respects the data.

Each finished trial stores the error of every test window in its history file
(`OUT/<suite>/history/<trial_id>.json`: `window_mae`, `window_mse`, and `window_block`, the
windows of one day on a series, 1 on a dataset of independent samples). Two sources of variation
enter every comparison:

- seeds: a model trained again with another seed scores differently;
- test windows: consecutive windows share most of their steps and the same day's traffic, so
  per-window error differences are strongly autocorrelated (lag-1 autocorrelation of about 0.4
  even between non-overlapping 6-hour windows on NYCTaxi).

The procedure (`two_level_test`): per seed, the per-window error differences are averaged over
contiguous blocks of at least one day of windows (`block_means`), which makes blocks nearly
independent; the [seeds x blocks] table of block means is then a two-way crossed layout with
random seed and block effects. The variance of its grand mean is the unbiased estimator of a
two-way random-effects design without replication, (MS_seeds + MS_blocks - MS_residual) /
(seeds x blocks) (Searle, Casella & McCulloch, "Variance Components", 1992, ch. 4), floored at
MS_residual / (seeds x blocks) so that it is never negative; its degrees of freedom follow
Satterthwaite (1946) on MS_seeds + MS_blocks, and the p-value and the 95 % interval come from
Student's t (scipy). With one seed (a floor, or a teacher's forecast) it is the one-sample t-test
on block means; with one block, on seed means. It is an approximation: on synthetic nulls
(tests/test_stats.py) it rejects at 0.05 in 2 % (independent windows) to 8 % (blocks that share
overlapping windows) of draws. Within a table, `holm` adjusts the p-values for multiplicity
(Holm 1979, statsmodels' `multipletests`).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench.protocol.split import H_OUT

ALPHA = 0.05                   # significance after Holm's correction, within a table
DEFAULT_BLOCK = 4 * H_OUT      # windows per block when a history file does not say (one day at 30-min steps)
METRIC_KEYS = {"mae": "window_mae", "mse": "window_mse", "rel_l2": "window_rel_l2"}
POWER = 0.8                    # the power at which `min_detectable_effect` states the smallest effect


def load_window_errors(history_dir: Path, trial_ids, metric: str = "mae") -> dict | None:
    """Per-window test errors of the given trials (one per seed): {"errors": [S, W] float64,
    "seeds": [S] ints, "block": windows per block}, or None when a history file or its errors
    are missing, or the trials cover different windows.

    metric: "mae" (`window_mae`), "mse" (`window_mse`) or "rel_l2" (`window_rel_l2`, grids only).

    Raises:
        ValueError: an unknown metric.
    """
    if metric not in METRIC_KEYS:
        raise ValueError(f"metric {metric!r}; use one of {', '.join(METRIC_KEYS)}")
    runs, seeds, block = [], [], None
    for tid in trial_ids:
        path = Path(history_dir) / f"{tid}.json"
        if not path.exists():
            return None
        history = json.loads(path.read_text())
        if history.get(METRIC_KEYS[metric]) is None:
            return None
        runs.append(np.asarray(history[METRIC_KEYS[metric]], dtype=np.float64))
        seeds.append(int((history.get("spec") or {}).get("seed", len(seeds))))
        if block is None:
            every = history.get("window_every", H_OUT)
            block = int(history.get("window_block") or (1 if every == 1 else DEFAULT_BLOCK))
    if not runs or len({len(r) for r in runs}) != 1:
        return None
    return {"errors": np.stack(runs), "seeds": seeds, "block": block}


def block_means(errors: np.ndarray, block: int) -> np.ndarray:
    """[S, W] per-window errors -> [S, B] means over B = max(1, W // block) contiguous blocks of
    nearly equal size (each at least `block` windows when W >= block), NaN windows left out."""
    errors = np.atleast_2d(np.asarray(errors, dtype=np.float64))
    n_blocks = max(1, errors.shape[1] // max(1, int(block)))
    with warnings.catch_warnings():                  # an all-NaN block gives NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([np.nanmean(part, axis=1) for part in np.array_split(errors, n_blocks, axis=1)], axis=1)


def two_level_test(a: np.ndarray, b: np.ndarray, block: int, seeds_a=None, seeds_b=None) -> dict:
    """Test of the mean difference of per-window errors a - b that counts seeds and temporally
    dependent test windows (see the module docstring).

    a, b: [S_a, W] and [S_b, W] per-window errors of the same test windows (rows: seeds). Rows are
    paired by seed (`seeds_a`, `seeds_b`: the seed of each row; default 0, 1, ...): the seeds both
    sides have are compared seed by seed; a side with a single row (a floor, a teacher's forecast)
    is compared with every row of the other.

    Returns:
        {"diff": mean difference (a - b), "lo", "hi": its 95 % interval, "p": two-sided p-value,
        "se": its standard error, "df": degrees of freedom, "seeds": seeds compared, "blocks": blocks of windows,
        "block": windows per block, "seed_diffs": mean difference per seed, "n": seeds x blocks}.
        p is 1 where a and b are equal everywhere; NaN with too few seeds and blocks to estimate
        a variance (one seed and one block).
    Raises:
        ValueError: a and b cover different numbers of windows, or share no seed.
    """
    from scipy.stats import t as student_t
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired test: {a.shape[1]} and {b.shape[1]} windows differ; compare the same test windows")
    seeds_a = list(range(len(a))) if seeds_a is None else list(seeds_a)
    seeds_b = list(range(len(b))) if seeds_b is None else list(seeds_b)
    if len(a) == 1 or len(b) == 1:
        diff = a - b
    else:
        common = [s for s in seeds_a if s in seeds_b]
        if not common:
            raise ValueError(f"paired test: no seed in common ({seeds_a} against {seeds_b}); run the same seeds")
        diff = np.stack([a[seeds_a.index(s)] - b[seeds_b.index(s)] for s in common])
    m = block_means(diff, block)
    m = m[:, np.isfinite(m).all(axis=0)]
    s_n, b_n = m.shape
    out = {"diff": float(m.mean()) if m.size else float("nan"), "lo": float("nan"), "hi": float("nan"),
           "p": float("nan"), "se": float("nan"), "df": float("nan"), "seeds": s_n, "blocks": b_n, "block": int(block),
           "seed_diffs": [float(v) for v in m.mean(axis=1)] if b_n else [], "n": s_n * b_n}
    if not m.size:
        return out
    if np.all(m == 0):
        return out | {"p": 1.0, "lo": 0.0, "hi": 0.0, "se": 0.0}
    if s_n > 1 and b_n > 1:
        resid = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
        ms_seeds, ms_blocks = b_n * m.mean(axis=1).var(ddof=1), s_n * m.mean(axis=0).var(ddof=1)
        ms_resid = float((resid ** 2).sum()) / ((s_n - 1) * (b_n - 1))
        var = max(ms_seeds + ms_blocks - ms_resid, ms_resid) / (s_n * b_n)
        df = (ms_seeds + ms_blocks) ** 2 / (ms_seeds ** 2 / (s_n - 1) + ms_blocks ** 2 / (b_n - 1))
    elif s_n > 1 or b_n > 1:                 # one seed: blocks only; one block: seeds only
        units = m[0] if s_n == 1 else m[:, 0]
        var, df = units.var(ddof=1) / len(units), len(units) - 1
    else:
        return out
    if not var > 0:
        return out
    se = float(np.sqrt(var))
    half = float(student_t.ppf(0.975, df)) * se
    return out | {"p": float(2 * student_t.sf(abs(out["diff"]) / se, df)), "se": se, "df": float(df),
                  "lo": out["diff"] - half, "hi": out["diff"] + half}


def min_detectable_effect(test: dict, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true difference |a - b| that `two_level_test` would find at level `alpha`
    (two-sided) with probability `power`, given the standard error and degrees of freedom it
    measured (the seed and the block spread): delta = nc * SE, where nc is the noncentrality at
    which Student's noncentral t with the test's df exceeds the critical value (either side)
    with that probability (scipy's `nct`, solved by brentq; for a whole df this is statsmodels'
    `TTestPower.solve_power` times sqrt(nobs), which returns NaN for some large nc). About 2.80
    SE for many df at the defaults, 3.08 SE at df 11. NaN where the test has no standard error
    (too few seeds and blocks, or a and b equal everywhere); inf where no noncentrality up to
    1,000 reaches the power. Source: Cohen (1988), ch. 2."""
    from scipy.optimize import brentq
    from scipy.stats import nct
    from scipy.stats import t as student_t
    se, df = test.get("se", float("nan")), test.get("df", float("nan"))
    if not (df > 0 and se > 0):
        return float("nan")
    crit = float(student_t.ppf(1 - alpha / 2, df))

    def gap(nc: float) -> float:               # power at noncentrality nc, minus the power asked for
        lower = float(nct.cdf(-crit, df, nc))  # the far tail: at most alpha / 2, NaN far out in scipy
        return float(nct.sf(crit, df, nc)) + (lower if lower == lower else 0.0) - power

    hi = 2.0
    while (reached := gap(hi)) < 0:            # a bracket: double until the power is reached
        if hi > 1e3:
            return float("inf")
        hi *= 2
    if reached != reached:
        return float("inf")
    return float(brentq(gap, 0.0, hi) * se)


NONE = {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan"), "se": float("nan"),
        "df": float("nan"),
        "seeds": 0, "blocks": 0, "block": 0, "seed_diffs": [], "n": 0}


def compare(history_dir: Path | None, rows_a: pd.DataFrame, rows_b: pd.DataFrame, metric: str = "mae") -> dict:
    """`two_level_test` of the trials in rows_a against those in rows_b (overall rows of finished
    trials, one per seed) on their per-window `metric` ("mae", "mse" or "rel_l2"); every value NaN when
    `history_dir` is None or a history file is missing."""
    if history_dir is None or rows_a.empty or rows_b.empty:
        return dict(NONE)
    a = load_window_errors(history_dir, rows_a["trial_id"].astype(str), metric)
    b = load_window_errors(history_dir, rows_b["trial_id"].astype(str), metric)
    if a is None or b is None or a["errors"].shape[1] != b["errors"].shape[1]:
        return dict(NONE)
    try:
        return two_level_test(a["errors"], b["errors"], a["block"], a["seeds"], b["seeds"])
    except ValueError:
        return dict(NONE)


def compare_teacher(history_dir: Path | None, rows: pd.DataFrame) -> dict:
    """`two_level_test` of distilled students (rows: one per seed) against their teacher's cached
    test forecast (`teacher_window_mae` in each student's history file: the same forecast for
    every seed); NaN values when it was not recorded."""
    if history_dir is None or rows.empty:
        return dict(NONE)
    a = load_window_errors(history_dir, rows["trial_id"].astype(str))
    if a is None:
        return dict(NONE)
    first = json.loads((Path(history_dir) / f"{rows['trial_id'].astype(str).iloc[0]}.json").read_text())
    teacher = first.get("teacher_window_mae")
    if teacher is None or len(teacher) != a["errors"].shape[1]:
        return dict(NONE)
    return two_level_test(a["errors"], np.asarray([teacher], dtype=np.float64), a["block"], a["seeds"])


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels `multipletests(method="holm")`) of one
    family; NaN entries stay NaN and do not count as comparisons."""
    from statsmodels.stats.multitest import multipletests
    p = np.asarray(list(p_values), dtype=np.float64)
    out = np.full(p.shape, np.nan)
    keep = np.isfinite(p)
    if keep.any():
        out[keep] = multipletests(p[keep], method="holm")[1]
    return out


def p_label(p: float) -> str:
    """p as printed in the tables: "p=0.003", "p<1e-4", or "" when not computed."""
    if p != p:
        return ""
    return "p<1e-4" if p < 1e-4 else f"p={p:.2g}"


def p_note(p: float) -> str:
    """" (p=0.003)" to follow a number in a table cell, or "" when p was not computed."""
    return f" ({p_label(p)})" if p == p else ""


def diff_cell(test: dict, p_adj: float | None = None, fmt: str = "+.2f") -> str:
    """A comparison as a table cell: "-1.72 [-2.10, -1.34] p=0.003*" (difference, 95 % interval,
    p after Holm where given, * when it is below ALPHA), "" without a test."""
    if test["diff"] != test["diff"]:
        return ""
    p = test["p"] if p_adj is None else p_adj
    ci = f" [{test['lo']:{fmt}}, {test['hi']:{fmt}}]" if test["lo"] == test["lo"] else ""
    return f"{test['diff']:{fmt}}{ci}" + (f" {p_label(p)}" + ("*" if p < ALPHA else "") if p == p else "")


def rank_correlation(x, y) -> tuple[float, float]:
    """Spearman's rho of x and y and its two-sided p-value (scipy); (NaN, NaN) with fewer than 3
    pairs or a constant side."""
    from scipy.stats import spearmanr
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rho, p = spearmanr(x, y)
    return float(rho), float(p)
