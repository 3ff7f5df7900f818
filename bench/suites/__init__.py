"""Suites as plug-ins. A suite is one module that registers a `Suite` (its trials, tables,
figures and report section; see `bench.suites.base.Suite`). The built-in suites are the modules of
this package, found by `_discover` (a new module here is a new suite, nothing else to edit); any other module named in the environment variable BENCH_SUITES (comma-separated,
importable: on sys.path or PYTHONPATH) is imported by the `bench` command (`load_plugins`), and its suites appear in `bench list
suites`, `bench run --suite NAME` and the report like the built-in ones.

Adding a suite, in a module of its own:

    from bench.suites.base import Suite, register_suite
    register_suite(Suite("my-suite", "what it asks", ("flowdistill", "seasonal-naive-week"),
                         ratios=(0.1, 0.3), quick_ratios=(0.1,), rank=90,
                         tables=lambda df, folder: [("MAE by model", my_frame(df))]))
"""
from __future__ import annotations

import importlib
import os

from bench.suites.base import (LIGHT_MODELS, MODELS, PRESETS, QUICK_MODELS, QUICK_STEP_BUDGETS, QUICK_TEACHER_SWAP,
                               REFERENCES, SUITES, Preset, Suite, SuiteError, build_specs, default_plan, get_suite,
                               model_overrides, register_suite, run_order, suites)
from bench.suites.tables import (NOT_CONVERGED, breakdown_frame, breakdown_table, figures_of, frame_text,
                                 horizon_frame, ok_overall, ratio_frame, ratio_table, row_label, rows_of, seed_cell,
                                 tables_of)
# the helper modules of this package; every other module of it is a suite and registers itself on import
HELPERS = ("base", "presets", "settings", "tables", "plots", "lines", "summary", "report", "numbers", "pdf", "runconfig")


def _discover() -> list[str]:
    """Import every suite module of this package (each module but HELPERS): a new suite is one new
    module, discovered like a model."""
    import pkgutil
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name not in HELPERS and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
            found.append(info.name)
    return found


BUILT_IN = _discover()
from bench.suites.ablation import ablation_frame
from bench.suites.distill import (DISTILL_BASELINE, DISTILL_QUICK_TEACHERS, DISTILL_TEACHERS, DISTILL_VARIANTS,
                                  FLOOR_TEACHER, distill_frame, distill_numbers, distill_plan)
from bench.suites.sdkd import SDKD_COST_MODELS, SDKD_MODELS, cost_frame, sdkd_claims, sdkd_frame
from bench.suites.sweep import SWEEP_GRID, search_frame, sweep_configs, sweep_frame, sweep_points

PLUGINS_ENV = "BENCH_SUITES"


def load_plugins(names: str | None = None) -> list[str]:
    """Import the suite modules named in `names` (default: $BENCH_SUITES, comma-separated); returns
    the names imported.

    Raises:
        SuiteError: a module that cannot be imported (names it and the variable).
    """
    names = os.environ.get(PLUGINS_ENV, "") if names is None else names
    loaded = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SuiteError(f"{PLUGINS_ENV}={names!r}: cannot import suite module {name!r} ({exc}); put its folder "
                             f"on PYTHONPATH or fix the name") from exc
        loaded.append(name)
    return loaded

