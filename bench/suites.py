"""Suites (which trials to run) and presets (how much training each trial gets), and the
paper-style table of a suite's results."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

from bench import registry
from bench.trial import TrialSpec


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    models: tuple[str, ...]
    ratios: tuple[float, ...]
    quick_ratios: tuple[float, ...]
    breakdown: bool = False       # also print MAE per horizon step and per volume bucket


@dataclass(frozen=True)
class Preset:
    """Caps applied to every trial of a run (model and teacher alike); None keeps the model's own."""

    name: str
    description: str
    quick: bool = False           # use the suite's quick_ratios
    max_epochs: int | None = None
    time_budget_s: float | None = None
    max_train_windows: int | None = None
    max_batches: int | None = None
    teacher_budget_s: float | None = None   # teachers' time budget (None: time_budget_s)


SUITES = {
    "data-efficiency": Suite(
        "data-efficiency", "RQ1 (Fig. 3-4): MAE/RMSE of every model against the training-data ratio",
        ("flowdistill-teacher", "flowdistill", "flowdistill-wo-tb", "easyst", "stwa"), (0.1, 0.2, 0.3, 0.4, 0.5),
        (0.1, 0.4)),
    "robustness": Suite(
        "robustness", "RQ3 (Fig. 5-6): MAE/RMSE per horizon step 1..12 and per traffic-volume bucket at ratio 0.5",
        ("flowdistill", "flowdistill-wo-tb", "easyst", "stwa"), (0.5,), (0.5,), breakdown=True),
    "ablation": Suite(
        "ablation", "RQ6 (Table 4): FlowDistill and its variants without TB, IB, SC, TC at ratio 0.3",
        ("flowdistill", "flowdistill-wo-tb", "flowdistill-wo-ib", "flowdistill-wo-sc", "flowdistill-wo-tc"),
        (0.3,), (0.3,)),
}

PRESETS = {
    "full": Preset("full", "each model's own epochs and early stopping (meant for a GPU)"),
    "quick": Preset("quick", "the suite's quick ratios (data-efficiency: 0.1, 0.4); per trial (teachers included) at most 30 epochs of at "
                             "most 20 batches, stopping after the epoch that passes 60 s of training (180 s for "
                             "teachers, which every student of a ratio reuses); meant for 2 CPU cores",
                    quick=True, max_epochs=30, time_budget_s=60.0, max_batches=20, teacher_budget_s=180.0),
}


class SuiteError(ValueError):
    """Unknown suite or preset; the message lists the known ones."""


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(SUITES)} (see `bench list suites`)")
    return SUITES[name]


def model_overrides(models, teacher: str | None = None, settings: dict | None = None,
                    teacher_configs: dict | None = None) -> dict[str, dict]:
    """Config overrides per model: `teacher` replaces the teacher of every model that has one;
    each `settings` key goes to every model whose Config has that field, and to its teacher's
    (collected per model in `teacher_configs` when a dict is given).

    Raises:
        SuiteError: the teacher is not registered, or a setting fits none of the models.
    """
    settings = settings or {}
    if teacher is not None and teacher not in registry.names():
        raise SuiteError(f"--teacher {teacher!r} is not a registered model; see `bench list models`")
    out, used = {}, set()
    for m in models:
        cfg = registry.get(m).config()
        fields = {f.name for f in dataclasses.fields(cfg)}
        out[m] = {k: v for k, v in settings.items() if k in fields}
        used |= set(out[m])
        if teacher is not None and cfg.teacher:
            out[m]["teacher"] = teacher
        registry.get(m).config(**out[m])          # raises ValueError naming a value of the wrong type
        t_name = out[m].get("teacher", cfg.teacher)
        if t_name:
            t_fields = {f.name for f in dataclasses.fields(registry.get(t_name).config())}
            t_cfg = {k: v for k, v in settings.items() if k in t_fields and k != "teacher"}
            registry.get(t_name).config(**t_cfg)
            used |= set(t_cfg)
            if teacher_configs is not None:
                teacher_configs[m] = t_cfg
    unused = set(settings) - used
    if unused:
        raise SuiteError(f"--set {', '.join(sorted(unused))}: no model of this run has such a config field")
    return out


def build_specs(suite: Suite, dataset: str, preset: str = "full", models=None, ratios=None, seeds: int = 1,
                epochs: int | None = None, teacher: str | None = None, settings: dict | None = None,
                **paths) -> list[TrialSpec]:
    """All trials of a suite run: models x ratios x seeds, with the preset's caps.

    `epochs` overrides the preset's max_epochs; explicit `models`/`ratios` override the suite's
    (the quick preset takes the suite's quick_ratios); `teacher` and `settings` become config overrides (see `model_overrides`).
    `paths` go to every TrialSpec (data_dir, registry_file, cache_dir, num_nodes).
    """
    if preset not in PRESETS:
        raise SuiteError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    ratios = ratios or (suite.quick_ratios if p.quick else suite.ratios)
    models = models or suite.models
    t_config: dict[str, dict] = {}
    config = model_overrides(models, teacher, settings, t_config)
    return [TrialSpec(suite=suite.name, dataset=dataset, model=m, ratio=float(r), seed=s, config=config[m],
                      teacher_config=t_config.get(m, {}),
                      max_epochs=epochs or p.max_epochs, time_budget_s=p.time_budget_s,
                      max_train_windows=p.max_train_windows, max_batches=p.max_batches,
                      teacher_budget_s=p.teacher_budget_s, **paths)
            for r in ratios for m in models for s in range(seeds)]


def _row_label(df: pd.DataFrame) -> pd.Series:
    """"model" or "model (teacher: name)" for each result row."""
    return df["model"] + df["teacher"].fillna("").map(lambda t: f" (teacher: {t})" if t else "")


def ratio_table(df: pd.DataFrame, tablefmt: str = "github") -> str:
    """Table 3 layout: one row per model (and its teacher), MAE and RMSE per ratio, mean +- std
    over seeds when there are several. Uses the overall rows (horizon and bucket "all"), status ok."""
    overall = (df["horizon"].astype(str) == "all") & (df["bucket"].astype(str) == "all")
    ok = df[overall & (df["status"] == "ok")].copy()
    if ok.empty:
        return "(no finished trials)"
    ok["row"] = _row_label(ok)
    cells = {}
    for (row, ratio), g in ok.groupby(["row", "ratio"]):
        for metric in ("mae", "rmse"):
            mean, std = g[metric].mean(), g[metric].std()
            cells.setdefault(row, {})[f"{ratio:g} {metric.upper()}"] = (
                f"{mean:.2f}" if len(g) == 1 else f"{mean:.2f} ± {std:.2f}")
    table = pd.DataFrame.from_dict(cells, orient="index")
    cols = sorted(table.columns, key=lambda c: (float(c.split()[0]), c.split()[1] != "MAE"))
    return tabulate(table[cols], headers=["model"] + cols, tablefmt=tablefmt, disable_numparse=True)


def breakdown_table(df: pd.DataFrame, tablefmt: str = "github") -> str:
    """Fig. 5-6 as a table: one row per model (and teacher) and ratio, masked MAE per horizon step
    (h1..h12) and per traffic-volume bucket (q1 lowest .. q4 highest), mean over seeds."""
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return "(no finished trials)"
    ok["row"] = _row_label(ok)
    horizon = ok[(ok["bucket"].astype(str) == "all") & (ok["horizon"].astype(str) != "all")].copy()
    horizon["col"] = "h" + horizon["horizon"].astype(str)
    bucket = ok[ok["bucket"].astype(str) != "all"].copy()
    bucket["col"] = bucket["bucket"].astype(str)
    both = pd.concat([horizon, bucket])
    table = both.pivot_table(index=["row", "ratio"], columns="col", values="mae", aggfunc="mean")
    cols = sorted((c for c in table.columns if c.startswith("h")), key=lambda c: int(c[1:]))
    cols += sorted(c for c in table.columns if c.startswith("q"))
    return tabulate(table[cols].reset_index(), headers=["model", "ratio"] + cols, tablefmt=tablefmt, floatfmt=".2f",
                    showindex=False)
