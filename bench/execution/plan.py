"""The plan of a run before it starts: which trials it holds, which are already finished in the
results folder (or running in another process), which teachers must be fitted first, and what it
will take on this machine.

The estimate of a trial is overhead + steps x seconds per step + epochs x seconds per validation:
- steps and epochs: an upper bound from the trial's own budget (its epoch cap x optimiser steps per
  epoch at its ratio, or its step budget); early stopping usually ends a trial sooner;
- seconds per step, per validation and the overhead (building the context, predicting the test
  set), and peak memory: measured once per (model, config, dataset, regions, threads, machine) by
  `calibrate` (a few optimiser steps on the real data) and cached in `COST_CACHE`.
Wall time divides the trials' sum by the executor's parallelism (inline: 1; Ray: one trial per CPU
core, each on one thread, as the runner places them).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.protocol import registry
from bench.protocol.split import split_for, window_starts, horizons
from bench.execution.spec import TrialSpec

COST_CACHE = Path(os.environ.get("BENCH_COST_CACHE") or
                  Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flowbench" / "step-costs.json")
LONG_RUN_S = 2 * 3600          # a run estimated longer than this on a machine without a GPU waits for --yes
CALIBRATION_STEPS = 3


@dataclass
class PlannedTrial:
    """One trial of a plan: its spec, role ("model" or "teacher"), status ("to run", "done",
    "running elsewhere"), step and epoch bounds, and its estimated seconds and peak memory (MB)."""

    spec: TrialSpec
    role: str
    status: str
    steps: int
    epochs: int
    seconds: float
    peak_mb: float


def budget(spec: TrialSpec) -> tuple[int, int]:
    """(optimiser steps, epochs) a trial can take at most: its epoch cap x steps per epoch at its
    ratio (its training windows, every `train_stride`-th, at most `max_train_windows`; at most
    `max_batches` a round), or its step budget; (0, 0) for a model that does not train."""
    from bench.execution.context import oracle_train_start, trial_data
    entry = registry.get(spec.model)
    if not entry.trains:
        return 0, 0
    cfg = spec.model_config()
    data = trial_data(spec)
    split = split_for(data, spec.ratio)
    if getattr(cfg, "oracle_of", None):
        split = dataclasses.replace(split, train_start=oracle_train_start(data, split, cfg.oracle_of,
                                                                          spec.teacher_data))
    if spec.suite == "teacher" and spec.teacher_data != "same":
        from bench.protocol.split import teacher_split
        split = teacher_split(split, spec.teacher_data)
    windows = len(window_starts(split, "train", *horizons(data), data.meta.get("sample_len")))
    windows = math.ceil(windows / (spec.train_stride or 1))
    windows = min(windows, spec.max_train_windows or windows)
    per_epoch = max(1, math.ceil(windows / cfg.batch_size))
    per_epoch = min(per_epoch, spec.max_batches or per_epoch)
    steps = per_epoch * cfg.max_epochs
    if spec.max_steps:
        steps = min(steps, spec.max_steps)
    return steps, max(1, math.ceil(steps / per_epoch))


def _cost_key(spec: TrialSpec, threads: int) -> str:
    ident = {"model": spec.model, "config": spec.config, "dataset": spec.dataset, "nodes": spec.num_nodes,
             "threads": threads, "machine": platform.processor() or platform.machine(), "device": spec.device,
             "val_windows": spec.max_val_windows}
    return json.dumps(ident, sort_keys=True, default=str)


def calibrate(spec: TrialSpec, threads: int, cache: Path | None = None) -> dict:
    """{"step_s", "val_s", "overhead_s", "peak_mb"} of a trial's model on this machine with
    `threads` torch threads: one warm-up and `CALIBRATION_STEPS` optimiser steps on its real
    training windows (a teacher's forecasts stand in as zeros: the loss costs the same), one
    validation and one test prediction. Cached in `cache` (JSON; default `COST_CACHE`) under the
    model, config, data and machine; a model that does not train costs its overhead only."""
    import torch

    from bench.execution.context import build_context, training_windows
    from bench.execution.train import peak_memory_mb, predict, resolve_device, set_seed, to_device, training_loss
    cache = Path(cache or COST_CACHE)
    key = _cost_key(spec, threads)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key in known:
        return known[key]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        ctx = build_context(dataclasses.replace(spec, checkpoint_root=None))
        train = training_windows(ctx)
        if ctx.cfg.teacher and hasattr(train, "attach_teacher"):
            shape = (len(train), train.h_out, ctx.data.num_nodes, ctx.data.num_channels)
            train.attach_teacher(np.zeros(shape, np.float32))
        device = resolve_device(spec.device)
        val = ctx.parts["val"].subset(ctx.cfg.val_windows)
        t0 = time.perf_counter()
        predict(ctx.model, ctx.parts["test"], ctx.cfg.eval_batch_size, device=device)
        overhead = (t0 - start) + (time.perf_counter() - t0)
        step_s = val_s = 0.0
        if getattr(ctx.model, "trainable", True):
            optim = torch.optim.Adam(ctx.model.parameters(), lr=ctx.cfg.lr)
            batches = train.batches(ctx.cfg.batch_size, shuffle=True, generator=set_seed(0))
            times = []
            for i, batch in zip(range(CALIBRATION_STEPS + 1), batches):
                t = time.perf_counter()
                loss, _ = training_loss(ctx.model, to_device(batch, device))
                optim.zero_grad()
                loss.backward()
                optim.step()
                if i:
                    times.append(time.perf_counter() - t)
            step_s = float(np.mean(times)) if times else 0.0
            t = time.perf_counter()
            predict(ctx.model, val, ctx.cfg.eval_batch_size, device=device)
            val_s = time.perf_counter() - t
        cost = {"step_s": step_s, "val_s": val_s, "overhead_s": overhead, "peak_mb": peak_memory_mb()}
    finally:
        torch.set_num_threads(before)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    known[key] = cost
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, cache)
    return cost


def make_plan(specs: list[TrialSpec], out: str | Path, executor: str, cache: Path | None = None) -> list[PlannedTrial]:
    """The plan of `specs` run into `out`: each trial's status, and for the ones to run (and the
    teachers they need fitted) their bounds and estimates (`budget`, `calibrate`)."""
    from bench.execution.results import finished_ids, trials_path
    from bench.execution.runner import teacher_specs, uncached
    threads = 1 if executor == "ray" else __import__("torch").get_num_threads()
    out = Path(out)
    planned = []
    if not specs:
        return planned
    path = trials_path(out, specs[0].suite)
    done = finished_ids(path)
    todo = [s for s in specs if s.trial_id not in done]
    teachers = uncached(teacher_specs(todo)) if todo else []
    for role, spec in [("teacher", t) for t in teachers] + [("model", s) for s in specs]:
        claimed = (path.parent / "claims" / f"{spec.trial_id}.claim").exists()
        status = "done" if spec.trial_id in done else ("running elsewhere" if claimed else "to run")
        if status != "to run":
            planned.append(PlannedTrial(spec, role, status, 0, 0, 0.0, 0.0))
            continue
        steps, epochs = budget(spec)
        try:
            cost = calibrate(spec, threads, cache)
            seconds = cost["overhead_s"] + steps * cost["step_s"] + epochs * cost["val_s"]
        except Exception:                            # a model that cannot be measured alone (its trial will say why)
            cost, seconds = {"peak_mb": float("nan")}, float("nan")
        planned.append(PlannedTrial(spec, role, status, steps, epochs, seconds, cost["peak_mb"]))
    return planned


def parallelism(executor: str) -> int:
    """Trials side by side: 1 inline, one per CPU core on a local Ray."""
    return 1 if executor == "inline" else max(1, os.cpu_count() or 1)


def summary(planned: list[PlannedTrial], executor: str) -> dict:
    """{"trials", "done", "elsewhere", "to_run", "teachers", "trial_s" (sum), "wall_s" (estimate),
    "peak_mb" (the largest trial's)} of a plan."""
    run = [p for p in planned if p.status == "to run"]
    total = float(np.nansum([p.seconds for p in run]))
    return {"trials": sum(p.role == "model" for p in planned), "done": sum(p.status == "done" for p in planned),
            "elsewhere": sum(p.status == "running elsewhere" for p in planned),
            "to_run": sum(p.role == "model" for p in run), "teachers": sum(p.role == "teacher" for p in run),
            "trial_s": total, "wall_s": total / min(parallelism(executor), max(1, len(run))),
            "peak_mb": float(np.nanmax([p.peak_mb for p in run])) if any(p.peak_mb == p.peak_mb for p in run) else 0.0,
            "unknown": sum(p.seconds != p.seconds for p in run)}


def plan_lines(planned: list[PlannedTrial], executor: str) -> list[str]:
    """The plan as text: one line per trial, then the totals and what the estimate means."""
    lines = []
    for p in planned:
        cfg = json.dumps(p.spec.config, sort_keys=True) if p.spec.config else ""
        what = f"{p.role:7s} {p.spec.model} ratio={p.spec.ratio:g} seed={p.spec.seed} {cfg}".rstrip()
        cost = (f"~{_duration(p.seconds)}, at most {p.steps} steps" if p.seconds == p.seconds else "not estimated") \
            if p.status == "to run" else ""
        lines.append(f"  {p.status:17s} {what}" + (f"  ({cost})" if cost else ""))
    s = summary(planned, executor)
    lines.append(f"{s['trials']} trials: {s['done']} done, {s['elsewhere']} running elsewhere, {s['to_run']} to run, "
                 f"{s['teachers']} teacher(s) to fit first; estimated {_duration(s['wall_s'])} of wall time "
                 f"({_duration(s['trial_s'])} of trial time, {parallelism(executor)} side by side, {executor}), "
                 f"peak memory about {s['peak_mb']:.0f} MB per trial. Estimates are upper bounds from each trial's "
                 f"budget (early stopping usually ends sooner) at per-step costs measured on this machine "
                 f"({COST_CACHE})." + (f" {s['unknown']} trial(s) could not be estimated." if s["unknown"] else ""))
    return lines


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
