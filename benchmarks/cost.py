"""The full preset's cost on paper: seconds per optimiser step of every model of the paper's comparison (the
data-scalability suite's models), measured, times the optimiser steps the paper's whole replication takes (its 7
ratios x every model x 3 seeds, plus the teachers' fits, plus a 7B teacher such as UrbanGPT's
Vicuna-7B estimated from FLOPs), in device-hours on 1 and wall hours on 8 devices.

    python -m benchmarks.cost                                  # on a GPU machine: every model, then the table
    python -m benchmarks.cost --device cpu --teacher-steps 5   # on this machine's CPU
    python -m benchmarks.cost --device cpu --steps 2 --teacher-steps 1 --teacher-layers 1 --nodes 8 \\
        --models flowdistill-wo-tb,flowdistill-teacher --json cost.json   # smoke run (seconds per step NOT real)

How, per model: `benchmarks.gpu.train_steps` (the GPU check's loop: the trial context of
`bench.execution.context.build_context`, the runner's batches and the model's own loss and batch size) runs
--steps + 1 optimiser steps on NYCTaxi at ratio 0.1 with the model's own full-preset config; a
global optimiser step hook timestamps the end of every step (after a CUDA synchronize on a GPU),
and seconds per step is the time between the end of the first step (warm-up: allocator, kernel
choice, tokenizer caches) and the end of the last, over --steps. The LLM teacher runs with every
block of its language model (keep_layers=0; --teacher-steps steps). Steps of one trial are an upper
bound: the model's own `max_epochs` (the full preset caps nothing; `bench.execution.train.fit` stops earlier
when early stopping fires) x steps per epoch (its training batches at that ratio, from the real
split of `bench.protocol.split.prepare`, extra datasets included: `bench.execution.context.extra_training_parts`).
Teachers are fitted once per ratio (seed 0, `bench.execution.teacher.teacher_spec`) on their own windows
(`bench.execution.teacher.teacher_training_windows`: by default the steps before the student's part). The
7B teacher: 6 x parameters x tokens per training sample x samples, with tokens per sample counted
by our teacher's own `build` and tokenizer on one real NYCTaxi window (every region, region chunks
as in training), at an H200's dense bf16 peak (989 TFLOP/s) and --mfu. Every assumption is printed
under the table and written to --json.

No typical (early-stopped) epoch count is given: nothing in the code records one. On a CPU the
hours are those of one process at torch's thread count; no GPU speed-up is assumed. Measure on a
machine nothing else loads: on 2 cores shared with another job, the same 8-region FlowDistill run
took 0.026 to 0.59 s per step.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from functools import lru_cache

import torch
from tabulate import tabulate
from torch.optim.optimizer import register_optimizer_step_post_hook

from bench.protocol import registry
from bench.execution.context import extra_training_parts, trial_data
from bench.protocol.split import MixedWindows, horizons, prepare
from bench.execution.spec import TrialSpec
from bench.suites import get_suite
from bench.execution.teacher import teacher_spec, teacher_training_windows
from bench.execution.train import resolve_device
from benchmarks.gpu import train_steps

DATASET = "NYCTaxi"
MEASURE_RATIO = 0.1
SEEDS = 3
LLM_TEACHER = "flowdistill-teacher"
H200_BF16_DENSE = 989e12       # FLOP/s, NVIDIA H200 SXM, bf16 tensor cores without sparsity
BIG_PARAMS = 6.74e9            # Vicuna-7B v1.5 (Llama 2 7B): parameters
DEVICES_WIDE = 8


def replication_ratios() -> tuple[float, ...]:
    """The paper's training ratios: those of the data-scalability suite (Table 3), 0.1 .. 0.7."""
    return tuple(get_suite("data-scalability").ratios)


def uses_lm(name: str) -> bool:
    """Does model `name` run a language model (the LLM teacher; not its -wo-lm variant)?"""
    return bool(getattr(registry.get(name).config(), "use_lm", False))


def measure_config(name: str, teacher_layers: int = 0) -> dict:
    """Config overrides a measurement uses: none, but `keep_layers` for a model with a language
    model (0: every block, as the GPU check and the full preset on CUDA)."""
    return {"keep_layers": teacher_layers} if uses_lm(name) else {}


def seconds_per_step(name: str, steps: int, device: torch.device, nodes: int | None = None,
                     config: dict | None = None) -> dict:
    """Seconds per optimiser step of `name` on NYCTaxi at ratio 0.1: `benchmarks.gpu.train_steps`
    runs `steps` + 1 steps; the first is warm-up, the time from its end to the last step's end is
    divided by `steps` (the median step is kept too: other jobs on the machine show up as a gap
    between the two). Returns a row: model, s/step, median, batch, params, peak MB, steps timed."""
    if steps < 1:
        raise ValueError("steps must be at least 1 (one more step runs as warm-up)")
    ends: list[float] = []

    def stamp(optimizer, args, kwargs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ends.append(time.perf_counter())
    hook = register_optimizer_step_post_hook(stamp)
    try:
        row = train_steps(name, steps + 1, device, nodes, config)
    finally:
        hook.remove()
    if row.get("off device"):
        raise RuntimeError(f"{name}: tensors off {device.type}: {'; '.join(row['_found'])}")
    gaps = sorted(b - a for a, b in zip(ends, ends[1:]))
    return {"model": name, "s_per_step": (ends[-1] - ends[0]) / (len(ends) - 1), "steps_timed": len(ends) - 1,
            "s_per_step_median": gaps[len(gaps) // 2],
            "batch": row["batch"], "params": row["params"], "peak_mb": row["peak MB"], "config": dict(config or {})}


@lru_cache(maxsize=None)
def _prepared(ratio: float):
    """(data, split, scaler, parts) of NYCTaxi (every region) at `ratio`, built once per ratio."""
    data = trial_data(TrialSpec(suite="cost", dataset=DATASET, model=LLM_TEACHER, ratio=ratio))
    split, scaler, parts = prepare(data, ratio)
    return data, split, scaler, parts


def _training_set(spec: TrialSpec, cfg, own):
    """`own` windows plus the extra datasets of the model's config, as a trial trains on them."""
    extras = extra_training_parts(spec, cfg)
    return MixedWindows(own, [windows for _, _, windows in extras]) if extras else own


def trial_steps(name: str, ratios, config: dict | None = None) -> dict[float, int]:
    """Upper bound of the optimiser steps of one full-preset trial of `name` per ratio: its own
    max_epochs (no early stopping) x steps per epoch over its training windows."""
    out = {}
    for ratio in ratios:
        spec = TrialSpec(suite="cost", dataset=DATASET, model=name, ratio=ratio, config=dict(config or {}))
        cfg = spec.model_config()
        train = _training_set(spec, cfg, _prepared(ratio)[3]["train"])
        out[ratio] = cfg.max_epochs * train.num_batches(cfg.batch_size)
    return out


def teacher_fit_steps(student: str, ratios) -> dict[float, int]:
    """Upper bound of the optimiser steps of the teacher fit a student of `student` triggers, per
    ratio: the teacher's max_epochs x steps per epoch over the windows it is fitted on (seed 0,
    teacher data as the runner's default: the steps before the student's part, plus its extras)."""
    out = {}
    for ratio in ratios:
        spec = teacher_spec(TrialSpec(suite="cost", dataset=DATASET, model=student, ratio=ratio),
                            registry.get(student).config().teacher)
        cfg = spec.model_config()
        data, split, scaler, parts = _prepared(ratio)
        own = teacher_training_windows(spec, data, split, scaler, parts["train"])
        out[ratio] = cfg.max_epochs * _training_set(spec, cfg, own).num_batches(cfg.batch_size)
    return out


def prompt_tokens(ratio: float = MEASURE_RATIO) -> list[int]:
    """Tokens of each sequence (one per chunk of `regions_per_sequence` regions) of the LLM
    teacher for the first training window of NYCTaxi (every region) at `ratio`: the teacher's own
    `Prompts` with its tokenizer (the language model's weights are not loaded)."""
    from models.flowdistill_teacher import Prompts
    cfg = registry.get(LLM_TEACHER).config()
    prompts = Prompts(_tokenizer(cfg), cfg)
    data, split, scaler, parts = _prepared(ratio)
    info = registry.ModelInfo.of(data, scaler, *horizons(data))
    start = int(parts["train"].batch([0])["start"][0])
    return [int(prompts.build(info, [start], [chunk]).shape[1]) for chunk in prompts.chunks(data.num_nodes)]


def _tokenizer(cfg):
    """The teacher's tokenizer with <ST_HIS> and <ST_PRE> added, as `language_model.load` gives it."""
    from transformers import AutoTokenizer
    from models import language_model
    source, gguf = language_model.resolve(cfg.lm, cfg.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf} if gguf else {}))
    tokenizer.add_special_tokens({"additional_special_tokens": list(language_model.SPECIAL_TOKENS)})
    return tokenizer


def big_teacher(fit_steps: dict[float, int], tokens: list[int], params: float = BIG_PARAMS,
                mfu: float = 0.35, peak: float = H200_BF16_DENSE) -> dict:
    """The 7B teacher's fits on paper: training FLOPs = 6 x params x tokens per training sample x
    samples, samples = optimiser steps x batch windows (the LLM teacher's config), a sample being
    one window's `train_chunks` region chunks (mean tokens of a chunk's sequence); seconds =
    FLOPs / (peak x mfu). Also the forward FLOPs of predicting every window once per fit (2 x
    params x tokens of every chunk), which the totals leave out."""
    cfg = registry.get(LLM_TEACHER).config()
    tokens_sample = sum(tokens) / len(tokens) * cfg.train_chunks
    lm_batch = cfg.lm_windows if cfg.lm_role == "residual" else cfg.batch_size
    samples = {r: s * lm_batch for r, s in fit_steps.items()}
    flops = {r: 6 * params * tokens_sample * n for r, n in samples.items()}
    windows = {r: sum(len(w) for w in _prepared(r)[3].values()) for r in fit_steps}
    predict = {r: 2 * params * sum(tokens) * n for r, n in windows.items()}
    hours = {r: f / (peak * mfu) / 3600 for r, f in flops.items()}
    return {"model": "7B teacher (Vicuna-7B, on paper)", "params": params, "tokens_per_chunk": tokens,
            "tokens_per_sample": tokens_sample, "batch": lm_batch, "steps": fit_steps, "samples": samples,
            "flops": flops, "total_flops": sum(flops.values()), "mfu": mfu, "peak_flops": peak, "fit_hours": hours,
            "device_hours": sum(hours.values()), "longest_hours": max(hours.values()),
            "predict_flops": sum(predict.values()), "predict_hours": sum(predict.values()) / (peak * mfu) / 3600}


def wide_hours(device_hours: float, longest: float, devices: int = DEVICES_WIDE) -> float:
    """Wall hours on `devices` devices: device-hours spread evenly, never below the longest single
    trial (a trial runs on one device)."""
    return max(device_hours / devices, longest)


def cost_row(measured: dict, steps: dict[float, int], runs: int, device: str) -> dict:
    """A table row: `runs` runs (seeds, or 1 fit) of every ratio of `steps` at the measured speed."""
    s = measured["s_per_step"]
    hours = s * sum(steps.values()) * runs / 3600
    longest = s * max(steps.values()) / 3600
    return {"model": measured["model"], "device": device, "s_per_step": s, "batch": measured["batch"],
            "steps_per_ratio": steps, "steps_all_ratios": sum(steps.values()), "runs_per_ratio": runs,
            "trials": runs * len(steps), "device_hours": hours, "longest_trial_hours": longest,
            f"wall_hours_{DEVICES_WIDE}": wide_hours(hours, longest)}


def teachers_of(names) -> dict[str, list[str]]:
    """{teacher: its students among `names`} for every teacher that trains, and the LLM teacher
    (FlowDistill's, the paper's) always, with `flowdistill` as its student when none is named."""
    out: dict[str, list[str]] = {}
    for name in names:
        teacher = registry.get(name).config().teacher
        if teacher and registry.trains(teacher):
            out.setdefault(teacher, []).append(name)
    out.setdefault(LLM_TEACHER, ["flowdistill"])
    return out


def measure_all(names, device: torch.device, steps: int, teacher_steps: int, nodes: int | None = None,
                teacher_layers: int = 0) -> tuple[dict, dict]:
    """({model: `seconds_per_step` row}, {model: error}) for every model of `names`, one after
    another; a model with a language model runs `teacher_steps` steps with `teacher_layers` blocks."""
    measured, failed = {}, {}
    for name in names:
        n = teacher_steps if uses_lm(name) else steps
        try:
            measured[name] = seconds_per_step(name, n, device, nodes, measure_config(name, teacher_layers))
            print(f"{name}: {measured[name]['s_per_step']:.3g} s/step over {n} steps (median "
                  f"{measured[name]['s_per_step_median']:.3g}) "
                  f"(batch {measured[name]['batch']})", flush=True)
        except Exception as exc:                                  # noqa: BLE001 - reported, the others go on
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
            print(f"{name}: FAILED {failed[name]}", flush=True)
    return measured, failed


def estimate(names, measured: dict, device: str, unit: str, seeds: int = SEEDS, big_params: float = BIG_PARAMS,
             mfu: float = 0.35) -> dict:
    """The cost of the replication from the measured seconds per step: rows per model (`seeds`
    trials per ratio), teacher fits (one per ratio), the 7B teacher on paper, and totals (on a
    CPU the 7B teacher's GPU-hours are not added to the measured CPU hours)."""
    ratios = replication_ratios()
    rows = [cost_row(measured[n], trial_steps(n, ratios), seeds, device) for n in names if n in measured]
    fits = [cost_row(measured[t], teacher_fit_steps(students[0], ratios), 1, device)
            | {"model": f"{t} (teacher fit)", "students": students}
            for t, students in teachers_of(names).items() if t in measured]
    big = big_teacher(teacher_fit_steps("flowdistill", ratios), prompt_tokens(), big_params, mfu)

    def total(part, parts, unit_=unit):
        hours = sum(r["device_hours"] for r in parts)
        longest = max([r["longest_trial_hours"] for r in parts] or [0.0])
        return {"part": part, "unit": unit_, "device_hours": hours, f"wall_hours_{DEVICES_WIDE}": wide_hours(hours, longest)}
    big_part = {"device_hours": big["device_hours"], "longest_trial_hours": big["longest_hours"]}
    totals = [total(f"models ({len(ratios)} ratios x {seeds} seeds)", rows),
              total("teacher fits (measured, 1 per ratio)", fits),
              total("measured part (models and teacher fits)", rows + fits),
              total("7B teacher fits (on paper)", [big_part], "H200 GPU-hours")]
    if device == "cuda":
        totals.append(total("whole replication, with the 7B teacher", rows + fits + [big_part], "GPU-hours"))
    return {"ratios": ratios, "seeds": seeds, "models": rows, "teachers": fits, "big_teacher": big, "totals": totals}


def assumptions(args, big: dict, unit: str) -> list[str]:
    """Every assumption behind the numbers, one sentence or two each (printed and in --json)."""
    threads = torch.get_num_threads()
    lines = [
        f"Seconds per step: {args.steps} timed optimiser steps per model ({args.teacher_steps} for the LLM teacher) "
        f"after one warm-up step, on NYCTaxi at ratio {MEASURE_RATIO:g}, with the model's full-preset config and "
        "batch size (the LLM teacher: " + ("every block" if not args.teacher_layers else f"{args.teacher_layers} "
                                          "block(s)") + " of SmolLM2-135M); benchmarks.gpu's loop, which skips "
        "weight decay and gradient clipping. A step is taken to cost the same at every ratio; the LLM teacher's "
        "steps on NYCBike1/NYCBike2 (fewer regions) are counted at NYCTaxi's cost.",
        "Steps per trial: UPPER BOUND, the model's max_epochs x ceil(training windows / batch) at each ratio (early "
        "stopping usually ends a trial earlier; no typical epoch count is recorded in the code). Device-hours = "
        "s/step x steps summed over the ratios x seeds / 3600.",
        "Not counted: validation after every epoch, test prediction, building the context, and each teacher's "
        f"prediction of every window (7B: {big['predict_flops']:.3g} FLOP, {big['predict_hours']:.2f} H200 hours "
        "at the same MFU).",
        "Teacher fits: one per ratio (seed 0), on the steps before the student's part plus the teacher's extra "
        "datasets (bench.execution.teacher's default), shared by every seed and student of that ratio.",
        f"7B teacher: 6 x {big['params']:.3g} parameters x {big['tokens_per_sample']:.0f} tokens per training sample "
        f"(one chunk of {registry.get(LLM_TEACHER).config().regions_per_sequence} regions of one window: "
        f"{'/'.join(map(str, big['tokens_per_chunk']))} tokens per chunk, counted with SmolLM2's tokenizer on a "
        f"real NYCTaxi window; Vicuna's tokenizer will differ a little) x samples (the LLM teacher's steps x its "
        f"batch of {big['batch']}); {big['peak_flops'] / 1e12:.0f} TFLOP/s (H200 bf16 dense) x MFU {big['mfu']:g}. "
        "6 x params counts full fine-tuning (LoRA needs about 4 x); attention's own FLOPs are left out.",
        f"Wall hours on {DEVICES_WIDE} devices: device-hours / {DEVICES_WIDE}, never below the longest single trial; "
        "teachers must finish before their students, which this ignores (a lower bound).",
    ]
    if unit != "GPU-hours":
        lines.append(f"Device CPU: hours are wall hours of one process at torch's {threads} threads ('{unit}'); "
                     f"{DEVICES_WIDE} devices = {DEVICES_WIDE} such processes. GPU figures are NOT measured and no GPU "
                     "speed-up is assumed; only the 7B teacher is in H200 GPU-hours, on paper, not added to CPU hours.")
    return lines


def _fmt(rows: list[dict], unit: str) -> list[dict]:
    return [{"model": r["model"], "device": r["device"], "s/step": f"{r['s_per_step']:.3g}",
             "steps, 7 ratios (upper bound)": f"{r['steps_all_ratios']:,}", "trials": r["trials"],
             f"{unit}, 1 device": f"{r['device_hours']:,.2f}",
             f"wall h, {DEVICES_WIDE} devices": f"{r[f'wall_hours_{DEVICES_WIDE}']:,.2f}"} for r in rows]


def print_report(doc: dict) -> None:
    """The model table, the teachers block, the totals and the assumptions of `estimate`'s `doc`."""
    unit, big, wide = doc["unit"], doc["big_teacher"], f"wall_hours_{DEVICES_WIDE}"
    print("\n" + tabulate(_fmt(doc["models"], unit), headers="keys", disable_numparse=True))
    big_row = {"model": big["model"], "device": "H200 (on paper)", "s/step": "-",
               "steps, 7 ratios (upper bound)": f"{sum(big['steps'].values()):,}", "trials": len(big["steps"]),
               f"{unit}, 1 device": f"{big['device_hours']:,.2f} GPU-h",
               f"wall h, {DEVICES_WIDE} devices": f"{wide_hours(big['device_hours'], big['longest_hours']):,.2f}"}
    print("\nteachers\n" + tabulate(_fmt(doc["teachers"], unit) + [big_row], headers="keys", disable_numparse=True))
    print("\ntotals\n" + tabulate([{"part": t["part"], "unit": t["unit"], "hours, 1 device": f"{t['device_hours']:,.2f}",
                                     f"wall h, {DEVICES_WIDE} devices": f"{t[wide]:,.2f}"} for t in doc["totals"]],
                                   headers="keys", disable_numparse=True))
    for name, error in doc["failed"].items():
        print(f"FAILED {name}: {error} (left out of the totals)")
    print("\nassumptions:\n" + "\n".join(f"- {a}" for a in doc["assumptions"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps per model, after one warm-up step "
                                                         "(default 20)")
    p.add_argument("--teacher-steps", type=int, default=10, help="timed steps of the LLM teacher (default 10)")
    p.add_argument("--teacher-layers", type=int, default=0,
                   help="LM blocks of the LLM teacher (0: all, default; anything else is a smoke run)")
    p.add_argument("--models", help="comma-separated models (default: the paper's comparison, the data-scalability "
                                    "suite's models); the "
                                    f"teachers they name and {LLM_TEACHER} are measured too")
    p.add_argument("--nodes", type=int, help="keep the first N regions while measuring (smoke runs: the seconds per "
                                             "step are then NOT the full dataset's)")
    p.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds per model and ratio (default {SEEDS})")
    p.add_argument("--mfu", type=float, default=0.35, help="the 7B teacher's model FLOP utilisation (default 0.35)")
    p.add_argument("--big-params", type=float, default=BIG_PARAMS, help="the 7B teacher's parameters (default 6.74e9)")
    p.add_argument("--json", help="also write everything to this JSON file")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    names = [n for n in (args.models.split(",") if args.models else get_suite("data-scalability").models)
             if registry.trains(n)]
    if device.type == "cuda":
        where, unit = torch.cuda.get_device_name(device), "GPU-hours"
    else:
        where, unit = "cpu", f"CPU-core-hours at {torch.get_num_threads()} threads"
    smoke = []
    if args.nodes:
        smoke.append(f"SMOKE RUN: measured on the first {args.nodes} regions only (--nodes {args.nodes}); the seconds "
                     "per step and every hour below are NOT those of the full NYCTaxi (200 regions)")
    if args.teacher_layers:
        smoke.append(f"SMOKE RUN: the LLM teacher kept {args.teacher_layers} block(s) of its language model "
                     "(--teacher-layers); its hours are NOT those of the full teacher")
    for line in smoke:
        print(f"!!! {line}", flush=True)
    print(f"device {where}, torch {torch.__version__}, {torch.get_num_threads()} threads; ratios "
          f"{', '.join(f'{r:g}' for r in replication_ratios())}, {args.seeds} seeds", flush=True)
    measured, failed = measure_all(list(dict.fromkeys(names + list(teachers_of(names)))), device, args.steps,
                                   args.teacher_steps, args.nodes, args.teacher_layers)
    doc = {"device": where, "unit": unit, "threads": torch.get_num_threads(), "nodes": args.nodes,
           "smoke": smoke, "measured": measured, "failed": failed} | estimate(names, measured, device.type, unit,
                                                                              args.seeds, args.big_params, args.mfu)
    doc["assumptions"] = smoke + assumptions(args, doc["big_teacher"], unit)
    print_report(doc)
    for line in smoke:
        print(f"!!! {line}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
