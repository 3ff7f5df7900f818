"""RQ5 (Fig. 10): peak memory against batch size and inference latency against test size, one
fresh process per point (`bench.execution.scalability`); this suite runs points, not trials."""
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


def tables(df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    return [("memory (MB, one forward pass)", scalability.scalability_frame(df, "memory")),
            ("latency (s, base test windows x1..x5)", scalability.scalability_frame(df, "latency"))]


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
    tables=tables, figures=lambda df, title: [("figure", _scalability_figure(df))],
    read=lambda folder: scalability.read_points(Path(folder) / "trials.csv"), execute=execute))
