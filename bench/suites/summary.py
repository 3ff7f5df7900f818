"""The report's first page, "What this run shows": sentences written from the numbers of a results
folder, never from expectations. For each ratio suite: the best trained model per ratio against
the best floor (forecasts that need no training), every model against the floors, the distilled
student against the same student without teacher (paired test over seeds and day blocks of test
windows, `bench.protocol.stats`), what the teacher was, its test MAE and how often eq. 2's gate was open,
and the trials that did not converge; for the distill suite, each variant against the student
without teacher, its shuffled-teacher twin and its teacher, the oracle, and a verdict per teacher; then the preset and what it cannot show, and whether the
paper's claim holds on this run by a stated criterion.
"""
from __future__ import annotations

from pathlib import Path

import json

import pandas as pd

from bench.protocol import registry, stats
from bench.execution.results import read_trials, trials_path
from bench.suites import (DISTILL_BASELINE, QUICK_STEP_BUDGETS, REFERENCES, SUITES, distill_numbers,
                          ok_overall, seed_cell)
from bench.suites.distill import transfers

STUDENT = "flowdistill"
ALPHA = 0.05              # the significance level of every "significantly" on the page


def _trains(model: str) -> bool:
    try:
        return registry.trains(model)
    except KeyError:
        return True


def _is_floor(model: str) -> bool:
    return model in REFERENCES or not _trains(model)


def ratio_lines(df: pd.DataFrame, history_dir: Path | None) -> list[str]:
    """Sentences on one ratio suite's results (overall rows of finished trials)."""
    ok = ok_overall(df)
    if ok.empty:
        return ["no finished trials"]
    lines = []
    for ratio, at in ok.groupby("ratio"):
        means = at.groupby("model")["mae"].mean()
        floors = means[[m for m in means.index if _is_floor(m)]]
        trained = means[[m for m in means.index if not _is_floor(m)]]
        head = f"ratio {ratio:g}:"
        if trained.empty:
            lines.append(f"{head} no trained model finished")
            continue
        best = trained.idxmin()
        text = f"{head} best trained model {best} (MAE {seed_cell(at[at['model'] == best]['mae'])})"
        if not floors.empty:
            floor = floors.idxmin()
            gap = (trained[best] / floors[floor] - 1) * 100
            below = sorted(m for m in trained.index if trained[m] < floors[floor])
            text += (f"; best floor {floor} {floors[floor]:.2f}: the best model is {abs(gap):.0f} % "
                     f"{'below' if gap < 0 else 'above'} it; {len(below)} of {len(trained)} trained models beat "
                     f"it" + (f" ({', '.join(below)})" if below else ""))
        lines.append(text + ".")
        student, base = at[at["model"] == STUDENT], at[at["model"] == DISTILL_BASELINE]
        if len(student) and len(base):
            test = stats.compare(history_dir, student, base)
            diff = student["mae"].mean() - base["mae"].mean()
            verdict = ("significantly better" if diff < 0 else "significantly worse") \
                if test["p"] == test["p"] and test["p"] < ALPHA else "not significantly different"
            lines.append(f"  distilled {STUDENT} {seed_cell(student['mae'])} against {DISTILL_BASELINE} (no teacher) "
                         f"{seed_cell(base['mae'])}: {diff:+.2f}, {verdict}"
                         + (f" ({stats.p_label(test['p'])}; {_units(test)})" if test["p"] == test["p"] else
                            " (no paired test: history files missing)") + ".")
            if "teacher_mae" in student and student["teacher_mae"].notna().any():
                desc = ", ".join(sorted(set(student["teacher_desc"].fillna("").astype(str)) - {""})) \
                    if "teacher_desc" in student else ""
                teacher = ", ".join(sorted(set(student["teacher"].astype(str))))
                lines.append(f"  its teacher {teacher}" + (f" ({desc})" if desc and desc != teacher else "")
                             + f": test MAE {student['teacher_mae'].mean():.2f}; eq. 2's gate open on "
                             f"{student['gate_open'].mean():.0%} of the training elements.")
    lines += convergence_lines(ok)
    return lines


def _units(test: dict) -> str:
    """"3 seeds x 5 blocks of 48 test windows": what a `two_level_test` counted."""
    return f"{_count(test['seeds'], 'seed')} x {_count(test['blocks'], 'block')} of {test['block']} test windows"


def convergence_lines(ok: pd.DataFrame) -> list[str]:
    """Which trained rows did not converge (early stopping had not fired when the budget ran out)."""
    if "converged" not in ok:
        return []
    trained = ok[[not _is_floor(m) for m in ok["model"]]]
    late = trained[trained["converged"].astype(str) == "False"]
    if late.empty:
        return ["every trained trial converged (early stopping fired before its budget ran out)."] if len(trained) else []
    cells = late.groupby(["model", "ratio"]).size()
    total = trained.groupby(["model", "ratio"]).size()
    listed = ", ".join(f"{m}@{r:g} ({n} of {total[(m, r)]})" for (m, r), n in cells.items())
    return [f"did not converge (budget ran out before early stopping; their numbers are not the models' "
            f"accuracy): {listed}."]


def claim_lines(df: pd.DataFrame, history_dir: Path | None) -> list[str]:
    """The paper's claim against a stated criterion: at the smallest ratio, the distilled student
    is significantly better (p < ALPHA) than the same student without teacher, and better than
    every floor."""
    ok = ok_overall(df)
    if ok.empty or not (ok["model"] == STUDENT).any() or not (ok["model"] == DISTILL_BASELINE).any():
        return []
    r0 = ok[ok["model"] == STUDENT]["ratio"].min()
    at = ok[ok["ratio"] == r0]
    student, base = at[at["model"] == STUDENT], at[at["model"] == DISTILL_BASELINE]
    if base.empty:
        return []
    test = stats.compare(history_dir, student, base)
    floors = at[[_is_floor(m) for m in at["model"]]].groupby("model")["mae"].mean()
    helps = test["p"] == test["p"] and test["p"] < ALPHA and student["mae"].mean() < base["mae"].mean()
    beats_floor = floors.empty or student["mae"].mean() < floors.min()
    criterion = (f"criterion: at the smallest ratio ({r0:g}) {STUDENT} is significantly better than "
                 f"{DISTILL_BASELINE} (paired test over seeds and day blocks of test windows, p < {ALPHA}) and "
                 f"better than every floor")
    if helps and beats_floor:
        return [f"The paper's claim (distillation helps a light student when data is scarce) holds on this run; "
                f"{criterion}: met."]
    why = []
    if not helps:
        why.append(f"{STUDENT} {student['mae'].mean():.2f} against {DISTILL_BASELINE} {base['mae'].mean():.2f}"
                   + (f", {stats.p_label(test['p'])}" if test["p"] == test["p"] else ", no paired test"))
    if not beats_floor:
        why.append(f"{STUDENT} {student['mae'].mean():.2f} against the floor {floors.idxmin()} {floors.min():.2f}")
    return [f"The paper's claim (distillation helps a light student when data is scarce) is not shown by this run; "
            f"{criterion}: not met ({'; '.join(why)})."]


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


def _count(n: int, noun: str) -> str:
    """"1 seed", "3 seeds": `n` and the noun, plural unless n is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _steps_line(ok: pd.DataFrame, ratio: float) -> list[str]:
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


def _versus(row, test: str = "none") -> str:
    """"-1.72 [-2.10, -1.34], p=0.003 after Holm, better in 5 of 5 seeds": a distill_numbers row's
    comparison `test` ("none", "shuffled", "teacher") as words."""
    result, p = row[f"vs_{test}"], row[f"p_{test}"]
    if result is None or result["diff"] != result["diff"]:
        return "no paired test (history files missing)"
    text = f"{result['diff']:+.2f}"
    if result["lo"] == result["lo"]:
        text += f" [{result['lo']:+.2f}, {result['hi']:+.2f}]"
    text += f", {stats.p_label(p)} after Holm" if p == p else ", no p-value"
    if test == "none" and row["seeds_paired"]:
        text += f", better in {row['seeds_better']} of {_count(row['seeds_paired'], 'seed')}"
    return text


def _verdict(row, test: str) -> str:
    """"a gain", "worse" or "not separated" for a comparison after Holm's correction."""
    result, p = row[f"vs_{test}"], row[f"p_{test}"]
    if result is None or p != p or p >= stats.ALPHA:
        return "not separated"
    return "a gain" if result["diff"] < 0 else "worse"


def _delta_line(ratio: float, students: pd.DataFrame, base_mae: float, df: pd.DataFrame) -> list[str]:
    """eq. 2's delta against the measured gap between the teacher and the student without teacher,
    and the share of training elements where the gate was open."""
    if students.empty or base_mae != base_mae:
        return []
    rows = ok_overall(df)
    delta = {float(registry.get(m).config(**(json.loads(c) if c else {})).delta)
             for m, c in zip(rows["model"], rows["config"]) if hasattr(registry.get(m).config(), "delta")
             and registry.get(m).config().teacher}
    gap = base_mae - students["teacher_mae"].mean()
    open_share = students["gate_open"].dropna()
    return [f"ratio {ratio:g}: eq. 2's delta {', '.join(f'{d:g}' for d in sorted(delta))} against a teacher "
            f"{abs(gap):.2f} MAE {'better' if gap > 0 else 'worse'} than the student without teacher: the batch gate "
            f"closes only where the student is better than the teacher by more than delta, so it was open on "
            + (("{:.0%}" if open_share.min() == open_share.max() else "{:.0%}-" + f"{open_share.max():.0%}")
               .format(open_share.min()) if len(open_share) else "?")
            + " of the training elements; with the truth as target and the gate open, the teacher's forecast "
              "never enters the loss."] if delta else []


def distill_lines(df: pd.DataFrame, history_dir: Path | None) -> list[str]:
    """Per ratio of a distill suite: the oracle against the student without teacher (what the
    teacher's data alone is worth), each variant against no teacher, its shuffled-teacher twin and
    the teacher, with Holm-adjusted p-values, and a verdict per teacher: "transfers knowledge" only
    where a variant beats both the student without teacher and the shuffled teacher."""
    numbers = distill_numbers(df, history_dir)
    if numbers.empty:
        return ["no finished trials"]
    ok = ok_overall(df)
    lines = []
    for ratio, at in numbers.groupby("ratio", sort=True):
        base = at[at["kind"] == "baseline"]
        floors = at[at["kind"] == "floor"]
        students = at[at["kind"] == "student"]
        base_mae = base["mae"].iloc[0] if len(base) else float("nan")
        lines.append(f"ratio {ratio:g}: {DISTILL_BASELINE} (no teacher) MAE "
                     f"{base['mae_cell'].iloc[0] if len(base) else '(not run)'}; the table's p-values are adjusted "
                     f"by Holm over its {_count(int(at['family'].iloc[0]), 'comparison')} (significant: "
                     f"p < {stats.ALPHA} after correction).")
        for _, o in at[at["kind"] == "oracle"].iterrows():
            lines.append(f"ratio {ratio:g}: oracle of {o['teacher']} (the student without teacher on the ground truth "
                         f"its teacher's forecasts carry): MAE {o['mae_cell']}, {_versus(o)}: "
                         f"{_verdict(o, 'none')}.")
        for _, r in students.iterrows():
            parts = [f"vs no teacher {_versus(r)} ({_verdict(r, 'none')})"]
            if r["vs_shuffled"] is not None:
                parts.append(f"vs shuffled teacher {_versus(r, 'shuffled')} ({_verdict(r, 'shuffled')})")
            if r["vs_teacher"] is not None and r["vs_teacher"]["diff"] == r["vs_teacher"]["diff"]:
                parts.append(f"vs its teacher {_versus(r, 'teacher')} ({_verdict(r, 'teacher')})")
            if r["oracle_closed"] == r["oracle_closed"]:
                parts.append(f"{r['oracle_closed']:.0f} % of the gap to the oracle closed")
            lines.append(f"ratio {ratio:g}: {r['name']} (gate {r['gate']}, target {r['target']}, lambda_tbl "
                         f"{r['lambda_tbl']:g}) with teacher {r['teacher']} (MAE {r['teacher_mae']:.2f}): MAE "
                         f"{r['mae_cell']}; " + "; ".join(parts) + ".")
        for teacher, mine in students.groupby("teacher"):
            good = transfers(mine)
            if len(good):
                names = ", ".join(f"{r['name']} lambda_tbl {r['lambda_tbl']:g}" for _, r in good.iterrows())
                lines.append(f"ratio {ratio:g}: verdict for {teacher}: transfers knowledge ({names} beat both the "
                             f"student without teacher and the shuffled teacher after Holm's correction).")
            elif mine["vs_shuffled"].isna().all():
                lines.append(f"ratio {ratio:g}: verdict for {teacher}: not settled (no shuffled-teacher control ran).")
            else:
                lines.append(f"ratio {ratio:g}: verdict for {teacher}: no transfer of knowledge shown: no variant beats "
                             f"both the student without teacher and the shuffled teacher after Holm's correction.")
        lines += _delta_line(ratio, students, base_mae, df)
        if len(floors):
            floor = floors.loc[floors["mae"].idxmin()]
            beat = int((students["mae"] < floor["mae"]).sum())
            lines.append(f"ratio {ratio:g}: best floor {floor['model']} MAE {floor['mae_cell']}; "
                         f"{beat} of {len(students)} variants below it.")
        lines += _steps_line(ok, ratio)
    return lines + convergence_lines(ok)


def summary_lines(results: str | Path, suites) -> list[str]:
    """The lines of the "What this run shows" page for the given suites under `results`."""
    results = Path(results)
    lines = preset_lines(results, suites)
    claimed = False
    for name in suites:
        path = trials_path(results, name)
        kind = SUITES[name].kind if name in SUITES else None      # ratio suites and distill suites are summarised
        if kind not in ("ratio", "distill") or not path.exists():
            continue
        df = read_trials(path)
        history = results / name / "history"
        body = distill_lines(df, history) if kind == "distill" else ratio_lines(df, history)
        lines += ["", f"{name}:"] + [f"  {line}" for line in body]
        if kind == "distill":
            continue
        if not claimed:
            claim = claim_lines(df, history)
            if claim:
                lines += ["", *claim]
                claimed = True
    return lines
