"""The distill suite: does the teacher's forecast reach the student? Each teacher x eq. 2's gate x
target x lambda_tbl against the student without teacher, with paired tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.protocol import registry, stats
from bench.suites.base import REFERENCES, Suite, SuiteError, model_overrides, register_suite
from bench.suites.lines import convergence_lines, count, steps_line
from bench.suites.plots import colour_of, floor_style, units_of
from bench.suites.tables import converged_cell, ok_overall, seed_cell, steps_cell


# the distill suite: each teacher, each way the teacher enters the student's loss (eq. 2's gate per
# batch or per element; regress to the truth or to the teacher's forecast) and two weights; the
# strongest pull runs first, so that a run cut short has those rows
DISTILL_TEACHERS = ("seasonal-naive-week", "flowdistill-teacher", "flowdistill-teacher-wo-lm")

DISTILL_VARIANTS = tuple({"tbl_gate": g, "tbl_target": t, "lambda_tbl": lam}
                         for lam in (1.0, 0.1) for t in ("teacher", "truth") for g in ("element", "batch"))

DISTILL_BASELINE = "flowdistill-wo-tb"

FLOOR_TEACHER = "(floor)"     # the teacher column of a floor's row in the distill table

DISTILL_QUICK_TEACHERS = ("seasonal-naive-week",)     # the quick preset: the teacher that costs nothing to fit

def distill_plan(students, teachers=DISTILL_TEACHERS, settings: dict | None = None) -> list[tuple]:
    """The distill suite's trials per ratio as (model, config, teacher_config, seeds): the
    student without teacher (DISTILL_BASELINE), each student with each teacher and each
    DISTILL_VARIANTS entry (every student row records its teacher's test MAE), and the floors
    (REFERENCES, one seed: they draw nothing at random)
    (keys equal to the student's defaults left out, so that the default variant shares its trial
    with other suites). `teachers`: registered model names; `settings` as in model_overrides (a
    setting of a variant key, e.g. lambda_tbl, fixes it for every student with a teacher and does
    not reach the student without teacher).

    Raises:
        SuiteError: a student without the fields the variants set, or an unknown teacher.
    """
    for m in students:
        default = registry.get(m).config()
        if not default.teacher or any(not hasattr(default, k) for k in DISTILL_VARIANTS[0]):
            raise SuiteError(f"the distill suite varies tbl_gate, tbl_target and lambda_tbl of a distilled student; "
                             f"{m!r} is not one (use flowdistill)")
    # the student without teacher ignores what only acts through a teacher, so that `--set lambda_tbl=1`
    # narrows the variants without retraining the baseline under a new trial id
    # (a setting scoped to a teacher, e.g. flowdistill-teacher-wo-lm.encoder, is the teachers' alone)
    own = {k: v for k, v in (settings or {}).items() if k.rpartition(".")[0] not in teachers}
    base_cfg = {k: v for k, v in model_overrides([DISTILL_BASELINE], None, own)[DISTILL_BASELINE].items()
                if k not in DISTILL_VARIANTS[0]}
    plan = [(DISTILL_BASELINE, base_cfg, {}, None)]
    plan += [(ref, {}, {}, 1) for ref in REFERENCES]          # cheap: a run cut short still has them
    for t in teachers:
        # the oracle: the student without teacher on the ground truth its teacher's forecasts carry
        plan.append((DISTILL_BASELINE, base_cfg | {"oracle_of": t}, {}, None))
        t_config: dict[str, dict] = {}
        for m in students:
            base = model_overrides([m], t, settings, t_config)[m]
            default = registry.get(m).config()
            if base.get("teacher") == default.teacher:
                del base["teacher"]
            for variant in DISTILL_VARIANTS:
                change = {k: v for k, v in variant.items() if getattr(default, k) != v and k not in (settings or {})}
                # a variant key set by --set takes the type of its default (YAML reads `1` as an int) and is
                # left out where it equals the default, as the plan leaves it out, so that `--set tbl_gate=batch
                # --set lambda_tbl=1 ...` names the same trial as the full plan's variant (a rerun skips it)
                config = {k: type(getattr(default, k))(v) if k in variant else v for k, v in (base | change).items()}
                config = {k: v for k, v in config.items() if k not in variant or getattr(default, k) != v}
                plan.append((m, config, t_config.get(m, {}), None))
                # its control: the same variant with the teacher's forecasts shuffled across windows
                plan.append((m, config | {"teacher_shuffle": True}, t_config.get(m, {}), None))
    return list({json.dumps(p[:3], sort_keys=True): p for p in plan}.values())


def plan(suite, models, preset, teacher, settings) -> list[tuple]:
    """`distill_plan` with --teacher's teacher, else the preset's teachers (quick: the one that
    needs no fit)."""
    teachers = (teacher,) if teacher else (DISTILL_QUICK_TEACHERS if preset.quick else DISTILL_TEACHERS)
    return distill_plan(models, teachers, settings)


def _variant(row) -> dict:
    """gate, target, lambda_tbl, teacher_shuffle, oracle_of and delta of a result row (its config
    over the model's defaults)."""
    cfg = registry.get(row["model"]).config(**(json.loads(row["config"]) if row["config"] else {}))
    return {"gate": getattr(cfg, "tbl_gate", ""), "target": getattr(cfg, "tbl_target", ""),
            "lambda_tbl": getattr(cfg, "lambda_tbl", float("nan")), "shuffled": bool(cfg.teacher_shuffle),
            "oracle_of": cfg.oracle_of or "", "delta": getattr(cfg, "delta", float("nan"))}


def variant_name(gate: str, target: str) -> str:
    """What a way of entering the loss is, in the field's terms: with the teacher's forecast as
    target the term is an L1 pull to that forecast, i.e. output knowledge distillation (Hinton et
    al. 2015, for regression); with the truth as target it is FlowDistill's eq. 2 as printed."""
    if target == "teacher":
        return "output KD" + (" (element gate)" if gate == "element" else "")
    return "eq. 2 as printed" + (" (element gate)" if gate == "element" else "")


def _values(rows: pd.DataFrame, column: str, leave=("",)) -> list[str]:
    """The distinct values of a text column but `leave`, sorted (none when the column is absent)."""
    return sorted(set(rows[column].fillna("").astype(str)) - set(leave)) if column in rows else []


TESTS = ("none", "shuffled", "teacher")      # a student row's comparisons: no teacher, shuffled teacher, teacher


def distill_numbers(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The distill suite's numbers, one row per ratio and entry.

    `kind`: "baseline" (the student without teacher), "floor" (forecasts that need no training),
    "oracle" (the student without teacher on its teacher's data: `oracle_of`), "student" (a
    variant: teacher, gate, target, lambda_tbl; `name` says what it is, e.g. "output KD") or
    "shuffled" (a variant with its teacher's forecasts shuffled across training windows).
    Columns: `mae` (mean over seeds), `mae_cell` (mean ± std, marked when a seed did not
    converge), `seeds`, `steps`, `converged`, `teacher_mae` (the teacher's cache's test MAE),
    `gate_open` (share of gate-open elements over training), `diff` (MAE against the student
    without teacher), `closed` (% of the gap to a better teacher closed; NaN when the teacher is
    not better), `oracle_closed` (% of the gap from no teacher to the oracle closed), the
    comparisons `vs_none`, `vs_shuffled` (a student against its shuffled twin), `vs_teacher` (a
    student against its teacher's test forecast), each a `bench.protocol.stats.two_level_test`
    dict, and their Holm-adjusted p-values `p_none`, `p_shuffled`, `p_teacher`: one family per
    ratio, of `family` comparisons. `seeds_better` of `seeds_paired`: seeds in which the row beats
    the student without teacher of the same seed. Empty when no trial finished."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    ok = ok.join(pd.DataFrame([_variant(r) for _, r in ok.iterrows()], index=ok.index))
    nan = float("nan")
    rows = []
    for ratio, at in ok.groupby("ratio"):
        is_base = (at["model"] == DISTILL_BASELINE) & (at["oracle_of"] == "")
        base = at[is_base]
        base_mae = base["mae"].mean() if len(base) else nan
        blank = {"ratio": ratio, "teacher": "", "teacher_data": "", "teacher_mae": nan, "gate": "", "target": "",
                 "name": "", "lambda_tbl": nan, "gate_open": nan, "closed": nan, "oracle_closed": nan,
                 "teacher_worse": False, "seeds_better": 0, "seeds_paired": 0, "diff": nan}
        blank |= {f"vs_{t}": None for t in TESTS} | {f"p_{t}": nan for t in TESTS}

        def entry(kind, g, **extra):
            out = blank | {"kind": kind, "model": g["model"].iloc[0], "seeds": len(g), "mae": g["mae"].mean(),
                           "mae_cell": seed_cell(g["mae"], g), "steps": steps_cell(g), "converged": converged_cell(g)}
            if kind != "baseline" and len(base):
                out |= {"diff": g["mae"].mean() - base_mae, "vs_none": stats.compare(history_dir, g, base),
                        **_seed_wins(g, base)}
            return out | extra
        if len(base):
            rows.append(entry("baseline", base, teacher="(none)"))
        for ref in [r for r in REFERENCES if r in set(at["model"])]:
            rows.append(entry("floor", at[at["model"] == ref], teacher=FLOOR_TEACHER))
        oracles = {t: g for t, g in at[at["oracle_of"] != ""].groupby("oracle_of")}
        students = at[(at["teacher"].fillna("") != "")]
        for teacher in sorted(set(oracles) | set(students["teacher"])):
            oracle = oracles.get(teacher)
            oracle_mae = oracle["mae"].mean() if oracle is not None else nan
            if oracle is not None:
                rows.append(entry("oracle", oracle, teacher=teacher, teacher_data=", ".join(_values(oracle, "teacher_data"))
                                  or "-", name="oracle (no teacher, trained on the teacher's data)"))
            mine = students[students["teacher"] == teacher]
            for (gate, target, lam, model), g in mine[~mine["shuffled"]].groupby(
                    ["gate", "target", "lambda_tbl", "model"], sort=True):
                twin = mine[mine["shuffled"] & (mine["gate"] == gate) & (mine["target"] == target)
                            & (mine["lambda_tbl"] == lam) & (mine["model"] == model)]
                t_mae = g["teacher_mae"].mean()             # the teacher these students read (its cache's test MAE)
                mae = g["mae"].mean()
                desc = ", ".join(_values(g, "teacher_desc", ("", teacher)))
                common = {"teacher": f"{teacher} ({desc})" if desc else teacher,
                          "teacher_data": ", ".join(_values(g, "teacher_data")) or "-", "teacher_mae": t_mae,
                          "gate": gate, "target": target, "lambda_tbl": lam, "teacher_worse": bool(t_mae >= base_mae)}
                rows.append(entry(
                    "student", g, **common, name=variant_name(gate, target), gate_open=g["gate_open"].mean(),
                    closed=(base_mae - mae) / (base_mae - t_mae) * 100 if base_mae > t_mae else nan,
                    oracle_closed=(base_mae - mae) / (base_mae - oracle_mae) * 100 if base_mae > oracle_mae else nan,
                    vs_shuffled=stats.compare(history_dir, g, twin) if len(twin) else None,
                    vs_teacher=stats.compare_teacher(history_dir, g)))
                if len(twin):
                    rows.append(entry("shuffled", twin, **common, name=variant_name(gate, target) + ", shuffled teacher",
                                      gate_open=twin["gate_open"].mean()))
    out = pd.DataFrame(rows)
    # Holm's correction within each ratio's table: every comparison the table draws is one family
    out["family"] = 0
    for ratio, idx in out.groupby("ratio").groups.items():
        cells = [(i, t) for i in idx for t in TESTS if out.at[i, f"vs_{t}"] is not None]
        adjusted = stats.holm([out.at[i, f"vs_{t}"]["p"] for i, t in cells])
        for (i, t), p in zip(cells, adjusted):
            out.at[i, f"p_{t}"] = p
        out.loc[idx, "family"] = int(np.isfinite(adjusted).sum())
    return out


def _seed_wins(rows: pd.DataFrame, base: pd.DataFrame) -> dict:
    """`seeds_better` of `seeds_paired`: the seeds in which the rows' test MAE is below that of the
    student without teacher of the same seed (a row of one seed, a floor, against every seed)."""
    if len(rows) == 1 and len(base) > 1:
        return {"seeds_better": int((base["mae"] > rows["mae"].iloc[0]).sum()), "seeds_paired": len(base)}
    both = rows[["seed", "mae"]].merge(base[["seed", "mae"]], on="seed", suffixes=("", "_base"))
    return {"seeds_better": int((both["mae"] < both["mae_base"]).sum()), "seeds_paired": len(both)}


def significant(row, test: str) -> bool:
    """Is a `distill_numbers` row's comparison `test` ("none", "shuffled", "teacher") a gain (the
    row's error lower) after Holm's correction (p < `stats.ALPHA`)?"""
    result, p = row[f"vs_{test}"], row[f"p_{test}"]
    return result is not None and p == p and p < stats.ALPHA and result["diff"] < 0


def transfers(rows: pd.DataFrame) -> pd.DataFrame:
    """The student rows of `distill_numbers` that transfer knowledge: better than the student
    without teacher and than the same variant with its teacher's forecasts shuffled, both after
    Holm's correction."""
    students = rows[rows["kind"] == "student"]
    return students[[significant(r, "none") and significant(r, "shuffled") for _, r in students.iterrows()]]


def _gap_cell(r) -> str:
    """The "gap closed" cell of a `distill_numbers` row: "67 %", "no gap" where the teacher is not
    better than the student without teacher, or empty (no teacher, no baseline)."""
    if r.closed == r.closed:
        return f"{r.closed:.0f} %"
    return "no gap (teacher worse)" if r.teacher_worse else ""


def _test_cell(r, test: str) -> str:
    """A comparison's cell: "difference [interval] p" (`stats.diff_cell`), or the plain MAE
    difference against the student without teacher where no paired test could run."""
    result = getattr(r, f"vs_{test}")
    cell = "" if result is None else stats.diff_cell(result, getattr(r, f"p_{test}"))
    if not cell and test == "none" and r.diff == r.diff:
        cell = f"{r.diff:+.2f}"
    return cell


def distill_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The distill suite's table, `distill_numbers` formatted: per ratio, the student without
    teacher, the floors (teacher "(floor)"), and per teacher its oracle, each student variant
    (named: "output KD" where the teacher's forecast is the target) and its shuffled-teacher twin,
    with the teacher's data and own test MAE, the MAE (mean ± std over seeds), optimiser steps and
    convergence, the gate-open share, three comparisons as "difference [95 % interval] p" with p
    after Holm's correction within the ratio (* below 0.05): against the student without teacher,
    against the shuffled teacher, against the teacher's own forecast; the shares of the gap to the
    teacher and to the oracle closed, and in how many seeds the row beats the student without
    teacher of the same seed."""
    numbers = distill_numbers(df, history_dir)

    def num(x, fmt):
        return "" if x != x else f"{x:{fmt}}"
    return pd.DataFrame([{"ratio": f"{r.ratio:g}", "teacher": r.teacher, "teacher data": r.teacher_data,
                          "teacher MAE": num(r.teacher_mae, ".2f"), "what": r.name or r.kind,
                          "gate": r.gate, "target": r.target,
                          "lambda_tbl": num(r.lambda_tbl, "g"), "model": r.model, "seeds": r.seeds, "MAE": r.mae_cell,
                          "steps": r.steps, "converged": r.converged,
                          "gate open": num(r.gate_open, ".2f"), "vs no teacher": _test_cell(r, "none"),
                          "vs shuffled teacher": _test_cell(r, "shuffled"), "vs teacher": _test_cell(r, "teacher"),
                          "gap to teacher closed": _gap_cell(r),
                          "oracle gap closed": num(r.oracle_closed, ".0f") + (" %" if r.oracle_closed == r.oracle_closed
                                                                               else ""),
                          "better in seeds": f"{r.seeds_better}/{r.seeds_paired}" if r.seeds_paired else ""}
                         for r in numbers.itertuples()])


def seed_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """Each seed's difference against the student without teacher of the same seed (mean of the
    per-window MAE differences), one row per `distill_numbers` row with a comparison."""
    numbers = distill_numbers(df, history_dir)
    out = []
    for r in numbers.itertuples():
        if r.vs_none is None or not r.vs_none["seed_diffs"]:
            continue
        out.append({"ratio": f"{r.ratio:g}", "teacher": r.teacher, "what": r.name or r.kind,
                    "lambda_tbl": "" if r.lambda_tbl != r.lambda_tbl else f"{r.lambda_tbl:g}"}
                   | {f"seed {i}": f"{d:+.2f}" for i, d in enumerate(r.vs_none["seed_diffs"])})
    return pd.DataFrame(out).fillna("")


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
        text += f", better in {row['seeds_better']} of {count(row['seeds_paired'], 'seed')}"
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
                     f"by Holm over its {count(int(at['family'].iloc[0]), 'comparison')} (significant: "
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
        lines += steps_line(ok[~ok["config"].astype(str).str.contains('"oracle_of"')], ratio)   # an oracle trains on more data
    return lines + convergence_lines(ok)


def _distill_figure(df: pd.DataFrame, title: str = "", folder=None):
    """Per ratio, each row's test-MAE difference against the student without teacher as a dot
    with its 95 % interval (`bench.protocol.stats.two_level_test`; no bar where the history files
    are missing), on an axis of differences with 0 marked: the oracle and the floors in greys,
    each variant filled and its shuffled-teacher twin hollow; a * after a label where the
    difference is significant after Holm's correction."""
    import matplotlib.pyplot as plt
    numbers = distill_numbers(df, None if folder is None else folder / "history")
    numbers = numbers[numbers["kind"] != "baseline"] if len(numbers) else numbers
    ratios = sorted(numbers["ratio"].unique()) if len(numbers) else []
    units = units_of(df["dataset"].iloc[0])
    height = max(2.5, 0.32 * max((len(numbers[numbers["ratio"] == r]) for r in ratios), default=4) + 1.2)
    fig, axes = plt.subplots(1, max(1, len(ratios)), figsize=(7.5 * max(1, len(ratios)), height), squeeze=False)
    student = colour_of("flowdistill")
    colours = {"oracle": "0.15", "student": student, "shuffled": student}
    for ax, ratio in zip(axes[0], ratios):
        at = numbers[numbers["ratio"] == ratio].reset_index(drop=True)
        labels = []
        for y, r in enumerate(at.itertuples()):
            test = r.vs_none
            x = r.diff if test is None or test["diff"] != test["diff"] else test["diff"]
            colour = floor_style(r.model)[0] if r.kind == "floor" else colours[r.kind]
            if test is not None and test["lo"] == test["lo"]:
                ax.plot([test["lo"], test["hi"]], [y, y], c=colour, lw=1.5)
            ax.plot([x], [y], "x" if r.kind == "floor" else "o", ms=6, c=colour,
                    mfc="white" if r.kind == "shuffled" else colour)
            lam = f" lambda_tbl {r.lambda_tbl:g}" if r.lambda_tbl == r.lambda_tbl else ""
            what = r.model if r.kind == "floor" else (r.name or r.kind) + lam
            labels.append(what + (" *" if significant(r._asdict() | {"vs_none": test}, "none") else ""))
        ax.axvline(0, c="k", lw=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"test MAE against {DISTILL_BASELINE} ({units}; < 0: better)")
        ax.set_title(f"ratio {ratio:g}", fontsize=10)
        ax.grid(axis="x", lw=0.3)
    fig.suptitle("Distillation: each row against the student without teacher (95 % intervals; * Holm p < 0.05)",
                 fontsize=10)
    fig.tight_layout()
    return fig


register_suite(Suite(
    "distill", "Does the teacher transfer? Each teacher (" + ", ".join(DISTILL_TEACHERS) + ") x eq. 2's gate "
    "(batch, element) x target (truth, teacher: output KD) x lambda_tbl (0.1, 1), each with its shuffled-teacher "
    "twin, against flowdistill-wo-tb, the teacher's oracle and the floors, 5 seeds, with a test over seeds and "
    "day blocks of test windows, Holm-corrected per ratio (--teacher NAME: one teacher; quick: seasonal-naive-week)",
    ("flowdistill",), (0.1, 0.3), (0.1,), kind="distill", seeds=5,
    title="Distillation: does the teacher's forecast reach the student?", rank=70, in_all=True, plan=plan,
    tables=lambda df, folder: [("each row against flowdistill-wo-tb, its shuffled-teacher twin and its teacher: "
                                "difference [95 % interval] and p after Holm's correction within the ratio (* < 0.05); "
                                "test over seeds and day blocks of test windows", distill_frame(df, folder / "history")),
                               ("each seed's difference against flowdistill-wo-tb of the same seed",
                                seed_frame(df, folder / "history"))],
    figures=lambda df, title, folder=None: [("figure", _distill_figure(df, title, folder))], summary=distill_lines))
