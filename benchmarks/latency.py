"""Latency of deployable forms, side by side in one run (never asserted in tests).

    python -m benchmarks.latency [--quick] [--threads 1,2] [--requests 1000] [--out DIR]
                                 [--results OUT --trial ID] [--models ...] [--forms ...] [--batches 1,32,256]

Every model runs its inference graph (`bench.execution.export.inference_graph`: the FlowDistill
student's Z = mu alone, no dropout; BigST and EasyST as they are in eval mode), in fp32 unless said,
in each form that can be built here, the same forms for every model:
- eager: PyTorch under torch.inference_mode;
- compiled: torch.compile (inductor, default mode, one compile per batch size and thread count,
  warmed before timing);
- onnx-fp32, onnx-int8: the graph exported by `bench.execution.export` (checked against PyTorch on
  every test window) and run by onnxruntime (int8: dynamic quantisation of the weights); a model
  whose graph does not export (BigST: its forward reads a tensor as a Python number) is listed as
  left out with the reason.
Inputs are real test windows (NYCTaxi by default, ratio 0.5 as RQ5, or the trial's own data).
At batch 1, each of `--requests` single-window requests is timed (p50, p99 in ms); at larger
batches, max(10, requests / batch) batches are timed (p50, p99 ms per batch); windows/s = batch /
median seconds per call. torch uses `--threads` threads (torch.set_num_threads) and onnxruntime as
many intra-op threads. FLOPs per window: torch.utils.flop_counter.FlopCounterMode on one eager
batch. Without --trial the models are untrained (cost does not depend on the weights); with
--results OUT --trial ID the student is that trial's kept weights and each of its forms gets its
test MAE.

Writes DIR/latency.csv and DIR/latency.png (default results/scalability: `bench report` puts them in
the scalability section, RQ5), appends its command line to DIR/commands.log, and prints the table and
the verdict against the targets.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode

from bench.execution import export
from bench.execution.context import build_context
from bench.execution.spec import TrialSpec
from bench.execution.train import resolve_device
from bench.protocol.data import DEFAULT_DATASET
from bench.protocol.errors import BenchError
from bench.suites.scalability import LATENCY_CSV, LATENCY_FIELDS, latency_figure, latency_verdict

MODELS = ("flowdistill", "bigst", "easyst")
FORMS = ("eager", "compiled", "onnx-fp32", "onnx-int8")
WARMUP = 5
MIN_BATCHES = 10


def parse_ints(text: str) -> list[int]:
    """"1,2" -> [1, 2]; each a positive integer."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated positive integers, e.g. 1,2")
    return values


def contexts(models, dataset: str, nodes: int | None, results=None, trial: str | None = None) -> dict:
    """{model: TrialContext} on the CPU, the student first: with `trial`, the student (the first
    FlowDistill model of `models`) is that trial's model with its kept weights, and the other models
    are built on its data and ratio; else every model untrained (seed 0) on `dataset` at ratio 0.5.

    Raises:
        ExportError: no such trial (`bench.execution.export.checkpoint_of`).
    """
    from bench.execution.trial import load_checkpoint
    student = next((m for m in models if m.startswith("flowdistill")), None)
    out = {}
    if trial:
        ctx = load_checkpoint(export.checkpoint_of(Path(results), trial))
        out[ctx.spec.model] = ctx
        base = dataclasses.replace(ctx.spec, suite="latency", device="cpu", checkpoint_root=None)
        models = [m for m in models if m != student]
    else:
        base = TrialSpec(suite="latency", dataset=dataset, model=models[0], ratio=0.5, num_nodes=nodes, device="cpu")
    for name in models:
        out[name] = build_context(dataclasses.replace(base, model=name, config={}))
    for ctx in out.values():
        ctx.model.cpu().eval()
    return out


def inputs(ctx, batch: int, count: int, device: torch.device) -> list[tuple]:
    """`count` (x, tod, dow) batches of `batch` consecutive test windows (cycling), on `device`."""
    test = ctx.parts["test"]
    out = []
    for i in range(count):
        b = test.batch(torch.arange(i * batch, (i + 1) * batch) % len(test))
        out.append(tuple(b[k].to(device) for k in ("x", "tod", "dow")))
    return out


def flops_per_window(graph, batch: tuple) -> float:
    """FLOPs of one eager forward of `batch` divided by its windows (FlopCounterMode)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        graph(*batch)
    return counter.get_total_flops() / len(batch[0])


def time_calls(run, batches: list[tuple], calls: int, sync) -> np.ndarray:
    """Seconds of each of `calls` calls run(*batch) (cycling over `batches`), after WARMUP calls;
    `sync()` after each (CUDA: synchronise); the garbage collector paused while timing."""
    for i in range(WARMUP):
        run(*batches[i % len(batches)])
    sync()
    times = np.empty(calls)
    gc.disable()
    try:
        for i in range(calls):
            args = batches[i % len(batches)]
            start = time.perf_counter()
            run(*args)
            sync()
            times[i] = time.perf_counter() - start
    finally:
        gc.enable()
    return times


def build_forms(name: str, ctx, forms, folder: Path, device: torch.device):
    """({form: (make(threads) -> run(x, tod, dow), test MAE or None)}, [(form, why left out)], the
    inference graph on `device`).

    ONNX files are exported once (`bench.execution.export.export_model`, on the CPU: the fp32 file
    is checked against PyTorch on every test window); each thread count opens its own session."""
    graph = export.inference_graph(ctx.model.cpu().eval())
    built, left = {}, []
    mae = {}
    onnx_forms = [f for f in forms if f.startswith("onnx")]
    if onnx_forms:
        try:
            rows = export.export_model(graph, ctx.model, ctx, folder, name, "onnx", int8="onnx-int8" in forms)
            files = {r["form"].replace(" ", "-"): (Path(r["file"]), r["mae"]) for r in rows if r["file"]}
            mae["eager"] = rows[0]["mae"]
        except export.ExportError as exc:
            files = {}
            left += [(f, str(exc)) for f in onnx_forms]
        providers = ["CUDAExecutionProvider"] if device.type == "cuda" else None
        for form, (path, form_mae) in files.items():
            if device.type == "cuda" and (form == "onnx-int8" or not _cuda_onnx()):
                left.append((form, "onnxruntime's dynamic int8 operators run on the CPU only" if form == "onnx-int8"
                             else "onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"))
                continue
            built[form] = (lambda threads, p=path: export.OnnxModel(p, threads, providers), form_mae)
    graph = graph.to(device)
    if "eager" in forms:
        built["eager"] = (lambda threads: graph, mae.get("eager"))
    if "compiled" in forms:
        def compiled(threads):
            torch._dynamo.reset()                     # inductor's kernels are built for the thread count in force
            return torch.compile(graph, dynamic=False)
        built["compiled"] = (compiled, None)
    order = [f for f in forms if f in built]
    return {f: built[f] for f in order}, left, graph


def _cuda_onnx() -> bool:
    import onnxruntime as ort
    return "CUDAExecutionProvider" in ort.get_available_providers()


def measure(models=MODELS, forms=FORMS, threads=(1, 2), batches=(1, 32, 256), requests: int = 1000,
            dataset: str = DEFAULT_DATASET, nodes: int | None = None, results=None, trial: str | None = None,
            device: str = "cpu", log=print) -> pd.DataFrame:
    """The rows of LATENCY_FIELDS: one per model, form, thread count and batch (status "ok"), and
    one per form left out (status "left out", the reason in `note`).

    Raises:
        ExportError: --trial names no trial with weights or a recorded spec; DeviceError: cuda without CUDA.
    """
    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    ctxs = contexts(models, dataset, nodes, results, trial)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for name, ctx in ctxs.items():
            built, left, graph = build_forms(name, ctx, forms, Path(tmp), dev)
            trained = bool(trial) and name == next(iter(ctxs))
            rows += [{"model": name, "form": f, "device": device_name, "status": "left out", "note": why}
                     for f, why in left]
            feeds = {b: inputs(ctx, b, 1 if b > 1 else min(64, len(ctx.parts["test"])), dev) for b in batches}
            mflop = flops_per_window(graph, inputs(ctx, min(32, max(batches)), 1, dev)[0]) / 1e6
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                for form, (make, mae) in built.items():
                    run = make(n_threads)
                    for b in batches:
                        calls = requests if b == 1 else max(MIN_BATCHES, requests // b)
                        try:
                            with torch.inference_mode():
                                seconds = time_calls(run, feeds[b], calls, sync)
                        except Exception as exc:      # noqa: BLE001 - a form this machine cannot run (no compiler)
                            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
                            rows.append({"model": name, "form": form, "device": device_name, "threads": n_threads,
                                         "batch": b, "status": "left out", "note": why})
                            log(f"{name} {form}: left out ({why})")
                            break
                        med = float(np.median(seconds))
                        rows.append({"model": name, "form": form, "device": device_name, "threads": n_threads,
                                     "batch": b, "p50_ms": med * 1e3, "p99_ms": float(np.percentile(seconds, 99)) * 1e3,
                                     "windows_s": b / med, "mflop_window": mflop,
                                     "mae": mae if trained else None,
                                     "timed": calls, "status": "ok", "note": ""})
                        log(f"{name:12s} {form:10s} threads {n_threads} batch {b:4d}: p50 {med * 1e3:8.3f} ms, "
                            f"{b / med:10,.0f} windows/s")
    return pd.DataFrame(rows, columns=LATENCY_FIELDS).astype({"threads": "Int64", "batch": "Int64", "timed": "Int64"})


def show(df: pd.DataFrame) -> str:
    """The table as text: model, form, threads, batch, p50 ms, p99 ms, windows/s, MFLOP/window, MAE."""
    ok = df[df["status"] == "ok"]
    table = [[r.model, r.form, r.device, r.threads, r.batch, f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}", f"{r.windows_s:,.0f}",
              f"{r.mflop_window:.3g}", "" if pd.isna(r.mae) else f"{r.mae:.4f}"] for r in ok.itertuples()]
    text = tabulate(table, headers=["model", "form", "device", "threads", "batch", "p50 ms", "p99 ms", "windows/s",
                                    "MFLOP/window", "test MAE"], disable_numparse=True)
    left = df[df["status"] != "ok"]
    if len(left):
        text += "\nleft out:\n" + "\n".join(f"  {r.model} {r.form}: {r.note}" for r in left.itertuples())
    return text


def write(df: pd.DataFrame, out: Path) -> list[Path]:
    """OUT/latency.csv and OUT/latency.png (atomic CSV)."""
    from bench.execution.results import atomic_write
    out.mkdir(parents=True, exist_ok=True)
    csv = out / LATENCY_CSV
    atomic_write(csv, lambda tmp: df.to_csv(tmp, index=False))
    paths = [csv]
    if (df["status"] == "ok").any():
        import matplotlib
        matplotlib.use("Agg")
        fig = latency_figure(df)
        fig.savefig(out / "latency.png", dpi=130, bbox_inches="tight")
        paths.append(out / "latency.png")
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 requests at batch 1 (default 1000)")
    p.add_argument("--threads", type=parse_ints, default=[1, 2], help="thread counts (default 1,2)")
    p.add_argument("--requests", type=int, help="timed requests at batch 1 (default 1000; --quick 200)")
    p.add_argument("--batches", type=parse_ints, default=[1, 32, 256], help="batch sizes (default 1,32,256)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    p.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated of {', '.join(FORMS)} (default all)")
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--nodes", type=int, help="the first N regions only (smoke runs)")
    p.add_argument("--results", help="results folder of --trial")
    p.add_argument("--trial", help="a trained student's trial_id: its weights, and the test MAE of each form")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default="results/scalability", help="folder of latency.csv and latency.png (default "
                   "results/scalability, where `bench report --results results` finds them)")
    args = p.parse_args(argv)
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    unknown = sorted(set(forms) - set(FORMS))
    if unknown or (args.trial and not args.results):
        p.error(f"unknown form(s) {unknown}; use {', '.join(FORMS)}" if unknown else "--trial needs --results")
    requests = args.requests or (200 if args.quick else 1000)
    print(f"torch {torch.__version__}, device {args.device}, threads {args.threads}, batches {args.batches}, "
          f"{requests} requests at batch 1", flush=True)
    try:
        df = measure([m.strip() for m in args.models.split(",") if m.strip()], forms, args.threads, args.batches,
                     requests, args.dataset, args.nodes, args.results, args.trial, args.device,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"benchmarks.latency: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + show(df))
    print("\n" + "\n".join(latency_verdict(df)))
    print("\nwrote " + ", ".join(str(p) for p in write(df, Path(args.out))))
    with (Path(args.out) / "commands.log").open("a") as log:        # the report lists it under the section
        log.write(f"{datetime.datetime.now().isoformat(timespec='seconds')}  "
                  f"{shlex.join(['python', '-m', 'benchmarks.latency'] + list(sys.argv[1:] if argv is None else argv))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
