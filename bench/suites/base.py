"""The suite record, the registry of suites and the trial specs of a run (presets: `presets.py`;
`--set` routing: `settings.py`).

A suite is one module of `bench/suites/` (or any module named in the environment variable
BENCH_SUITES) that calls `register_suite(Suite(...))` at import: which trials it runs (models,
ratios, seeds, `plan`), and what it shows (`tables`, `figures`: the CLI prints the tables after a
run, and the report gives the suite a section with both). Nothing else names a suite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.protocol import registry
from bench.protocol.data import load_registry
from bench.protocol.split import TEACHER_DATA
from bench.execution.spec import TrialSpec
from bench.suites.presets import (LIGHT_MODELS, MODELS, PRESETS, QUICK_MODELS, QUICK_STEP_BUDGETS,  # noqa: F401
                                  QUICK_TEACHER_SWAP, REFERENCES, Preset)
from bench.suites.settings import SAME_MEANING, SuiteError, model_overrides  # noqa: F401


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
    # ratio first, so the last cores idle least; oracles last
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
    # oracles (trained on their teacher's data as well: the longest trials) start after every seed's other
    # trials, so that a run cut short holds the comparisons with and without teacher
    return sorted(specs.values(), key=lambda spec: bool(spec.config.get("oracle_of")))
