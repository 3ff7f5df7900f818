"""The report's first page, "What this run shows": sentences written from the numbers of a results
folder, never from expectations: the preset and what it cannot show, then each suite's own lines
(its `summary` hook), then, from the first suite that has one, whether the paper's claim holds on
this run by a stated criterion (its `claim` hook)."""
from __future__ import annotations

from pathlib import Path

from bench.execution.results import read_trials, trials_path
from bench.suites.base import QUICK_STEP_BUDGETS, SUITES
from bench.suites.tables import ok_overall


def preset_lines(results: Path, suites) -> list[str]:
    """The preset(s) of the run (from each suite's commands.log) and what the quick preset cannot show."""
    commands = []
    for name in suites:
        log = results / name / "commands.log"
        if log.exists():
            commands += [c for c in log.read_text().splitlines() if c.strip() and "  [failed: " not in c]
    quick = any("--quick" in c for c in commands)
    seeds, models = set(), set()
    for name in suites:
        path = trials_path(results, name)
        if path.exists():
            df = ok_overall(read_trials(path))
            if not df.empty:
                seeds.add(int(df.groupby(["model", "ratio"])["seed"].nunique().max()))
                models |= set(df["model"])
    lines = [f"preset: {'quick' if quick else 'full'}; seeds per cell: at most {max(seeds) if seeds else '?'}."]
    heavy = [m for m, _ in QUICK_STEP_BUDGETS if m in models]
    if quick and heavy:
        lines.append(f"The quick preset gives the heavy models ({', '.join(heavy)}) a fixed budget of a few dozen "
                     "optimiser steps: their rows are marked as not converged and say nothing about those models' "
                     "accuracy; the light models train until early stopping.")
    elif quick and "data-efficiency" not in suites:
        lines.append("The quick preset: the trained models train until early stopping, in rounds of at most 20 "
                     "optimiser steps with a patience of at most 5 rounds on 64 validation windows (the full preset: "
                     "whole epochs, each model's own patience, every validation window).")
    elif quick:
        lines.append("The quick preset's first run has the light models (they train until early stopping) and the "
                     "floors; the heavy models and the LLM teacher cannot converge on 2 CPU cores and are left out "
                     "(`bench run --suite data-scalability --quick` has their step-budgeted rows; the full preset, "
                     "on a GPU, trains them).")
    fixed = [c for c in commands if "--fixed-rounds" in c]
    if fixed:
        lines.append(f"{len(fixed)} of the {len(commands)} runs here used --fixed-rounds: their rounds are exactly 20 "
                     "optimiser steps (the shuffle carries on into the next round), so their patience is 100 steps at "
                     "every ratio; the cover page lists each command.")
    if seeds and max(seeds) < 2:
        lines.append("One seed per cell: no seed spread; the p-values test the difference over test windows only "
                     "(run with --seeds 2 or more for mean ± std).")
    return lines


def summary_lines(results: str | Path, suites) -> list[str]:
    """The lines of the "What this run shows" page for the given suites under `results`: each
    suite's `summary` hook (a suite without one is left off this page), and the `claim` of the
    first suite whose hook states one."""
    results = Path(results)
    lines = preset_lines(results, suites)
    claimed = False
    for name in suites:
        suite, path = SUITES.get(name), trials_path(results, name)
        if suite is None or suite.summary is None or not path.exists():
            continue
        df = read_trials(path)
        history = results / name / "history"
        lines += ["", f"{name}:"] + [f"  {line}" for line in suite.summary(df, history)]
        if not claimed and suite.claim is not None:
            claim = suite.claim(df, history)
            if claim:
                lines += ["", *claim]
                claimed = True
    return lines
