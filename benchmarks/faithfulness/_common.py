"""Shared glue for compare_astgcn.py / compare_bigst.py: data, evaluation, our-model training, table."""
from __future__ import annotations

import copy
import math
import time

import torch

torch.set_num_threads(1)

from bench.protocol import registry                          # noqa: E402
from bench.protocol.data import load_dataset                          # noqa: E402
from bench.protocol.metrics import masked_mae, masked_rmse            # noqa: E402
from bench.protocol.split import H_IN, H_OUT, prepare              # noqa: E402
from bench.execution.train import fit, predict, set_seed               # noqa: E402

RATIO = 0.4


def log(text: str) -> None:
    print(text, flush=True)


def load(report: bool = False):
    """NYCTaxi at RATIO: (data, split, scaler, parts); report=True logs the window counts."""
    data = load_dataset("NYCTaxi")
    split, scaler, parts = prepare(data, RATIO)
    if report:
        log(f"NYCTaxi ratio {RATIO}: train/val/test windows {len(parts['train'])}/{len(parts['val'])}/"
            f"{len(parts['test'])}, threads {torch.get_num_threads()}")
    return data, split, scaler, parts


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def metrics(pred: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    return float(masked_mae(pred, truth)), float(masked_rmse(pred, truth))


def score(pred: torch.Tensor, truth: torch.Tensor) -> dict:
    """Masked MAE/RMSE of channel 0 (inflow) and of both channels: pred, truth [B, 12, N, C]."""
    (mae0, rmse0), (mae, rmse) = metrics(pred[..., 0], truth[..., 0]), metrics(pred, truth)
    return dict(mae0=mae0, rmse0=rmse0, mae=mae, rmse=rmse)


def train_ours(name, data, scaler, parts, epochs, log, keep_model=False, prepare=None, **cfg_changes):
    """Our registry model trained by bench.execution.train.fit (best-val-MAE weights restored); returns a row,
    or (row, trained model) with keep_model=True. prepare(model), if given, runs on the freshly built
    model before training (e.g. to load other initial weights)."""
    gen = set_seed(0)
    entry = registry.get(name)
    info = registry.ModelInfo.of(data, scaler, H_IN, H_OUT)
    model = entry.cls(entry.config(**cfg_changes), info)
    if prepare is not None:
        prepare(model)
    cfg = entry.config(max_epochs=epochs, patience=epochs, **cfg_changes)
    label = f"ours ({name}{', ' + ', '.join(f'{k}={v}' for k, v in cfg_changes.items()) if cfg_changes else ''})"
    log(f"[{label}] config: {cfg}")
    res = fit(model, cfg, parts["train"], parts["val"], gen,
              progress=lambda e, l: log(f"[{label}] epoch {e}: train loss {l['loss']:.4f}  val MAE (both ch) {l['val_mae']:.4f}"))
    scores = score(predict(model, parts["test"]), parts["test"].targets())
    log(f"[{label}] best epoch {res.best_epoch}, train+val time {res.train_s:.1f}s")
    row = dict(model=label, epochs=res.epochs, best=res.best_epoch, secs=res.train_s, **scores, params=n_params(model))
    return (row, model) if keep_model else row


def train_official(label, model, forward, loss_fn, optim, parts, epochs, batch_size, log, grad_clip=None, sched=None):
    """Generic loop for an official model, same batch order as ours (torch.Generator seeded 0).

    forward(batch) -> prediction of channel 0 in ORIGINAL units [B, 12, N];
    loss_fn(batch) -> scalar loss as the official training code computes it.
    Validation after every epoch: masked MAE (channel 0, original units) over all validation windows;
    the best epoch's weights are restored before testing."""
    gen = torch.Generator().manual_seed(0)
    best, best_state, best_epoch = math.inf, None, 0
    val_truth = parts["val"].targets()[..., 0]
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, steps = 0.0, 0
        for batch in parts["train"].batches(batch_size, shuffle=True, generator=gen):
            optim.zero_grad()
            loss = loss_fn(batch)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optim.step()
            total += loss.item()
            steps += 1
        if sched is not None:
            sched.step()
        val_mae = float(masked_mae(predict_official(model, forward, parts["val"]), val_truth))
        log(f"[{label}] epoch {epoch}: train loss {total / steps:.4f}  val MAE (ch0) {val_mae:.4f}")
        if val_mae < best:
            best, best_epoch, best_state = val_mae, epoch, copy.deepcopy(model.state_dict())
    secs = time.perf_counter() - start
    model.load_state_dict(best_state)
    pred = predict_official(model, forward, parts["test"])
    mae0, rmse0 = metrics(pred, parts["test"].targets()[..., 0])
    log(f"[{label}] best epoch {best_epoch}, train+val time {secs:.1f}s")
    return dict(model=label, epochs=epochs, best=best_epoch, secs=secs, mae0=mae0, rmse0=rmse0,
                mae=float("nan"), rmse=float("nan"), params=n_params(model))


@torch.no_grad()
def predict_official(model, forward, windows, batch_size=64):
    model.eval()
    return torch.cat([forward(b) for b in windows.batches(batch_size)])


def table(rows) -> str:
    head = f"{'model':<40} {'epochs':>6} {'best':>4} {'train_s':>8} {'MAE ch0':>8} {'RMSE ch0':>8} {'MAE both':>8} {'RMSE both':>9} {'params':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        both = (f"{r['mae']:>8.4f} {r['rmse']:>9.4f}" if not math.isnan(r["mae"]) else f"{'-':>8} {'-':>9}")
        lines.append(f"{r['model']:<40} {r['epochs']:>6} {r['best']:>4} {r['secs']:>8.1f} {r['mae0']:>8.4f} "
                     f"{r['rmse0']:>8.4f} {both} {r['params']:>8}")
    return "\n".join(lines)
