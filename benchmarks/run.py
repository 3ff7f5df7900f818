"""FlowBench performance figures, measured side by side in one process run (never asserted in tests).

    python -m benchmarks.run [--dataset NYCTaxi] [--ratio 0.4] [--batch 64] [--repeats 5] [--teacher-set K=V]

Prints:
1. inference: latency per batch and throughput (windows/s) of every registered model on the same
   test windows, relative to the fastest; the FlowDistill student's achieved FLOP/s (counted by
   torch's FlopCounterMode) against a plain matmul of the student's largest layer shape;
2. data pipeline: training windows per second gathered by the loader; bytes held by the three
   window sets against the raw series (windows are index views, so this stays near 2x: one raw
   and one normalised copy); peak RSS growth of one training epoch;
3. harness overhead: one trial of a trivial model through the runner (inline) against the same
   training loop called directly;
4. the LLM teacher's training and prediction throughput in region-windows per second, on the
   device it runs on (CUDA when present, else CPU).
"""
from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from dataclasses import dataclass

import torch
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode

from bench.execution.train import forward, training_loss
from bench.protocol import registry
from bench.protocol.data import DEFAULT_DATASET, load_dataset
from bench.protocol.split import H_IN, H_OUT, prepare
from bench.protocol.registry import ModelInfo, TrainConfig, register


def _timed(fn, repeats: int) -> float:
    """Median wall seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def inference(data, ratio: float, batch_size: int, repeats: int) -> None:
    split, scaler, parts = prepare(data, ratio)
    info = ModelInfo.of(data, scaler, H_IN, H_OUT)        # with the dataset's meta: its grid, for grid models
    batch = parts["test"].batch(torch.arange(min(batch_size, len(parts["test"]))))
    rows, left_out = [], []
    for name in registry.names():
        entry = registry.get(name)
        if entry.overrides or entry.cls is Trivial or hasattr(entry.cls, "forward_batch"):
            continue    # ablation variants share their parent's network; the LLM teacher is section 4
        if entry.needs_grid and not (data.meta.get("grid") and data.num_nodes == math.prod(data.meta["grid"])):
            left_out.append(f"{name} (a grid model: {data.name} at N={data.num_nodes} has no whole grid)")
            continue
        model = entry.cls(entry.config(), info).eval()
        with torch.no_grad():
            sec = _timed(lambda: model(batch["x"], batch["tod"], batch["dow"]), repeats)
        rows.append([name, sum(p.numel() for p in model.parameters()), sec * 1e3, len(batch["x"]) / sec])
    fastest = min(r[2] for r in rows)
    rows = [r + [r[2] / fastest] for r in rows]
    print(f"\n1. inference on {len(batch['x'])} test windows of {data.name} (N={data.num_nodes}), "
          f"{torch.get_num_threads()} thread(s)")
    print(tabulate(rows, headers=["model", "params", "ms/batch", "windows/s", "x fastest"], floatfmt=".1f"))
    if left_out:
        print("   left out: " + "; ".join(left_out))

    student = registry.get("flowdistill")
    model = student.cls(student.config(), info).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch["x"], batch["tod"], batch["dow"])
    flops = counter.get_total_flops()
    with torch.no_grad():
        sec = _timed(lambda: model(batch["x"], batch["tod"], batch["dow"]), repeats)
    rows_n, hidden = len(batch["x"]) * data.num_nodes, model.embedding.out_dim
    a, w = torch.randn(rows_n, hidden), torch.randn(hidden, hidden)
    mm_sec = _timed(lambda: a @ w, repeats)
    mm_flops = 2 * rows_n * hidden * hidden
    print(f"\n   flowdistill forward: {flops / 1e9:.2f} GFLOP in {sec * 1e3:.1f} ms = {flops / sec / 1e9:.1f} GFLOP/s; "
          f"plain matmul [{rows_n} x {hidden}] @ [{hidden} x {hidden}]: {mm_flops / mm_sec / 1e9:.1f} GFLOP/s "
          f"(student at {flops / sec / (mm_flops / mm_sec):.0%} of it)")


def data_pipeline(data, ratio: float, repeats: int) -> None:
    split, scaler, parts = prepare(data, ratio)
    train = parts["train"]
    n = len(train)
    sec = _timed(lambda: [None for _ in train.batches(80, shuffle=True)], repeats)
    raw = data.flow.nbytes
    tensors = {id(t): t.nbytes for w in parts.values() for t in (w.flow, w.flow_norm, w.tod, w.dow)}
    held = sum(tensors.values()) + sum(w.starts.nbytes for w in parts.values())
    print(f"\n2. data pipeline ({data.name}, ratio {ratio}): {n / sec:,.0f} training windows/s "
          f"({n} windows, batch 80)")
    print(f"   raw series {raw / 2**20:.1f} MiB; window sets hold {held / 2**20:.1f} MiB in all "
          f"({held / raw:.1f}x raw: one raw and one normalised copy shared by train, validation and test; "
          f"windows are start indices)")
    entry = registry.get("flowdistill-wo-tb")
    info = ModelInfo.of(data, scaler, H_IN, H_OUT)
    model = entry.cls(entry.config(), info)
    opt = torch.optim.Adam(model.parameters())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for batch in train.batches(80, shuffle=True):
        loss, _ = training_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(f"   one training epoch of flowdistill-wo-tb grew peak RSS by {grown / 2**20:.1f} MiB "
          f"({grown / raw:.1f}x raw; activations of batch 80 x {data.num_nodes} regions dominate)")


@dataclass
class TrivialConfig(TrainConfig):
    max_epochs: int = 3
    batch_size: int = 64


@register("benchmark-trivial", "last input step repeated (harness overhead benchmark only)")
class Trivial(torch.nn.Module):
    """y = x[:, -1] * scale + shift, repeated over H_out: a near-free model."""

    Config = TrivialConfig

    def __init__(self, cfg, info):
        super().__init__()
        self.scale, self.shift, self.h_out = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.zeros(1)), info.h_out

    def forward(self, x, tod, dow):
        return (x[:, -1:] * self.scale + self.shift).expand(-1, self.h_out, -1, -1)


def harness_overhead(dataset: str, ratio: float, nodes: int | None = None) -> None:
    from bench.execution.runner import run
    from bench.execution.train import fit, predict, set_seed
    from bench.execution.context import build_context
    from bench.execution.spec import TrialSpec
    spec = TrialSpec(suite="benchmark", dataset=dataset, model="benchmark-trivial", ratio=ratio, num_nodes=nodes)
    t0 = time.perf_counter()
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    fit(model, cfg, parts["train"], parts["val"], set_seed(0))
    predict(model, parts["test"])
    direct = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run([spec], out, executor="inline", log=lambda *_: None)
        harness = time.perf_counter() - t0
    print(f"\n3. harness overhead (trivial model, {cfg.max_epochs} epochs): direct loop {direct:.2f} s, "
          f"through the runner {harness:.2f} s (+{harness - direct:.2f} s: setup, metrics, atomic CSV/JSON writes)")


def teacher_throughput(data, ratio: float, repeats: int, settings: dict) -> None:
    """Region-windows per second of the LLM teacher: one training step (forward + backward) and
    prediction of every region, on CPU and, when present, on CUDA (the model picks the device)."""
    split, scaler, parts = prepare(data, ratio)
    entry = registry.get("flowdistill-teacher")
    cfg = entry.config(**settings)
    model = entry.cls(cfg, ModelInfo.of(data, scaler, H_IN, H_OUT))
    windows = cfg.eval_batch_size
    batch = parts["test"].batch(torch.arange(windows))
    model.eval()
    with torch.no_grad():
        pred_s = _timed(lambda: forward(model, batch), repeats)
    model.train()
    train_batch = parts["train"].batch(torch.arange(cfg.batch_size))

    def step():
        loss, _ = training_loss(model, train_batch)
        loss.backward()
    train_s = _timed(step, max(1, repeats // 2))
    train_rw = cfg.batch_size * cfg.train_chunks * min(cfg.regions_per_sequence, data.num_nodes)
    seq = model.build(model.info, [0], [model.chunks(data.num_nodes)[0]]).shape[1]
    print(f"\n4. LLM teacher ({cfg.lm}, {model.layers_kept} block(s), {model.device_.type}, {seq} tokens per "
          f"sequence of {min(cfg.regions_per_sequence, data.num_nodes)} regions)")
    print(tabulate([["train step (fwd+bwd)", train_rw, train_s, train_rw / train_s],
                    ["predict (all regions)", windows * data.num_nodes, pred_s, windows * data.num_nodes / pred_s]],
                   headers=["", "region-windows", "s", "region-windows/s"], floatfmt=".2f"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--ratio", type=float, default=0.4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--teacher-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the LLM teacher for section 4, e.g. keep_layers=2")
    p.add_argument("--skip-teacher", action="store_true", help="leave out section 4 (loads the language model)")
    p.add_argument("--nodes", type=int, help="the first N regions only (a tiny slice for a smoke run; grid models "
                   "are then left out unless N covers the grid)")
    args = p.parse_args(argv)
    data = load_dataset(args.dataset)
    if args.nodes:
        data = data.slice_nodes(args.nodes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device cpu")
    inference(data, args.ratio, args.batch, args.repeats)
    data_pipeline(data, args.ratio, args.repeats)
    harness_overhead(args.dataset, args.ratio, args.nodes)
    if not args.skip_teacher:
        import yaml
        settings = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.teacher_set)}
        teacher_throughput(data, args.ratio, args.repeats, settings)


if __name__ == "__main__":
    main()
