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
        save_checkpoint(spec, ctx.model, ctx.scaler)
        start = time.perf_counter()
        pred = predict(ctx.model, ctx.parts["test"], cfg.eval_batch_size, device=ctx.device)
        infer_s = time.perf_counter() - start
        extra = {"epochs": result.epochs, "train_s": round(result.train_s, 3), "infer_s": round(infer_s, 4),
                 "params": sum(p.numel() for p in ctx.model.parameters()), "peak_mem_mb": round(peak_memory_mb(), 1),
                 "status": "ok", "error": "", "device": ctx.device.type, "steps": result.steps,
                 "best_epoch": result.best_epoch, "converged": result.converged,
                 "val_mae": round(result.best_val_mae, 6)} | distill_fields(result.history, ctx.teacher_meta)
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


def save_checkpoint(spec: TrialSpec, model, scaler) -> None:
    """Keep the trial's best weights (restored by `fit`) at `spec.checkpoint_path()`, with its spec
    and the scaler it was trained with (atomic write); nothing without a checkpoint root."""
    path = spec.checkpoint_path()
    if path is None:
        return
    import torch
    from bench.execution.results import atomic_write
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save({"spec": spec.to_dict(), "state": state,
                                               "scaler": {"mean": scaler.mean, "std": scaler.std}}, tmp))


def find_checkpoint(results, trial_id: str):
    """The kept weights of trial `trial_id` under the results folder `results`
    (RESULTS/SUITE/checkpoints/TRIAL_ID.pt), or None."""
    from pathlib import Path
    found = sorted(Path(results).glob(f"*/checkpoints/{trial_id}.pt"))
    return found[0] if found else None


def load_checkpoint(path, dataset: str | None = None, ratio: float | None = None, data_dir=None,
                    registry_file=None):
    """The trial context (`context.TrialContext`) of a trial's checkpoint on `dataset` and `ratio`
    (default: the trial's own; normalised by that split's training part), its model holding the
    kept weights. A reference forecaster (no weights to learn) observes its training windows again.

    Raises:
        FileNotFoundError: no such checkpoint; ValueError: weights that do not fit the model built for
            that dataset (e.g. another number of regions).
    """
    import dataclasses

    import torch
    saved = torch.load(path, weights_only=False)
    spec = TrialSpec(**saved["spec"])
    spec = dataclasses.replace(spec, dataset=dataset or spec.dataset, ratio=float(ratio or spec.ratio),
                               data_dir=data_dir or spec.data_dir, registry_file=registry_file or spec.registry_file,
                               checkpoint_root=None)
    ctx = build_context(spec)
    training_windows(ctx)                          # registers extra datasets with the model, as training did
    if getattr(ctx.model, "trainable", True):
        try:
            ctx.model.load_state_dict(saved["state"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: the weights of {spec.model} do not fit {spec.dataset} "
                             f"({str(exc).splitlines()[0][:200]}); evaluate on a dataset of the same shape") from exc
    else:
        fit(ctx.model, ctx.cfg, ctx.parts["train"], ctx.parts["val"], set_seed(spec.seed), device=ctx.device)
    return ctx


def evaluate_checkpoint(path, dataset: str | None = None, ratio: float | None = None, data_dir=None,
                        registry_file=None) -> list[dict]:
    """Score the weights of a trial's checkpoint again on the test windows of `dataset` and
    `ratio` (`load_checkpoint`): the metric rows of `bench.protocol.metrics.score` (for the trial's
    own data and ratio, its own rows).

    Raises:
        FileNotFoundError, ValueError: as `load_checkpoint`.
    """
    ctx = load_checkpoint(path, dataset, ratio, data_dir, registry_file)
    pred = predict(ctx.model, ctx.parts["test"], ctx.cfg.eval_batch_size, device=ctx.device)
    return score(pred, ctx.parts["test"], ctx.data, ctx.split)


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
