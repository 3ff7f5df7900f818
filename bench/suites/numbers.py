"""The numbers behind a report, kept beside it so that anyone can recompute every test.

`pack(results, folder)` writes, for each suite of a results folder, `folder/numbers/`:
- `<suite>-trials.csv.gz`: its trials.csv (every row, every horizon and bucket);
- `<suite>-windows.csv.gz`: the per-window test errors of every finished trial (long form: trial_id,
  seed, window, mae, mse, rel_l2 (on a grid), the teacher's mae where the trial had a teacher; `block` and `every`
  per trial: the windows of one day and the step between non-overlapping windows);
- `<suite>-commands.log`: the commands that ran;
- `<suite>-latency.csv`: the deployable forms' latency table where the suite's folder holds one
  (`bench.suites.scalability.LATENCY_CSV`, written by `python -m benchmarks.latency`).
`unpack(folder, into)` rebuilds a results folder from them (trials.csv, history/<trial_id>.json with
the per-window errors the tests read, commands.log, latency.csv), which `bench report` and `bench compare` read
like any other. `groups` and `compare_groups` are `bench compare`: the paired test of any two rows.
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from bench.protocol.errors import BenchError
from bench.execution.results import read_trials, trials_path, write_json
from bench.protocol import stats

NUMBERS = "numbers"
WINDOW_KEYS = {"mae": "window_mae", "mse": "window_mse", "rel_l2": "window_rel_l2", "teacher_mae": "teacher_window_mae"}
KEPT = ("commands.log", "latency.csv")          # files of a suite's folder kept as they are


class NumbersError(BenchError, ValueError):
    """A folder without the numbers asked for, or a row selector that names no row."""


def has_numbers(folder: str | Path) -> bool:
    """Does `folder` hold a `numbers/` folder written by `pack`?"""
    return any((Path(folder) / NUMBERS).glob("*-trials.csv.gz"))


def pack(results: str | Path, folder: str | Path, suites=None) -> list[Path]:
    """Write the compact numbers of each suite of `results` (or of `suites`) to `folder/numbers/`
    (replacing what an earlier pack wrote there); returns the files written."""
    results, target = Path(results), Path(folder) / NUMBERS
    names = suites or sorted(p.parent.name for p in results.glob("*/trials.csv"))
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    written = []
    for name in names:
        path = trials_path(results, name)
        if not path.exists():
            continue
        with gzip.open(target / f"{name}-trials.csv.gz", "wt") as fh:
            fh.write(path.read_text())
        rows = []
        history = results / name / "history"
        for tid in sorted(set(read_trials(path).query("status == 'ok'")["trial_id"].astype(str))):
            file = history / f"{tid}.json"
            if not file.exists():
                continue
            h = json.loads(file.read_text())
            if h.get("window_mae") is None:
                continue
            n = len(h["window_mae"])
            frame = {"trial_id": tid, "seed": int((h.get("spec") or {}).get("seed", 0)), "window": np.arange(n),
                     "block": h.get("window_block", ""), "every": h.get("window_every", "")}
            for column, key in WINDOW_KEYS.items():
                values = h.get(key)
                frame[column] = np.round(np.asarray(values, dtype=float), 5) if values is not None and len(values) == n \
                    else np.nan
            rows.append(pd.DataFrame(frame))
        if rows:
            pd.concat(rows).to_csv(target / f"{name}-windows.csv.gz", index=False, compression="gzip")
        for kept in KEPT:
            if (results / name / kept).exists():
                shutil.copy(results / name / kept, target / f"{name}-{kept}")
        written += sorted(target.glob(f"{name}-*"))
    return written


def unpack(folder: str | Path, into: str | Path) -> Path:
    """Rebuild a results folder under `into` from `folder/numbers/` (`pack`); returns `into`.

    Raises:
        NumbersError: `folder` has no numbers.
    """
    source, into = Path(folder) / NUMBERS, Path(into)
    if not has_numbers(folder):
        raise NumbersError(f"{folder} holds no numbers/ folder with <suite>-trials.csv.gz; give a results folder or "
                           f"a report folder written by `bench report`")
    for table in sorted(source.glob("*-trials.csv.gz")):
        name = table.name[: -len("-trials.csv.gz")]
        suite = into / name
        (suite / "history").mkdir(parents=True, exist_ok=True)
        with gzip.open(table, "rt") as fh:
            (suite / "trials.csv").write_text(fh.read())
        windows = source / f"{name}-windows.csv.gz"
        if windows.exists():
            for tid, w in pd.read_csv(windows, dtype={"trial_id": str}).groupby("trial_id"):
                w = w.sort_values("window")
                h = {"spec": {"seed": int(w["seed"].iloc[0])}}
                for column, key in WINDOW_KEYS.items():
                    if column in w and w[column].notna().any():      # a column an older pack lacks: none
                        h[key] = [None if v != v else float(v) for v in w[column]]
                for column in ("block", "every"):
                    if w[column].notna().any():
                        h["window_" + column] = int(w[column].iloc[0])
                write_json(suite / "history" / f"{tid}.json", h)
        for kept in KEPT:
            if (source / f"{name}-{kept}").exists():
                shutil.copy(source / f"{name}-{kept}", suite / kept)
    return into


def groups(results: str | Path, suite: str | None = None) -> pd.DataFrame:
    """The rows a report draws, one per (suite, dataset, ratio, model, config) of finished trials
    (seeds together): index, suite, dataset, ratio, model, config, seeds, mae, trial_ids."""
    results = Path(results)
    out = []
    for path in sorted(results.glob("*/trials.csv")):
        if suite and path.parent.name != suite:
            continue
        df = read_trials(path)
        ok = df[(df["horizon"].astype(str) == "all") & (df["bucket"].astype(str) == "all") & (df["status"] == "ok")]
        for (dataset, ratio, model, config), g in ok.groupby(["dataset", "ratio", "model", "config"], sort=True):
            out.append({"suite": path.parent.name, "dataset": dataset, "ratio": ratio, "model": model,
                        "config": config, "seeds": len(g), "mae": g["mae"].mean(),
                        "trial_ids": list(g["trial_id"].astype(str))})
    return pd.DataFrame(out).rename_axis("row").reset_index() if out else pd.DataFrame()


def compare_groups(results: str | Path, a: int, b: int, metric: str = "mae", suite: str | None = None,
                   shown: str | None = None) -> dict:
    """The paired test (`bench.protocol.stats.two_level_test`) of row `a` against row `b` of
    `groups(results, suite)`: {"a", "b": the rows, and the test's fields}. The p-value is that of
    this one comparison, not adjusted for a table's multiplicity. `shown`: the folder named in
    messages (the one the user gave, where `results` was unpacked from it).

    Raises:
        NumbersError: a row number that is not listed, rows of different suites or test sets, or
            missing per-window errors.
    """
    rows = groups(results, suite)
    for k in (a, b):
        if rows.empty or not 0 <= k < len(rows):
            raise NumbersError(f"row {k} is not listed; `bench compare --results {shown or results}` lists the rows "
                               f"(0 to {max(len(rows) - 1, 0)})")
    ra, rb = rows.iloc[a], rows.iloc[b]
    if ra["suite"] != rb["suite"] or ra["dataset"] != rb["dataset"]:
        raise NumbersError(f"rows {a} and {b} come from different suites or datasets; compare rows of one table")
    history = Path(results) / ra["suite"] / "history"
    pick = lambda r: pd.DataFrame({"trial_id": r["trial_ids"]})
    test = stats.compare(history, pick(ra), pick(rb), metric=metric)
    if test["diff"] != test["diff"]:
        raise NumbersError(f"no per-window {metric} errors for rows {a} and {b} under {history}")
    return {"a": ra.to_dict(), "b": rb.to_dict()} | test
