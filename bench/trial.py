"""One trial = one (suite, dataset, model, ratio, seed): load, split, train, test, report rows.

`run_trial` is what every executor calls (Ray Tune worker or inline); it never raises for a
failing model: the failure becomes a row with status "error" so that a suite goes on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from bench import registry
from bench.data import load_dataset
from bench.metrics import evaluate, grid_metrics, window_mae
from bench.protocol import MixedWindows, Windows, horizons, prepare, volume_buckets
from bench.train import fit, predict, resolve_device, set_seed

ROW_FIELDS = ["suite", "dataset", "model", "teacher", "ratio", "seed", "horizon", "bucket", "mae", "rmse", "mape",
              "mae_unmasked", "rmse_unmasked",
              "epochs", "train_s", "infer_s", "params", "peak_mem_mb", "status", "error", "trial_id", "config",
              "work_id", "device", "steps", "best_epoch", "converged", "teacher_desc", "teacher_data",
              "teacher_mae", "gate_open", "train_mae", "teacher_train_mae", "mse", "ssim", "err_low", "err_high"]
# the row fields of a distilled student (empty for other rows): what the teacher was (e.g. the LM,
# blocks kept, LoRA rank) and what it was fitted on, the teacher's own test MAE, the
# share of unmasked elements where eq. 2's gate was open over training, and the last epoch's
# training MAE of the student and of the teacher on the same batches.
# mse, ssim, err_low, err_high: image metrics of a dataset with a grid, overall row only
# (`bench.metrics.grid_metrics`: unmasked MSE, SSIM, the MSE's low- and high-frequency shares)
DISTILL_FIELDS = ("teacher_desc", "teacher_data", "teacher_mae", "gate_open", "train_mae", "teacher_train_mae")


@dataclass(frozen=True)
class TrialSpec:
    """Everything that defines a trial. `config` overrides the model's Config defaults.

    Budgets are in optimiser steps, never in seconds, so a trial means the same on any machine:
    `max_steps` is the trial's step budget (None: the model's own epochs), `max_epochs` caps its
    epochs, `max_batches` makes an epoch a round of at most that many steps (validation,
    learning-rate steps and patience then count rounds) and `max_patience` caps its patience.
    Those caps, `max_train_windows` and `num_nodes` (keep the first n regions, for tests) apply to
    the model and to its teacher alike, except the step budget: `teacher_max_steps` is its
    teacher's (None: none). `teacher_config` overrides the teacher's Config defaults;
    `train_stride` keeps every n-th training window and `max_val_windows` caps the validation
    windows early stopping reads (model and teacher alike; the test set is never cut).
    `teacher_data` says what the teacher is fitted on (`bench.protocol.teacher_split`: disjoint,
    same or all); it is part of the identity of teachers and of distilled students only.
    `device` (auto, cpu, cuda; see `bench.train.resolve_device`) is where the model, its batches
    and its teacher's predictions live; it is not part of the identity (rows record it)."""

    suite: str
    dataset: str
    model: str
    ratio: float
    seed: int = 0
    config: dict = field(default_factory=dict)
    max_epochs: int | None = None
    max_steps: int | None = None
    max_train_windows: int | None = None
    max_batches: int | None = None
    num_nodes: int | None = None
    data_dir: str | None = None
    registry_file: str | None = None
    cache_dir: str = "results/teachers"
    teacher_config: dict = field(default_factory=dict)
    teacher_max_steps: int | None = None
    max_patience: int | None = None
    train_stride: int | None = None
    max_val_windows: int | None = None
    teacher_data: str = "disjoint"
    device: str = "auto"

    def identity(self) -> dict:
        """The fields that decide the result (paths excluded)."""
        keep = ("suite", "dataset", "model", "ratio", "seed", "config", "max_epochs", "max_steps",
                "max_train_windows", "max_batches", "num_nodes")
        out = {k: getattr(self, k) for k in keep}
        if self.teacher_config:
            out["teacher_config"] = self.teacher_config
        if self.teacher_max_steps is not None and self.has_teacher():
            out["teacher_max_steps"] = self.teacher_max_steps
        if self.max_patience is not None:
            out["max_patience"] = self.max_patience
        if self.train_stride is not None:
            out["train_stride"] = self.train_stride
        if self.max_val_windows is not None:
            out["max_val_windows"] = self.max_val_windows
        if self.suite == "teacher" or self.has_teacher():
            out["teacher_data"] = self.teacher_data
        return out

    def has_teacher(self) -> bool:
        """Does the model of this trial learn from a teacher (a `teacher` in its config)?"""
        return bool(registry.get(self.model).config(**self.config).teacher)

    @property
    def trial_id(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def work_id(self) -> str:
        """The trial_id without the suite: two suites that ask for the same work (e.g. flowdistill at
        ratio 0.5 in data-efficiency and robustness) share one run (see `runner.run`)."""
        ident = {k: v for k, v in self.identity().items() if k != "suite"}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def config_label(self) -> str:
        """The config overrides as compact JSON ("" when none): the sweep's x values."""
        return json.dumps(self.config, sort_keys=True) if self.config else ""

    def model_config(self):
        changes = dict(self.config)
        entry = registry.get(self.model)
        if self.max_epochs is not None and entry.trains:
            changes["max_epochs"] = min(self.max_epochs, entry.config(**self.config).max_epochs)
        if self.max_patience is not None and entry.trains:
            changes["patience"] = min(self.max_patience, entry.config(**self.config).patience)
        if self.max_val_windows is not None:
            own = entry.config(**self.config).val_windows
            changes["val_windows"] = min(self.max_val_windows, own) if own else self.max_val_windows
        return entry.config(**changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def setup(spec: TrialSpec):
    """Load data, split, build the model. Returns (data, split, scaler, parts, cfg, model)."""
    data = load_dataset(spec.dataset, spec.data_dir, spec.registry_file)
    if spec.num_nodes:
        data = data.slice_nodes(spec.num_nodes)
    split, scaler, parts = prepare(data, spec.ratio, spec.max_train_windows, seed=spec.seed,
                                   train_stride=spec.train_stride)
    cfg = spec.model_config()
    info = registry.ModelInfo.of(data, scaler, *horizons(data))
    set_seed(spec.seed)
    model = registry.get(spec.model).cls(cfg, info)
    for windows in parts.values():
        windows.lookback = registry.lookback(model, info.h_in)
    return data, split, scaler, parts, cfg, model


def extra_dataset_names(spec: TrialSpec, cfg) -> list[str]:
    """The datasets named by the model's `extra_datasets` config ("same-city": every other
    registry dataset whose `city` equals the target's), target excluded.

    Raises:
        DataError: a named dataset is not in the registry.
    """
    from bench.data import DataError, load_registry
    wanted = tuple(getattr(cfg, "extra_datasets", None) or ())
    if not wanted:
        return []
    entries = load_registry(spec.registry_file)
    names = []
    for name in wanted:
        if name == "same-city":
            city = entries.get(spec.dataset, {}).get("city")
            names += [n for n, e in entries.items() if city and e.get("city") == city]
        elif name not in entries:
            raise DataError(f"extra_datasets names {name!r}, which is not a registered dataset; "
                            f"known: {', '.join(entries)}")
        else:
            names.append(name)
    return [n for n in dict.fromkeys(names) if n != spec.dataset]


def training_windows(spec: TrialSpec, cfg, model, train: Windows):
    """`train`, or MixedWindows of `train` and the training part (ratio 0.8: every step before
    their own validation and test parts) of each extra dataset, registered with the model
    through `model.add_dataset(name, info)`."""
    names = extra_dataset_names(spec, cfg)
    if not names:
        return train
    others = []
    for name in names:
        data = load_dataset(name, spec.data_dir, spec.registry_file)
        if spec.num_nodes:
            data = data.slice_nodes(min(spec.num_nodes, data.num_nodes))
        _, scaler, parts = prepare(data, 0.8, spec.max_train_windows, seed=spec.seed, train_stride=spec.train_stride)
        model.add_dataset(name, registry.ModelInfo.of(data, scaler, *horizons(data)))
        others.append(parts["train"])
    return MixedWindows(train, others)


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, else max RSS (MB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        from bench import teacher as teacher_mod  # late import: teacher imports this module
        cached = teacher_mod.rows_from_cache(spec)
        if cached is not None:
            return [base | row for row in cached]
        data, split, scaler, parts, cfg, model = setup(spec)
        base["teacher"] = cfg.teacher or ""
        teacher_meta = teacher_mod.attach(parts, teacher_mod.teacher_spec(spec, cfg.teacher)) if cfg.teacher else None
        gen = set_seed(spec.seed)
        dev = resolve_device(spec.device)
        train = training_windows(spec, cfg, model, parts["train"])
        result = fit(model, cfg, train, parts["val"], scaler, gen, spec.max_steps, progress, spec.max_batches,
                     device=dev)
        start = time.perf_counter()
        pred = predict(model, parts["test"], scaler, cfg.eval_batch_size, device=dev)
        infer_s = time.perf_counter() - start
        extra = {"epochs": result.epochs, "train_s": round(result.train_s, 3), "infer_s": round(infer_s, 4),
                 "params": sum(p.numel() for p in model.parameters()), "peak_mem_mb": round(peak_memory_mb(), 1),
                 "status": "ok", "error": "", "device": dev.type, "steps": result.steps, "best_epoch": result.best_epoch,
                 "converged": result.converged} | distill_fields(result.history, teacher_meta)
        rows = [base | row | extra for row in score(pred, parts["test"], data, split)]
        rows[0]["history"] = result.history
        if not all(np.isfinite([r["mae"], r["rmse"]]).all() for r in rows):
            for r in rows:
                r.update(status="error", error="non-finite test metric")
        return rows
    except Exception as exc:  # recorded, the suite goes on
        rows = error_rows(spec, f"{type(exc).__name__}: {exc}", base["teacher"])
        rows[0]["traceback"] = traceback.format_exc()[-2000:]
        return rows


def score(pred: torch.Tensor, test: Windows, data, split) -> list[dict]:
    """The metric rows of test predictions pred [W, H_out, N, C] (original units) of the `test`
    windows: `evaluate` per horizon and volume bucket, the grid metrics (`grid_metrics`) on the
    overall row of a dataset with a grid, and on that row `window_mae` and `window_every` (every
    n-th window is non-overlapping: H_out on a series, 1 on independent samples) for the paired
    tests of `bench.stats`."""
    truth = test.targets()
    rows = evaluate(pred, truth, volume_buckets(data.flow, split))
    if data.meta.get("grid"):
        rows[0] |= {k: round(v, 6) for k, v in grid_metrics(pred, truth, data.grid).items()}
    rows[0]["window_mae"] = window_mae(pred, truth)
    rows[0]["window_every"] = 1 if data.meta.get("sample_len") else test.h_out
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


def error_rows(spec: TrialSpec, error: str, teacher: str = "") -> list[dict]:
    """The single row that records a failed trial (NaN metrics, status "error")."""
    return [{"suite": spec.suite, "dataset": spec.dataset, "model": spec.model, "teacher": teacher,
             "ratio": spec.ratio, "seed": spec.seed, "trial_id": spec.trial_id, "horizon": "all", "bucket": "all",
             "mae": float("nan"), "rmse": float("nan"), "mape": float("nan"), "epochs": 0, "train_s": 0.0,
             "infer_s": 0.0, "params": 0, "peak_mem_mb": 0.0, "status": "error", "error": error[:500],
             "config": spec.config_label(), "work_id": spec.work_id}]
