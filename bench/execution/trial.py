"""One trial = one (suite, dataset, model, ratio, seed): build its context, attach its teacher's
predictions, train, test, report rows.

`run_trial` is what every executor calls (Ray Tune worker or inline); it never raises for a
failing model: the failure becomes a row with status "error" so that a suite goes on.
"""
from __future__ import annotations

import time
import traceback

import numpy as np

from bench.execution import teacher as teacher_mod
from bench.execution.context import build_context, training_windows
from bench.protocol.metrics import score
from bench.execution.results import DISTILL_FIELDS, error_rows
from bench.execution.spec import TrialSpec
from bench.execution.train import fit, peak_memory_mb, predict, set_seed


def run_trial(spec: TrialSpec, progress=None) -> list[dict]:
    """Train and test one trial; returns one row per horizon ("all", 1..12) and per volume bucket
    (q1..q4, lowest volume first), or one error row.

    The first row also carries `history` (per-epoch training logs: loss terms, validation MAE and,
    for distilled students, `tbl_active`, the share of batches in which the teacher-bounded loss
    was active) or `traceback` for a failure; these stay out of trials.csv."""
    base = {"suite": spec.suite, "dataset": spec.dataset, "model": spec.model, "ratio": spec.ratio,
            "seed": spec.seed, "trial_id": spec.trial_id, "teacher": "", "config": spec.config_label(),
            "work_id": spec.work_id}
    try:
        cached = teacher_mod.rows_from_cache(spec)
        if cached is not None:
            return [base | row for row in cached]
        ctx = build_context(spec)
        cfg = ctx.cfg
        base["teacher"] = cfg.teacher or ""
        if cfg.teacher:
            ctx.teacher_meta = teacher_mod.attach(ctx.parts, teacher_mod.teacher_spec(spec, cfg.teacher),
                                                  shuffle_seed=spec.seed if cfg.teacher_shuffle else None)
        gen = set_seed(spec.seed)
        train = training_windows(ctx)
        result = fit(ctx.model, cfg, train, ctx.parts["val"], gen, spec.max_steps, progress,
                     spec.max_batches, device=ctx.device, fixed_rounds=spec.fixed_rounds)
        start = time.perf_counter()
        pred = predict(ctx.model, ctx.parts["test"], cfg.eval_batch_size, device=ctx.device)
        infer_s = time.perf_counter() - start
        extra = {"epochs": result.epochs, "train_s": round(result.train_s, 3), "infer_s": round(infer_s, 4),
                 "params": sum(p.numel() for p in ctx.model.parameters()), "peak_mem_mb": round(peak_memory_mb(), 1),
                 "status": "ok", "error": "", "device": ctx.device.type, "steps": result.steps,
                 "best_epoch": result.best_epoch, "converged": result.converged} | distill_fields(result.history,
                                                                                                  ctx.teacher_meta)
        rows = [base | row | extra for row in score(pred, ctx.parts["test"], ctx.data, ctx.split)]
        rows[0]["history"] = result.history
        if ctx.teacher_meta and ctx.teacher_meta.get("test_window_mae") is not None:
            rows[0]["teacher_window_mae"] = ctx.teacher_meta["test_window_mae"]
        if not all(np.isfinite([r["mae"], r["rmse"]]).all() for r in rows):
            for r in rows:
                r.update(status="error", error="non-finite test metric")
        return rows
    except Exception as exc:  # recorded, the suite goes on
        rows = error_rows(spec, f"{type(exc).__name__}: {exc}", base["teacher"])
        rows[0]["traceback"] = traceback.format_exc()[-2000:]
        return rows


def distill_fields(history: list[dict], teacher_meta: dict | None) -> dict:
    """DISTILL_FIELDS of a trial from its per-epoch logs and its teacher cache's meta (None: no
    teacher, every field empty but train_mae). gate_open is the mean over epochs of the per-epoch share."""
    last = history[-1] if history else {}
    train_mae = {"train_mae": round(last["mae"], 4) if "mae" in last else ""}
    if teacher_meta is None:
        return {k: "" for k in DISTILL_FIELDS} | train_mae
    shares = [h["tbl_active"] for h in history if "tbl_active" in h]
    return {"teacher_desc": teacher_meta.get("description", ""), "teacher_data": teacher_meta.get("teacher_data", ""),
            "teacher_mae": round(float(teacher_meta.get("test_mae", float("nan"))), 4),
            "gate_open": round(float(np.mean(shares)), 4) if shares else "",
            "teacher_train_mae": round(last["teacher_mae"], 4) if "teacher_mae" in last else ""} | train_mae
