"""The sdkd suite: SDKD (Li et al., ICCV 2025) as a second method, its teacher and its students
without KD, with output KD and with frequency-aligned KD, per frequency band; then their cost
(parameters, latency, memory) measured side by side."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.protocol import registry, stats

from bench.execution import scalability
from bench.suites.base import Suite, register_suite
from bench.suites.tables import ok_overall, seed_cell


# the sdkd suite (SDKD, Li et al., ICCV 2025): its teacher, each student without KD, with output KD
# and with frequency-aligned KD (on the forecast; the U-Net also weighting the low band, and on the
# teacher's latent)
SDKD_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-unet-kd", "sdkd-unet-sdkd", "sdkd-unet-sdkd-low",
               "sdkd-unet-sdkd-latent", "sdkd-resnet", "sdkd-resnet-kd", "sdkd-resnet-sdkd",
               "persistence", "training-mean")     # the floors: last input frame, mean training target

SDKD_COST_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-resnet")     # measured side by side after the trials

def _no_kd_student(model: str) -> str | None:
    """The registered student of the same class as `model` without distillation (kd "none"), or None."""
    cls = registry.get(model).cls
    for name in registry.names():
        cfg = registry.get(name).config()
        if registry.get(name).cls is cls and getattr(cfg, "kd", None) == "none" and not cfg.teacher:
            return name
    return None

def sdkd_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The sdkd suite's table: per dataset and ratio, each model's masked MAE and unmasked MSE
    (mean ± std over seeds), SSIM, the MSE's share in the low and the high frequency band
    (`bench.protocol.metrics.grid_metrics`), the share of the teacher's accuracy it keeps (teacher MSE /
    model MSE), its MSE change against the same student without KD and the p-value of the paired
    test of per-window MSE over seeds and blocks of test windows (`bench.protocol.stats`; each
    sample its own block on a dataset of independent samples, a day of windows on a series),
    Holm-adjusted over the table, and its optimiser steps with the epochs of its best
    validation MAE (`_budget_cell`)."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows, tests = [], []
    for (dataset, ratio), at in ok.groupby(["dataset", "ratio"], sort=False):
        teacher = at[at["model"] == "sdkd-teacher"]
        t_mse = pd.to_numeric(teacher["mse"], errors="coerce").mean() if len(teacher) else float("nan")
        order = {m: i for i, m in enumerate(SDKD_MODELS)}
        for model, g in sorted(at.groupby("model", sort=False), key=lambda kv: order.get(kv[0], len(order))):
            mse = pd.to_numeric(g["mse"], errors="coerce")
            base_name = _no_kd_student(model) if model != "sdkd-teacher" else None
            base = at[at["model"] == base_name] if base_name and base_name != model else at.iloc[0:0]
            change, test = "", None
            if len(base):
                b_mse = pd.to_numeric(base["mse"], errors="coerce").mean()
                change = f"{(mse.mean() - b_mse) / b_mse * 100:+.1f} %"
                test = stats.compare(history_dir, g, base, metric="mse")
                tests.append(test)
            col = lambda name: pd.to_numeric(g[name], errors="coerce") if name in g else pd.Series(dtype=float)
            num = lambda name: col(name).mean()                     # NaN for a column the rows lack
            rows.append({"dataset": dataset, "ratio": f"{ratio:g}", "model": model, "seeds": len(g),
                         "MAE": seed_cell(g["mae"], g, ".4g"), "MSE": seed_cell(mse, None, ".4g"), "SSIM": f"{num('ssim'):.3f}",
                         "MSE low band": f"{num('err_low'):.4g}", "MSE high band": f"{num('err_high'):.4g}",
                         "of teacher": f"{t_mse / mse.mean():.0%}" if t_mse == t_mse and model != "sdkd-teacher" else "",
                         "MSE vs no KD": change, "p": test,
                         "steps (best epoch)": _budget_cell(col("steps"), col("best_epoch"), col("epochs"))})
    # Holm's correction over the table's comparisons (one family: one suite and results folder)
    adjusted = iter(stats.holm([t["p"] for t in tests]))
    for row in rows:
        row["p"] = "" if row["p"] is None else stats.p_label(next(adjusted))
    return pd.DataFrame(rows)


def _budget_cell(steps: pd.Series, best: pd.Series, epochs: pd.Series) -> str:
    """How far the seeds of a model trained: "1,800 (best 288-299 of 300)", the optimiser steps
    (the most over seeds) and the range of epochs with the best validation MAE out of the epochs
    run; "" for a floor (no training) or rows without these columns. A best epoch at the last one
    means the model was still improving when its budget ran out."""
    if steps.isna().all() or not steps.max() > 0:
        return ""
    lo, hi = best.min(), best.max()
    where = f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}"
    return f"{steps.max():,.0f} (best {where} of {epochs.max():.0f})" if best.notna().any() else f"{steps.max():,.0f}"


def cost_frame(df: pd.DataFrame, reference: str = "sdkd-teacher") -> pd.DataFrame:
    """The sdkd suite's cost table from its cost points (`bench.execution.scalability.build_points_for`):
    parameters, latency (ms per test window), peak memory (MB) of one forward pass and of one
    training step (weights, gradients, Adam's state, activations) on a batch of
    `bench.execution.scalability.COST_BATCH`, per dataset and model, mean ± std over seeds, with each
    model's ratio to the `reference` model (else the first of its dataset): parameter share,
    speed-up, memory shares (points measured before training memory was: those cells empty)."""
    ok = df[df["status"] == "ok"] if len(df) else df
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for dataset, at in ok.groupby("dataset", sort=False):
        ref = None
        groups = sorted(at.groupby("model", sort=False), key=lambda kv: kv[0] != reference)   # reference first
        for model, g in groups:
            lat = g[g["measure"] == "latency"]
            ms = (lat["value"] / lat["windows"] * 1000) if len(lat) else pd.Series(dtype=float)
            mem = g[g["measure"] == "memory"]["value"]
            train = g[g["measure"] == "train_memory"]["value"]
            params = int(pd.to_numeric(g["params"], errors="coerce").max()) if "params" in g else 0
            ref = ref or {"params": params, "ms": ms.mean(), "mem": mem.mean(), "train": train.mean()}
            rows.append({"dataset": dataset, "model": model, "params": params,
                         "ms / window": seed_cell(ms, None, ".3g") if len(ms) else "",
                         "peak MB": seed_cell(mem, None, ".3g") if len(mem) else "",
                         "params vs teacher": f"{params / ref['params']:.0%}",
                         "speed-up": f"{ref['ms'] / ms.mean():.2f}x" if len(ms) else "",
                         "memory vs teacher": f"{mem.mean() / ref['mem']:.0%}" if len(mem) and ref["mem"] else "",
                         "train peak MB": seed_cell(train, None, ".3g") if len(train) else "",
                         "train memory vs teacher": f"{train.mean() / ref['train']:.0%}"
                         if len(train) and ref["train"] == ref["train"] and ref["train"] else ""})
    return pd.DataFrame(rows)

def _missing(*models: str) -> str:
    """A claims-table cell for a claim whose rows did not run: "no A or B rows"."""
    return "no " + " or ".join(models) + " rows"


def sdkd_claims(df: pd.DataFrame, cost: pd.DataFrame | None = None, history_dir=None) -> pd.DataFrame:
    """SDKD's claims (notes ../shared/paper/sdkd-summary.md sections 6-7, reported, not checked
    against the PDF) beside what this run measured, per dataset and ratio, for the U-Net student
    (the notes' best): keeps > 95 % of the teacher's accuracy (teacher MSE / student MSE) at
    20-30 % of its memory; SDKD better than plain output KD (MSE, paired p); a gain of about 3-4 %
    over the student without KD (the NS ablation); inference >= 2x faster than the teacher. The
    headline 81.3 % lower MSE is quoted, not targeted: no reachable table traces it."""
    ok = ok_overall(df)
    rows = []
    costs = cost_frame(cost) if cost is not None and len(cost) else pd.DataFrame()
    for (dataset, ratio), at in ok.groupby(["dataset", "ratio"], sort=False):
        mse = lambda m: pd.to_numeric(at.loc[at["model"] == m, "mse"], errors="coerce").mean()
        t, base, kd, sd = mse("sdkd-teacher"), mse("sdkd-unet"), mse("sdkd-unet-kd"), mse("sdkd-unet-sdkd")
        where = f"{dataset} @ {ratio:g}"
        rows.append({"claim": "student keeps > 95 % of the teacher's accuracy", "where": where,
                     "measured": f"{t / sd:.0%} (sdkd-unet-sdkd), {t / base:.0%} without KD"
                     if t == t and sd == sd and base == base else _missing("sdkd-teacher", "sdkd-unet(-sdkd)")})
        p = stats.p_label(stats.compare(history_dir, at[at["model"] == "sdkd-unet-sdkd"],
                                        at[at["model"] == "sdkd-unet-kd"], metric="mse")["p"])
        rows.append({"claim": "SDKD better than plain output KD", "where": where,
                     "measured": f"MSE {sd:.4g} vs {kd:.4g} ({(sd - kd) / kd * 100:+.1f} %{', ' + p if p else ''})"
                     if sd == sd and kd == kd else _missing("sdkd-unet-sdkd", "sdkd-unet-kd")})
        rows.append({"claim": "SDKD gains about 3-4 % over the student without KD (NS ablation)", "where": where,
                     "measured": f"{(sd - base) / base * 100:+.1f} % MSE" if sd == sd and base == base
                     else _missing("sdkd-unet-sdkd", "sdkd-unet")})
    for _, r in costs.iterrows():
        if r["model"] == "sdkd-unet":
            rows.append({"claim": "student at 20-30 % of the teacher's memory; inference >= 2x faster",
                         "where": r["dataset"], "measured": f"memory {r['memory vs teacher']} (forward pass)"
                                                            + (f", {r['train memory vs teacher']} (training step)"
                                                               if r["train memory vs teacher"] else "")
                                                            + f", params {r['params vs teacher']}, speed-up {r['speed-up']}"})
    rows.append({"claim": "headline: 81.3 % lower MSE, 52.3 % lower MAE on Navier-Stokes", "where": "quoted",
                 "measured": "not targeted: the notes find no table it comes from"})
    return pd.DataFrame(rows)


def sdkd_tables(df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    """The models' errors and bands, their cost (the sibling folder sdkd-cost/, when measured) and
    SDKD's claims against this run."""
    history = folder / "history"
    cost = scalability.read_points(folder.parent / "sdkd-cost" / "trials.csv")
    tables = [("teacher and students: masked MAE, unmasked MSE (mean ± std over seeds), SSIM, the MSE per frequency "
               "band, share of the teacher's accuracy kept, and the change against the same student without KD "
               "(p: paired test of per-window MSE over seeds and test samples, Holm-adjusted)", sdkd_frame(df, history))]
    if (cost["status"] == "ok").any():
        tables.append(("parameters, latency and peak memory (one forward pass; one training step), side by side",
                       cost_frame(cost)))
    return tables + [("SDKD's claims (reported by the notes) against this run", sdkd_claims(df, cost, history))]


def measure_cost(datasets, preset: str, out, num_nodes=None, data_dir=None, registry_file=None) -> list[tuple]:
    """After the trials: parameters, latency and peak memory of the teacher and the students, one
    process per point, side by side (`bench.execution.scalability`), under OUT/sdkd-cost/."""
    path = scalability.run(scalability.build_points_for(datasets, SDKD_COST_MODELS, preset, num_nodes=num_nodes,
                                                        data_dir=data_dir, registry_file=registry_file),
                           out, name="sdkd-cost")
    return [("parameters, inference latency and peak memory (forward pass, training step), measured side by side "
             "(one process each)",
             cost_frame(scalability.read_points(path)))]


def _sdkd_figure(df: pd.DataFrame):
    """Per dataset: each model's test MSE split into its low- and high-frequency band (stacked,
    mean over seeds): the notes' Fig. 2 analysis."""
    import matplotlib.pyplot as plt
    ok = ok_overall(df)
    groups = list(ok.groupby(["dataset", "ratio"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.6), squeeze=False)
    for ax, ((dataset, ratio), at) in zip(axes[0], groups):
        bands = at.groupby("model", sort=False)[["err_low", "err_high"]].agg(
            lambda v: pd.to_numeric(v, errors="coerce").mean())
        order = [m for m in SDKD_MODELS if m in bands.index] + [m for m in bands.index if m not in SDKD_MODELS]
        bands = bands.loc[order]                                   # teacher first, the floor last
        ax.bar(bands.index, bands["err_low"], label="low band", color="#4c72b0")
        ax.bar(bands.index, bands["err_high"], bottom=bands["err_low"], label="high band", color="#dd8452")
        ax.set_ylabel("test MSE (unmasked)")
        ax.set_title(f"{dataset}, ratio {ratio:g}")
        ax.tick_params(axis="x", rotation=40)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")     # long names end under their bar
        ax.legend(fontsize=7)
    fig.suptitle("Error per frequency band (cut-off 0.25 x Nyquist)")
    fig.tight_layout()
    return fig


register_suite(Suite(
    "sdkd", "SDKD (ICCV 2025) as a second method: its conv + attention teacher, U-Net and ResNet students "
    "without KD, with output KD and with frequency-aligned KD, 3 seeds, a paired test of MSE against the student "
    "without KD, errors per frequency band; then parameters, latency and memory side by side. On "
    "NavierStokes (make it with `bench data make navier-stokes`) and NYCTaxi; teachers fitted on the "
    "student's data (SDKD pre-trains its teacher on the same training set)",
    SDKD_MODELS, (0.8,), (0.8,), kind="sdkd", seeds=3, datasets=("NavierStokes", "NYCTaxi"), teacher_data="same",
    title="SDKD: frequency-aligned distillation on grids (ICCV 2025)", rank=80, tables=sdkd_tables,
    figures=lambda df, title: [("figure", _sdkd_figure(df))], after_run=measure_cost))
