"""The sdkd suite: SDKD (Li et al., ICCV 2025) as a second method, its teacher and its students
(small, and at about 20 % of the teacher) without KD, with output KD and with frequency-aligned KD,
per frequency band, with each comparison's paired test and minimum detectable effect; then their
cost (parameters, latency, memory) measured side by side."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.protocol import registry, stats

from bench.execution import scalability
from bench.execution.results import read_trials, trials_path
from bench.suites.base import Suite, register_suite
from bench.suites.tables import converged_cell, ok_overall, seed_cell


# the sdkd suite (SDKD, Li et al., ICCV 2025): its teacher, each student without KD, with output KD
# and with frequency-aligned KD (on the forecast; the U-Nets also weighting the low band, and on the
# teacher's latent); the small students (4 % of the teacher, zero padding) and the large ones (about
# 20 %, circular padding, a receptive field that covers the grid)
SDKD_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-unet-kd", "sdkd-unet-sdkd", "sdkd-unet-sdkd-low",
               "sdkd-unet-sdkd-latent", "sdkd-resnet", "sdkd-resnet-kd", "sdkd-resnet-sdkd",
               "sdkd-unet-large", "sdkd-unet-large-kd", "sdkd-unet-large-sdkd", "sdkd-unet-large-sdkd-low",
               "sdkd-unet-large-sdkd-latent", "sdkd-resnet-large", "sdkd-resnet-large-kd", "sdkd-resnet-large-sdkd",
               "persistence", "training-mean")     # the floors: last input frame, mean training target

# measured side by side after the trials
SDKD_COST_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-resnet", "sdkd-unet-large", "sdkd-resnet-large")

# the metrics each student is compared on with its no-KD twin: (trials.csv column, per-window key of
# `bench.protocol.stats`, label)
COMPARED = (("mse", "mse", "MSE"), ("rel_l2", "rel_l2", "rel L2"))

# FNO's Table 1 (Li et al., ICLR 2021): relative L2 test error at viscosity 1e-5, T = 20, N = 1,000
# training samples, 64 x 64; other data (FNO's own draw and solver), the same equation and resolution
FNO_TABLE1 = (("FNO-2D", 0.156), ("U-Net", 0.198), ("ResNet", 0.275))
FNO_LABEL = "FNO Table 1 (other data, same equation and resolution)"

def _no_kd_student(model: str) -> str | None:
    """The registered student of the same class as `model` without distillation (kd "none"), or None."""
    cls = registry.get(model).cls
    for name in registry.names():
        cfg = registry.get(name).config()
        if registry.get(name).cls is cls and getattr(cfg, "kd", None) == "none" and not cfg.teacher:
            return name
    return None

def sdkd_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The sdkd suite's table: per dataset and ratio, each model's masked MAE, unmasked MSE and
    relative L2 error (FNO's metric; mean ± std over seeds), SSIM, the MSE's share in SDKD's low
    and high band and PDEBench's fRMSE in its low, mid and high band
    (`bench.protocol.metrics.grid_metrics`), the share of the teacher's accuracy it keeps (teacher
    error / model error, by MSE, MAE and rel L2), and, per metric of `COMPARED`, its change against
    the same student without KD with the paired test of per-window errors over seeds and blocks
    of test windows (`bench.protocol.stats.compare`; each sample its own block on a dataset of
    independent samples, a day of windows on a series), Holm-adjusted over every test of the
    table, the minimum detectable effect (`comparison_cells`) and the verdict; then its optimiser
    steps with the epochs of its best validation MAE and how many seeds converged (`_budget_cell`).
    On a Navier-Stokes dataset, FNO's Table 1 follows as reference rows (`FNO_LABEL`)."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows, tests = [], []
    order = {m: i for i, m in enumerate(SDKD_MODELS)}
    for (dataset, ratio), at in ok.groupby(["dataset", "ratio"], sort=False):
        col = lambda g, name: pd.to_numeric(g[name], errors="coerce") if name in g else pd.Series(dtype=float)
        teacher = at[at["model"] == "sdkd-teacher"]
        t_err = {m: col(teacher, m).mean() for m in ("mse", "mae", "rel_l2")}
        for model, g in sorted(at.groupby("model", sort=False), key=lambda kv: order.get(kv[0], len(order))):
            num = lambda name: col(g, name).mean()                  # NaN for a column the rows lack
            base_name = _no_kd_student(model) if model != "sdkd-teacher" else None
            base = at[at["model"] == base_name] if base_name and base_name != model else at.iloc[0:0]
            kept = [f"{t_err[m] / num(m):.0%}" if t_err[m] == t_err[m] and num(m) == num(m) else "-"
                    for m in ("mse", "mae", "rel_l2")]
            row = {"dataset": dataset, "ratio": f"{ratio:g}", "model": model, "seeds": len(g),
                   "MAE": seed_cell(g["mae"], g, ".4g"), "MSE": seed_cell(col(g, "mse"), None, ".4g"),
                   "rel L2": seed_cell(col(g, "rel_l2"), None, ".4g") if col(g, "rel_l2").notna().any() else "",
                   "SSIM": f"{num('ssim'):.3f}",
                   "MSE low / high band": f"{num('err_low'):.4g} / {num('err_high'):.4g}",
                   "fRMSE low / mid / high": " / ".join(f"{num('frmse_' + b):.3g}" for b in ("low", "mid", "high"))
                   if col(g, "frmse_low").notna().any() else "",
                   "of teacher (MSE / MAE / rel L2)": " / ".join(kept) if model != "sdkd-teacher" and len(teacher) else ""}
            for column, metric, label in COMPARED:
                test = stats.compare(history_dir, g, base, metric=metric) if len(base) else None
                if test is not None:
                    test |= {"base": col(base, column).mean(), "mean": num(column)}
                    tests.append(test)
                row[f"{label} vs no KD"] = test
            row["steps (best epoch)"] = _budget_cell(col(g, "steps"), col(g, "best_epoch"), col(g, "epochs"), g)
            rows.append(row)
        if str(dataset).startswith("NavierStokes"):
            rows += [{"dataset": dataset, "ratio": "", "model": f"{name}: {FNO_LABEL}", "seeds": "",
                      "rel L2": f"{value:.3f}"} for name, value in FNO_TABLE1]
    # Holm's correction over the table's comparisons (one family: one suite and results folder)
    adjusted = iter(stats.holm([t["p"] for t in tests]))
    m = sum(1 for t in tests if t["p"] == t["p"])
    for row in rows:
        for _, _, label in COMPARED:
            test = row.pop(f"{label} vs no KD", None)
            row |= comparison_cells(test, None if test is None else next(adjusted), m, label)
    return pd.DataFrame(rows).astype(object).fillna("")


def comparison_cells(test: dict | None, p_holm: float | None, family: int, label: str) -> dict:
    """The cells of one comparison against the student without KD (`test`: `stats.compare` with
    "base" and "mean", the baseline's and the model's mean metric over seeds; None without a
    baseline): "{label} vs no KD" (the change of the mean in % of the baseline, and Holm's p),
    "{label} MDE" (the minimum detectable effect at 80 % power, `stats.min_detectable_effect`, at
    Holm's strictest level 0.05 / `family`, in % of the baseline) and "{label} verdict": "better
    by 2.1 % [-3.4, -0.8]" / "worse by ..." (the paired difference and its 95 % interval) where
    Holm's p is below 0.05, else "no effect larger than 3.5 %"; "" where nothing was measured."""
    keys = (f"{label} vs no KD", f"{label} MDE", f"{label} verdict")
    if test is None or not test["base"] == test["base"] or not test["base"]:
        return dict.fromkeys(keys, "")
    pct = lambda v: v / test["base"] * 100
    change = f"{pct(test['mean'] - test['base']):+.1f} %" if test["mean"] == test["mean"] else ""
    if test["diff"] != test["diff"]:                 # no per-window errors: the change of the means only
        return dict(zip(keys, (change, "", "")))
    mde = pct(stats.min_detectable_effect(test, alpha=stats.ALPHA / max(family, 1)))
    mde = float("nan") if mde == float("inf") else mde
    change += f" ({stats.p_label(p_holm)})" if p_holm == p_holm else ""
    if p_holm == p_holm and p_holm < stats.ALPHA:
        verdict = (f"{'better' if test['diff'] < 0 else 'worse'} by {abs(pct(test['diff'])):.1f} % "
                   f"[{pct(test['lo']):+.1f}, {pct(test['hi']):+.1f}]")
    else:
        verdict = f"no effect larger than {mde:.1f} %" if mde == mde else "none found; too few seeds and samples to bound it"
    return dict(zip(keys, (change, f"{mde:.1f} %" if mde == mde else "", verdict)))


def _budget_cell(steps: pd.Series, best: pd.Series, epochs: pd.Series, rows: pd.DataFrame | None = None) -> str:
    """How far the seeds of a model trained: "1,800 (best 288-299 of 300), converged: no (3 of 3)",
    the optimiser steps (the most over seeds), the range of epochs with the best validation MAE out
    of the epochs run, and whether early stopping fired before the budget ran out in every seed
    (`converged_cell` of `rows`); "" for a floor (no training) or rows without these columns. A
    best epoch at the last one means the model was still improving when its budget ran out."""
    if steps.isna().all() or not steps.max() > 0:
        return ""
    lo, hi = best.min(), best.max()
    where = f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}"
    cell = f"{steps.max():,.0f} (best {where} of {epochs.max():.0f})" if best.notna().any() else f"{steps.max():,.0f}"
    converged = converged_cell(rows) if rows is not None else ""
    return cell + (f", converged: {converged}" if converged else "")


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
    against the PDF) beside what this run measured, per dataset and ratio, for each U-Net student
    (the notes' best; the small one and the one at about 20 % of the teacher): keeps > 95 % of the
    teacher's accuracy (teacher error / student error, by MSE and by rel L2) at 20-30 % of its
    memory; SDKD better than plain output KD (MSE, paired p); a gain of about 3-4 % over the
    student without KD (the NS ablation; where the test finds none, the minimum detectable effect
    at 80 % power says how large an effect the run could have missed); inference >= 2x faster
    than the teacher. The headline 81.3 % lower MSE is quoted, not targeted: no reachable table
    traces it."""
    ok = ok_overall(df)
    rows = []
    costs = cost_frame(cost) if cost is not None and len(cost) else pd.DataFrame()
    for (dataset, ratio), at in ok.groupby(["dataset", "ratio"], sort=False):
        mean = lambda m, c="mse": pd.to_numeric(at.loc[at["model"] == m, c], errors="coerce").mean() \
            if c in at else float("nan")
        rows_of = lambda m: at[at["model"] == m]
        for student in ("sdkd-unet", "sdkd-unet-large"):
            if not len(rows_of(student)) and student != "sdkd-unet":
                continue
            kd_name, sd_name = f"{student}-kd", f"{student}-sdkd"
            t, base, kd, sd = mean("sdkd-teacher"), mean(student), mean(kd_name), mean(sd_name)
            t_l2, base_l2, sd_l2 = mean("sdkd-teacher", "rel_l2"), mean(student, "rel_l2"), mean(sd_name, "rel_l2")
            where = f"{dataset} @ {ratio:g}, {student}"
            by_l2 = f"; by rel L2 {t_l2 / sd_l2:.0%} and {t_l2 / base_l2:.0%}" if t_l2 == t_l2 and sd_l2 == sd_l2 else ""
            rows.append({"claim": "student keeps > 95 % of the teacher's accuracy", "where": where,
                         "measured": f"by MSE {t / sd:.0%} ({sd_name}), {t / base:.0%} without KD{by_l2}"
                         if t == t and sd == sd and base == base else _missing("sdkd-teacher", f"{student}(-sdkd)")})
            p = stats.p_label(stats.compare(history_dir, rows_of(sd_name), rows_of(kd_name), metric="mse")["p"])
            rows.append({"claim": "SDKD better than plain output KD", "where": where,
                         "measured": f"MSE {sd:.4g} vs {kd:.4g} ({(sd - kd) / kd * 100:+.1f} %{', ' + p if p else ''})"
                         if sd == sd and kd == kd else _missing(sd_name, kd_name)})
            test = stats.compare(history_dir, rows_of(sd_name), rows_of(student), metric="mse")
            mde = stats.min_detectable_effect(test) / base * 100 if base == base and base else float("nan")
            power = (f" ({stats.p_label(test['p'])}; 80 % power to find a change of {mde:.1f} % or more)"
                     if math.isfinite(mde) else "")
            rows.append({"claim": "SDKD gains about 3-4 % over the student without KD (NS ablation)", "where": where,
                         "measured": f"{(sd - base) / base * 100:+.1f} % MSE{power}" if sd == sd and base == base
                         else _missing(sd_name, student)})
    for _, r in costs.iterrows():
        if r["model"] in ("sdkd-unet", "sdkd-unet-large"):
            rows.append({"claim": "student at 20-30 % of the teacher's memory; inference >= 2x faster",
                         "where": f"{r['dataset']}, {r['model']}",
                         "measured": f"memory {r['memory vs teacher']} (forward pass)"
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
    tables = [("teacher and students: masked MAE, unmasked MSE and relative L2 error (FNO's metric; mean ± std over "
               "seeds), SSIM, the MSE in SDKD's two frequency bands and PDEBench's fRMSE in its three, the share of the "
               "teacher's accuracy kept, and per metric the change against the same student without KD (p: paired test "
               "of per-window errors over seeds and test samples, Holm-adjusted over the table), the minimum detectable "
               "effect (80 % power at Holm's strictest level) and the verdict; FNO's Table 1 as reference rows on "
               "Navier-Stokes", sdkd_frame(df, history))]
    if (cost["status"] == "ok").any():
        tables.append(("parameters, latency and peak memory (one forward pass; one training step), side by side",
                       cost_frame(cost)))
    return tables + [("SDKD's claims (reported by the notes) against this run", sdkd_claims(df, cost, history))]


def cost_models(out) -> tuple[str, ...]:
    """The models of `SDKD_COST_MODELS` whose costs a results folder calls for: the teacher, and each
    student one of whose variants (a model registered on its class) has a finished trial in
    OUT/sdkd/trials.csv."""
    ran = set(ok_overall(read_trials(trials_path(out, "sdkd")))["model"])
    classes = {registry.get(m).cls for m in ran if m in registry.names()}
    return tuple(m for m in SDKD_COST_MODELS if m == "sdkd-teacher" or registry.get(m).cls in classes)


def measure_cost(datasets, preset: str, out, num_nodes=None, data_dir=None, registry_file=None) -> list[tuple]:
    """After the trials: parameters, latency and peak memory of the teacher and of the students
    the folder's trials trained (`cost_models`), one process per point, side by side
    (`bench.execution.scalability`), under OUT/sdkd-cost/."""
    path = scalability.run(scalability.build_points_for(datasets, cost_models(out), preset, num_nodes=num_nodes,
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
    "(small, and at about 20 % of the teacher with circular padding) without KD, with output KD and with "
    "frequency-aligned KD, 3 seeds, paired tests of MSE and relative L2 against the student without KD with "
    "their minimum detectable effects, errors per frequency band; then parameters, latency and memory side by "
    "side (the learning-rate schedules chosen by `--suite sdkd-lr`: `bench run --config OUT/sdkd-lr/sdkd-run-"
    "DATASET.yaml`). On "
    "NavierStokes (make it with `bench data make navier-stokes`) and NYCTaxi; teachers fitted on the "
    "student's data (SDKD pre-trains its teacher on the same training set)",
    SDKD_MODELS, (0.8,), (0.8,), kind="sdkd", seeds=3, datasets=("NavierStokes", "NYCTaxi"), teacher_data="same",
    title="SDKD: frequency-aligned distillation on grids (ICCV 2025)", rank=80, tables=sdkd_tables,
    figures=lambda df, title: [("figure", _sdkd_figure(df))], after_run=measure_cost))
