"""The teacher contract: any registered model can teach.

A teacher is fitted on the part of (dataset, ratio) its `teacher_data` names
(`bench.protocol.split.teacher_split`: by default every step before the student's), predicts every window of the
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
import pandas as pd
import torch

from bench.protocol.errors import BenchError
from bench.execution.context import TrialContext, build_context, training_windows, trial_data
from bench.protocol.metrics import masked_mae, masked_rmse, score, window_mae
from bench.protocol.split import Scaler, Windows, horizons, split_for, teacher_split
from bench.execution.results import atomic_write, node_name
from bench.execution.train import fit, peak_memory_mb, predict, resolve_device, set_seed, to_device, trainable_state

TEACHER_SEED = 0
CACHE_VERSION = 4


class TeacherCacheError(BenchError, RuntimeError):
    """Teacher predictions missing, stale or made for other data; the message says which."""


def teacher_spec(student_spec, teacher_name: str):
    """The TrialSpec that fits `teacher_name` for a student trial: same data, ratio and caps,
    the teacher's config (defaults plus the student spec's `teacher_config`), a fixed seed (all
    students of a ratio share one teacher), and the student's `teacher_max_steps` as its step budget."""
    return dataclasses.replace(student_spec, model=teacher_name, config=dict(student_spec.teacher_config),
                               seed=TEACHER_SEED, suite="teacher", teacher_config={}, teacher_max_steps=None,
                               max_steps=student_spec.teacher_max_steps)


def cache_key(spec, data_fingerprint: str) -> str:
    """Key of a teacher's predictions: data contents, ratio, teacher config, caps and the device
    kind (a teacher fitted on CUDA differs from one fitted on CPU; move predictions between
    machines with `bench teacher import`)."""
    cfg = dataclasses.asdict(spec.model_config())
    # the whole config, not the values set (a value set to its default names the same teacher)
    ident = {"v": CACHE_VERSION, "data": data_fingerprint,
             "teacher_config": cfg, "device": resolve_device(spec.device).type, "teacher_data": spec.teacher_data} | {
                 k: v for k, v in spec.identity().items() if k not in ("suite", "config")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(spec, key: str) -> Path:
    return Path(spec.cache_dir) / spec.dataset / f"{spec.model}-r{spec.ratio:g}-{key[:16]}.npz"


def locate(spec) -> tuple[str, Path]:
    """(key, path) of the cache the teacher `spec` writes and its students read (the data's
    fingerprint is hashed once per process: `trial_data`)."""
    key = cache_key(spec, trial_data(spec).fingerprint)
    return key, cache_path(spec, key)


def checkpoint_path(cache: Path) -> Path:
    """Trained weights of a teacher, beside its cache (`bench teacher predict` reads them)."""
    return cache.with_suffix(".pt")


def fit_teacher(spec, progress=None, show: bool = False, predict_windows: bool = True) -> Path:
    """Fit the teacher described by `spec` (unless cached), save its trained weights and cache its
    predictions of every window.

    Returns the cache path. The npz holds `starts` [W] (window start steps of train+val+test),
    `pred` [W, H_out, N, C] in original units, `key` and `meta` (json: epochs, timings, the
    teacher's own validation and test MAE/RMSE, per-epoch history). The weights go to the same
    name with .pt. progress: callable(epoch, logs) after each training epoch; show: tqdm bars
    over prediction; predict_windows=False stops after saving the weights.
    """
    key, path = locate(spec)
    if path.exists():
        return path
    ctx = build_context(spec)
    data, split, cfg, model = ctx.data, ctx.split, ctx.cfg, ctx.model
    if cfg.teacher:
        raise TeacherCacheError(f"teacher {spec.model} itself needs a teacher ({cfg.teacher}); chains are not supported")
    gen = set_seed(spec.seed)
    own = teacher_training_windows(spec, data, split, ctx.scaler, ctx.parts["train"])
    train = training_windows(ctx, own)
    if not len(train):
        hint = ("--teacher-data none fits a teacher on the datasets its extra_datasets names: set them, e.g. "
                "--set 'extra_datasets=[NYCBike1,NYCBike2]'" if spec.teacher_data == "none"
                else "use --teacher-data same or all")
        raise TeacherCacheError(f"teacher_data={spec.teacher_data} leaves teacher {spec.model} no training windows of "
                                f"{spec.dataset} at ratio {spec.ratio:g} (the student's part starts at step "
                                f"{split.train_start}); {hint}")
    result = fit(model, cfg, train, ctx.parts["val"], gen, spec.max_steps, progress, spec.max_batches,
                 device=ctx.device, fixed_rounds=spec.fixed_rounds)
    fitted = {"teacher_data": spec.teacher_data, "teacher_train_windows": len(own),
              "teacher_train_steps": [int(own.starts[0]), int(own.starts[-1]) + sum(horizons(data))] if len(own) else [],
              "fitted_on": fitted_on(train),
              "epochs": result.epochs, "best_val_mae": result.best_val_mae, "train_s": result.train_s,
              "history": result.history, "steps": result.steps, "best_epoch": result.best_epoch,
              "converged": result.converged}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(checkpoint_path(path), lambda tmp: torch.save({"key": key, "state": trainable_state(model),
                                                                "fit": fitted}, tmp))
    if predict_windows:
        _predict_and_cache(ctx, key, path, fitted, show)
    return path


def fitted_on(train) -> list[dict]:
    """What a teacher's training windows (`Windows`, or `MixedWindows` of several datasets) cover:
    one {"dataset", "windows", "first_step", "last_step"} per dataset with windows (steps of that
    dataset's series, the last step being the last target step of its last window)."""
    sources = [train.target, *train.others] if hasattr(train, "others") else [train]
    return [{"dataset": w.data.name, "windows": len(w), "first_step": int(w.starts[0]),
             "last_step": int(w.starts[-1]) + w.h_in + w.h_out - 1} for w in sources if len(w)]


def _fitted_on(meta: dict) -> list[dict]:
    """A cache meta's `fitted_on`, or for a cache without it the target's windows it records."""
    if "fitted_on" in meta or not meta.get("teacher_train_windows"):
        return meta.get("fitted_on", [])
    return [{"dataset": meta["dataset"], "windows": meta["teacher_train_windows"]}]


def teacher_training_windows(spec, data, split, scaler, student_train: Windows) -> Windows:
    """The target dataset's windows a teacher is fitted on: those of `teacher_split(split,
    spec.teacher_data)` with the student's caps (stride, max windows), sharing its series."""
    if spec.teacher_data == "same":
        return student_train
    windows = Windows(data, teacher_split(split, spec.teacher_data), "train", scaler,
                      max_windows=spec.max_train_windows, seed=spec.seed,
                      series=(student_train.flow, student_train.flow_norm), stride=spec.train_stride)
    windows.lookback = student_train.lookback
    return windows


def predict_teacher(spec, show: bool = False) -> Path:
    """Cache the predictions of every window from a teacher's saved weights (`fit_teacher`).

    Raises:
        TeacherCacheError: no saved weights for this teacher, data, ratio and config.
    """
    key, path = locate(spec)
    ckpt = checkpoint_path(path)
    if not ckpt.exists():
        raise TeacherCacheError(f"no trained weights of teacher {spec.model} for {spec.dataset} at ratio {spec.ratio} "
                                f"(expected {ckpt}); run `bench teacher fit` with the same flags first")
    saved = torch.load(ckpt, weights_only=False)
    if saved["key"] != key:
        raise TeacherCacheError(f"{ckpt} was trained for other data, ratio or config; refit it")
    ctx = build_context(spec)
    missing = set(saved["state"]) - set(ctx.model.state_dict())
    if missing:
        raise TeacherCacheError(f"{ckpt} holds weights this model does not have ({sorted(missing)[:3]}...); refit it")
    ctx.model.load_state_dict(saved["state"], strict=False)
    return _predict_and_cache(ctx, key, path, saved["fit"], show)


def _predict_and_cache(ctx: TrialContext, key: str, path: Path, fitted: dict, show: bool) -> Path:
    """Predict every window a cache covers (`cached_windows`) with the context's fitted model and
    write the cache with its meta (`fitted`: the fit's record) and, when the model has them, its
    latents of the training windows."""
    spec, data, split, scaler, parts, cfg, model = ctx.spec, ctx.data, ctx.split, ctx.scaler, ctx.parts, ctx.cfg, ctx.model
    series = (parts["train"].flow, parts["train"].flow_norm)
    dev = ctx.device                      # the model is there: build_context put it there, fit kept it
    full = cached_windows(spec, cfg, data, split, scaler, series)
    for windows in full.values():
        windows.lookback = parts["train"].lookback
    starts = np.concatenate([w.starts for w in full.values()])
    preds = {}
    for part, w in full.items():
        t0 = time.perf_counter()
        preds[part] = predict(model, w, cfg.eval_batch_size,
                              progress=f"{spec.model} predicts {part}" if show else None, device=dev)
        preds[part + "_s"] = time.perf_counter() - t0
    pred = torch.cat([preds[p] for p in full]).numpy().astype(np.float32)
    latent = predict_latent(model, full["train"], cfg.eval_batch_size, dev) if hasattr(model, "latent") else None
    quality = {f"{part}_{name}": float(fn(preds[part], full[part].targets()))
               for part in ("val", "test") for name, fn in (("mae", masked_mae), ("rmse", masked_rmse))}
    quality["test_window_mae"] = window_mae(preds["test"], full["test"].targets())
    quality["window_block"] = int(data.steps_per_day)
    predict_s = sum(preds[p + "_s"] for p in full)
    meta = {"dataset": spec.dataset, "ratio": spec.ratio, "teacher": spec.model, "seed": spec.seed,
            "description": getattr(model, "description", spec.model), **fitted,
            "infer_s": preds["test_s"], "predict_s": predict_s, "windows": len(starts),
            "num_nodes": data.num_nodes, "region_windows_per_s": len(starts) * data.num_nodes / max(predict_s, 1e-9),
            "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "peak_mem_mb": peak_memory_mb(), "node": node_name()} | quality
    save_predictions(path, starts, pred, key, meta, latent)
    return path


@torch.no_grad()
def predict_latent(model, windows: Windows, batch_size: int, device) -> np.ndarray:
    """`model.latent(batch)` of every window, float16 on the CPU: [W, ...] (a teacher's latents
    for students that distil from its latent space, e.g. SDKD's latent mode)."""
    model.eval()
    out = [model.latent(to_device(b, device)).cpu().half() for b in windows.batches(batch_size)]
    return torch.cat(out).numpy()


def import_predictions(spec, file: str | Path) -> Path:
    """Cache an external teacher's predictions (e.g. computed on a GPU machine) for `spec`.

    `file`: npz with `pred` [W, H_out, N, C] in original units for the windows a cache of
    (dataset, ratio, caps) covers (`cached_windows`: the training windows (every n-th with a
    train_stride); the teacher's validation windows; every test window), in time order, and optionally
    `starts` [W] (window start steps).

    Raises:
        TeacherCacheError: missing file or key, wrong shape, non-finite values, other windows.
    """
    file = Path(file)
    if not file.is_file():
        raise TeacherCacheError(f"{file} does not exist; give an npz with `pred` [windows, H_out, N, C]")
    with np.load(file) as z:
        if "pred" not in z:
            raise TeacherCacheError(f"{file} has no array `pred` (keys: {', '.join(z.files)})")
        pred = np.asarray(z["pred"], dtype=np.float32)
        given = z["starts"] if "starts" in z else None
    data, split, windows = _all_windows(spec)
    starts = np.concatenate([w.starts for w in windows.values()])
    expected = (len(starts), horizons(data)[1], data.num_nodes, data.num_channels)
    if pred.shape != expected:
        raise TeacherCacheError(f"{file}: pred has shape {pred.shape}; {spec.dataset} at ratio {spec.ratio} needs "
                                f"{expected} (train, val and test windows in time order, H_out, regions, channels)")
    if given is not None and not np.array_equal(np.asarray(given), starts):
        raise TeacherCacheError(f"{file}: `starts` are not the window starts of {spec.dataset} at ratio {spec.ratio}")
    if not np.isfinite(pred).all():
        raise TeacherCacheError(f"{file}: pred holds NaN or inf values")
    key, path = locate(spec)
    test = slice(len(starts) - len(windows["test"]), None)
    truth = windows["test"].targets()
    meta = {"dataset": spec.dataset, "ratio": spec.ratio, "teacher": spec.model, "imported": str(file.resolve()),
            "teacher_data": spec.teacher_data, "description": f"imported from {file.name}",
            "epochs": 0, "best_val_mae": float("nan"), "train_s": 0.0, "infer_s": 0.0, "params": 0, "peak_mem_mb": 0.0,
            "test_mae": float(masked_mae(torch.as_tensor(pred[test]), truth)),
            "test_rmse": float(masked_rmse(torch.as_tensor(pred[test]), truth))}
    save_predictions(path, starts, pred, key, meta)
    return path


def cached_windows(spec, cfg, data, split, scaler, series=None) -> dict[str, Windows]:
    """The windows a teacher cache covers, in time order: every training window (every
    `train_stride`-th with that cap: students train on those), the teacher's own validation
    windows (`val_windows` of its config, else all) and every test window (its own test row)."""
    windows = {part: Windows(data, split, part, scaler, series=series,
                             stride=spec.train_stride if part == "train" else None)
               for part in ("train", "val", "test")}
    windows["val"] = windows["val"].subset(getattr(cfg, "val_windows", None))
    return windows


def _all_windows(spec) -> tuple:
    """(data, split, {"train", "val", "test": Windows}) of the spec's dataset (first num_nodes
    regions) and ratio: the windows its teacher cache covers (`cached_windows`)."""
    data = trial_data(spec)
    split = split_for(data, spec.ratio)
    return data, split, cached_windows(spec, spec.model_config(), data, split, Scaler.fit(data.flow, split))


def save_predictions(path: Path, starts, pred, key: str, meta: dict, latent=None) -> None:
    """Write a teacher cache atomically (temporary file, then rename); `latent` [W_train, ...]:
    the teacher's latents of the first W_train windows (its training windows), when it has them."""
    extra = {} if latent is None else {"latent": latent}
    atomic_write(path, lambda tmp: np.savez(tmp, starts=starts, pred=pred, key=np.array(key),
                                              meta=np.array(json.dumps(meta)), **extra))


def cache_metas(root: str | Path) -> list[tuple[Path, dict]]:
    """(path, meta) of every teacher cache under `root` (OUT/teachers/DATASET/*.npz), in path order."""
    out = []
    for path in sorted(Path(root).glob("*/*.npz")):
        with np.load(path) as z:
            out.append((path, json.loads(str(z["meta"]))))
    return out


def cached_teachers(root: str | Path) -> list[dict]:
    """One record per cached teacher under `root` (OUT/teachers): dataset, teacher, ratio, teacher data,
    seed, epochs, whether early stopping ended the fit,
    validation and test MAE, test RMSE, fit and prediction seconds, source (imported or not), node
    and file, from each cache's meta."""
    rows = []
    for path, meta in cache_metas(root):
        rows.append({"dataset": meta["dataset"], "teacher": meta["teacher"], "ratio": meta["ratio"],
                     "data": meta.get("teacher_data", ""), "seed": meta.get("seed", TEACHER_SEED),
                     "fitted on": ", ".join(f"{f['dataset']} ({f['windows']})" for f in _fitted_on(meta)),
                     "epochs": meta.get("epochs"), "converged": meta.get("converged"), "val MAE": meta.get("val_mae", meta.get("best_val_mae")),
                     "test MAE": meta.get("test_mae"), "test RMSE": meta.get("test_rmse"),
                     "train s": meta.get("train_s"), "predict s": meta.get("predict_s"),
                     "source": "imported" if meta.get("imported") else "", "node": meta.get("node", ""),
                     "file": path.name})
    return rows


def load_predictions(spec) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read the cached predictions of the teacher `spec`, checking the key: (starts, pred, meta).

    Raises:
        TeacherCacheError: no cache (run the teacher first), or a cache made for other data,
            ratio or config.
    """
    return _read_cache(spec)[:3]


def _read_cache(spec, latent: bool = False) -> tuple:
    """(starts, pred, meta, latent) of the teacher `spec`'s cache, key checked (`load_predictions`);
    latent: also read its latents (None when not asked for or the cache has none)."""
    key, path = locate(spec)
    if not path.exists():
        raise TeacherCacheError(f"no cached predictions of teacher {spec.model} for {spec.dataset} at ratio "
                                f"{spec.ratio} (expected {path} on node {node_name()}); the runner fits teachers "
                                f"first, or run `bench run` with the teacher in --models; on a Ray cluster --out "
                                f"must be a folder every node sees at the same path (a shared filesystem)")
    with np.load(path) as z:
        if str(z["key"]) != key:
            raise TeacherCacheError(f"teacher cache {path} was made for other data, ratio or config "
                                    f"(key {str(z['key'])[:12]} != {key[:12]}); delete it and rerun")
        lat = z["latent"] if latent and "latent" in z.files else None
        return z["starts"], z["pred"], json.loads(str(z["meta"])), lat


def attach(parts: dict[str, Windows], spec, shuffle_seed: int | None = None) -> dict:
    """Attach cached teacher predictions (and latents, when cached) to the training windows of a
    student trial; returns the cache's meta, with `test_window_mae` (the teacher's masked MAE of
    every test window of `parts["test"]`, for the paired test of student against teacher).

    shuffle_seed: permute the predictions (and latents) across the training windows with this seed
    (a permutation without fixed points where there are two windows or more): each window gets
    another window's forecast, the values stay the same (the "shuffled teacher" control). The
    meta then says `shuffled: True`."""
    starts, pred, meta, latent = _read_cache(spec, latent=True)
    w = parts["train"]
    pos = np.searchsorted(starts, w.starts)
    covered = (pos < len(starts)) & (starts[np.minimum(pos, len(starts) - 1)] == w.starts)
    if not covered.all():
        raise TeacherCacheError(f"teacher cache of {spec.model} for {spec.dataset} at ratio {spec.ratio:g} lacks "
                                f"{int((~covered).sum())} of the {len(w)} training windows the student needs (it holds "
                                f"{len(starts)} windows); refit the teacher with the student's flags (--quick, "
                                f"--nodes) or import predictions of every window")
    if latent is not None and pos.max(initial=0) >= len(latent):
        latent = None                       # latents cover the teacher's training windows only
    if shuffle_seed is not None:
        pos = pos[derangement(len(pos), shuffle_seed)]
        meta = meta | {"shuffled": True}
    w.attach_teacher(pred[pos], None if latent is None else latent[pos])
    test = parts.get("test")
    if test is not None:
        tpos = np.searchsorted(starts, test.starts)
        if len(tpos) and (tpos < len(starts)).all() and np.array_equal(starts[tpos], test.starts):
            meta = meta | {"test_window_mae": window_mae(torch.as_tensor(pred[tpos]), test.targets())}
    return meta


def derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation of range(n) with no fixed point (n >= 2; identity for n < 2): a
    uniform permutation drawn with `seed`, then every fixed point swapped with its successor."""
    perm = np.random.default_rng(seed).permutation(n)
    if n < 2:
        return perm
    for i in np.flatnonzero(perm == np.arange(n)):
        j = (i + 1) % n
        perm[i], perm[j] = perm[j], perm[i]
    while (fixed := np.flatnonzero(perm == np.arange(n))).size:       # a swap can make a new one
        i = fixed[0]
        j = (i + 1) % n
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def rows_from_cache(spec) -> list[dict] | None:
    """Metric rows of a model trial that is exactly a cached teacher fit (same model and
    config, teacher seed, data, ratio and caps): its test predictions are already on disk, so
    the trial is not trained twice (only a teacher with teacher_data "same" is such a fit). None
    when the trial is not such a fit or nothing is cached."""
    if spec.seed != TEACHER_SEED:
        return None
    # a teacher fitted on the student's part only ("same") is exactly this trial
    t_spec = teacher_spec(dataclasses.replace(spec, teacher_config=dict(spec.config), teacher_data="same"), spec.model)
    try:
        starts, pred, meta = load_predictions(t_spec)
    except TeacherCacheError:
        return None
    data, split, windows = _all_windows(spec)
    test = windows["test"]
    pos = np.searchsorted(starts, test.starts)
    extra = {"epochs": meta.get("epochs", 0), "train_s": round(meta.get("train_s", 0.0), 3),
             "infer_s": round(meta.get("infer_s", 0.0), 4), "params": meta.get("params", 0),
             "peak_mem_mb": round(meta.get("peak_mem_mb", 0.0), 1), "status": "ok", "error": "",
             "steps": meta.get("steps", ""), "best_epoch": meta.get("best_epoch", ""),
             "converged": meta.get("converged", ""), "val_mae": meta.get("best_val_mae", "")}
    rows = [row | extra for row in score(torch.as_tensor(pred[pos]), test, data, split)]
    rows[0]["history"] = meta.get("history", [])
    return rows


def teacher_table(root: str | Path, baseline: str | None = None) -> pd.DataFrame:
    """The cached teachers under `root` (OUT/teachers) grouped over seeds, one row per (dataset, ratio,
    teacher, what it is, teacher data): seeds, epochs (mean), converged fits, fit seconds (mean),
    validation and test MAE and test RMSE (mean and standard deviation over seeds).

    baseline: a group (matched by its teacher name, or a part of its description) that every other
    group of the same dataset, ratio and teacher data is tested against on the per-window test MAE
    (`bench.protocol.stats.two_level_test`, seeds paired by seed), Holm-adjusted over the table:
    columns "vs baseline" (a cell as `diff_cell`), "p" and "p (Holm)".

    Raises:
        TeacherCacheError: no cached teachers; a baseline that matches no group or several groups of one
            (dataset, ratio, teacher data); a cache without per-window test errors (fitted by an
            older FlowBench: `bench teacher predict` with its flags writes them).
    """
    from bench.protocol import stats
    caches = [meta for _, meta in cache_metas(root)]
    if not caches:
        raise TeacherCacheError(f"no cached teachers under {root}; fit some with `bench teacher fit`")
    keys = ("dataset", "ratio", "teacher", "description", "teacher_data")
    groups: dict[tuple, list[dict]] = {}
    for meta in caches:
        groups.setdefault(tuple(meta.get(k, "") for k in keys), []).append(meta)
    rows = []
    for key, metas in groups.items():
        metas = sorted(metas, key=lambda m: m.get("seed", TEACHER_SEED))
        row = dict(zip(("dataset", "ratio", "teacher", "what it is", "data"), key))
        row["fitted on"] = ", ".join(f"{f['dataset']} ({f['windows']})" for f in _fitted_on(metas[0]))
        row |= {"seeds": len(metas), "epochs": float(np.mean([m.get("epochs") or 0 for m in metas])),
                "converged": sum(bool(m.get("converged")) for m in metas),
                "fit s": float(np.mean([(m.get("train_s") or 0) + (m.get("predict_s") or 0) for m in metas]))}
        for name in ("val_mae", "test_mae", "test_rmse"):
            values = [m.get(name, m.get("best_val_mae")) if name == "val_mae" else m.get(name) for m in metas]
            values = np.array([v for v in values if v is not None], dtype=float)
            row[name.replace("_", " ").replace("mae", "MAE").replace("rmse", "RMSE")] = (
                float(values.mean()) if len(values) else float("nan"))
            row[name.replace("_", " ").replace("mae", "MAE").replace("rmse", "RMSE") + " sd"] = (
                float(values.std(ddof=1)) if len(values) > 1 else float("nan"))
        row["_metas"] = metas
        rows.append(row)
    table = pd.DataFrame(rows)
    if baseline is not None:
        table = _against_baseline(table, baseline, stats)
    return table.drop(columns="_metas")


def teacher_window_errors(root: str | Path) -> pd.DataFrame:
    """The per-window test MAE behind `teacher_table`: one row per cached teacher and test window
    (dataset, ratio, teacher, what it is, data, seed, window, window_block, mae), for caches that
    keep them."""
    frames = []
    for _, meta in cache_metas(root):
        if "test_window_mae" in meta:
            errors = meta["test_window_mae"]
            frames.append(pd.DataFrame({"dataset": meta["dataset"], "ratio": meta["ratio"], "teacher": meta["teacher"],
                                        "what it is": meta.get("description", ""), "data": meta.get("teacher_data", ""),
                                        "seed": meta.get("seed", TEACHER_SEED), "window": np.arange(len(errors)),
                                        "window_block": meta.get("window_block"), "mae": errors}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _against_baseline(table: pd.DataFrame, baseline: str, stats) -> pd.DataFrame:
    """`teacher_table`'s tests of every group against the baseline group of its dataset, ratio and data."""
    is_base = table["teacher"].eq(baseline) | table["what it is"].str.contains(baseline, regex=False)
    if not is_base.any():
        raise TeacherCacheError(f"--baseline {baseline!r} matches no cached teacher (give a teacher name or a part "
                                f"of its description from `bench teacher list`)")
    tests = {}
    for (ds, ratio, data), part in table.groupby(["dataset", "ratio", "data"]):
        base = part[is_base[part.index]]
        if len(base) > 1:
            raise TeacherCacheError(f"--baseline {baseline!r} matches {len(base)} teachers of {ds} at ratio {ratio:g} "
                                    f"({data}): {'; '.join(base['what it is'])}; give a part of one description")
        if base.empty:
            continue
        ref = base.iloc[0]["_metas"]
        for i, row in part.drop(index=base.index).iterrows():
            errors = []
            for metas in (row["_metas"], ref):
                missing = [m["teacher"] for m in metas if "test_window_mae" not in m]
                if missing:
                    raise TeacherCacheError(f"the cache of {missing[0]} has no per-window test errors; "
                                            f"`bench teacher predict` with its flags writes them")
                errors.append(np.array([m["test_window_mae"] for m in metas], dtype=float))
            tests[i] = stats.two_level_test(errors[0], errors[1], int(ref[0].get("window_block") or stats.DEFAULT_BLOCK),
                                            [m.get("seed", TEACHER_SEED) for m in row["_metas"]],
                                            [m.get("seed", TEACHER_SEED) for m in ref])
    adjusted = dict(zip(tests, stats.holm([t["p"] for t in tests.values()]))) if tests else {}
    table["vs baseline"] = [stats.diff_cell(tests[i], adjusted[i]) if i in tests else "" for i in table.index]
    table["p"] = [tests[i]["p"] if i in tests else float("nan") for i in table.index]
    table["p (Holm)"] = [adjusted.get(i, float("nan")) for i in table.index]
    return table
