"""RQ6 (Table 4): FlowDistill against its variants without TB, IB, SC and TC."""
from __future__ import annotations

import pandas as pd

from bench.protocol import stats
from bench.suites.base import Suite, register_suite
from bench.suites.plots import colour_of, units_of
from bench.suites.tables import converged_cell, ok_overall, seed_cell, steps_cell


def ablation_frame(df: pd.DataFrame, reference: str = "flowdistill", history_dir=None) -> pd.DataFrame:
    """Table 4 as a frame: model, MAE, RMSE (mean, ± std over seeds) and the change of MAE against
    `reference` in percent, with the MAE difference, its 95 % interval and its p-value from the
    paired test over seeds and day blocks of test windows (`bench.protocol.stats`), Holm-adjusted
    within each ratio (* below 0.05; none without `history_dir`), one row per model and ratio."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows, tests = [], []
    for (model, ratio), g in ok.groupby(["model", "ratio"], sort=False):
        ref_rows = ok[(ok["model"] == reference) & (ok["ratio"] == ratio)]
        ref = ref_rows["mae"].mean()
        change = (g["mae"].mean() / ref - 1) * 100 if ref == ref else float("nan")
        tests.append((ratio, stats.compare(history_dir, g, ref_rows) if model != reference else None))
        rows.append({"model": model, "ratio": f"{ratio:g}", "seeds": len(g), "MAE": seed_cell(g["mae"], g),
                     "RMSE": seed_cell(g["rmse"]), "steps": steps_cell(g), "converged": converged_cell(g),
                     f"MAE vs {reference}": f"{change:+.1f} %" if change == change else ""})
    for ratio in {r for r, _ in tests}:
        family = [i for i, (r, t) in enumerate(tests) if r == ratio and t is not None]
        for i, p in zip(family, stats.holm([tests[i][1]["p"] for i in family])):
            cell = stats.diff_cell(tests[i][1], p)
            if cell:
                rows[i][f"MAE vs {reference}"] += f" ({cell})"
    return pd.DataFrame(rows)


def _ablation_figure(df: pd.DataFrame):
    """MAE and RMSE of each variant: the mean over seeds as a marker with one standard deviation, on
    an axis that starts near the data (not at 0), each model in its colour."""
    import matplotlib.pyplot as plt
    ok = ok_overall(df)
    units = units_of(ok["dataset"].iloc[0])
    models = list(dict.fromkeys(ok["model"]))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), gridspec_kw={"wspace": 0.35})
    for ax, metric in zip(axes, ("mae", "rmse")):
        for x, model in enumerate(models):
            values = ok.loc[ok["model"] == model, metric]
            ax.errorbar([x], [values.mean()], yerr=[values.std() if len(values) > 1 else 0], fmt="o", ms=6,
                        c=colour_of(model), capsize=3)
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"test {metric.upper()} ({units})", fontsize=8)
    fig.suptitle("Ablation (Table 4): mean over seeds, one standard deviation")
    return fig


register_suite(Suite(
    "ablation", "RQ6 (Table 4): FlowDistill and its variants without TB, IB, SC, TC at ratio 0.3 (quick: 0.5, "
    "2 seeds)", ("flowdistill", "flowdistill-wo-tb", "flowdistill-wo-ib", "flowdistill-wo-sc", "flowdistill-wo-tc"),
    (0.3,), (0.5,), quick_seeds=2, title="RQ6: ablation (Table 4)", rank=60, in_all=True,
    tables=lambda df, folder: [("Table 4 (against flowdistill: MAE difference [95 % interval], p of the paired test over "
                                "seeds and day blocks of test windows, Holm-adjusted per ratio, * < 0.05)",
                                ablation_frame(df, history_dir=folder / "history"))],
    figures=lambda df, title: [("figure", _ablation_figure(df))]))
