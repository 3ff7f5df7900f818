"""The teacher contract: any registered model can teach.

A teacher is fitted on the training split of (dataset, ratio), predicts every window of the
train, validation and test parts, and its predictions are cached on disk under a key of dataset
contents, ratio, teacher name and config, seed, horizons and preset caps. Students read the cache;
a cache whose key differs from the one asked for is refused, never silently reused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.results import atomic_write
from bench.protocol import H_IN, H_OUT, Windows
from bench.train import predict

TEACHER_SEED = 0
CACHE_VERSION = 1


class TeacherCacheError(RuntimeError):
    """Teacher predictions missing, stale or made for other data; the message says which."""


def teacher_spec(student_spec, teacher_name: str):
    """The TrialSpec that fits `teacher_name` for a student trial: same data, ratio and caps,
    the teacher's own default config, a fixed seed (all students of a ratio share one teacher)."""
    return dataclasses.replace(student_spec, model=teacher_name, config={}, seed=TEACHER_SEED,
                               suite="teacher")


def cache_key(spec, data_fingerprint: str) -> str:
    """Key of a teacher's predictions: data contents, ratio, teacher config and caps."""
    cfg = dataclasses.asdict(spec.model_config())
    ident = {"v": CACHE_VERSION, "data": data_fingerprint, "h_in": H_IN, "h_out": H_OUT,
             "teacher_config": cfg} | {k: v for k, v in spec.identity().items() if k != "suite"}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def data_fingerprint(flow: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(flow).tobytes()).hexdigest()[:16]


def cache_path(spec, key: str) -> Path:
    return Path(spec.cache_dir) / spec.dataset / f"{spec.model}-r{spec.ratio:g}-{key[:16]}.npz"


def locate(spec) -> tuple[str, Path]:
    """(key, path) of the cache the teacher `spec` writes and its students read."""
    from bench.data import load_dataset
    data = load_dataset(spec.dataset, spec.data_dir, spec.registry_file)
    flow = data.flow[:, :spec.num_nodes] if spec.num_nodes else data.flow
    key = cache_key(spec, data_fingerprint(flow))
    return key, cache_path(spec, key)


def fit_teacher(spec) -> Path:
    """Fit the teacher described by `spec` (unless cached) and cache its predictions.

    Returns the cache path. The npz holds `starts` [W] (window start steps of train+val+test),
    `pred` [W, H_out, N, C] in original units, `key` and `meta` (json).
    """
    from bench.train import fit, set_seed
    from bench.trial import peak_memory_mb, setup
    key, path = locate(spec)
    if path.exists():
        return path
    data, split, scaler, parts, cfg, model = setup(spec)
    if cfg.teacher:
        raise TeacherCacheError(f"teacher {spec.model} itself needs a teacher ({cfg.teacher}); chains are not supported")
    result = fit(model, cfg, parts["train"], parts["val"], scaler, set_seed(spec.seed), spec.time_budget_s,
                 max_batches=spec.max_batches)
    series = (parts["train"].flow, parts["train"].flow_norm)
    full = {part: Windows(data, split, part, scaler, series=series) for part in ("train", "val", "test")}
    starts = np.concatenate([w.starts for w in full.values()])
    preds = {}
    for part, w in full.items():
        t0 = time.perf_counter()
        preds[part] = predict(model, w, scaler)
        preds[part + "_s"] = time.perf_counter() - t0
    pred = torch.cat([preds[p] for p in full]).numpy().astype(np.float32)
    meta = {"dataset": spec.dataset, "ratio": spec.ratio, "teacher": spec.model, "epochs": result.epochs,
            "best_val_mae": result.best_val_mae, "train_s": result.train_s, "infer_s": preds["test_s"],
            "params": sum(p.numel() for p in model.parameters()), "peak_mem_mb": peak_memory_mb()}
    save_predictions(path, starts, pred, key, meta)
    return path


def save_predictions(path: Path, starts, pred, key: str, meta: dict) -> None:
    """Write a teacher cache atomically (temporary file, then rename)."""
    atomic_write(path, lambda tmp: np.savez(tmp, starts=starts, pred=pred, key=np.array(key),
                                              meta=np.array(json.dumps(meta))))


def load_predictions(spec) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read the cached predictions of the teacher `spec`, checking the key.

    Raises:
        TeacherCacheError: no cache (run the teacher first), or a cache made for other data,
            ratio or config.
    """
    key, path = locate(spec)
    if not path.exists():
        raise TeacherCacheError(f"no cached predictions of teacher {spec.model} for {spec.dataset} at ratio "
                                f"{spec.ratio} (expected {path}); the runner fits teachers first, or run "
                                f"`bench run` with the teacher in --models")
    with np.load(path) as z:
        if str(z["key"]) != key:
            raise TeacherCacheError(f"teacher cache {path} was made for other data, ratio or config "
                                    f"(key {str(z['key'])[:12]} != {key[:12]}); delete it and rerun")
        return z["starts"], z["pred"], json.loads(str(z["meta"]))


def attach(parts: dict[str, Windows], spec) -> dict:
    """Attach cached teacher predictions to the train and val windows of a student trial."""
    starts, pred, meta = load_predictions(spec)
    for name in ("train", "val"):
        w = parts[name]
        pos = np.searchsorted(starts, w.starts)
        if (pos >= len(starts)).any() or not np.array_equal(starts[np.minimum(pos, len(starts) - 1)], w.starts):
            raise TeacherCacheError(f"teacher cache of {spec.model} does not cover the {name} windows")
        w.attach_teacher(pred[pos])
    return meta


def rows_from_cache(spec) -> list[dict] | None:
    """Metric rows of a model trial that is exactly a cached teacher fit (same model, default
    config, teacher seed, data, ratio and caps): its test predictions are already on disk, so
    the trial is not trained twice. None when the trial is not such a fit or nothing is cached."""
    from bench.data import load_dataset
    from bench.metrics import evaluate
    from bench.protocol import Scaler, split_steps, volume_buckets
    if spec.config or spec.seed != TEACHER_SEED:
        return None
    t_spec = teacher_spec(spec, spec.model)
    try:
        starts, pred, meta = load_predictions(t_spec)
    except TeacherCacheError:
        return None
    data = load_dataset(spec.dataset, spec.data_dir, spec.registry_file)
    if spec.num_nodes:
        data = data.slice_nodes(spec.num_nodes)
    split = split_steps(data.flow.shape[0], spec.ratio)
    test = Windows(data, split, "test", Scaler.fit(data.flow, split))
    pos = np.searchsorted(starts, test.starts)
    extra = {"epochs": meta["epochs"], "train_s": round(meta["train_s"], 3), "infer_s": round(meta["infer_s"], 4),
             "params": meta["params"], "peak_mem_mb": round(meta["peak_mem_mb"], 1), "status": "ok", "error": ""}
    return [m | extra for m in evaluate(torch.as_tensor(pred[pos]), test.targets(), volume_buckets(data.flow, split))]
