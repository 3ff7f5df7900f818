"""The ratio suites: RQ1 data efficiency (Fig. 3-4), RQ2 data-efficient scalability (Table 3) and
RQ3 robustness per horizon step and volume bucket (Fig. 5-6): every model at each training ratio."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.protocol import stats
from bench.suites.base import LIGHT_MODELS, MODELS, QUICK_MODELS, REFERENCES, Suite, register_suite
from bench.suites.lines import ALPHA, STUDENT, convergence_lines, is_floor, units
from bench.suites.plots import colour_of, floor_style, legend_outside, measured_segments, palette, units_of
from bench.suites.tables import (NOT_CONVERGED, breakdown_frame, horizon_frame, ok_overall, ratio_frame, row_label,
                                 seed_cell)
from bench.suites.distill import DISTILL_BASELINE


def ratio_tables(df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    """MAE / RMSE per ratio (masked, with the paired test against FlowDistill at the smallest
    ratio), the same over every cell (zeros included: the paper's eq. 13), and horizons 3, 6, 12."""
    units = units_of(df["dataset"].iloc[0]) if len(df) else ""
    tables = [(f"MAE / RMSE per training ratio ({units}; masked: truth 0 left out; greys of the figure: floors; "
               "p: paired test over seeds and day blocks of test windows, Holm-adjusted over the column)",
               ratio_frame(df, history_dir=folder / "history"))]
    unmasked = ratio_frame(df, unmasked=True)
    if not unmasked.empty:
        tables.append(("MAE / RMSE over every cell, zeros included (the paper's eq. 13)", unmasked))
    return tables + [("masked MAE / RMSE at horizon steps 3, 6 and 12", horizon_frame(df))]


def robustness_tables(df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    """The overall MAE / RMSE, then masked MAE per horizon step (h1..h12) and volume bucket (q1..q4)."""
    return [("overall", ratio_frame(df)), ("MAE per horizon step and volume bucket", breakdown_frame(df))]


def _ratio_figure(df: pd.DataFrame, title: str, reference: bool = False):
    """MAE and RMSE against the training ratio: each model's mean over seeds as a marker with one
    standard deviation, joined only between neighbouring measured ratios of the 0.1 grid
    (`measured_segments`); the floors in greys, each with its dash style; log scale (converged
    light models and step-budgeted heavy ones differ tenfold)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter
    ok = ok_overall(df)
    ref = ok[(ok["model"] == "flowdistill") & (ok["ratio"] == ok["ratio"].min())]   # as ratio_frame's reference
    floors = ok[ok["model"].isin(REFERENCES)]
    ok = ok[~ok["model"].isin(REFERENCES)].copy()
    ok["label"] = row_label(ok)
    if "converged" in ok:          # a model with a trial that did not converge is marked in the legend
        late = set(ok.loc[ok["converged"].astype(str) == "False", "label"])
        ok["label"] = [f"{m} {NOT_CONVERGED}" if m in late else m for m in ok["label"]]
    units = units_of(df["dataset"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"wspace": 0.35})
    for ax, metric in zip(axes, ("mae", "rmse")):
        for label, g in ok.groupby("label", sort=True):
            stats = g.groupby("ratio")[metric].agg(["mean", "std"]).reset_index()
            xs = list(stats["ratio"] * 100)
            colour = colour_of(label)
            ax.errorbar(xs, stats["mean"], yerr=stats["std"].fillna(0), fmt="o", ms=5, c=colour, capsize=2,
                        label=label)
            for run in measured_segments(list(stats["ratio"])):
                if len(run) > 1:
                    ax.plot([xs[i] for i in run], stats["mean"].iloc[run], c=colour, lw=1.2)
        for name, g in floors.groupby("model"):         # the floors: no training
            grey, dash = floor_style(name)
            mean = g.groupby("ratio")[metric].mean()
            xs = list(mean.index * 100)
            ax.plot(xs, mean.values, "x", c=grey, ms=6, label=f"floor: {name}")
            for run in measured_segments(list(mean.index)):
                if len(run) > 1:
                    ax.plot([xs[i] for i in run], mean.values[run], c=grey, ls=dash, lw=1.2)
        ax.set_yscale("log")
        for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_format(FormatStrFormatter("%g"))
        ax.set_ylabel(f"test {metric.upper()} ({units}, log scale)", fontsize=8)
        ax.set_xlabel("training data ratio (%)")
        if reference and not ref.empty:
            ax.axhline(ref[metric].mean(), ls="--", c="k", lw=1, label=f"FlowDistill @ {ref['ratio'].min():g}")
    legend_outside(axes[1])
    fig.suptitle(title + f" (markers: measured ratios, lines only between neighbouring ones; greys: floors; "
                         f"{NOT_CONVERGED}: did not converge)", fontsize=9)
    return fig


def _robustness_figure(df: pd.DataFrame):
    """Error per horizon step (Fig. 5) and per volume bucket (Fig. 6)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = df[df["status"] == "ok"].copy()
    ok["model"] = row_label(ok)
    units = units_of(ok["dataset"].iloc[0])
    horizon = ok[(ok["bucket"].astype(str) == "all") & (ok["horizon"].astype(str) != "all")].copy()
    horizon["step"] = horizon["horizon"].astype(int)
    bucket = ok[ok["bucket"].astype(str) != "all"].copy()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for col, metric in enumerate(("mae", "rmse")):
        sns.lineplot(data=horizon, x="step", y=metric, hue="model", marker="o", errorbar="sd", err_style="bars",
                     ax=axes[0, col], legend=col == 1, palette=palette(horizon["model"].unique()))
        axes[0, col].set_xlabel("horizon step (x 30 min)" if "30 min" in units else "horizon step")
        axes[0, col].set_ylabel(f"test {metric.upper()} ({units})")
        sns.barplot(data=bucket.sort_values("bucket"), x="bucket", y=metric, hue="model", errorbar="sd",
                    ax=axes[1, col], legend=False, palette=palette(bucket["model"].unique()))
        axes[1, col].set_xlabel("volume bucket: regions by mean flow over the training steps (q1 lowest .. q4 highest)")
        axes[1, col].set_ylabel(f"test {metric.upper()} ({units})")
    legend_outside(axes[0, 1])
    fig.suptitle("Robustness: error per horizon step (Fig. 5) and per volume bucket (Fig. 6)")
    fig.tight_layout()
    return fig


def ratio_lines(df: pd.DataFrame, history_dir: Path | None) -> list[str]:
    """Sentences on one ratio suite's results (overall rows of finished trials)."""
    ok = ok_overall(df)
    if ok.empty:
        return ["no finished trials"]
    lines = []
    for ratio, at in ok.groupby("ratio"):
        means = at.groupby("model")["mae"].mean()
        floors = means[[m for m in means.index if is_floor(m)]]
        trained = means[[m for m in means.index if not is_floor(m)]]
        head = f"ratio {ratio:g}:"
        if trained.empty:
            lines.append(f"{head} no trained model finished")
            continue
        best = trained.idxmin()
        text = f"{head} best trained model {best} (MAE {seed_cell(at[at['model'] == best]['mae'])})"
        if not floors.empty:
            floor = floors.idxmin()
            gap = (trained[best] / floors[floor] - 1) * 100
            below = sorted(m for m in trained.index if trained[m] < floors[floor])
            text += (f"; best floor {floor} {floors[floor]:.2f}: the best model is {abs(gap):.0f} % "
                     f"{'below' if gap < 0 else 'above'} it; {len(below)} of {len(trained)} trained models beat "
                     f"it" + (f" ({', '.join(below)})" if below else ""))
        lines.append(text + ".")
        student, base = at[at["model"] == STUDENT], at[at["model"] == DISTILL_BASELINE]
        if len(student) and len(base):
            test = stats.compare(history_dir, student, base)
            diff = student["mae"].mean() - base["mae"].mean()
            verdict = ("significantly better" if diff < 0 else "significantly worse") \
                if test["p"] == test["p"] and test["p"] < ALPHA else "not significantly different"
            lines.append(f"  distilled {STUDENT} {seed_cell(student['mae'])} against {DISTILL_BASELINE} (no teacher) "
                         f"{seed_cell(base['mae'])}: {diff:+.2f}, {verdict}"
                         + (f" ({stats.p_label(test['p'])}; {units(test)})" if test["p"] == test["p"] else
                            " (no paired test: history files missing)") + ".")
            if "teacher_mae" in student and student["teacher_mae"].notna().any():
                desc = ", ".join(sorted(set(student["teacher_desc"].fillna("").astype(str)) - {""})) \
                    if "teacher_desc" in student else ""
                teacher = ", ".join(sorted(set(student["teacher"].astype(str))))
                lines.append(f"  its teacher {teacher}" + (f" ({desc})" if desc and desc != teacher else "")
                             + f": test MAE {student['teacher_mae'].mean():.2f}; eq. 2's gate open on "
                             f"{student['gate_open'].mean():.0%} of the training elements.")
    lines += convergence_lines(ok)
    return lines


def claim_lines(df: pd.DataFrame, history_dir: Path | None) -> list[str]:
    """The paper's claim against a stated criterion: at the smallest ratio, the distilled student
    is significantly better (p < ALPHA) than the same student without teacher, and better than
    every floor."""
    ok = ok_overall(df)
    if ok.empty or not (ok["model"] == STUDENT).any() or not (ok["model"] == DISTILL_BASELINE).any():
        return []
    r0 = ok[ok["model"] == STUDENT]["ratio"].min()
    at = ok[ok["ratio"] == r0]
    student, base = at[at["model"] == STUDENT], at[at["model"] == DISTILL_BASELINE]
    if base.empty:
        return []
    test = stats.compare(history_dir, student, base)
    floors = at[[is_floor(m) for m in at["model"]]].groupby("model")["mae"].mean()
    helps = test["p"] == test["p"] and test["p"] < ALPHA and student["mae"].mean() < base["mae"].mean()
    beats_floor = floors.empty or student["mae"].mean() < floors.min()
    criterion = (f"criterion: at the smallest ratio ({r0:g}) {STUDENT} is significantly better than "
                 f"{DISTILL_BASELINE} (paired test over seeds and day blocks of test windows, p < {ALPHA}) and "
                 f"better than every floor")
    if helps and beats_floor:
        return [f"The paper's claim (distillation helps a light student when data is scarce) holds on this run; "
                f"{criterion}: met."]
    why = []
    if not helps:
        why.append(f"{STUDENT} {student['mae'].mean():.2f} against {DISTILL_BASELINE} {base['mae'].mean():.2f}"
                   + (f", {stats.p_label(test['p'])}" if test["p"] == test["p"] else ", no paired test"))
    if not beats_floor:
        why.append(f"{STUDENT} {student['mae'].mean():.2f} against the floor {floors.idxmin()} {floors.min():.2f}")
    return [f"The paper's claim (distillation helps a light student when data is scarce) is not shown by this run; "
            f"{criterion}: not met ({'; '.join(why)})."]


# the second method's models in the data-efficiency suite (SDKD, ICCV 2025): its
# teacher, its U-Net student without KD and with frequency-aligned KD; grid models, so a dataset
# without `grid` leaves them out (`grid_models_for`); not in the quick preset (the sdkd suite has them)
SDKD_RATIO_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-unet-sdkd")

register_suite(Suite(
    "data-efficiency", "RQ1 (Fig. 3-4): MAE/RMSE of every model against the training-data ratio, SDKD's "
    "teacher and U-Net student on grid datasets (quick: the light models, which converge on 2 CPU cores, "
    "and the floors)",
    MODELS + SDKD_RATIO_MODELS, (0.1, 0.2, 0.3, 0.4, 0.5), (0.1, 0.5), quick_models=LIGHT_MODELS,
    title="RQ1: data efficiency (Fig. 3-4)", rank=10, in_all=True, tables=ratio_tables, summary=ratio_lines,
    claim=claim_lines,
    figures=lambda df, title: [("figure", _ratio_figure(df, title))]))
register_suite(Suite(
    "data-scalability", "RQ2 (Table 3): ratios up to 0.7, and the smallest ratio at which each model "
    "matches FlowDistill's MAE at the smallest ratio", MODELS, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    (0.1, 0.5, 0.7), quick_models=QUICK_MODELS, title="RQ2: data-efficient scalability (Table 3)", rank=20,
    in_all=True, tables=ratio_tables, summary=ratio_lines, claim=claim_lines,
    figures=lambda df, title: [("figure", _ratio_figure(df, title, reference=True))]))
register_suite(Suite(
    "robustness", "RQ3 (Fig. 5-6): MAE/RMSE per horizon step 1..12 and per traffic-volume bucket at ratio 0.5",
    MODELS, (0.5,), (0.5,), quick_models=QUICK_MODELS, title="RQ3: robustness by horizon and volume (Fig. 5-6)",
    rank=30, in_all=True, tables=robustness_tables, summary=ratio_lines, claim=claim_lines,
    figures=lambda df, title: [("figure", _robustness_figure(df))]))
