"""Result tables every suite may use: the finished overall rows, "mean ± std" cells, the Table 3
layout (MAE / RMSE per ratio, with the paired test against FlowDistill), horizon and volume
breakdowns; and `tables_of` / `figures_of`, which give a suite's own or the default."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.protocol import stats
from bench.execution.results import read_trials


def ok_overall(df: pd.DataFrame) -> pd.DataFrame:
    """The overall rows (horizon and bucket "all") of finished trials."""
    overall = (df["horizon"].astype(str) == "all") & (df["bucket"].astype(str) == "all")
    return df[overall & (df["status"] == "ok")].copy()

NOT_CONVERGED = "†"      # marks a cell with a trial whose early stopping had not fired when its budget ran out

def seed_cell(values: pd.Series, rows: pd.DataFrame | None = None, fmt: str = ".2f") -> str:
    """"mean" or "mean ± std" over seeds, with NOT_CONVERGED when one of `rows` did not converge."""
    spread = fmt if fmt.endswith("f") else ".2g"
    text = f"{values.mean():{fmt}}" if len(values) == 1 else f"{values.mean():{fmt}} ± {values.std():{spread}}"
    if rows is not None and "converged" in rows and (rows["converged"].astype(str) == "False").any():
        text += f" {NOT_CONVERGED}"
    return text

def steps_cell(rows: pd.DataFrame) -> str:
    """"512-792" (optimiser steps over seeds), "" for rows that do not train."""
    steps = rows["steps"].dropna() if "steps" in rows else pd.Series(dtype=float)
    steps = steps[steps > 0]
    if steps.empty:
        return ""
    lo, hi = int(steps.min()), int(steps.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def converged_cell(rows: pd.DataFrame) -> str:
    """"yes", "no (k of n)" or "" (no training) for a group of trials."""
    if "converged" not in rows or "steps" not in rows or not (rows["steps"].fillna(0) > 0).any():
        return ""
    late = int((rows["converged"].astype(str) == "False").sum())
    return "yes" if not late else f"no ({late} of {len(rows)})"


def row_label(df: pd.DataFrame) -> pd.Series:
    """"model" or "model (teacher: name, its data)" for each result row."""
    if df.empty:                        # e.g. a results folder that holds only floors: no trained rows
        return pd.Series([], index=df.index, dtype=object)
    data = df["teacher_data"].fillna("").astype(str) if "teacher_data" in df else pd.Series("", index=df.index)
    teacher = df["teacher"].fillna("").astype(str)
    return df["model"] + [f" (teacher: {t}{', ' + d + ' data' if d else ''})" if t else "" for t, d in zip(teacher, data)]

def ratio_table(df: pd.DataFrame, tablefmt: str = "github") -> str:
    """Table 3 layout: one row per model (and its teacher), MAE and RMSE per ratio, mean +- std
    over seeds when there are several. Uses the overall rows (horizon and bucket "all"), status ok."""
    return frame_text(ratio_frame(df), tablefmt)

def frame_text(table: pd.DataFrame, tablefmt: str = "github") -> str:
    """A result frame as text, cells as they are ("(no finished trials)" when empty)."""
    if table.empty:
        return "(no finished trials)"
    return tabulate(table, headers="keys", tablefmt=tablefmt, disable_numparse=True, showindex=False)

def ratio_frame(df: pd.DataFrame, reference: str = "flowdistill", unmasked: bool = False,
                history_dir=None) -> pd.DataFrame:
    """Table 3 as a frame: column model, then "<ratio> MAE" and "<ratio> RMSE" cells ("mean" or
    "mean ± std" over seeds). With several ratios, a last column "matches <reference>@<r0>": the
    smallest ratio at which the row's mean MAE is at most the reference's mean MAE at the smallest
    ratio r0 ("not reached" otherwise; RQ2), with the p-value of the paired test of the row at that
    ratio against the reference at r0 over seeds and day blocks of test windows (the test part is
    the same at every ratio; `bench.protocol.stats`), Holm-adjusted over the column (none without
    `history_dir`); then "steps" (optimiser steps over ratios and seeds) and "converged" ("yes", or
    "no (k of n)") for rows that train. Rows by the suite's meaning: the floors first, marked
    "(floor)", then baselines and teachers, then FlowDistill's student and its variants. unmasked:
    the metrics over every cell, zeros included (the paper's eq. 13), instead of the masked ones."""
    ok = ok_overall(df)
    mae, rmse = ("mae_unmasked", "rmse_unmasked") if unmasked else ("mae", "rmse")
    if ok.empty or ok[mae].isna().all():
        return pd.DataFrame()
    ok["row"] = row_label(ok)
    cells = {}
    for (row, ratio), g in ok.groupby(["row", "ratio"]):
        cells.setdefault(row, {})[f"{ratio:g} MAE"] = seed_cell(g[mae], g)
        cells[row][f"{ratio:g} RMSE"] = seed_cell(g[rmse])
    table = pd.DataFrame.from_dict(cells, orient="index").fillna("")
    cols = sorted(table.columns, key=lambda c: (float(c.split()[0]), c.split()[1] != "MAE"))
    table = table[cols]
    r0 = ok["ratio"].min()
    ref = ok[(ok["model"] == reference) & (ok["ratio"] == r0)]
    ref_row = ref["row"].iloc[0] if len(ref) else None
    if ok["ratio"].nunique() > 1 and not ref.empty:
        target = ref[mae].mean()
        means = ok.groupby(["row", "ratio"])[mae].mean()
        match, tests = {}, {}
        for row in table.index:
            hits = [r for (name, r), v in means.items() if name == row and v <= target]
            if not hits:
                match[row] = "not reached"
                continue
            at = ok[(ok["row"] == row) & (ok["ratio"] == min(hits))]
            match[row] = f"{min(hits):g}"
            if row != ref_row and history_dir is not None:     # no test of the reference against itself
                tests[row] = stats.compare(history_dir, at, ref)
        for (row, test), p in zip(tests.items(), stats.holm([t["p"] for t in tests.values()])):
            match[row] += stats.p_note(p)                      # Holm-adjusted over the column
        table[f"matches {reference}@{r0:g}"] = pd.Series(match)
    if "steps" in ok and (ok["steps"].fillna(0) > 0).any():
        trained = ok[ok["steps"].fillna(0) > 0]
        steps = trained.groupby("row")["steps"].agg(["min", "max"])
        table["steps"] = pd.Series({r: f"{int(a)}" if a == b else f"{int(a)}-{int(b)}"
                                    for r, (a, b) in steps.iterrows()}).reindex(table.index).fillna("")
        late = trained.groupby("row")["converged"].agg(lambda c: int((c.astype(str) == "False").sum()))
        runs = trained.groupby("row").size()
        table["converged"] = pd.Series({r: "yes" if not late[r] else f"no ({late[r]} of {runs[r]})"
                                        for r in late.index}).reindex(table.index).fillna("")
    floors = {row for row, model in zip(ok["row"], ok["model"]) if _is_floor(model)}
    order = sorted(table.index, key=lambda r: (_rank(r, floors), r))
    table = table.loc[order]
    table.index = [f"{r} (floor)" if r in floors else r for r in table.index]
    return table.rename_axis("model").reset_index()


def _is_floor(model: str) -> bool:
    """A forecaster that needs no training (the floors)."""
    try:
        from bench.protocol import registry
        return not registry.trains(model)
    except KeyError:
        return False


def _rank(row: str, floors: set) -> int:
    """Rows by the suite's meaning: floors first, then the baselines and teachers, then
    FlowDistill's student and its variants."""
    if row in floors:
        return 0
    return 2 if row.startswith("flowdistill") and not row.startswith("flowdistill-teacher") else 1

def horizon_frame(df: pd.DataFrame, steps=(3, 6, 12)) -> pd.DataFrame:
    """The horizon columns the field's papers print: one row per model (and teacher) and ratio,
    masked MAE and RMSE at horizon steps 3, 6 and 12 (mean ± std over seeds)."""
    ok = df[(df["status"] == "ok") & (df["bucket"].astype(str) == "all")].copy()
    ok = ok[ok["horizon"].astype(str).isin([str(h) for h in steps])]
    if ok.empty:
        return pd.DataFrame()
    ok["row"] = row_label(ok)
    rows = []
    for (row, ratio), g in ok.groupby(["row", "ratio"]):
        out = {"model": row, "ratio": f"{ratio:g}"}
        for h in steps:
            at = g[g["horizon"].astype(str) == str(h)]
            out[f"h{h} MAE"], out[f"h{h} RMSE"] = (seed_cell(at["mae"]), seed_cell(at["rmse"])) if len(at) else ("", "")
        rows.append(out)
    return pd.DataFrame(rows)

def breakdown_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5-6 as a frame: one row per model (and teacher) and ratio, masked MAE per horizon step
    (h1..h12) and per traffic-volume bucket (q1 lowest .. q4 highest), mean over seeds."""
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame()
    ok["row"] = row_label(ok)
    horizon = ok[(ok["bucket"].astype(str) == "all") & (ok["horizon"].astype(str) != "all")].copy()
    horizon["col"] = "h" + horizon["horizon"].astype(str)
    bucket = ok[ok["bucket"].astype(str) != "all"].copy()
    bucket["col"] = bucket["bucket"].astype(str)
    table = pd.concat([horizon, bucket]).pivot_table(index=["row", "ratio"], columns="col", values="mae",
                                                     aggfunc="mean")
    cols = sorted((c for c in table.columns if c.startswith("h")), key=lambda c: int(c[1:]))
    cols += sorted(c for c in table.columns if c.startswith("q"))
    return table[cols].round(2).rename_axis(["model", "ratio"]).reset_index()

def breakdown_table(df: pd.DataFrame, tablefmt: str = "github") -> str:
    """`breakdown_frame` as text."""
    table = breakdown_frame(df)
    if table.empty:
        return "(no finished trials)"
    return tabulate(table, headers="keys", tablefmt=tablefmt, floatfmt=".2f", showindex=False)


def rows_of(suite, folder: Path) -> pd.DataFrame:
    """The suite's rows under its results folder: its `read` hook, or folder/trials.csv."""
    return suite.read(Path(folder)) if suite.read else read_trials(Path(folder) / "trials.csv")


def tables_of(suite, df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    """The suite's tables of `df` (its `tables` hook), or MAE / RMSE per model and ratio."""
    if suite.tables:
        return suite.tables(df, Path(folder))
    return [("MAE / RMSE", ratio_frame(df, history_dir=Path(folder) / "history"))]


def figures_of(suite, df: pd.DataFrame, folder=None) -> list:
    """The suite's figures of `df` (its `figures` hook, given the suite's results folder when it
    takes a third argument `folder`: the tests behind its intervals), or none."""
    if not suite.figures:
        return []
    import inspect
    if folder is not None and "folder" in inspect.signature(suite.figures).parameters:
        return suite.figures(df, suite.title or suite.name, folder=Path(folder))
    return suite.figures(df, suite.title or suite.name)
