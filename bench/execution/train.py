"""One training loop for every model: Adam, step decay, early stopping on validation masked MAE,
best weights restored before testing. A reader follows a training step in this file alone."""
from __future__ import annotations

import itertools
import math
import random
import resource
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.protocol.errors import BenchError
from bench.protocol.metrics import masked_mae
from bench.protocol.split import Windows


class TrainingError(BenchError, RuntimeError):
    """Training diverged (NaN/inf loss); the message gives the epoch and step."""


DEVICES = ("auto", "cpu", "cuda")


class DeviceError(BenchError, RuntimeError):
    """A device that this machine does not have (e.g. --device cuda without CUDA)."""


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" (CUDA when present, else CPU), "cpu" or "cuda" as a torch.device: the one place that
    decides where models, batches and teacher predictions live.

    Raises:
        DeviceError: "cuda" on a machine without CUDA, or an unknown name (lists the allowed ones).
    """
    if name not in DEVICES:
        raise DeviceError(f"device {name!r}; use one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: this machine has no CUDA device (torch.cuda.is_available() is False); "
                          "use --device cpu or auto, or install a CUDA build of torch on a GPU machine")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(batch: dict, device: torch.device | None) -> dict:
    """The batch with every tensor on `device` (other values as they are); `batch` when None."""
    if device is None:
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def set_seed(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator for batch shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def forward(model, batch: dict) -> torch.Tensor:
    """The model's z-scored prediction [B, H_out, N, C] for a batch: `model.forward_batch(batch)`
    when the model defines it (models that need the window's start step or dataset), else
    `model(x, tod, dow)`."""
    hook = getattr(model, "forward_batch", None)
    return hook(batch) if hook else model(batch["x"], batch["tod"], batch["dow"])


def training_loss(model, batch: dict):
    """The loss of one training step and its logs: the one place where a training prediction goes
    back to original units (`batch["scaler"]`, the z-score of the batch's dataset).

    `model.forward_train(batch)` gives (z-scored prediction, aux) when the model defines it (aux:
    what its loss needs besides the prediction, e.g. the bottleneck's mu and var), else the plain
    forward pass and no aux. `model.training_loss(pred, batch, **aux)` then gives (loss, logs)
    with `pred` in original units; a model without it is trained on the masked MAE (L_reg).
    """
    hook = getattr(model, "forward_train", None)
    y, aux = hook(batch) if hook else (forward(model, batch), {})
    pred = batch["scaler"].inverse(y)
    loss_fn = getattr(model, "training_loss", None)
    if loss_fn:
        return loss_fn(pred, batch, **aux)
    loss = masked_mae(pred, batch["y"])
    return loss, {"mae": loss.item()}


@torch.no_grad()
def predict(model, windows: Windows, batch_size: int = 256, progress: str | None = None,
            device: torch.device | None = None) -> torch.Tensor:
    """Predictions in original units for every window: [W, H_out, N, C], on the CPU; each batch's
    z-scored prediction is mapped back with the batch's own scaler (`batch["scaler"]`), as in
    `training_loss`.

    progress: a label to show a tqdm bar over batches (long predictions, e.g. a language-model teacher);
    device: where the batches go (the model must already be there), None: where they are."""
    model.eval()
    batches = windows.batches(batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc=progress, total=windows.num_batches(batch_size), unit="batch")
    out = [b["scaler"].inverse(forward(model, to_device(b, device))).cpu() for b in batches]
    return torch.cat(out)


def trainable_state(model) -> dict:
    """Copies of the parameters that train and of the buffers: all a fit changes (a frozen
    language model under LoRA is left out). Restore with load_state_dict(..., strict=False)."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keep}


@dataclass
class FitResult:
    """epochs run, the best validation epoch, optimiser steps taken, and `converged`: early
    stopping fired (patience ran out) before the epoch or step budget did. A reference forecaster
    (no training) has 0 epochs and 0 steps and counts as converged."""

    epochs: int
    best_epoch: int
    best_val_mae: float
    train_s: float
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    converged: bool = False


def calibrate(model, cfg, train, val: Windows, device: torch.device | None = None) -> FitResult:
    """The fit of a reference forecaster (`trainable = False`): no optimiser; `model.observe(batch)`
    sees every training batch once when the model defines it (e.g. a historical average)."""
    start = time.perf_counter()
    observe = getattr(model, "observe", None)
    model.eval()
    if observe:
        with torch.no_grad():
            for batch in train.batches(cfg.eval_batch_size):
                observe(to_device(batch, device))
    val = val.subset(cfg.val_windows)
    val_mae = float(masked_mae(predict(model, val, cfg.eval_batch_size, device=device), val.targets()))
    return FitResult(0, 0, val_mae, time.perf_counter() - start, [{"epoch": 0, "val_mae": val_mae}], 0, True)


def _endless(train, batch_size: int, generator: torch.Generator):
    """Training batches from one shuffle after another, so that rounds cut from it carry on across
    epochs (none when there are no training windows)."""
    while True:
        empty = True
        for batch in train.batches(batch_size, shuffle=True, generator=generator):
            empty = False
            yield batch
        if empty:
            return


def fit(model, cfg, train: Windows, val: Windows, generator: torch.Generator,
        max_steps: int | None = None, progress=None, max_batches: int | None = None,
        device: torch.device | None = None, fixed_rounds: bool = False) -> FitResult:
    """Train `model` in place and restore its best validation weights.

    Args:
        cfg: the model's TrainConfig (lr, batch_size, lr_decay, lr_step, max_epochs, patience, grad_clip,
            val_windows: early stopping on that many evenly spaced validation windows, or all).
        train: Windows, or MixedWindows (batches of several datasets).
        max_steps: the optimiser step budget: training stops after that many steps (mid-epoch:
            the last, partial epoch is validated like any other), or None (the epoch budget only).
        max_batches: at most this many batches per epoch, drawn afresh from a new shuffle each
            epoch (quick preset: an epoch is a round of at most that many steps; validation,
            learning-rate steps and patience count rounds, which are shorter where an epoch has
            fewer batches), or None for all.
        fixed_rounds: with max_batches, every round is exactly max_batches steps (the shuffle
            carries on into the next epoch's), so patience and learning-rate steps are the same
            number of optimiser steps at every training ratio.
        progress: optional callable(epoch, logs) called after every epoch.
        device: the model and every batch go there (`resolve_device`); None: where they are.
    Raises:
        TrainingError: a NaN/inf loss.
    """
    if device is not None:
        model.to(device)
    if not getattr(model, "trainable", True):
        return calibrate(model, cfg, train, val, device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_milestones:
        sched = torch.optim.lr_scheduler.MultiStepLR(optim, list(cfg.lr_milestones), gamma=cfg.lr_decay)
    else:
        sched = torch.optim.lr_scheduler.StepLR(optim, step_size=max(1, cfg.lr_step), gamma=cfg.lr_decay)
    val = val.subset(cfg.val_windows)
    best, best_state, best_epoch, bad, history = math.inf, None, 0, 0, []
    start = time.perf_counter()
    epoch, total_steps, converged = 0, 0, False
    stream = _endless(train, cfg.batch_size, generator) if fixed_rounds and max_batches else None
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        batches = itertools.islice(stream, max_batches) if stream is not None \
            else train.batches(cfg.batch_size, shuffle=True, generator=generator)
        for batch in batches:
            if (max_batches and steps >= max_batches) or (max_steps and total_steps >= max_steps):
                break
            batch = to_device(batch, device)
            loss, logs = training_loss(model, batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss is {loss.item()} at epoch {epoch}, step {steps + 1}; "
                                    f"lower the learning rate (lr={cfg.lr}) or check the data")
            optim.zero_grad()
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optim.step()
            steps += 1
            total_steps += 1
            for k, v in {"loss": loss.item(), **logs}.items():
                sums[k] = sums.get(k, 0.0) + v
        sched.step()
        val_mae = float(masked_mae(predict(model, val, cfg.eval_batch_size, device=device), val.targets()))
        logs = {k: v / max(steps, 1) for k, v in sums.items()} | {"epoch": epoch, "val_mae": val_mae}
        history.append(logs)
        if progress:
            progress(epoch, logs)
        if val_mae < best:
            best, best_epoch, bad = val_mae, epoch, 0
            best_state = trainable_state(model)
        else:
            bad += 1
        if bad >= cfg.patience:
            converged = True
            break
        if max_steps and total_steps >= max_steps:
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    return FitResult(epoch, best_epoch, best, time.perf_counter() - start, history, total_steps, converged)


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, else max RSS (MB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
