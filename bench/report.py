"""`bench report`: one PDF from the results of every suite, plus each table as CSV and Markdown and
each figure as PNG beside it.

Pages: "What this run shows" (`bench.summary`: sentences written from the numbers), a cover with the environment (dataset, protocol, hardware, software versions, project
commit) and the commands that produced the results, then for each suite with results its
table(s) (the paper's rows and columns, mean ± std over seeds) and its figure (error bars: one
standard deviation over seeds).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import suites as S
from bench import summary
from bench.results import read_trials, trials_path
from bench.scalability import read_points, scalability_frame

# suites in the order the paper presents them, then the joint search
REPORT_ORDER = S.SUITE_ORDER + ("search", "sdkd")
RQ = {"data-efficiency": "RQ1: data efficiency (Fig. 3-4)", "data-scalability": "RQ2: data-efficient scalability (Table 3)",
      "robustness": "RQ3: robustness by horizon and volume (Fig. 5-6)", "sweep": "RQ4: hyperparameters (Fig. 7-9)",
      "scalability": "RQ5: memory and latency (Fig. 10)", "ablation": "RQ6: ablation (Table 4)",
      "search": "RQ4+: joint hyperparameter search (Ray Tune, ASHA)",
      "distill": "Distillation: does the teacher's forecast reach the student?",
      "sdkd": "SDKD: frequency-aligned distillation on grids (ICCV 2025)"}


ROWS_PER_PAGE = 28        # table rows on one landscape page; longer tables continue on the next


class ReportError(RuntimeError):
    """No results to report; the message says where it looked."""


@dataclass
class Section:
    suite: str
    title: str
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, object]] = field(default_factory=list)     # (name, matplotlib Figure)
    commands: list[str] = field(default_factory=list)


def _units(dataset: str) -> str:
    try:
        from bench.data import load_registry
        return load_registry().get(dataset, {}).get("units", "flow per interval")
    except Exception:
        return "flow per interval"


def _palette(labels) -> dict:
    """One colour per registered model, the same in every figure (a row label "model (teacher: ...)"
    takes its model's colour)."""
    import seaborn as sns
    from bench import registry
    names = registry.names()
    colours = sns.color_palette("tab20", 20) + sns.color_palette("Dark2", 8)
    out = {}
    for label in labels:
        model = str(label).split(" (")[0].removesuffix(f" {S.NOT_CONVERGED}")
        out[label] = colours[names.index(model) % len(colours)] if model in names else "0.5"
    return out


def _style():
    import matplotlib
    matplotlib.use("Agg")
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="paper")


def _ratio_figure(df: pd.DataFrame, title: str, reference: bool = False):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter
    import seaborn as sns
    ok = S.ok_overall(df)
    ref = ok[(ok["model"] == "flowdistill") & (ok["ratio"] == ok["ratio"].min())]   # as ratio_frame's reference
    ok["training ratio (%)"] = ok["ratio"] * 100
    floors = ok[ok["model"].isin(S.REFERENCES)]
    ok = ok[~ok["model"].isin(S.REFERENCES)].copy()
    ok["model"] = S.row_label(ok)
    if "converged" in ok:          # a model with a trial that did not converge is marked in the legend
        late = set(ok.loc[ok["converged"].astype(str) == "False", "model"])
        ok["model"] = [f"{m} {S.NOT_CONVERGED}" if m in late else m for m in ok["model"]]
    units = _units(df["dataset"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("mae", "rmse")):
        if not ok.empty:
            sns.lineplot(data=ok, x="training ratio (%)", y=metric, hue="model", marker="o", errorbar="sd",
                         err_style="bars", ax=ax, palette=_palette(ok["model"].unique()))
        for (name, g), style in zip(floors.groupby("model"), ("--", ":", "-.")):     # the floors: no training
            mean = g.groupby("training ratio (%)")[metric].mean()
            ax.plot(mean.index, mean.values, ls=style, c="k", lw=1.2, label=f"floor: {name}")
        ax.set_yscale("log")       # converged light models and barely trained heavy ones differ by 10x
        for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_format(FormatStrFormatter("%g"))
        ax.set_ylabel(f"test {metric.upper()} ({units}, log scale)")
        ax.set_xlabel("training data ratio (%)")
        if reference and not ref.empty:
            ax.axhline(ref[metric].mean(), ls="--", c="k", lw=1, label=f"FlowDistill @ {ok['training ratio (%)'].min() / 100:g}")
        if ax is axes[0] and ax.get_legend():
            ax.get_legend().remove()
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title + f" (black: floors that need no training; {S.NOT_CONVERGED}: did not converge)")
    fig.tight_layout()
    return fig


def _robustness_figure(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = df[df["status"] == "ok"].copy()
    ok["model"] = S.row_label(ok)
    units = _units(ok["dataset"].iloc[0])
    horizon = ok[(ok["bucket"].astype(str) == "all") & (ok["horizon"].astype(str) != "all")].copy()
    horizon["step"] = horizon["horizon"].astype(int)
    bucket = ok[ok["bucket"].astype(str) != "all"].copy()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for col, metric in enumerate(("mae", "rmse")):
        sns.lineplot(data=horizon, x="step", y=metric, hue="model", marker="o", errorbar="sd", err_style="bars",
                     ax=axes[0, col], legend=col == 1, palette=_palette(horizon["model"].unique()))
        axes[0, col].set_xlabel("horizon step (x 30 min)" if "30 min" in units else "horizon step")
        axes[0, col].set_ylabel(f"test {metric.upper()} ({units})")
        sns.barplot(data=bucket.sort_values("bucket"), x="bucket", y=metric, hue="model", errorbar="sd",
                    ax=axes[1, col], legend=False, palette=_palette(bucket["model"].unique()))
        axes[1, col].set_xlabel("volume bucket: regions by mean flow over the training steps (q1 lowest .. q4 highest)")
        axes[1, col].set_ylabel(f"test {metric.upper()} ({units})")
    axes[0, 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Robustness: error per horizon step (Fig. 5) and per volume bucket (Fig. 6)")
    fig.tight_layout()
    return fig


def _sweep_figure(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    import seaborn as sns
    pts = S.sweep_points(df)
    units = _units(df["dataset"].iloc[0])
    params = [p for p in S.SWEEP_GRID if p in set(pts["param"])]
    fig, axes = plt.subplots(1, max(len(params), 1), figsize=(3.2 * max(len(params), 1), 3.6), squeeze=False)
    for ax, p in zip(axes[0], params):
        sub = pts[pts["param"] == p]
        sns.lineplot(data=sub, x="value", y="mae", marker="o", errorbar="sd", err_style="bars", ax=ax)
        if p in ("delta", "lambda_kl"):
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel(f"test MAE ({units})")
    fig.suptitle("FlowDistill: one hyperparameter at a time, the others at their defaults (Fig. 7-9)")
    fig.tight_layout()
    return fig


def _scalability_figure(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = df[df["status"] == "ok"]
    device = ", ".join(sorted(set(ok["device"].astype(str))))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    mem = ok[ok["measure"] == "memory"]
    lat = ok[ok["measure"] == "latency"].copy()
    sns.lineplot(data=mem, x="x", y="value", hue="model", marker="o", errorbar="sd", err_style="bars", ax=axes[0],
                 legend=False, palette=_palette(mem["model"].unique()))
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
                 errorbar="sd", err_style="bars", ax=axes[1], palette=_palette(lat["model"].unique()))
    axes[1].set_xlabel("test size (windows: base test set x1..x5)")
    axes[1].set_ylabel("inference latency (s)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"Scalability (Fig. 10) on {device}")
    fig.tight_layout()
    return fig


def _ablation_figure(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = S.ok_overall(df)
    units = _units(ok["dataset"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("mae", "rmse")):
        sns.barplot(data=ok, x="model", y=metric, hue="model", errorbar="sd", ax=ax, legend=False,
                    palette=_palette(ok["model"].unique()))
        ax.set_ylabel(f"test {metric.upper()} ({units})")
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle("Ablation (Table 4)")
    fig.tight_layout()
    return fig


def _search_figure(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    ok = df[df["status"].isin(["ok", "pruned"])].copy()
    configs = [json.loads(c) if c else {} for c in ok["config"]]
    keys = sorted({k for c in configs for k, v in c.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        xs = [c.get(k) for c in configs]
        for status, marker in (("ok", "o"), ("pruned", "x")):
            m = (ok["status"] == status).to_numpy()
            ax.scatter([x for x, keep in zip(xs, m) if keep], ok["mae"][m], marker=marker, label=status)
        ax.set_xlabel(k)
        ax.set_ylabel("test MAE (finished) / last val MAE (pruned)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Joint search: each sampled configuration")
    fig.tight_layout()
    return fig


def _distill_figure(df: pd.DataFrame):
    """Per ratio: each student variant's test MAE (mean, one sd over seeds), one colour per
    teacher; the student without teacher (solid) and each teacher's own MAE (dashed) as lines."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = S.ok_overall(df)
    units = _units(df["dataset"].iloc[0])
    ratios = sorted(ok["ratio"].unique())
    fig, axes = plt.subplots(1, len(ratios), figsize=(6.5 * len(ratios), 4.6), squeeze=False)
    for ax, ratio in zip(axes[0], ratios):
        at = ok[ok["ratio"] == ratio]
        students = at[at["teacher"].fillna("") != ""].copy()
        if not students.empty:
            v = pd.DataFrame([S._variant(r) for _, r in students.iterrows()], index=students.index)
            students["variant"] = v["gate"] + "/" + v["target"] + "/" + v["lambda_tbl"].map(lambda x: f"{x:g}")
            sns.barplot(data=students.sort_values("variant"), x="variant", y="mae", hue="teacher", errorbar="sd", ax=ax)
        base = at[at["model"] == S.DISTILL_BASELINE]["mae"]
        if len(base):
            ax.axhline(base.mean(), c="k", lw=1.2, label=f"{S.DISTILL_BASELINE} (no teacher)")
        for teacher in sorted(set(students.get("teacher", []))):
            own = students.loc[students["teacher"] == teacher, "teacher_mae"].dropna()
            if len(own):
                ax.axhline(own.mean(), c="0.4", ls="--", lw=1, label=f"teacher {teacher}")
        ax.set_xlabel("gate / target / lambda_tbl")
        ax.set_ylabel(f"test MAE ({units})")
        ax.set_title(f"ratio {ratio:g}")
        ax.tick_params(axis="x", rotation=35)
        ax.legend(fontsize=7)
    fig.suptitle("Distillation: student variants against the student without teacher and the teacher")
    fig.tight_layout()
    return fig


def _sdkd_figure(df: pd.DataFrame):
    """Per dataset: each model's test MSE split into its low- and high-frequency band (stacked,
    mean over seeds): the notes' Fig. 2 analysis."""
    import matplotlib.pyplot as plt
    ok = S.ok_overall(df)
    groups = list(ok.groupby(["dataset", "ratio"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.6), squeeze=False)
    for ax, ((dataset, ratio), at) in zip(axes[0], groups):
        bands = at.groupby("model", sort=False)[["err_low", "err_high"]].agg(
            lambda v: pd.to_numeric(v, errors="coerce").mean())
        order = [m for m in S.SDKD_MODELS if m in bands.index] + [m for m in bands.index if m not in S.SDKD_MODELS]
        bands = bands.loc[order]                                   # teacher first, the floor last
        ax.bar(bands.index, bands["err_low"], label="low band", color="#4c72b0")
        ax.bar(bands.index, bands["err_high"], bottom=bands["err_low"], label="high band", color="#dd8452")
        ax.set_ylabel("test MSE (unmasked)")
        ax.set_title(f"{dataset}, ratio {ratio:g}")
        ax.tick_params(axis="x", rotation=40)
        ax.legend(fontsize=7)
    fig.suptitle("Error per frequency band (cut-off 0.25 x Nyquist)")
    fig.tight_layout()
    return fig


def _commands(results: Path, suite: str) -> list[str]:
    log = results / suite / "commands.log"
    return [line.strip() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def collect(results: str | Path, suites=None) -> list[Section]:
    """A Section for each suite under `results` that has finished rows (in REPORT_ORDER)."""
    results = Path(results)
    _style()
    sections = []
    for name in suites or REPORT_ORDER:
        title = RQ.get(name, name)
        if name == "scalability":
            df = read_points(results / name / "trials.csv")
            if not (df["status"] == "ok").any():
                continue
            sec = Section(name, title, [("memory (MB, one forward pass)", scalability_frame(df, "memory")),
                                        ("latency (s, base test windows x1..x5)", scalability_frame(df, "latency"))],
                          [("figure", _scalability_figure(df))])
        else:
            df = read_trials(trials_path(results, name))
            if not (df["status"] == "ok").any():
                continue
            sec = Section(name, title)
            history = results / name / "history"
            if name in ("data-efficiency", "data-scalability"):
                sec.tables.append(("MAE / RMSE per training ratio (masked: truth 0 left out; black lines of the "
                                   "figure: floors; p: paired Wilcoxon over non-overlapping test windows)",
                                   S.ratio_frame(df, history_dir=history)))
                unmasked = S.ratio_frame(df, unmasked=True)
                if not unmasked.empty:
                    sec.tables.append(("MAE / RMSE over every cell, zeros included (the paper's eq. 13)", unmasked))
                sec.tables.append(("masked MAE / RMSE at horizon steps 3, 6 and 12", S.horizon_frame(df)))
                sec.figures.append(("figure", _ratio_figure(df, title, reference=name == "data-scalability")))
            elif name == "robustness":
                sec.tables += [("overall", S.ratio_frame(df)), ("MAE per horizon step and volume bucket",
                                                                S.breakdown_frame(df))]
                sec.figures.append(("figure", _robustness_figure(df)))
            elif name == "sweep":
                sec.tables.append(("MAE / RMSE per value, against the default (paired Wilcoxon over "
                                   "non-overlapping test windows)", S.sweep_frame(df, history)))
                sec.figures.append(("figure", _sweep_figure(df)))
            elif name == "ablation":
                sec.tables.append(("Table 4 (p: paired Wilcoxon against flowdistill over non-overlapping test "
                                   "windows)", S.ablation_frame(df, history_dir=history)))
                sec.figures.append(("figure", _ablation_figure(df)))
            elif name == "distill":
                sec.tables.append(("each student variant against flowdistill-wo-tb (paired Wilcoxon over "
                                   "non-overlapping test windows)", S.distill_frame(df, history)))
                sec.figures.append(("figure", _distill_figure(df)))
            elif name == "sdkd":
                cost = read_points(results / "sdkd-cost" / "trials.csv")
                sec.tables.append(("teacher and students: masked MAE, unmasked MSE (mean ± std over seeds), SSIM, the "
                                   "MSE per frequency band, share of the teacher's accuracy kept, and the change "
                                   "against the same student without KD (paired Wilcoxon)", S.sdkd_frame(df, history)))
                if (cost["status"] == "ok").any():
                    sec.tables.append(("parameters, latency and peak memory (one forward pass), side by side",
                                       S.cost_frame(cost)))
                sec.tables.append(("SDKD's claims (reported by the notes) against this run", S.sdkd_claims(df, cost, history)))
                sec.figures.append(("figure", _sdkd_figure(df)))
            elif name == "search":
                sec.tables.append(("sampled configurations, best validation MAE first", search_frame(df)))
                sec.figures.append(("figure", _search_figure(df)))
            else:
                sec.tables.append(("MAE / RMSE", S.ratio_frame(df)))
        sec.commands = _commands(results, name)
        sections.append(sec)
    return sections


def search_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per sampled configuration of a joint search: its settings, status, epochs, test
    MAE/RMSE (finished) and the last validation MAE (pruned), best first."""
    ok = df[(df["horizon"].astype(str) == "all") & (df["bucket"].astype(str) == "all")].copy()
    if ok.empty:
        return pd.DataFrame()
    rows = [{"config": r["config"], "status": r["status"], "epochs": r["epochs"], "MAE": round(r["mae"], 2),
             "RMSE": round(r["rmse"], 2)} for _, r in ok.iterrows()]
    return pd.DataFrame(rows).sort_values(["status", "MAE"]).reset_index(drop=True)


def environment(results: Path) -> list[str]:
    """Lines of the environment page: protocol, hardware, software, project commit."""
    import importlib.metadata as md
    import subprocess

    import torch
    from bench.protocol import H_IN, H_OUT, TEST_FRAC, VAL_FRAC

    datasets = set()
    for path in results.glob("*/trials.csv"):
        try:
            datasets |= set(pd.read_csv(path, usecols=["dataset"])["dataset"].astype(str))
        except Exception:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except Exception:
        mem = "?"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    versions = []
    for pkg in ("torch", "numpy", "pandas", "ray", "transformers", "peft", "matplotlib", "seaborn"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or "?"
    except Exception:
        commit = "?"
    spans, samples = [], []
    for d in sorted(datasets):
        try:
            from bench.data import load_dataset
            data = load_dataset(d)
            if data.meta.get("sample_len"):          # independent samples: one window each, split on samples
                n = data.flow.shape[0] // data.meta["sample_len"]
                samples.append(f"{d}: {n} independent samples of {data.meta['sample_len']} frames, one window each "
                               f"(H_in = {data.meta['h_in']} -> H_out = {data.meta['h_out']}), split on samples; "
                               f"ratio 0.1 = {round(0.1 * n)} training samples; unmasked MSE, SSIM and band errors "
                               f"beside the masked metrics")
                continue
            days = data.flow.shape[0] / data.steps_per_day
            spans.append(f"{d}: {days:.0f} days ({data.flow.shape[0]} steps of {data.meta['interval_min']} min), so "
                         f"ratio 0.1 = {0.1 * days:.0f} days of training")
        except Exception:
            pass
    return [
        f"generated {datetime.datetime.now().isoformat(timespec='seconds')} from {results.resolve()}",
        *(["span: " + "; ".join(spans) + ". The paper's NYC-Taxi and Chicago-Taxi span 01/01/21 - 12/31/21 "
           "(its Table 2: 365 days), so a ratio there means about 6 times more days than on a 60-day series."]
          if spans or not samples else []),
        *[f"samples: {line}" for line in samples],
        f"dataset(s): {', '.join(sorted(datasets)) or '?'} "
        f"({'; '.join(f'{d}: {_units(d)}' for d in sorted(datasets))})",
        f"protocol: chronological split; validation {VAL_FRAC:.0%} and test {TEST_FRAC:.0%} of the steps at the end, "
        f"training ratio = share of steps right before validation; H_in = {H_IN} -> H_out = {H_OUT} (datasets of "
        f"samples: their own, above); "
        "z-score fitted on the training part only; masked MAE / RMSE / MAPE (truth = 0 left out) on the "
        "test windows in original units; volume buckets: quartiles of the regions' mean flow over the training steps.",
        "spread: mean ± one standard deviation over seeds where a run used --seeds N > 1 (the paper reports single runs).",
        f"hardware: {cpu}, {os.cpu_count()} logical cores, {mem} memory, GPU: {gpu}",
        f"software: Python {platform.python_version()} on {platform.platform()}; {', '.join(versions)}",
        f"project commit: {commit}",
    ]


def _table_figure(title: str, table: pd.DataFrame):
    """A landscape page holding `table` (font shrunk to fit its width)."""
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(11.69, 8.27))
    ax = fig.add_axes([0.03, 0.05, 0.94, 0.85])
    ax.axis("off")
    fig.suptitle(title, fontsize=12, x=0.03, ha="left")
    if table.empty:
        ax.text(0, 1, "(no finished trials)", va="top")
        return fig
    cells = table.astype(str).to_numpy().tolist()
    tab = ax.table(cellText=cells, colLabels=[str(c) for c in table.columns], loc="upper left", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(max(5.0, min(10.0, 150 / max(len(table.columns), 1))))
    tab.auto_set_column_width(list(range(len(table.columns))))
    tab.scale(1, 1.5)
    return fig


def _text_pages(title: str, lines: list[str]) -> list:
    """Pages of wrapped text (lines starting with two spaces in monospace); text that does not fit
    goes on over the next page, never cut."""
    import matplotlib.pyplot as plt
    wrapped = [(part, line.startswith("  ")) for line in lines for part in (textwrap.wrap(line, 150) or [""])]
    per_page = 35
    figs = []
    for k in range(0, max(len(wrapped), 1), per_page):
        fig = plt.figure(figsize=(11.69, 8.27))
        fig.text(0.04, 0.95, title + (" (continued)" if k else ""), fontsize=15, va="top", weight="bold")
        for i, (part, mono) in enumerate(wrapped[k:k + per_page]):
            fig.text(0.04, 0.89 - 0.024 * i, part, fontsize=8.5, va="top", family="monospace" if mono else None)
        figs.append(fig)
    return figs


def build(results: str | Path = "results", out: str | Path = "reports/flowbench.pdf", suites=None,
          log=print) -> dict:
    """Write the PDF and, beside it, `<suite>[-k].csv/.md` per table and `<suite>.png` per figure.

    Returns {"pdf": path, "pages": n, "files": [...], "suites": [...]}.

    Raises:
        ReportError: `results` does not exist, or no suite under it has finished trials.
    """
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    results, out = Path(results), Path(out)
    unknown = set(suites or []) - set(REPORT_ORDER)
    if unknown:
        raise ReportError(f"unknown suite(s) {', '.join(sorted(unknown))}; known: {', '.join(REPORT_ORDER)}")
    if not results.is_dir():
        raise ReportError(f"results folder {results.resolve()} does not exist; run `bench run --suite NAME` first "
                          f"(its --out) or pass --results DIR")
    sections = collect(results, suites)
    if not sections:
        raise ReportError(f"no finished trials under {results.resolve()}; run `bench run --suite NAME` first "
                          f"(or pass --results DIR)")
    out.parent.mkdir(parents=True, exist_ok=True)
    files, pages = [], 0
    cover = ["What ran, and how (each suite's commands are listed on its pages and below).", ""]
    cover += environment(results)
    cover += ["", "suites in this report:"] + [f"  {s.suite}: {s.title}" for s in sections]
    commands = dict.fromkeys(c.split("  ", 1)[-1] for s in sections for c in s.commands)   # distinct, in order
    cover += ["", "commands (each suite's own pages give the time of its last run):"] + [f"  {c}" for c in commands]
    tmp = out.with_name(f".{out.name}.tmp")
    with PdfPages(tmp) as pdf:
        shows = summary.summary_lines(results, [s.suite for s in sections])
        for fig in _text_pages("What this run shows", shows) + \
                _text_pages("FlowBench report: FlowDistill (arXiv 2504.02094) under one protocol", cover):
            pdf.savefig(fig)
            plt.close(fig)
            pages += 1
        for sec in sections:
            for i, (name, table) in enumerate(sec.tables):
                stem = sec.suite if len(sec.tables) == 1 else f"{sec.suite}-{i + 1}"
                table.to_csv(out.parent / f"{stem}.csv", index=False)
                (out.parent / f"{stem}.md").write_text(
                    f"# {sec.title}: {name}\n\n" + S.frame_text(table) + "\n")
                files += [out.parent / f"{stem}.csv", out.parent / f"{stem}.md"]
                chunks = [table.iloc[i:i + ROWS_PER_PAGE] for i in range(0, max(len(table), 1), ROWS_PER_PAGE)]
                for k, chunk in enumerate(chunks):           # a long table goes on over pages, never cut
                    part = f" (rows {k * ROWS_PER_PAGE + 1}-{k * ROWS_PER_PAGE + len(chunk)} of {len(table)})" \
                        if len(chunks) > 1 else ""
                    fig = _table_figure(f"{sec.title}: {name}{part}", chunk)
                    if chunk.astype(str).apply(lambda c: c.str.contains(S.NOT_CONVERGED)).to_numpy().any():
                        fig.text(0.03, 0.045, f"{S.NOT_CONVERGED}: a trial of this cell did not converge (its epoch "
                                 "budget ran out before early stopping fired)", fontsize=8)
                    if sec.commands:
                        fig.text(0.03, 0.02, "command: " + sec.commands[-1], fontsize=7, family="monospace")
                    pdf.savefig(fig)
                    plt.close(fig)
                    pages += 1
            for name, fig in sec.figures:
                fig.savefig(out.parent / f"{sec.suite}.png", dpi=130, bbox_inches="tight")
                files.append(out.parent / f"{sec.suite}.png")
                pdf.savefig(fig, bbox_inches="tight")
                plt.close(fig)
                pages += 1
    os.replace(tmp, out)
    log(f"report: {out} ({pages} pages, {len(sections)} suites); tables and figures beside it in {out.parent}/")
    return {"pdf": out, "pages": pages, "files": files, "suites": [s.suite for s in sections]}
