"""RQ5 (FlowDistill section 4.6, Fig. 10): peak memory against batch size and inference latency
against test size (the test windows x1..x5), every point measured in a fresh Python process.

Models are built from their default configs and left untrained: cost does not depend on the
weights. Inputs are real test windows of the dataset (ratio 0.5 split, z-scored on its training
part). A point runs `python -m bench.execution.scalability POINT_JSON` and prints one JSON line.

- memory: one forward pass without gradients on `x` windows. CUDA: torch.cuda.max_memory_allocated
  (weights, inputs and activations). CPU: the peak resident set size, sampled every millisecond
  during the forward pass, minus the size before the model was built (psutil).
- train_memory: the same peak (weights included) over one training step on `x` windows (the
  model's training loss, backward, an Adam step: gradients and Adam's state count); a student is
  measured without its teacher's forecast in the batch (the cost points use the students without KD).
- latency: seconds to predict the base test windows repeated `x` times in batches of
  `latency_batch`, after one warm-up batch (CUDA: synchronised).

Points run one after another, never side by side, so that no point shares the cores with
another. Rows go to OUT/scalability/trials.csv (one row per point and seed); a rerun skips
finished points.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FIELDS = ["suite", "dataset", "model", "measure", "x", "seed", "value", "unit", "windows", "device", "threads",
          "status", "error", "trial_id", "params"]
UNITS = {"memory": "MB", "train_memory": "MB", "latency": "s"}
MEASURES = tuple(UNITS)


@dataclass(frozen=True)
class Grid:
    """What the scalability suite measures."""

    batch_sizes: tuple[int, ...]
    multiples: tuple[int, ...]
    base_windows: int | None      # test windows at x1 (None: the whole test part)
    latency_batch: int


GRIDS = {
    "full": Grid((16, 32, 64, 128, 256), (1, 2, 3, 4, 5), None, 64),
    "quick": Grid((8, 16, 32, 64), (1, 2, 3, 4, 5), 32, 32),
}


@dataclass(frozen=True)
class Point:
    """One measurement: `measure` "memory" or "train_memory" (x = batch size) or "latency" (x =
    test multiple)."""

    dataset: str
    model: str
    measure: str
    x: int
    seed: int = 0
    base_windows: int | None = None
    latency_batch: int = 64
    num_nodes: int | None = None
    data_dir: str | None = None
    registry_file: str | None = None

    @property
    def trial_id(self) -> str:
        ident = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("data_dir", "registry_file")}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def build_points(dataset: str, models, preset: str = "full", seeds: int = 1, **paths) -> list[Point]:
    """Every (model, measure, x, seed) point of the preset's Grid; `paths`: num_nodes, data_dir,
    registry_file."""
    g = GRIDS[preset]
    common = dict(base_windows=g.base_windows, latency_batch=g.latency_batch, **paths)
    return ([Point(dataset, m, "memory", b, s, **common) for m in models for b in g.batch_sizes for s in range(seeds)]
            + [Point(dataset, m, "latency", k, s, **common) for m in models for k in g.multiples
               for s in range(seeds)])


# the sdkd suite's side-by-side cost: memory of one forward pass on a batch of COST_BATCH windows, and
# the latency of predicting every test window in batches of COST_BATCH (SDKD's students are meant
# to run at least 2x faster than its teacher)
COST_BATCH = 16


def build_points_for(datasets, models, preset: str = "full", **paths) -> list[Point]:
    """The cost points of teacher and students (`SDKD_COST_MODELS`) on each dataset: memory of a
    forward pass and of a training step at batch COST_BATCH, and latency over the whole test part
    (x1), 3 seeds under the full preset and 1 under quick."""
    seeds = 1 if preset == "quick" else 3
    return [Point(d, m, measure, 1 if measure == "latency" else COST_BATCH, s, base_windows=None,
                  latency_batch=COST_BATCH, **paths)
            for d in datasets for m in models for measure in MEASURES for s in range(seeds)]


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def measure(point: Point) -> dict:
    """Run one point in this process; returns {"value", "unit", "windows", "device", "threads", "params"}.

    Raises:
        ValueError: an unknown measure (names the allowed ones).
    """
    import torch

    from bench.protocol import registry
    from bench.protocol.data import load_dataset
    from bench.protocol.split import horizons, prepare
    from bench.execution.train import forward, set_seed, training_loss

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    data = load_dataset(point.dataset, point.data_dir, point.registry_file)
    if point.num_nodes:
        data = data.slice_nodes(point.num_nodes)
    _, scaler, parts = prepare(data, 0.5)
    test = parts["test"].subset(point.base_windows)

    def batch_of(positions):
        b = test.batch(positions)
        return {k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()}

    if point.measure not in MEASURES:
        raise ValueError(f"unknown measure {point.measure!r}; use one of {', '.join(MEASURES)}")
    set_seed(point.seed)
    build = lambda: registry.get(point.model).cls(registry.get(point.model).config(),   # noqa: E731
                                                  registry.ModelInfo.of(data, scaler, *horizons(data))).to(dev)
    if point.measure in ("memory", "train_memory"):
        batch = batch_of(np.arange(point.x) % len(test))
        base = _rss()                     # the model's weights count (training: gradients, Adam's state too)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        if point.measure == "memory":
            model = build().eval()
            with torch.no_grad():
                return _row(_peak_mb(lambda: forward(model, batch), cuda, base), point.x, point, model, cuda)
        model = build().train()
        optim = torch.optim.Adam(model.parameters())

        def step():
            loss = training_loss(model, batch)[0]
            optim.zero_grad()
            loss.backward()
            optim.step()
        return _row(_peak_mb(step, cuda, base), point.x, point, model, cuda)
    model = build().eval()                # latency
    order = np.tile(np.arange(len(test)), point.x)
    with torch.no_grad():
        forward(model, batch_of(order[:point.latency_batch]))          # warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(order), point.latency_batch):
            forward(model, batch_of(order[i:i + point.latency_batch]))
        if cuda:
            torch.cuda.synchronize()
    return _row(time.perf_counter() - start, len(order), point, model, cuda)


def _peak_mb(run, cuda: bool, base: int) -> float:
    """Peak memory (MB) while `run()` runs: the CUDA allocator's peak since its last reset, or on a
    CPU the peak resident set size (sampled every millisecond) minus `base` (bytes)."""
    import torch
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    run()
    done.set()
    watcher.join()
    peak[0] = max(peak[0], _rss())
    return (torch.cuda.max_memory_allocated() if cuda else peak[0] - base) / 2**20


def _row(value: float, windows: int, point: Point, model, cuda: bool) -> dict:
    """A point's measured fields: value, unit, windows, device, threads, params."""
    import torch
    return {"value": float(value), "unit": UNITS[point.measure], "windows": int(windows),
            "device": torch.cuda.get_device_name() if cuda else "cpu", "threads": torch.get_num_threads(),
            "params": sum(p.numel() for p in model.parameters())}


def run_point(point: Point, timeout_s: float = 1800) -> dict:
    """Measure `point` in a fresh `python -m bench.execution.scalability` process; returns its row."""
    row = {"suite": "scalability", "dataset": point.dataset, "model": point.model, "measure": point.measure,
           "x": point.x, "seed": point.seed, "trial_id": point.trial_id, "status": "ok", "error": ""}
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.execution.scalability", json.dumps(dataclasses.asdict(point))],
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
        row |= json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception as exc:                     # recorded; the suite goes on
        row |= {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500], "value": float("nan"),
                "unit": UNITS.get(point.measure, "")}
    return row


def read_points(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=FIELDS)
    df = pd.read_csv(path, keep_default_na=False, dtype={"error": str, "status": str, "trial_id": str})
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def run(points: list[Point], out: str | Path, log=print, name: str = "scalability") -> Path:
    """Measure every point not yet finished under OUT/NAME/, one after another; returns the
    table's path. Each row is appended atomically as its point ends."""
    from tqdm.auto import tqdm

    from bench.execution.results import append_rows
    path = Path(out) / name / "trials.csv"
    done = set(read_points(path).query("status == 'ok'")["trial_id"].astype(str))
    todo = [p for p in points if p.trial_id not in done]
    if len(todo) < len(points):
        log(f"resuming: {len(points) - len(todo)} of {len(points)} points already measured in {path}")
    bar = tqdm(todo, desc=name, unit="point", file=sys.stderr)
    for point in bar:
        bar.set_postfix_str(f"{point.model} {point.measure} x={point.x}")
        row = run_point(point)
        append_rows(path, [row], FIELDS)
        if row["status"] != "ok":
            log(f"point {point.model} {point.measure} x={point.x} failed: {row['error']}")
    return path


def scalability_frame(df: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Fig. 10 as a table: one row per model, one column per x (batch size for memory, test
    multiple for latency), "mean" or "mean ± std" over seeds."""
    ok = df[(df["status"] == "ok") & (df["measure"] == measure)]
    if ok.empty:
        return pd.DataFrame()
    cells = {}
    for (model, x), g in ok.groupby(["model", "x"]):
        v = g["value"]
        cells.setdefault(model, {})[int(x)] = f"{v.mean():.3g}" if len(v) == 1 else f"{v.mean():.3g} ± {v.std():.2g}"
    table = pd.DataFrame.from_dict(cells, orient="index")
    table = table[sorted(table.columns)]
    label = "batch" if measure == "memory" else "x"
    table.columns = [f"{label} {c}" for c in table.columns]
    return table.rename_axis("model").reset_index()


if __name__ == "__main__":
    print(json.dumps(measure(Point(**json.loads(sys.argv[1])))))
