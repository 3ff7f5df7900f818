"""GPU check: every registered model trains a few hundred optimiser steps on the device, the LLM
teacher with all of its blocks, then one short suite run; fails loudly if a tensor stayed on the CPU.
On CUDA it then measures the deployable forms' latency (`benchmarks.latency` on the GPU: the student,
BigST and EasyST eager and torch.compile'd, the student's ONNX fp32 through onnxruntime's
CUDAExecutionProvider when installed; ONNX int8 is left out there, its dynamic int8 operators run
on the CPU only).

    python -m benchmarks.gpu                                  # on a GPU machine (about 8-12 minutes)
    python -m benchmarks.gpu --device cpu --steps 3 --nodes 8 --teacher-steps 2 --teacher-layers 1 --no-suite

Per model it prints optimiser steps per second, peak GPU memory (CUDA allocator; on the CPU: max
RSS), and the first and last training loss (the mean of the first and of the last 10 % of the
steps). Placement is checked, not assumed: every parameter and buffer must be on the device, and a
forward pre-hook on every submodule records any tensor argument that reaches it from elsewhere;
the batches come from the runner's own `bench.execution.train.to_device`. Distilled students get the truth
as their teacher's forecast, so their teacher term runs too. Exit status 1 lists the offenders.
Data: NYCTaxi at ratio 0.1 (FlowDistill's lowest ratio). No test depends on a GPU; a CPU test runs
this script with tiny settings.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.protocol import registry
from bench.execution.train import forward, resolve_device, set_seed, to_device, training_loss
from bench.execution.context import build_context
from bench.execution.spec import TrialSpec
from benchmarks import latency


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def watch_placement(model, device: torch.device) -> list[str]:
    """Offenders found so far: parameters and buffers off `device` now, and (filled in as the model
    runs) module inputs that arrive from another device."""
    found = [f"parameter/buffer {n} on {t.device}" for n, t in
             list(model.named_parameters()) + list(model.named_buffers()) if t.device.type != device.type]

    def hook(module, args, kwargs):
        for t in _tensors((args, kwargs)):
            if t.device.type != device.type and t.dim() > 0:
                found.append(f"input of {type(module).__name__} on {t.device} {tuple(t.shape)}")
    for module in model.modules():
        module.register_forward_pre_hook(hook, with_kwargs=True)
    return found


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_steps(name: str, steps: int, device: torch.device, nodes: int | None, config: dict | None = None) -> dict:
    """`steps` optimiser steps of `name` on NYCTaxi at ratio 0.1 on `device`: a row of the table."""
    config = dict(config or {})
    spec = TrialSpec(suite="gpu", dataset="NYCTaxi", model=name, ratio=0.1, num_nodes=nodes, config=config,
                     device=device.type)
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    train = parts["train"]
    if cfg.teacher:                                   # the truth as the teacher's forecast: the term runs
        train.attach_teacher(torch.cat([b["y"] for b in train.batches(512)]).numpy())
    model.to(device)
    found = watch_placement(model, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen, losses = set_seed(0), []
    model.train()
    start = time.perf_counter()
    while len(losses) < steps:
        for batch in train.batches(cfg.batch_size, shuffle=True, generator=gen):
            batch = to_device(batch, device)
            loss, _ = training_loss(model, batch)
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(loss.item())
            if len(losses) >= steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        model.eval()
        out = forward(model, to_device(parts["test"].batch([0, 1]), device))
    if out.device.type != device.type and not hasattr(model, "forward_batch"):
        found.append(f"output on {out.device}")
    k = max(1, steps // 10)
    return {"model": name, "steps": steps, "steps/s": round(steps / seconds, 2), "peak MB": round(peak_mb(device), 1),
            "first loss": round(sum(losses[:k]) / k, 3), "last loss": round(sum(losses[-k:]) / k, 3),
            "batch": cfg.batch_size, "params": sum(p.numel() for p in model.parameters()),
            "off device": len(found), "_found": found[:5]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of this script)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per model (default 300)")
    p.add_argument("--teacher-steps", type=int, default=200, help="steps of the LLM teacher (default 200)")
    p.add_argument("--teacher-layers", type=int, default=0, help="LM blocks kept (0: all, default)")
    p.add_argument("--nodes", type=int, help="keep the first N regions (smoke runs)")
    p.add_argument("--models", help="comma-separated models (default: every registered model that trains)")
    p.add_argument("--no-suite", action="store_true", help="skip the `bench run` at the end")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=None,
                   help="measure the deployable forms' latency on the device (default: on CUDA only)")
    p.add_argument("--latency-requests", type=int, default=1000, help="timed requests at batch 1 (default 1000)")
    p.add_argument("--latency-forms", default=",".join(latency.FORMS), help="forms timed (default all)")
    p.add_argument("--latency-out", help="also write latency.csv and latency.png to this folder (one of its own: "
                   "the CPU run's table in results/scalability is another)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    names = [n for n in (args.models.split(",") if args.models else registry.names()) if registry.trains(n)]
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}",
          flush=True)
    rows = []
    for name in names:
        teacher = name.startswith("flowdistill-teacher")
        config = {"keep_layers": args.teacher_layers} if teacher and registry.get(name).config().use_lm else {}
        try:
            rows.append(train_steps(name, args.teacher_steps if teacher else args.steps, device, args.nodes, config))
        except Exception as exc:                                  # noqa: BLE001 - reported, the check goes on
            rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:200], "off device": 1, "_found": []})
        print(tabulate([{k: v for k, v in rows[-1].items() if not k.startswith("_")}], headers="keys"), flush=True)
    print("\n" + tabulate([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], headers="keys"))
    bad = [r for r in rows if r.get("off device")]
    suite_rc = 0
    if not args.no_suite:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "bench.cli", "run", "--suite", "data-efficiency", "--ratios", "0.1",
                   "--epochs", "2", "--device", args.device, "--out", out]
            if args.nodes:
                cmd += ["--nodes", str(args.nodes)]
            print("\n+ " + " ".join(cmd[2:]), flush=True)
            t0 = time.perf_counter()
            suite_rc = subprocess.run(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode
            print(f"suite: exit {suite_rc} in {time.perf_counter() - t0:.0f} s")
    if args.latency if args.latency is not None else device.type == "cuda":
        table = latency.measure(latency.MODELS, args.latency_forms.split(","), (torch.get_num_threads(),),
                                requests=args.latency_requests, nodes=args.nodes, device=args.device,
                                log=lambda line: print(line, flush=True))
        print("\nlatency of the deployable forms on " + ("the GPU" if device.type == "cuda" else "the CPU") + "\n"
              + latency.show(table))
        if args.latency_out:
            print("wrote " + ", ".join(str(p) for p in latency.write(table, Path(args.latency_out))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    for r in bad:
        print(f"FAIL {r['model']}: {r.get('error') or '; '.join(r['_found'])}", file=sys.stderr)
    return 1 if bad or suite_rc else 0


if __name__ == "__main__":
    sys.exit(main())
