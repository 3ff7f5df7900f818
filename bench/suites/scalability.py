"""RQ5 (Fig. 10): peak memory against batch size and inference latency against test size, one
fresh process per point (`bench.execution.scalability`); this suite runs points, not trials.

The deployable forms' latency (`python -m benchmarks.latency --out RESULTS/scalability`) joins the
section when its table LATENCY_CSV lies in the suite's results folder: a table per model, form and
thread count, the verdict against the targets (`latency_verdict`) and a figure (`latency_figure`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.execution import scalability
from bench.suites.base import Suite, register_suite
from bench.suites.plots import legend_outside, palette


def execute(suite, dataset: str, models, preset: str, seeds: int, out, **paths) -> tuple[Path, set]:
    """Measure every point of `models` on `dataset` not yet finished; returns (the table's path, the ids
    of this run's points)."""
    points = scalability.build_points(dataset, models, preset, seeds, **paths)
    print(f"suite scalability on {dataset}, preset {preset}: {len(points)} points, one process each "
          f"-> {Path(out) / suite.name}/")
    return scalability.run(points, out), {p.trial_id for p in points}


LATENCY_CSV = "latency.csv"                  # benchmarks.latency's table, one row per model, form, threads, batch
LATENCY_FIELDS = ["model", "form", "device", "threads", "batch", "p50_ms", "p99_ms", "windows_s", "mflop_window",
                  "mae", "timed", "status", "note"]
STUDENT = "flowdistill"
FIG10_CLAIMS = {"bigst": 42.0, "easyst": 39.9}   # the paper's Fig. 10: the student's latency this % below each


def read_latency(folder: Path) -> pd.DataFrame:
    """FOLDER/LATENCY_CSV (empty frame with LATENCY_FIELDS when absent)."""
    path = Path(folder) / LATENCY_CSV
    if not path.exists():
        return pd.DataFrame(columns=LATENCY_FIELDS)
    df = pd.read_csv(path, keep_default_na=False, dtype={"note": str, "status": str, "form": str, "model": str})
    for col in ("threads", "batch", "p50_ms", "p99_ms", "windows_s", "mflop_window", "mae", "timed"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def latency_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per device, model, form and thread count: p50 and p99 ms per request at batch 1,
    windows/s at each larger batch, MFLOP per window and the test MAE (blank: untrained weights)."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for (device, model, form, threads), g in ok.groupby(["device", "model", "form", "threads"], sort=False):
        row = {"device": device, "model": model, "form": form, "threads": int(threads)}
        for _, r in g.sort_values("batch").iterrows():
            b = int(r["batch"])
            if b == 1:
                row |= {"b1 p50 ms": f"{r['p50_ms']:.3g}", "b1 p99 ms": f"{r['p99_ms']:.3g}"}
            else:
                row[f"b{b} windows/s"] = f"{r['windows_s']:,.0f}"
        row["MFLOP/window"] = f"{g['mflop_window'].iloc[0]:.3g}"
        mae = g["mae"].dropna()
        row["test MAE"] = f"{mae.iloc[0]:.4f}" if len(mae) else ""
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _best(ok: pd.DataFrame, student: bool, model: str, batch: int, key: str, low: bool):
    rows = ok[(ok["model"].str.startswith(STUDENT) if student else ok["model"] == model) & (ok["batch"] == batch)]
    if rows.empty:
        return None
    return rows.loc[rows[key].idxmin() if low else rows[key].idxmax()]


def latency_verdict(df: pd.DataFrame) -> list[str]:
    """Sentences on the deployable forms (CPU rows at the largest thread count measured): the
    student's best form against BigST's best, targets >= 2x BigST's windows/s at batch 32 and a
    lower p99 per request at batch 1, its test MAE within 1 % of the fp32 student's; FLOPs per
    window; whether Fig. 10's claim (latency 42 % below BigST's, 39.9 % below EasyST's) holds at
    batch 32, form against form and best against best. Empty without CPU rows."""
    ok = df[(df["status"] == "ok") & (df["device"] == "cpu")]
    if ok.empty:
        return []
    threads = int(ok["threads"].max())
    ok = ok[ok["threads"] == threads]
    lines = []
    s32, b32 = _best(ok, True, "", 32, "windows_s", False), _best(ok, False, "bigst", 32, "windows_s", False)
    if s32 is not None and b32 is not None:
        ratio = s32["windows_s"] / b32["windows_s"]
        lines.append(f"batch 32, {threads} thread(s): the student's best form ({s32['form']}) {s32['windows_s']:,.0f} "
                     f"windows/s against BigST's best ({b32['form']}) {b32['windows_s']:,.0f}: {ratio:.2f}x "
                     f"(target >= 2x: {'met' if ratio >= 2 else 'not met'})")
    s1, b1 = _best(ok, True, "", 1, "p99_ms", True), _best(ok, False, "bigst", 1, "p99_ms", True)
    if s1 is not None and b1 is not None:
        lines.append(f"batch 1, {threads} thread(s): p99 per request of the student's best form ({s1['form']}) "
                     f"{s1['p99_ms']:.3g} ms against BigST's best ({b1['form']}) {b1['p99_ms']:.3g} ms (target lower: "
                     f"{'met' if s1['p99_ms'] < b1['p99_ms'] else 'not met'})")
    fp32 = ok[ok["model"].str.startswith(STUDENT) & (ok["form"] == "eager")]["mae"].dropna()
    for best in (s32, s1):
        if best is None:
            continue
        if pd.isna(best["mae"]) or fp32.empty:
            lines.append(f"test MAE of the student's {best['form']}: not measured (untrained weights; give the "
                         f"benchmark --results OUT --trial ID of a trained student)")
        else:
            change = best["mae"] / fp32.iloc[0] - 1
            lines.append(f"test MAE of the student's {best['form']}: {best['mae']:.4f} against {fp32.iloc[0]:.4f} in "
                         f"eager fp32 ({change:+.2%}; target within 1 %: {'met' if abs(change) <= 0.01 else 'not met'})")
        if s32 is not None and s1 is not None and s32["form"] == s1["form"]:
            break
    flops = ok.groupby("model")["mflop_window"].first()
    lines.append("FLOPs per window: " + ", ".join(f"{m} {v:.3g} MFLOP" for m, v in flops.items()))
    for rival, claimed in FIG10_CLAIMS.items():
        pairs = [("eager", _form(ok, True, "eager"), _form(ok, False, "eager", rival)),
                 ("best", s32, _best(ok, False, rival, 32, "windows_s", False))]
        said = []
        for label, s, r in pairs:
            if s is None or r is None:
                continue
            below = 100 * (1 - r["windows_s"] / s["windows_s"])          # latency per window, student against rival
            said.append(f"{label} ({s['form']} against {r['form']}) {abs(below):.1f} % "
                        f"{'below' if below >= 0 else 'above'} ({'holds' if below >= claimed else 'does not hold'})")
        if said:
            lines.append(f"Fig. 10 claims the student's latency {claimed:g} % below {rival}'s; at batch 32, "
                         f"{threads} thread(s): " + "; ".join(said))
    return lines


def _form(ok: pd.DataFrame, student: bool, form: str, model: str = ""):
    rows = ok[(ok["model"].str.startswith(STUDENT) if student else ok["model"] == model) & (ok["form"] == form)
              & (ok["batch"] == 32)]
    return None if rows.empty else rows.iloc[0]


def latency_tables(folder: Path) -> list[tuple[str, pd.DataFrame]]:
    """The deployable forms' tables of FOLDER/LATENCY_CSV: per model, form and threads; the verdict;
    the forms left out with the reason. None when the file is absent."""
    df = read_latency(folder)
    frame = latency_frame(df)
    if frame.empty:
        return []
    out = [("deployable forms: latency per request (batch 1) and windows/s (larger batches)", frame),
           ("deployable forms: the student against BigST and EasyST", pd.DataFrame({"verdict": latency_verdict(df)}))]
    left = df[df["status"] != "ok"][["device", "model", "form", "note"]].drop_duplicates()
    if len(left):
        out.append(("deployable forms left out", left.rename(columns={"note": "why"})))
    return out


def latency_figure(df: pd.DataFrame):
    """p99 per request at batch 1 and windows/s at each larger batch, one bar per model and form,
    one hue per thread count (CPU rows; a GPU's rows in panels of their own)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = df[df["status"] == "ok"].copy()
    ok["model, form"] = ok["model"] + " " + ok["form"]
    ok["threads / device"] = [f"{int(t)} thread(s)" if d == "cpu" else str(d) for t, d in zip(ok["threads"], ok["device"])]
    panels = [(1, "p99_ms", "p99 per request at batch 1 (ms)")] + [
        (int(b), "windows_s", f"windows/s at batch {int(b)}") for b in sorted(ok["batch"].unique()) if b > 1]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.35 * ok["model, form"].nunique() + 1.8),
                             sharey=True, squeeze=False)
    for ax, (batch, key, label) in zip(axes[0], panels):
        sns.barplot(data=ok[ok["batch"] == batch], y="model, form", x=key, hue="threads / device", ax=ax,
                    order=list(dict.fromkeys(ok["model, form"])), legend=ax is axes[0][-1])
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("")
    if axes[0][-1].get_legend():
        legend_outside(axes[0][-1])
    fig.suptitle("Deployable forms: latency per request and windows per second, same inputs for every model")
    fig.tight_layout()
    return fig


def tables(df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    return [("memory (MB, one forward pass)", scalability.scalability_frame(df, "memory")),
            ("latency (s, base test windows x1..x5)", scalability.scalability_frame(df, "latency"))] + \
        latency_tables(folder)


def figures(df: pd.DataFrame, title: str, folder: Path | None = None) -> list:
    """Fig. 10's two panels, then the deployable forms' figure when FOLDER/LATENCY_CSV holds rows."""
    out = [("figure", _scalability_figure(df))]
    latency = read_latency(folder) if folder is not None else pd.DataFrame()
    if len(latency) and (latency["status"] == "ok").any():
        out.append(("latency", latency_figure(latency)))
    return out


def _scalability_figure(df: pd.DataFrame):
    """Peak memory against batch size, latency against test size, one colour per model."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = df[df["status"] == "ok"]
    device = ", ".join(sorted(set(ok["device"].astype(str))))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    mem = ok[ok["measure"] == "memory"]
    lat = ok[ok["measure"] == "latency"].copy()
    sns.lineplot(data=mem, x="x", y="value", hue="model", marker="o", errorbar="sd", err_style="bars", ax=axes[0],
                 legend=False, palette=palette(mem["model"].unique()))
    axes[0].set_xscale("log", base=2)
    if not mem.empty:
        ticks = sorted(set(mem["x"].astype(int)))
        axes[0].set_xticks(ticks, [str(t) for t in ticks])
        axes[0].minorticks_off()
    axes[0].set_xlabel("batch size (windows)")
    axes[0].set_ylabel("peak memory of one forward pass (MB)")
    if not lat.empty:
        lat["test windows"] = lat["windows"]
    sns.lineplot(data=lat, x="test windows" if not lat.empty else "x", y="value", hue="model", marker="o",
                 errorbar="sd", err_style="bars", ax=axes[1], palette=palette(lat["model"].unique()))
    axes[1].set_xlabel("test size (windows: base test set x1..x5)")
    axes[1].set_ylabel("inference latency (s)")
    legend_outside(axes[1])
    fig.suptitle(f"Scalability (Fig. 10) on {device}")
    fig.tight_layout()
    return fig


register_suite(Suite(
    "scalability", "RQ5 (Fig. 10): peak memory against batch size and inference latency against test size "
    "x1..x5, one process per point", ("flowdistill", "bigst", "stsgcn", "astgcn", "stwa", "easyst"), (0.5,),
    (0.5,), kind="scalability", title="RQ5: memory and latency (Fig. 10)", rank=50, in_all=True,
    tables=tables, figures=figures,
    read=lambda folder: scalability.read_points(Path(folder) / "trials.csv"), execute=execute))
