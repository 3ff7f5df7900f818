"""Paired significance tests between two models on the same test windows.

Each finished trial stores the masked MAE of every test window (`window_mae` in its history file,
`OUT/<suite>/history/<trial_id>.json`). Two models are compared on the windows they share: the
per-window errors are averaged over seeds, then compared with the Wilcoxon signed-rank test of
scipy on non-overlapping windows only (every H_out-th window: consecutive windows share 23 of
their 24 steps, so testing all of them would count the same errors many times over).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.protocol.split import H_OUT


def load_window_mae(history_dir: Path, trial_ids) -> tuple[np.ndarray, int] | None:
    """Per-window test MAE of the given trials, averaged over them (seeds): ([W], every), where
    `every` is the first file's `window_every` (the step between non-overlapping windows; H_out
    when not recorded), or None when a history file or its `window_mae` is missing."""
    runs, every = [], None
    for tid in trial_ids:
        path = Path(history_dir) / f"{tid}.json"
        if not path.exists():
            return None
        history = json.loads(path.read_text())
        if history.get("window_mae") is None:
            return None
        runs.append(np.asarray(history["window_mae"], dtype=np.float64))
        every = every or history.get("window_every", H_OUT)
    if not runs or len({len(r) for r in runs}) != 1:
        return None
    return np.mean(runs, axis=0), every


def paired_test(a: np.ndarray, b: np.ndarray, every: int = H_OUT) -> dict:
    """Wilcoxon signed-rank test of the per-window errors `a` against `b` (same windows, same
    order), on every `every`-th window (non-overlapping targets), NaN windows left out.

    Returns:
        {"p": two-sided p-value, "n": windows tested, "mean_diff": mean of a - b over them,
        "wins": share of those windows where a < b}; p is NaN with fewer than 6 windows, and 1
        when a and b are equal on every tested window (e.g. two configs that train the same way).
    Raises:
        ValueError: `a` and `b` differ in length.
    """
    from scipy.stats import wilcoxon
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired test: {a.shape} and {b.shape} windows differ; compare the same test windows")
    a, b = a[::every], b[::every]
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    diff = a - b
    out = {"n": int(len(diff)), "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
           "wins": float((diff < 0).mean()) if len(diff) else float("nan"), "p": float("nan")}
    if len(diff) >= 6:
        out["p"] = float(wilcoxon(a, b).pvalue) if np.any(diff != 0) else 1.0
    return out


def compare(history_dir: Path | None, rows_a: pd.DataFrame, rows_b: pd.DataFrame, every: int | None = None) -> dict:
    """`paired_test` of the trials in rows_a against those in rows_b (overall rows of finished
    trials, any number of seeds each); p NaN when `history_dir` is None or a history file is
    missing. every: test every
    n-th window; None: as the trials' history files say (`window_every`: H_out on a series, 1 on
    a dataset of independent samples, whose windows never overlap), else H_out."""
    none = {"p": float("nan"), "n": 0, "mean_diff": float("nan"), "wins": float("nan")}
    if history_dir is None or rows_a.empty or rows_b.empty:
        return none
    a = load_window_mae(history_dir, rows_a["trial_id"].astype(str))
    b = load_window_mae(history_dir, rows_b["trial_id"].astype(str))
    if a is None or b is None or a[0].shape != b[0].shape:
        return none
    return paired_test(a[0], b[0], every or a[1])


def p_label(p: float) -> str:
    """p as printed in the tables: "p=0.003", "p<1e-4", or "" when not computed."""
    if p != p:
        return ""
    return "p<1e-4" if p < 1e-4 else f"p={p:.3g}"


def p_note(p: float) -> str:
    """" (p=0.003)" to follow a number in a table cell, or "" when p was not computed."""
    return f" ({p_label(p)})" if p == p else ""


def rank_correlation(x, y) -> tuple[float, float]:
    """Spearman's rho of x and y and its two-sided p-value (scipy); (NaN, NaN) with fewer than 3
    pairs or a constant side."""
    from scipy.stats import spearmanr
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rho, p = spearmanr(x, y)
    return float(rho), float(p)
