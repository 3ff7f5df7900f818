"""Suites (which trials to run) and presets (how much training each trial gets), and the
paper-style table of a suite's results."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

from bench import registry, stats
from bench.protocol import TEACHER_DATA
from bench.trial import TrialSpec


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    models: tuple[str, ...]
    ratios: tuple[float, ...]
    quick_ratios: tuple[float, ...]
    breakdown: bool = False       # also print MAE per horizon step and per volume bucket
    quick_models: tuple[str, ...] | None = None   # the quick preset's models (None: `models`)
    kind: str = "ratio"           # ratio: models x ratios; sweep: SWEEP_GRID one at a time; scalability;
                                  # distill: DISTILL_TEACHERS x DISTILL_VARIANTS against the student without teacher
    seeds: int = 1                # seeds when --seeds is not given
    quick_seeds: int | None = None    # the quick preset's seeds (None: `seeds`); 2 where the suite draws comparisons
    datasets: tuple[str, ...] | None = None    # the suite's datasets when --dataset is not given (None: the default)
    teacher_data: str | None = None            # teachers' data when --teacher-data is not given (None: disjoint)


@dataclass(frozen=True)
class Preset:
    """Caps applied to every trial of a run (model and teacher alike); None keeps the model's own.

    Budgets count optimiser steps, never seconds (the same seed gives the same numbers on any
    machine). `max_batches` makes an epoch a round of that many steps (validation, learning-rate
    steps and patience count rounds); `max_epochs` caps the rounds and `max_patience` the
    patience; models named in `step_budgets` (the heavy ones, teachers included) stop after their
    fixed number of steps, the others train until early stopping fires or `max_epochs` runs out."""

    name: str
    description: str
    quick: bool = False           # use the suite's quick_ratios
    max_epochs: int | None = None
    max_train_windows: int | None = None
    max_batches: int | None = None
    train_stride: int | None = None         # keep every n-th training window (models and teachers)
    max_val_windows: int | None = None      # validation windows for early stopping (test never cut)
    max_patience: int | None = None         # cap on each model's patience (epochs, or rounds)
    step_budgets: tuple[tuple[str, int], ...] = ()   # (model, optimiser steps): fixed budgets
    teacher_swap: tuple[tuple[str, str], ...] = ()   # (a student's default teacher, the teacher it gets
                                                     # instead) unless --teacher names one

    def max_steps(self, model: str | None) -> int | None:
        """The fixed step budget of `model` (None: it trains until early stopping)."""
        return dict(self.step_budgets).get(model) if model else None

    def caps(self, model: str, config: dict | None = None, epochs: int | None = None) -> dict:
        """The TrialSpec fields of this preset for a trial of `model` with `config` overrides:
        its step budget and its teacher's (the teacher named by the config). `epochs` overrides
        max_epochs."""
        teacher = registry.get(model).config(**(config or {})).teacher
        return {"max_epochs": epochs or self.max_epochs, "max_steps": self.max_steps(model),
                "teacher_max_steps": self.max_steps(teacher), "max_patience": self.max_patience,
                "max_train_windows": self.max_train_windows, "max_batches": self.max_batches,
                "train_stride": self.train_stride, "max_val_windows": self.max_val_windows}


# forecasts that need no training: the floors every table shows beside the models
REFERENCES = ("seasonal-naive-week", "seasonal-naive-day", "historical-average")
# every model of the paper's comparison, then the floors; the quick preset leaves out ST-MLP (25 M
# parameters, about 14 s per batch of 32 windows on 2 CPU cores: benchmarks/run.py)
MODELS = ("flowdistill-teacher", "flowdistill", "flowdistill-wo-tb", "easyst", "stwa", "bigst", "astgcn",
          "stsgcn", "st-mlp") + REFERENCES
QUICK_MODELS = tuple(m for m in MODELS if m != "st-mlp")
# the first run (data-efficiency, quick preset): the light models, which converge on 2 CPU cores,
# the most expensive first (the runner starts them first: the cores idle least at the end), and the
# floors. The heavy models (and the LLM teacher) cannot train to convergence there (their quick rows
# say nothing about their accuracy) and cost a third of the suite; data-scalability's quick run has them
LIGHT_MODELS = ("easyst", "flowdistill-wo-tb", "flowdistill", "bigst") + REFERENCES

# RQ4 (section 4.5, Fig. 7-9): each value tried with the others at their defaults
SWEEP_GRID = {
    "delta": (1.0, 3.0, 10.0, 15.0, 30.0),
    "lambda_tbl": (0.05, 0.10, 0.15, 0.20, 0.25),
    "lambda_kl": (5e-4, 1e-3, 2e-3, 5e-3, 1e-2),
    "lambda_spa": (0.2, 0.4, 0.6, 0.8),
    "lambda_tem": (0.25, 0.30, 0.35, 0.40, 0.45),
}

# the distill suite: each teacher, each way the teacher enters the student's loss (eq. 2's gate per
# batch or per element; regress to the truth or to the teacher's forecast) and two weights; the
# strongest pull runs first, so that a run cut short has those rows
DISTILL_TEACHERS = ("seasonal-naive-week", "flowdistill-teacher", "flowdistill-teacher-wo-lm")
DISTILL_VARIANTS = tuple({"tbl_gate": g, "tbl_target": t, "lambda_tbl": lam}
                         for lam in (1.0, 0.1) for t in ("teacher", "truth") for g in ("element", "batch"))
DISTILL_BASELINE = "flowdistill-wo-tb"
DISTILL_QUICK_TEACHERS = ("seasonal-naive-week",)     # the quick preset: the teacher that costs nothing to fit

# the sdkd suite (SDKD, Li et al., ICCV 2025): its teacher, each student without KD, with output KD
# and with frequency-aligned KD (on the forecast; the U-Net also on the teacher's latent)
SDKD_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-unet-kd", "sdkd-unet-sdkd", "sdkd-unet-sdkd-latent",
               "sdkd-resnet", "sdkd-resnet-kd", "sdkd-resnet-sdkd", "persistence")   # persistence: the floor
SDKD_COST_MODELS = ("sdkd-teacher", "sdkd-unet", "sdkd-resnet")     # measured side by side after the trials

SUITES = {
    "data-efficiency": Suite(
        "data-efficiency", "RQ1 (Fig. 3-4): MAE/RMSE of every model against the training-data ratio (quick: "
        "the light models, which converge on 2 CPU cores, and the floors)",
        MODELS, (0.1, 0.2, 0.3, 0.4, 0.5), (0.1, 0.5), quick_models=LIGHT_MODELS),
    "data-scalability": Suite(
        "data-scalability", "RQ2 (Table 3): ratios up to 0.7, and the smallest ratio at which each model "
        "matches FlowDistill's MAE at the smallest ratio", MODELS, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
        (0.1, 0.5, 0.7), quick_models=QUICK_MODELS),
    "robustness": Suite(
        "robustness", "RQ3 (Fig. 5-6): MAE/RMSE per horizon step 1..12 and per traffic-volume bucket at ratio 0.5",
        MODELS, (0.5,), (0.5,), breakdown=True, quick_models=QUICK_MODELS),
    "sweep": Suite(
        "sweep", "RQ4 (Fig. 7-9): delta, lambda_tbl, lambda_kl, lambda_spa, lambda_tem one at a time around "
        "the defaults at ratio 0.3 (quick: 0.5, 2 seeds) (`--search` for a joint Ray Tune search)", ("flowdistill",),
        (0.3,), (0.5,), kind="sweep", quick_seeds=2),
    "scalability": Suite(
        "scalability", "RQ5 (Fig. 10): peak memory against batch size and inference latency against test size "
        "x1..x5, one process per point", ("flowdistill", "bigst", "stsgcn", "astgcn", "stwa", "easyst"), (0.5,),
        (0.5,), kind="scalability"),
    "ablation": Suite(
        "ablation", "RQ6 (Table 4): FlowDistill and its variants without TB, IB, SC, TC at ratio 0.3 (quick: 0.5, "
        "2 seeds)", ("flowdistill", "flowdistill-wo-tb", "flowdistill-wo-ib", "flowdistill-wo-sc", "flowdistill-wo-tc"),
        (0.3,), (0.5,), quick_seeds=2),
    "distill": Suite(
        "distill", "Does the teacher transfer? Each teacher (" + ", ".join(DISTILL_TEACHERS) + ") x eq. 2's gate "
        "(batch, element) x target (truth, teacher) x lambda_tbl (0.1, 1) against flowdistill-wo-tb, 3 seeds, "
        "with a paired Wilcoxon test over test windows (--teacher NAME: one teacher; quick: seasonal-naive-week)",
        ("flowdistill",), (0.1, 0.3), (0.1,), kind="distill", seeds=3),
    "sdkd": Suite(
        "sdkd", "SDKD (ICCV 2025) as a second method: its conv + attention teacher, U-Net and ResNet students "
        "without KD, with output KD and with frequency-aligned KD, 3 seeds, paired Wilcoxon against the student "
        "without KD, errors per frequency band; then parameters, latency and memory side by side. On "
        "NavierStokes (make it with `bench data make navier-stokes`) and NYCTaxi; teachers fitted on the "
        "student's data (SDKD pre-trains its teacher on the same training set)",
        SDKD_MODELS, (0.8,), (0.8,), kind="sdkd", seeds=3, datasets=("NavierStokes", "NYCTaxi"), teacher_data="same"),
}
# `--suite all` runs these, in this order (sdkd needs the generated Navier-Stokes data: run it alone)
SUITE_ORDER = ("data-efficiency", "data-scalability", "robustness", "sweep", "scalability", "ablation", "distill")
ALL_SUITES = SUITE_ORDER + ("sdkd",)

# the quick preset's fixed optimiser step budgets of the heavy models (teachers included): about
# about a minute each on one CPU core (s/step on NYCTaxi, one thread: LLM teacher 0.74, STWA 1.45,
# ASTGCN 1.04, STSGCN 5.8, ST-MLP about 14); every other model trains until early stopping
QUICK_STEP_BUDGETS = (("flowdistill-teacher", 60), ("stwa", 40), ("astgcn", 40), ("stsgcn", 8), ("st-mlp", 6))

# the quick preset's teacher for the students whose default teacher is expensive to fit on a CPU
QUICK_TEACHER_SWAP = (("flowdistill-teacher", "seasonal-naive-week"), ("stwa", "seasonal-naive-week"))

PRESETS = {
    "full": Preset("full", "each model's own epochs and early stopping (meant for a GPU)"),
    "quick": Preset("quick", "the suite's quick ratios (0.1, 0.5, 0.7: three teachers serve every suite) and "
                             "models (no ST-MLP); every training window; an epoch is a round of at most 20 "
                             "optimiser steps, early stopping on 64 evenly spaced validation windows (the test set "
                             "is whole) with patience at most 5 rounds; the light models (FlowDistill and its "
                             "variants, EasyST's student, BigST, the floors) train until early stopping fires (at "
                             "most 150 rounds), the heavy ones get a fixed step budget: " +
                             ", ".join(f"{m} {n}" for m, n in QUICK_STEP_BUDGETS) +
                             " steps; the students' teacher is seasonal-naive-week (no fit, better than the "
                             "students at low ratios; the LLM teacher predicting every training window costs 7-10 "
                             "min per ratio and, under its step budget, is worse than every student) unless "
                             "--teacher names one; the LLM teacher keeps its own row (data-efficiency: the light models "
                             "and the floors only); the sweep tries each "
                             "parameter's extremes and default; the ablation and the sweep run 2 seeds; meant for "
                             "2 CPU cores",
                    quick=True, max_epochs=150, max_batches=20, max_val_windows=64, max_patience=5,
                    step_budgets=QUICK_STEP_BUDGETS, teacher_swap=QUICK_TEACHER_SWAP),
}


class SuiteError(ValueError):
    """Unknown suite or preset; the message lists the known ones."""


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(SUITES)} (see `bench list suites`)")
    return SUITES[name]


# fields declared by more than one model that mean the same in each (else a bare --set is refused)
SAME_MEANING = ("tbl_gate", "tbl_target", "lambda_tbl")


def _fields(name: str) -> set[str]:
    """The config fields `--set` may change for a model (a reference forecaster has no training ones)."""
    fields = {f.name for f in dataclasses.fields(registry.get(name).config())}
    return fields - set(registry.TRAINING_FIELDS) if not registry.trains(name) else fields


def _declared_by(name: str, key: str) -> type:
    """The Config class that first declares `key` for a model (TrainConfig for the shared training
    fields, even where a model's Config gives them its own default)."""
    return next(c for c in reversed(registry.get(name).cls.Config.__mro__) if key in getattr(c, "__annotations__", {}))


def _keys_for(name: str, settings: dict) -> list[str]:
    """The `--set` keys that reach model `name`: bare keys it has, and keys scoped to it ("model.key":
    the model named, or any model registered on the same class, i.e. its variants)."""
    out = []
    for key in settings:
        scope, _, field = key.rpartition(".")
        if scope and registry.get(scope).cls is not registry.get(name).cls:
            continue
        if field in _fields(name):
            out.append(key)
    return out


def _settings_for(name: str, settings: dict) -> dict:
    """{field: value} of the settings that reach model `name` (`_keys_for`)."""
    return {key.rpartition(".")[2]: settings[key] for key in _keys_for(name, settings)}


def _check_meanings(names, settings: dict) -> None:
    """A bare key that reaches fields declared by different models (FlowDistill's delta, a gate
    threshold in MAE units, against EasyST's, in SmoothL1 units) is ambiguous.

    Raises:
        SuiteError: naming the models and the scoped form.
    """
    for key in (k for k in settings if "." not in k and k not in SAME_MEANING):
        owners = {}
        for name in names:
            if key in _fields(name):
                owners.setdefault(_declared_by(name, key), name)
        if len(owners) > 1:
            named = ", ".join(f"{m} ({c.__name__})" for c, m in owners.items())
            example = next(iter(owners.values()))
            raise SuiteError(f"--set {key}: fields of different meaning in {named}; scope it to one model, "
                             f"e.g. --set {example}.{key}={settings[key]}")


def model_overrides(models, teacher: str | None = None, settings: dict | None = None,
                    teacher_configs: dict | None = None, swap: dict | None = None) -> dict[str, dict]:
    """Config overrides per model: `teacher` replaces the teacher of every model that has one
    (without it, `swap` {default teacher: replacement} replaces those named there);
    each `settings` key goes to every model whose Config has that field, and to its teacher's
    (collected per model in `teacher_configs` when a dict is given). A key "model.field" goes to
    that model (and its variants, or to it as a teacher) only.

    Raises:
        SuiteError: the teacher is not registered, a setting fits none of the models, or a bare
            key reaches fields of different meaning in different models (see `_check_meanings`).
    """
    settings = settings or {}
    if teacher is not None and teacher not in registry.names():
        raise SuiteError(f"--teacher {teacher!r} is not a registered model; see `bench list models`")
    for key in settings:
        if "." in key:
            registry.get(key.rpartition(".")[0])     # raises UnknownModelError listing the registered names
    out, used, reached = {}, set(), []
    for m in models:
        cfg = registry.get(m).config()
        out[m] = _settings_for(m, settings)
        used |= set(_keys_for(m, settings))
        reached.append(m)
        new = teacher if teacher is not None else (swap or {}).get(cfg.teacher)
        if new is not None and cfg.teacher:
            out[m]["teacher"] = new
        registry.get(m).config(**out[m])          # raises ValueError naming a value of the wrong type
        t_name = out[m].get("teacher", cfg.teacher)
        if t_name:
            t_keys = [k for k in _keys_for(t_name, settings) if k.rpartition(".")[2] != "teacher"]
            t_cfg = _settings_for(t_name, {k: settings[k] for k in t_keys})
            registry.get(t_name).config(**t_cfg)
            used |= set(t_keys)
            reached.append(t_name)
            if teacher_configs is not None:
                teacher_configs[m] = t_cfg
    _check_meanings(dict.fromkeys(reached), settings)
    unused = set(settings) - used
    if unused:
        hint = (" (reference forecasters are not trained: they have no training settings)"
                if {k.rpartition(".")[2] for k in unused} & set(registry.TRAINING_FIELDS) else "")
        raise SuiteError(f"--set {', '.join(sorted(unused))}: no model of this run has such a config field{hint}")
    return out


def build_specs(suite: Suite, dataset: str, preset: str = "full", models=None, ratios=None, seeds: int | None = None,
                epochs: int | None = None, teacher: str | None = None, settings: dict | None = None,
                teacher_data: str = "disjoint", **paths) -> list[TrialSpec]:
    """All trials of a suite run: models x ratios x seeds, with the preset's caps.

    `epochs` overrides the preset's max_epochs; explicit `models`/`ratios` override the suite's
    (the quick preset takes the suite's quick_ratios); `teacher` and `settings` become config overrides (see `model_overrides`).
    `paths` go to every TrialSpec (data_dir, registry_file, cache_dir, num_nodes). `seeds` None:
    the suite's own count. A distill suite builds its trials with `distill_plan`. `teacher_data`:
    what teachers are fitted on (`bench.protocol.teacher_split`).
    """
    if preset not in PRESETS:
        raise SuiteError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if teacher_data not in TEACHER_DATA:
        raise SuiteError(f"--teacher-data {teacher_data!r}; use one of {', '.join(TEACHER_DATA)}")
    p = PRESETS[preset]
    ratios = ratios or (suite.quick_ratios if p.quick else suite.ratios)
    models = models or (suite.quick_models if p.quick and suite.quick_models else suite.models)
    seeds = seeds or (suite.quick_seeds if p.quick and suite.quick_seeds else suite.seeds)
    if suite.kind == "distill":
        teachers = (teacher,) if teacher else (DISTILL_QUICK_TEACHERS if p.quick else DISTILL_TEACHERS)
        plan = distill_plan(models, teachers, settings)
    else:
        t_config: dict[str, dict] = {}
        config = model_overrides(models, teacher, settings, t_config, dict(p.teacher_swap))
        variants = [{}] if suite.kind != "sweep" else sweep_configs(models, settings, quick=p.quick)
        plan = [(m, config[m] | extra, t_config.get(m, {}), seeds) for m in models for extra in variants]
    specs = {}
    for r in ratios:
        for m, cfg, t_cfg, n_seeds in plan:
            for s in range(n_seeds or seeds):
                spec = TrialSpec(suite=suite.name, dataset=dataset, model=m, ratio=float(r), seed=s,
                                 config=cfg, teacher_config=t_cfg, teacher_data=teacher_data,
                                 **p.caps(m, cfg, epochs), **paths)
                specs.setdefault(spec.trial_id, spec)
    return list(specs.values())


def distill_plan(students, teachers=DISTILL_TEACHERS, settings: dict | None = None) -> list[tuple]:
    """The distill suite's trials per ratio as (model, config, teacher_config, seeds): the
    student without teacher (DISTILL_BASELINE) and each student with each teacher and each
    DISTILL_VARIANTS entry (every student row records its teacher's test MAE)
    (keys equal to the student's defaults left out, so that the default variant shares its trial
    with other suites). `teachers`: registered model names; `settings` as in model_overrides.

    Raises:
        SuiteError: a student without the fields the variants set, or an unknown teacher.
    """
    for m in students:
        default = registry.get(m).config()
        if not default.teacher or any(not hasattr(default, k) for k in DISTILL_VARIANTS[0]):
            raise SuiteError(f"the distill suite varies tbl_gate, tbl_target and lambda_tbl of a distilled student; "
                             f"{m!r} is not one (use flowdistill)")
    plan = [(DISTILL_BASELINE, model_overrides([DISTILL_BASELINE], None, settings)[DISTILL_BASELINE], {}, None)]
    for t in teachers:
        t_config: dict[str, dict] = {}
        for m in students:
            base = model_overrides([m], t, settings, t_config)[m]
            default = registry.get(m).config()
            if base.get("teacher") == default.teacher:
                del base["teacher"]
            for variant in DISTILL_VARIANTS:
                change = {k: v for k, v in variant.items() if getattr(default, k) != v and k not in (settings or {})}
                plan.append((m, base | change, t_config.get(m, {}), None))
    return list({json.dumps(p[:3], sort_keys=True): p for p in plan}.values())


def sweep_configs(models, settings: dict | None = None, quick: bool = False) -> list[dict]:
    """SWEEP_GRID one parameter at a time: one override per (parameter, value), none for the value
    that equals the default (that point is the default trial, shared by every parameter).
    A parameter fixed with --set is not swept; `quick` keeps each parameter's smallest and
    largest value (and the default).

    Raises:
        SuiteError: a model of the sweep lacks one of the swept fields.
    """
    out = [{}]
    for m in models:
        cfg = registry.get(m).config()
        missing = [k for k in SWEEP_GRID if not hasattr(cfg, k)]
        if missing:
            raise SuiteError(f"the sweep varies {', '.join(missing)}, which model {m!r} does not have; "
                             f"sweep flowdistill or one of its variants")
    default = registry.get(models[0]).config()
    for key, values in SWEEP_GRID.items():
        if key in (settings or {}):
            continue
        values = (values[0], values[-1]) if quick else values
        out += [{key: v} for v in values if v != getattr(default, key)]
    return out


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


def row_label(df: pd.DataFrame) -> pd.Series:
    """"model" or "model (teacher: name, its data)" for each result row."""
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
    ratio r0 ("not reached" otherwise; RQ2), with the p-value of the paired Wilcoxon test of the
    row at that ratio against the reference at r0 over non-overlapping test windows (the test part
    is the same at every ratio; `bench.stats`; none without `history_dir`). unmasked: the metrics
    over every cell, zeros included (the paper's eq. 13), instead of the masked ones."""
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
        match = {}
        for row in table.index:
            hits = [r for (name, r), v in means.items() if name == row and v <= target]
            if not hits:
                match[row] = "not reached"
                continue
            at = ok[(ok["row"] == row) & (ok["ratio"] == min(hits))]
            same = row == ref_row or history_dir is None          # no test of the reference against itself
            match[row] = f"{min(hits):g}" + ("" if same else stats.p_note(stats.compare(history_dir, at, ref)["p"]))
        table[f"matches {reference}@{r0:g}"] = pd.Series(match)
    return table.rename_axis("model").reset_index()


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


def ablation_frame(df: pd.DataFrame, reference: str = "flowdistill", history_dir=None) -> pd.DataFrame:
    """Table 4 as a frame: model, MAE, RMSE (mean, ± std over seeds) and the change of MAE against
    `reference` in percent with the p-value of the paired Wilcoxon test over non-overlapping test
    windows (`bench.stats`; none without `history_dir`), one row per model and ratio."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for (model, ratio), g in ok.groupby(["model", "ratio"], sort=False):
        ref_rows = ok[(ok["model"] == reference) & (ok["ratio"] == ratio)]
        ref = ref_rows["mae"].mean()
        change = (g["mae"].mean() / ref - 1) * 100 if ref == ref else float("nan")
        p = stats.compare(history_dir, g, ref_rows)["p"] if model != reference else float("nan")
        rows.append({"model": model, "ratio": f"{ratio:g}", "seeds": len(g), "MAE": seed_cell(g["mae"], g),
                     "RMSE": seed_cell(g["rmse"]),
                     f"MAE vs {reference}": (f"{change:+.1f} %" if change == change else "") + stats.p_note(p)})
    return pd.DataFrame(rows)


def sweep_points(df: pd.DataFrame, grid: dict | None = None) -> pd.DataFrame:
    """One row per (parameter, value, seed) of a one-at-a-time sweep: the default trial (no
    override) counts as the default value of every parameter. Columns param, value, seed, mae, rmse."""
    grid = grid or SWEEP_GRID
    ok = ok_overall(df)
    rows = []
    for _, r in ok.iterrows():
        cfg = json.loads(r["config"]) if r["config"] else {}
        swept = [k for k in cfg if k in grid]
        if len(swept) > 1:
            continue
        params = swept or list(grid)
        default = registry.get(r["model"]).config()
        for k in params:
            rows.append({"param": k, "value": float(cfg.get(k, getattr(default, k))), "seed": r["seed"],
                         "mae": r["mae"], "rmse": r["rmse"], "trial_id": r["trial_id"], "default": not swept})
    return pd.DataFrame(rows, columns=["param", "value", "seed", "mae", "rmse", "trial_id", "default"])


def sweep_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """Fig. 7-9 as a table: parameter, value ("(default)" marks the default point), MAE and RMSE
    (mean, ± std over seeds), and each value's change of MAE against the default with the p-value
    of the paired Wilcoxon test over non-overlapping test windows (none without `history_dir`)."""
    pts = sweep_points(df)
    if pts.empty:
        return pd.DataFrame()
    order = {k: i for i, k in enumerate(SWEEP_GRID)}
    pts = pts.assign(rank=pts["param"].map(order)).sort_values(["rank", "value"])
    rows = []
    for (k, v), g in pts.groupby(["param", "value"], sort=False):
        default = pts[(pts["param"] == k) & pts["default"]]
        is_default = bool(g["default"].any())
        change = ""
        if not is_default and len(default):
            change = f"{(g['mae'].mean() / default['mae'].mean() - 1) * 100:+.1f} %" + \
                stats.p_note(stats.compare(history_dir, g, default)["p"])
        rows.append({"parameter": k, "value": f"{v:g}" + (" (default)" if is_default else ""),
                     "seeds": len(g), "MAE": seed_cell(g["mae"]), "RMSE": seed_cell(g["rmse"]), "MAE vs default": change})
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


def _variant(row) -> dict:
    """gate, target and lambda_tbl of a student's result row (its config over the model's defaults)."""
    cfg = registry.get(row["model"]).config(**(json.loads(row["config"]) if row["config"] else {}))
    return {"gate": cfg.tbl_gate, "target": cfg.tbl_target, "lambda_tbl": cfg.lambda_tbl}


def distill_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The distill suite's table: per ratio, the student without teacher, each teacher's own
    test MAE, and each student variant with its MAE (mean ± std over seeds), the share of gate-open
    elements over training, its change against the student without teacher, the share of the gap
    between that student and the teacher it closes, and the Wilcoxon p-value of the paired test
    over non-overlapping test windows (`bench.stats`; empty without history files)."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for ratio, at in ok.groupby("ratio"):
        base = at[at["model"] == DISTILL_BASELINE]
        base_mae = base["mae"].mean() if len(base) else float("nan")
        if len(base):
            rows.append({"ratio": f"{ratio:g}", "teacher": "(none)", "teacher data": "", "teacher MAE": "", "gate": "",
                         "target": "",
                         "lambda_tbl": "", "model": DISTILL_BASELINE, "seeds": len(base), "MAE": seed_cell(base["mae"], base),
                         "gate open": "", "vs no teacher": "", "gap closed": "", "p": ""})
        students = at[at["teacher"].fillna("") != ""].copy()
        if students.empty:
            continue
        students = students.join(pd.DataFrame([_variant(r) for _, r in students.iterrows()], index=students.index))
        for (teacher, gate, target, lam, model), g in students.groupby(
                ["teacher", "gate", "target", "lambda_tbl", "model"], sort=True):
            t_mae = g["teacher_mae"].mean()             # the teacher these students read (its cache's test MAE)
            mae = g["mae"].mean()
            closed = (base_mae - mae) / (base_mae - t_mae) * 100 if base_mae == base_mae and base_mae != t_mae else float("nan")
            test = stats.compare(history_dir, g, base)
            data = ", ".join(sorted(set(g["teacher_data"].fillna("").astype(str)) - {""})) if "teacher_data" in g else ""
            desc = ", ".join(sorted(set(g["teacher_desc"].fillna("").astype(str)) - {"", teacher})) if "teacher_desc" in g else ""
            rows.append({"ratio": f"{ratio:g}", "teacher": f"{teacher} ({desc})" if desc else teacher,
                         "teacher data": data or "-",
                         "teacher MAE": f"{t_mae:.2f}", "gate": gate,
                         "target": target, "lambda_tbl": f"{lam:g}", "model": model, "seeds": len(g),
                         "MAE": seed_cell(g["mae"], g), "gate open": f"{g['gate_open'].mean():.2f}",
                         "vs no teacher": f"{mae - base_mae:+.2f}" if base_mae == base_mae else "",
                         "gap closed": f"{closed:.0f} %" if closed == closed else "", "p": stats.p_label(test["p"])})
    return pd.DataFrame(rows)


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
    (`bench.metrics.grid_metrics`), the share of the teacher's accuracy it keeps (teacher MSE /
    model MSE), its MSE change against the same student without KD and the Wilcoxon p-value of
    the paired test over test windows (per-window MAE; every window on a dataset of independent
    samples, every H_out-th on a series)."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for (dataset, ratio), at in ok.groupby(["dataset", "ratio"], sort=False):
        teacher = at[at["model"] == "sdkd-teacher"]
        t_mse = pd.to_numeric(teacher["mse"], errors="coerce").mean() if len(teacher) else float("nan")
        order = {m: i for i, m in enumerate(SDKD_MODELS)}
        for model, g in sorted(at.groupby("model", sort=False), key=lambda kv: order.get(kv[0], len(order))):
            mse = pd.to_numeric(g["mse"], errors="coerce")
            base_name = _no_kd_student(model) if model != "sdkd-teacher" else None
            base = at[at["model"] == base_name] if base_name and base_name != model else at.iloc[0:0]
            change, p = "", ""
            if len(base):
                b_mse = pd.to_numeric(base["mse"], errors="coerce").mean()
                change = f"{(mse.mean() - b_mse) / b_mse * 100:+.1f} %"
                p = stats.p_label(stats.compare(history_dir, g, base)["p"])
            num = lambda col: pd.to_numeric(g[col], errors="coerce").mean() if col in g else float("nan")
            rows.append({"dataset": dataset, "ratio": f"{ratio:g}", "model": model, "seeds": len(g),
                         "MAE": seed_cell(g["mae"], g, ".4g"), "MSE": seed_cell(mse, None, ".4g"), "SSIM": f"{num('ssim'):.3f}",
                         "MSE low band": f"{num('err_low'):.4g}", "MSE high band": f"{num('err_high'):.4g}",
                         "of teacher": f"{t_mse / mse.mean():.0%}" if t_mse == t_mse and model != "sdkd-teacher" else "",
                         "MSE vs no KD": change, "p": p})
    return pd.DataFrame(rows)


def cost_frame(df: pd.DataFrame, reference: str = "sdkd-teacher") -> pd.DataFrame:
    """The sdkd suite's cost table from its cost points (`bench.scalability.build_points_for`):
    parameters, latency (ms per test window) and peak memory (MB, one forward pass on a batch of
    `bench.scalability.COST_BATCH`) per dataset and model, mean ± std over seeds, with each
    model's ratio to the `reference` model (else the first of its dataset): parameter share,
    speed-up, memory share."""
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
            params = int(pd.to_numeric(g["params"], errors="coerce").max()) if "params" in g else 0
            ref = ref or {"params": params, "ms": ms.mean(), "mem": mem.mean()}
            rows.append({"dataset": dataset, "model": model, "params": params,
                         "ms / window": seed_cell(ms, None, ".3g") if len(ms) else "",
                         "peak MB": seed_cell(mem, None, ".3g") if len(mem) else "",
                         "params vs teacher": f"{params / ref['params']:.0%}",
                         "speed-up": f"{ref['ms'] / ms.mean():.2f}x" if len(ms) else "",
                         "memory vs teacher": f"{mem.mean() / ref['mem']:.0%}" if len(mem) and ref["mem"] else ""})
    return pd.DataFrame(rows)


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
                     "measured": f"{t / sd:.0%} (sdkd-unet-sdkd), {t / base:.0%} without KD" if t == t else "no teacher rows"})
        p = stats.p_label(stats.compare(history_dir, at[at["model"] == "sdkd-unet-sdkd"],
                                        at[at["model"] == "sdkd-unet-kd"])["p"])
        rows.append({"claim": "SDKD better than plain output KD", "where": where,
                     "measured": f"MSE {sd:.4g} vs {kd:.4g} ({(sd - kd) / kd * 100:+.1f} %{', ' + p if p else ''})"})
        rows.append({"claim": "SDKD gains about 3-4 % over the student without KD (NS ablation)", "where": where,
                     "measured": f"{(sd - base) / base * 100:+.1f} % MSE"})
    for _, r in costs.iterrows():
        if r["model"] == "sdkd-unet":
            rows.append({"claim": "student at 20-30 % of the teacher's memory; inference >= 2x faster",
                         "where": r["dataset"], "measured": f"memory {r['memory vs teacher']} (forward pass), "
                                                            f"params {r['params vs teacher']}, speed-up {r['speed-up']}"})
    rows.append({"claim": "headline: 81.3 % lower MSE, 52.3 % lower MAE on Navier-Stokes", "where": "quoted",
                 "measured": "not targeted: the notes find no table it comes from"})
    return pd.DataFrame(rows)
