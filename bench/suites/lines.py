"""Sentences shared by the suites' summaries on the report's first page ("What this run shows"):
counts, what a paired test counted, which trials did not converge, and whether the students'
MAE follows the steps they trained."""
from __future__ import annotations

import pandas as pd

from bench.protocol import registry, stats
from bench.suites.base import REFERENCES

STUDENT = "flowdistill"
ALPHA = 0.05              # the significance level of every "significantly" on the page


def trains(model: str) -> bool:
    try:
        return registry.trains(model)
    except KeyError:
        return True


def is_floor(model: str) -> bool:
    return model in REFERENCES or not trains(model)


def units(test: dict) -> str:
    """"3 seeds x 5 blocks of 48 test windows": what a `two_level_test` counted."""
    return f"{count(test['seeds'], 'seed')} x {count(test['blocks'], 'block')} of {test['block']} test windows"


def convergence_lines(ok: pd.DataFrame) -> list[str]:
    """Which trained rows did not converge (early stopping had not fired when the budget ran out)."""
    if "converged" not in ok:
        return []
    trained = ok[[not is_floor(m) for m in ok["model"]]]
    late = trained[trained["converged"].astype(str) == "False"]
    if late.empty:
        return ["every trained trial converged (early stopping fired before its budget ran out)."] if len(trained) else []
    cells = late.groupby(["model", "ratio"]).size()
    total = trained.groupby(["model", "ratio"]).size()
    listed = ", ".join(f"{m}@{r:g} ({n} of {total[(m, r)]})" for (m, r), n in cells.items())
    return [f"did not converge (budget ran out before early stopping; their numbers are not the models' "
            f"accuracy): {listed}."]


def count(n: int, noun: str) -> str:
    """"1 seed", "3 seeds": `n` and the noun, plural unless n is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def steps_line(ok: pd.DataFrame, ratio: float) -> list[str]:
    """A warning when the trained students' test MAE at `ratio` follows the optimiser steps they
    trained (Spearman |rho| >= 0.5, p < 0.01): then when early stopping fired explains much of the
    spread between variants, and a variant's gain may be a change of training length."""
    at = ok[(ok["ratio"] == ratio) & (ok["steps"].fillna(0) > 0)] if "steps" in ok else ok.iloc[:0]
    rho, p = stats.rank_correlation(at["steps"], at["mae"]) if len(at) else (float("nan"),) * 2
    if not (abs(rho) >= 0.5 and p < 0.01):
        return []
    return [f"ratio {ratio:g}: over its {len(at)} trained student trials the test MAE "
            f"{'falls' if rho < 0 else 'rises'} with the optimiser steps trained (Spearman rho {rho:+.2f}, "
            f"{stats.p_label(p)}; {int(at['steps'].min())} to {int(at['steps'].max())} steps): when early stopping "
            "fired explains much of the spread, so read a variant's gain beside its steps (trials.csv) and "
            "confirm it under a longer patience (the full preset)."]
