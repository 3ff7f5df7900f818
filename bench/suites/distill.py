"""The distill suite: does the teacher's forecast reach the student? Each teacher x eq. 2's gate x
target x lambda_tbl against the student without teacher, with paired tests."""
from __future__ import annotations

import json

import pandas as pd

from bench.protocol import registry, stats
from bench.suites.base import REFERENCES, Suite, SuiteError, model_overrides, register_suite
from bench.suites.plots import units_of
from bench.suites.tables import ok_overall, seed_cell


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
    base_cfg = {k: v for k, v in model_overrides([DISTILL_BASELINE], None, settings)[DISTILL_BASELINE].items()
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
    """gate, target and lambda_tbl of a student's result row (its config over the model's defaults)."""
    cfg = registry.get(row["model"]).config(**(json.loads(row["config"]) if row["config"] else {}))
    return {"gate": cfg.tbl_gate, "target": cfg.tbl_target, "lambda_tbl": cfg.lambda_tbl}

def _values(rows: pd.DataFrame, column: str, leave=("",)) -> list[str]:
    """The distinct values of a text column but `leave`, sorted (none when the column is absent)."""
    return sorted(set(rows[column].fillna("").astype(str)) - set(leave)) if column in rows else []


def distill_numbers(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The distill suite's numbers, one row per ratio and entry: `kind` "baseline" (the student
    without teacher), "floor" (forecasts that need no training) or "student" (a variant: teacher,
    gate, target, lambda_tbl); `mae` (mean over seeds), `mae_cell` (mean ± std, marked when a seed
    did not converge), `seeds`, `teacher_mae` (the teacher's cache's test MAE), `gate_open` (share
    of gate-open elements over training), `diff` (against the student without teacher), `closed`
    (% of the gap between that student and a better teacher closed; NaN when the teacher is not
    better), `teacher_worse` (the teacher no better than that student), `p` (paired Wilcoxon over
    non-overlapping test windows of the seed-averaged errors, `bench.protocol.stats`; NaN without
    history files) and `seeds_better` of `seeds_paired`. Empty when no trial finished."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    nan = float("nan")
    rows = []
    for ratio, at in ok.groupby("ratio"):
        base = at[at["model"] == DISTILL_BASELINE]
        base_mae = base["mae"].mean() if len(base) else nan
        blank = {"ratio": ratio, "teacher": "", "teacher_data": "", "teacher_mae": nan, "gate": "", "target": "",
                 "lambda_tbl": nan, "gate_open": nan, "closed": nan, "teacher_worse": False, "p": nan,
                 "seeds_better": 0, "seeds_paired": 0}
        if len(base):
            rows.append(blank | {"kind": "baseline", "teacher": "(none)", "model": DISTILL_BASELINE, "seeds": len(base),
                                 "mae": base_mae, "mae_cell": seed_cell(base["mae"], base), "diff": nan})
        for ref in [r for r in REFERENCES if r in set(at["model"])]:
            own = at[at["model"] == ref]
            rows.append(blank | {"kind": "floor", "teacher": FLOOR_TEACHER, "model": ref, "seeds": len(own),
                                 "mae": own["mae"].mean(), "mae_cell": seed_cell(own["mae"], own),
                                 "diff": own["mae"].mean() - base_mae})
        students = at[at["teacher"].fillna("") != ""].copy()
        if students.empty:
            continue
        students = students.join(pd.DataFrame([_variant(r) for _, r in students.iterrows()], index=students.index))
        for (teacher, gate, target, lam, model), g in students.groupby(
                ["teacher", "gate", "target", "lambda_tbl", "model"], sort=True):
            t_mae = g["teacher_mae"].mean()             # the teacher these students read (its cache's test MAE)
            mae = g["mae"].mean()
            # the gap closed means something only when the teacher is better than the student without it
            closed = (base_mae - mae) / (base_mae - t_mae) * 100 if base_mae > t_mae else nan
            data = ", ".join(_values(g, "teacher_data"))
            desc = ", ".join(_values(g, "teacher_desc", ("", teacher)))
            rows.append({"ratio": ratio, "kind": "student", "teacher": f"{teacher} ({desc})" if desc else teacher,
                         "teacher_data": data or "-", "teacher_mae": t_mae, "gate": gate, "target": target,
                         "lambda_tbl": lam, "model": model, "seeds": len(g), "mae": mae,
                         "mae_cell": seed_cell(g["mae"], g), "gate_open": g["gate_open"].mean(),
                         "diff": mae - base_mae, "closed": closed, "teacher_worse": bool(t_mae >= base_mae),
                         "p": stats.compare(history_dir, g, base)["p"],
                         **_seed_wins(g, base)})
    return pd.DataFrame(rows)


def _seed_wins(student: pd.DataFrame, base: pd.DataFrame) -> dict:
    """`seeds_better` of `seeds_paired`: the seeds in which the student's test MAE is below that
    of the student without teacher of the same seed (the paired test averages the seeds first, so
    one poor seed of either side can carry it; this count shows whether the seeds agree)."""
    both = student[["seed", "mae"]].merge(base[["seed", "mae"]], on="seed", suffixes=("", "_base"))
    return {"seeds_better": int((both["mae"] < both["mae_base"]).sum()), "seeds_paired": len(both)}


def _gap_cell(r) -> str:
    """The "gap closed" cell of a `distill_numbers` row: "67 %", "no gap" where the teacher is not
    better than the student without teacher, or empty (no teacher, no baseline)."""
    if r.closed == r.closed:
        return f"{r.closed:.0f} %"
    return "no gap (teacher worse)" if r.teacher_worse else ""


def distill_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """The distill suite's table, `distill_numbers` formatted: per ratio, the student without
    teacher, the floors (teacher "(floor)"), and each student variant with its teacher, the
    teacher's data and own test MAE, the student's MAE (mean ± std over seeds), the gate-open
    share, the change against the student without teacher, the share of the gap to the teacher
    closed, the p-value of the paired test (empty without history files) and in how many seeds the
    student beats the student without teacher of the same seed."""
    numbers = distill_numbers(df, history_dir)

    def num(x, fmt):
        return "" if x != x else f"{x:{fmt}}"
    return pd.DataFrame([{"ratio": f"{r.ratio:g}", "teacher": r.teacher, "teacher data": r.teacher_data,
                          "teacher MAE": num(r.teacher_mae, ".2f"), "gate": r.gate, "target": r.target,
                          "lambda_tbl": num(r.lambda_tbl, "g"), "model": r.model, "seeds": r.seeds, "MAE": r.mae_cell,
                          "gate open": num(r.gate_open, ".2f"), "vs no teacher": num(r.diff, "+.2f"),
                          "gap closed": _gap_cell(r), "p": stats.p_label(r.p),
                          "better in seeds": f"{r.seeds_better}/{r.seeds_paired}" if r.seeds_paired else ""}
                         for r in numbers.itertuples()])


def _distill_figure(df: pd.DataFrame):
    """Per ratio: each student variant's test MAE (mean, one sd over seeds), one colour per
    teacher; the student without teacher (solid), each teacher's own MAE (dashed) and the floors
    (dotted) as lines."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    ok = ok_overall(df)
    units = units_of(df["dataset"].iloc[0])
    ratios = sorted(ok["ratio"].unique())
    fig, axes = plt.subplots(1, len(ratios), figsize=(6.5 * len(ratios), 4.6), squeeze=False)
    for ax, ratio in zip(axes[0], ratios):
        at = ok[ok["ratio"] == ratio]
        students = at[at["teacher"].fillna("") != ""].copy()
        if not students.empty:
            v = pd.DataFrame([_variant(r) for _, r in students.iterrows()], index=students.index)
            students["variant"] = v["gate"] + "/" + v["target"] + "/" + v["lambda_tbl"].map(lambda x: f"{x:g}")
            sns.barplot(data=students.sort_values("variant"), x="variant", y="mae", hue="teacher", errorbar="sd", ax=ax)
        base = at[at["model"] == DISTILL_BASELINE]["mae"]
        if len(base):
            ax.axhline(base.mean(), c="k", lw=1.2, label=f"{DISTILL_BASELINE} (no teacher)")
        for teacher in sorted(set(students.get("teacher", []))):
            own = students.loc[students["teacher"] == teacher, "teacher_mae"].dropna()
            if len(own):
                ax.axhline(own.mean(), c="0.4", ls="--", lw=1, label=f"teacher {teacher}")
        for ref, colour in zip(REFERENCES, ("tab:red", "tab:orange", "tab:purple")):
            floor = at.loc[at["model"] == ref, "mae"]
            if len(floor):
                ax.axhline(floor.mean(), c=colour, ls=":", lw=1.2, label=f"floor {ref}")
        ax.set_xlabel("gate / target / lambda_tbl")
        ax.set_ylabel(f"test MAE ({units})")
        ax.set_title(f"ratio {ratio:g}")
        ax.tick_params(axis="x", rotation=35)
        ax.legend(fontsize=7)
    fig.suptitle("Distillation: student variants against the student without teacher and the teacher")
    fig.tight_layout()
    return fig


register_suite(Suite(
    "distill", "Does the teacher transfer? Each teacher (" + ", ".join(DISTILL_TEACHERS) + ") x eq. 2's gate "
    "(batch, element) x target (truth, teacher) x lambda_tbl (0.1, 1) against flowdistill-wo-tb and the floors, 3 seeds, "
    "with a paired Wilcoxon test over test windows (--teacher NAME: one teacher; quick: seasonal-naive-week)",
    ("flowdistill",), (0.1, 0.3), (0.1,), kind="distill", seeds=5,
    title="Distillation: does the teacher's forecast reach the student?", rank=70, in_all=True, plan=plan,
    tables=lambda df, folder: [("each student variant against flowdistill-wo-tb (paired Wilcoxon over "
                                "non-overlapping test windows)", distill_frame(df, folder / "history"))],
    figures=lambda df, title: [("figure", _distill_figure(df))]))
