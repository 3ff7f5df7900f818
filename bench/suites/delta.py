"""The distill-delta suite: can eq. 2 as printed do anything on this data? FlowDistill's batch gate
with the truth as target, across delta values where the gate can switch, against the student
without teacher, with the share of training elements where the gate was open."""
from __future__ import annotations

import json

import pandas as pd

from bench.protocol import registry, stats
from bench.suites.base import REFERENCES, Suite, model_overrides, register_suite
from bench.suites.tables import ok_overall, seed_cell

# delta in the data's units (trips per region per step on NYCTaxi): the paper's 10 and values at the
# scale of the measured gaps between teacher and student (about 1-2 at ratio 0.1)
DELTAS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
GATE = {"tbl_gate": "batch", "tbl_target": "truth", "lambda_tbl": 1.0}
BASELINE = "flowdistill-wo-tb"
TEACHER = "seasonal-naive-week"


def delta_plan(suite, models, preset, teacher, settings) -> list[tuple]:
    """The student without teacher, the floors (one seed), and each student with eq. 2 as printed
    (batch gate, truth target, lambda_tbl 1: `GATE`, each overridable with --set) at each delta of
    `DELTAS`, reading `teacher` (default seasonal-naive-week, no fit)."""
    settings = dict(settings or {})
    plan = [(BASELINE, {}, {}, None)] + [(ref, {}, {}, 1) for ref in REFERENCES]
    t_config: dict[str, dict] = {}
    fixed = {k: settings.pop(k) for k in list(settings) if k in GATE}
    for m in models:
        base = model_overrides([m], teacher or TEACHER, settings, t_config)[m]
        default = registry.get(m).config()
        for delta in DELTAS:
            cfg = base | {k: type(getattr(default, k))(fixed.get(k, v)) for k, v in GATE.items()} | {"delta": delta}
            cfg = {k: v for k, v in cfg.items() if k == "teacher" or getattr(default, k) != v}
            plan.append((m, cfg, t_config.get(m, {}), None))
    return plan


def delta_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """Per ratio: the student without teacher, the floors, and each delta's student: MAE (mean ±
    std over seeds), the share of unmasked training elements where the gate was open, the
    teacher's test MAE, and the difference against the student without teacher with its 95 %
    interval and p (paired test over seeds and day blocks of test windows, Holm-adjusted within
    the ratio, * < 0.05)."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    rows = []
    for ratio, at in ok.groupby("ratio"):
        base = at[at["model"] == BASELINE]
        entries = [("no teacher", base)] + [(f"floor {r}", at[at["model"] == r]) for r in REFERENCES
                                            if (at["model"] == r).any()]
        students = at[at["teacher"].fillna("") != ""]
        deltas = {}
        for _, r in students.iterrows():
            cfg = registry.get(r["model"]).config(**(json.loads(r["config"]) if r["config"] else {}))
            deltas.setdefault(float(cfg.delta), []).append(r.name)
        entries += [(f"delta {d:g}", students.loc[idx]) for d, idx in sorted(deltas.items())]
        tests = [stats.compare(history_dir, g, base) if label != "no teacher" and len(base) else None
                 for label, g in entries]
        adjusted = iter(stats.holm([t["p"] for t in tests if t is not None]))
        for (label, g), test in zip(entries, tests):
            rows.append({"ratio": f"{ratio:g}", "row": label, "seeds": len(g), "MAE": seed_cell(g["mae"], g),
                         "gate open": f"{g['gate_open'].mean():.2f}" if g["gate_open"].notna().any() else "",
                         "teacher MAE": f"{g['teacher_mae'].mean():.2f}" if g["teacher_mae"].notna().any() else "",
                         "vs no teacher": "" if test is None else stats.diff_cell(test, next(adjusted))})
    return pd.DataFrame(rows)


register_suite(Suite(
    "distill-delta", "Can eq. 2 as printed do anything? The batch gate with the truth as target (lambda_tbl 1) at "
    "delta " + ", ".join(f"{d:g}" for d in DELTAS) + " against flowdistill-wo-tb at ratio 0.1, with the share of "
    "training elements where the gate was open (teacher: seasonal-naive-week unless --teacher; 5 seeds, quick: 2)",
    ("flowdistill",), (0.1,), (0.1,), kind="distill-delta", seeds=5, quick_seeds=2,
    title="Eq. 2's delta: where the gate switches", rank=72, in_all=False, plan=delta_plan,
    tables=lambda df, folder: [("each delta against flowdistill-wo-tb: MAE difference [95 % interval], p of the paired "
                                "test over seeds and day blocks of test windows, Holm-adjusted per ratio (* < 0.05)",
                                delta_frame(df, folder / "history"))]))
