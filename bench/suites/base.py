"""The suite record, the registry of suites, the presets and the trial specs of a run.

A suite is one module of `bench/suites/` (or any module named in the environment variable
BENCH_SUITES) that calls `register_suite(Suite(...))` at import: which trials it runs (models,
ratios, seeds, `plan`), and what it shows (`tables`, `figures`: the CLI prints the tables after a
run, and the report gives the suite a section with both). Nothing else names a suite.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from bench.protocol.errors import BenchError
from bench.protocol import registry
from bench.protocol.data import load_registry
from bench.protocol.split import TEACHER_DATA
from bench.execution.spec import TrialSpec


@dataclass(frozen=True)
class Suite:
    """One suite: its trials and how its results are shown.

    Trials: `models` x `ratios` (the quick preset: `quick_models`, `quick_ratios`) x seeds, or the
    `plan` hook's list of (model, config, teacher_config, seeds or None) per ratio (default:
    `default_plan`, each model with the run's --teacher/--set overrides).
    Hooks, all optional (plain functions):
    - plan(suite, models, preset, teacher, settings) -> [(model, config, teacher_config, seeds)];
    - tables(df, folder) -> [(title, DataFrame)]: the rows of trials.csv and the suite's results
      folder (its history/ holds per-window errors for the paired tests); default: MAE / RMSE per
      model and ratio (`bench.suites.tables.ratio_frame`);
    - figures(df, title) -> [(name, matplotlib Figure)];
    - read(folder) -> DataFrame: the suite's rows (default: folder/trials.csv);
    - execute(suite, dataset, models, preset, seeds, out, **paths) -> (path, ids): a suite that does
      not run trials (scalability: one process per measured point) runs itself;
    - after_run(datasets, preset, out, num_nodes, data_dir, registry_file) -> [(title, DataFrame)]:
      work after the trials (sdkd: cost measured side by side), printed after its tables;
    - summary(df, history_dir) -> [str]: its sentences on the report's first page ("What this run
      shows"); claim(df, history_dir) -> [str]: whether the paper's claim holds, by a stated
      criterion (the first suite of a report that states one).
    `rank` orders suites (lists, `--suite all`, the report); `in_all`: part of `--suite all`;
    `runnable`: `bench run --suite NAME` accepts it (False: a report section only, e.g. "search",
    the results of `--suite sweep --search`); `title`: the report's section title.
    """

    name: str
    description: str
    models: tuple[str, ...]
    ratios: tuple[float, ...]
    quick_ratios: tuple[float, ...]
    quick_models: tuple[str, ...] | None = None   # the quick preset's models (None: `models`)
    kind: str = "ratio"           # ratio: models x ratios, a table per ratio; others: the suite's own
    seeds: int = 1                # seeds when --seeds is not given
    quick_seeds: int | None = None    # the quick preset's seeds (None: `seeds`); 2 where the suite draws comparisons
    datasets: tuple[str, ...] | None = None    # the suite's datasets when --dataset is not given (None: the default)
    teacher_data: str | None = None            # teachers' data when --teacher-data is not given (None: disjoint)
    title: str = ""
    rank: float = 100.0
    in_all: bool = False
    runnable: bool = True
    plan: Callable | None = None
    tables: Callable | None = None
    figures: Callable | None = None
    read: Callable | None = None
    execute: Callable | None = None
    after_run: Callable | None = None
    summary: Callable | None = None
    claim: Callable | None = None


@dataclass(frozen=True)
class Preset:
    """Caps applied to every trial of a run (model and teacher alike); None keeps the model's own.

    Budgets count optimiser steps, never seconds (the same seed gives the same numbers on any
    machine). `max_batches` makes an epoch a round of at most that many steps (validation,
    learning-rate steps and patience count rounds; an epoch with fewer batches stays a shorter round:
    at ratio 0.1 on NYCTaxi 4 steps of 80 windows, so 5 rounds of patience are 20 steps there and
    about 55 at ratio 0.3); `max_epochs` caps the rounds and `max_patience` the
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

# every model of the paper's comparison, then the floors, the most expensive first under the quick
# preset (the runner starts trials in this order); the quick preset leaves out ST-MLP (25 M
# parameters, about 14 s per batch of 32 windows on 2 CPU cores: benchmarks/run.py)
MODELS = ("easyst", "flowdistill-wo-tb", "flowdistill", "st-mlp", "flowdistill-teacher", "stwa", "stsgcn",
          "astgcn", "bigst") + REFERENCES

QUICK_MODELS = tuple(m for m in MODELS if m != "st-mlp")

# the first run (data-efficiency, quick preset): the light models, which converge on 2 CPU cores,
# the most expensive first (the runner starts them first: the cores idle least at the end), and the
# floors. The heavy models (and the LLM teacher) cannot train to convergence there (their quick rows
# say nothing about their accuracy) and cost a third of the suite; data-scalability's quick run has them
LIGHT_MODELS = ("easyst", "flowdistill-wo-tb", "flowdistill", "bigst") + REFERENCES


# the quick preset's fixed optimiser step budgets of the heavy models (teachers included): about
# about a minute each on one CPU core (s/step on NYCTaxi, one thread: LLM teacher 0.74, STWA 1.45,
# ASTGCN 1.04, STSGCN 5.8, ST-MLP about 14, SDKD's teacher 0.6 at batch 16); every other model trains
# until early stopping
QUICK_STEP_BUDGETS = (("flowdistill-teacher", 800), ("flowdistill-teacher-wo-lm", 800), ("stwa", 40), ("astgcn", 40),
                      ("stsgcn", 8), ("st-mlp", 6), ("sdkd-teacher", 400))

# the quick preset's teacher for the students whose default teacher is expensive to fit on a CPU
QUICK_TEACHER_SWAP = (("flowdistill-teacher", "seasonal-naive-week"), ("stwa", "seasonal-naive-week"))

PRESETS = {
    "full": Preset("full", "each model's own epochs and early stopping (meant for a GPU)"),
    "quick": Preset("quick", "each suite's quick ratios (`bench list suites`) and "
                             "models (no ST-MLP); every training window; an epoch is a round of at most 20 "
                             "optimiser steps (fewer where an epoch has fewer batches: 4 at ratio 0.1 on NYCTaxi), "
                             "early stopping on 64 evenly spaced validation windows (the test set "
                             "is whole) with patience at most 5 rounds; the light models (FlowDistill and its "
                             "variants, EasyST's student, BigST, the floors) train until early stopping fires (at "
                             "most 150 rounds), the heavy ones get a fixed step budget: " +
                             ", ".join(f"{m} {n}" for m, n in QUICK_STEP_BUDGETS) +
                             " steps; the students' teacher is seasonal-naive-week (no fit, better than the "
                             "students at low ratios; the LLM teacher predicting every training window costs 7-10 "
                             "min per ratio, and under its step budget it is no better than the same step last "
                             "week) unless "
                             "--teacher names one; the LLM teacher keeps its own row (data-efficiency: the light models "
                             "and the floors only); the sweep tries each "
                             "parameter's extremes and default; the ablation and the sweep run 2 seeds; meant for "
                             "2 CPU cores",
                    quick=True, max_epochs=150, max_batches=20, max_val_windows=64, max_patience=5,
                    step_budgets=QUICK_STEP_BUDGETS, teacher_swap=QUICK_TEACHER_SWAP),
}

class SuiteError(BenchError, ValueError):
    """Unknown suite or preset; the message lists the known ones."""


# the registry: name -> Suite, filled by register_suite as suite modules are imported
SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    """Add `suite` to the registry (a module's import registers its suites); returns it.

    Raises:
        SuiteError: another suite already has that name.
    """
    if suite.name in SUITES and SUITES[suite.name] != suite:
        raise SuiteError(f"suite {suite.name!r} is registered twice; give the new one another name")
    SUITES[suite.name] = suite
    return suite


def suites(listed_only: bool = False) -> list[Suite]:
    """Every registered suite by rank; `listed_only`: those `bench run --suite` accepts."""
    return sorted((s for s in SUITES.values() if s.runnable or not listed_only), key=lambda s: (s.rank, s.name))


def run_order() -> tuple[str, ...]:
    """The suites `--suite all` runs, in this order."""
    return tuple(s.name for s in suites() if s.in_all)


def get_suite(name: str) -> Suite:
    """The registered suite `name`.

    Raises:
        SuiteError: unknown name (lists the known ones).
    """
    if name not in SUITES or not SUITES[name].runnable:
        known = ", ".join(s.name for s in suites(listed_only=True))
        raise SuiteError(f"unknown suite {name!r}; known: {known} (see `bench list suites`)")
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


def default_plan(suite: Suite, models, preset: Preset, teacher: str | None, settings: dict | None) -> list[tuple]:
    """Each model once per ratio and seed, with the run's overrides (`model_overrides`; the
    preset's teacher swap): [(model, config, teacher_config, None)]."""
    t_config: dict[str, dict] = {}
    config = model_overrides(models, teacher, settings, t_config, dict(preset.teacher_swap))
    return [(m, config[m], t_config.get(m, {}), None) for m in models]


def grid_models_for(dataset: str, asked, default, registry_file=None, num_nodes: int | None = None) -> list[str]:
    """The models to run on `dataset`: `asked` (--models) or else the suite's `default`, where a
    dataset without a grid (neither `grid: [H, W]` in its registry entry nor `layout: samples`, whose
    samples are frames), or a node slice `num_nodes` that is not whole rows of it, drops the suite's
    grid models (SDKD's).

    Raises:
        SuiteError: a grid model asked for by name on a dataset without a grid (names the field).
    """
    entry = load_registry(registry_file).get(dataset) or {}
    grid = entry.get("grid")
    if entry.get("layout") == "samples" or (grid and not (num_nodes and num_nodes % grid[-1])):
        return list(asked or default)
    flat = [m for m in (asked or default) if m in registry.names() and registry.get(m).needs_grid]
    if asked and flat:
        raise SuiteError(f"{', '.join(flat)}: grid model(s), but dataset {dataset} has no grid shape; add "
                         f"`grid: [H, W]` to its registry entry or pick a dataset that has one "
                         f"(NYCTaxi, NYCBike1, NYCBike2, NavierStokes)")
    return [m for m in (asked or default) if m not in flat]


def build_specs(suite: Suite, dataset: str, preset: str = "full", models=None, ratios=None, seeds: int | None = None,
                epochs: int | None = None, teacher: str | None = None, settings: dict | None = None,
                teacher_data: str = "disjoint", **paths) -> list[TrialSpec]:
    """All trials of a suite run: models x ratios x seeds, with the preset's caps.

    `epochs` overrides the preset's max_epochs; explicit `models`/`ratios` override the suite's
    (the quick preset takes the suite's quick_ratios); `teacher` and `settings` become config overrides (see `model_overrides`).
    `paths` go to every TrialSpec (data_dir, registry_file, cache_dir, num_nodes). `seeds` None:
    the suite's own count. The suite's `plan` hook lists the trials of a ratio. `teacher_data`:
    what teachers are fitted on (`bench.protocol.split.teacher_split`).
    """
    if preset not in PRESETS:
        raise SuiteError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if teacher_data not in TEACHER_DATA:
        raise SuiteError(f"--teacher-data {teacher_data!r}; use one of {', '.join(TEACHER_DATA)}")
    p = PRESETS[preset]
    ratios = ratios or (suite.quick_ratios if p.quick else suite.ratios)
    models = grid_models_for(dataset, models, (suite.quick_models if p.quick and suite.quick_models else suite.models),
                             paths.get("registry_file"), paths.get("num_nodes"))
    seeds = seeds or (suite.quick_seeds if p.quick and suite.quick_seeds else suite.seeds)
    plan = (suite.plan or default_plan)(suite, models, p, teacher, settings)
    # the order the runner starts them in: seed by seed (a run cut short holds whole seeds of every
    # comparison), and within a seed the suite's models (most expensive first), each at its largest
    # ratio first, so the last cores idle least
    specs = {}
    for s in range(max(n or seeds for *_, n in plan)):
        for m, cfg, t_cfg, n_seeds in plan:
            if s >= (n_seeds or seeds):
                continue
            for r in sorted(ratios, reverse=True):
                spec = TrialSpec(suite=suite.name, dataset=dataset, model=m, ratio=float(r), seed=s,
                                 config=cfg, teacher_config=t_cfg, teacher_data=teacher_data,
                                 **p.caps(m, cfg, epochs), **paths)
                specs.setdefault(spec.trial_id, spec)
    return list(specs.values())
