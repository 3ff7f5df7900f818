"""The one evaluation protocol every model goes through.

- Chronological split on time steps: test = last 10 %, validation = the 10 % before it, training =
  the `ratio` fraction of the whole series directly before validation (ratio in (0, 0.8]), so all
  ratios share one validation and one test set.
- Sliding windows H_in = 12 -> H_out = 12. A window is its start step s: inputs s .. s+H_in-1,
  targets s+H_in .. s+H_in+H_out-1. A window belongs to a split when all its targets lie in it;
  training windows also keep their inputs inside the training part. Windows are stored as start
  indices and gathered per batch, never materialised for the whole split.
- Z-score per channel, fitted on the training part only.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from bench.protocol.errors import BenchError
from bench.protocol.data import Dataset

H_IN = 12
H_OUT = 12
VAL_FRAC = 0.1
TEST_FRAC = 0.1
MAX_RATIO = 1.0 - VAL_FRAC - TEST_FRAC


class ProtocolError(BenchError, ValueError):
    """Bad protocol argument (ratio outside (0, 0.8], too few steps for a window)."""


def check_ratio(ratio: float) -> float:
    """Return `ratio` as float or raise ProtocolError naming the allowed range."""
    try:
        ratio = float(ratio)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"ratio {ratio!r} is not a number; use a value in (0, {MAX_RATIO:g}]") from exc
    if not 0.0 < ratio <= MAX_RATIO + 1e-9:
        raise ProtocolError(f"ratio {ratio} is outside (0, {MAX_RATIO:g}]: validation and test take the "
                            f"last {VAL_FRAC + TEST_FRAC:.0%} of the series; use e.g. 0.1 .. 0.7")
    return ratio


@dataclass(frozen=True)
class Split:
    """Step boundaries [train_start, val_start) [val_start, test_start) [test_start, T)."""

    train_start: int
    val_start: int
    test_start: int
    total: int


def split_steps(total: int, ratio: float) -> Split:
    """Chronological split of T = `total` steps for a training ratio.

    Raises:
        ProtocolError: ratio outside (0, 0.8] or a training part shorter than H_in + H_out.
    """
    ratio = check_ratio(ratio)
    n_test = int(round(total * TEST_FRAC))
    n_val = int(round(total * VAL_FRAC))
    test_start = total - n_test
    val_start = test_start - n_val
    train_start = max(0, val_start - int(round(total * ratio)))
    if val_start - train_start < H_IN + H_OUT:
        raise ProtocolError(f"ratio {ratio} leaves {val_start - train_start} training steps of {total}; "
                            f"at least H_in + H_out = {H_IN + H_OUT} are needed: raise the ratio")
    return Split(train_start, val_start, test_start, total)


def horizons(data: Dataset) -> tuple[int, int]:
    """(H_in, H_out) of a dataset: its registry's `h_in` / `h_out` (e.g. 10 -> 10 frames for
    Navier-Stokes), default 12 -> 12."""
    return int(data.meta.get("h_in") or H_IN), int(data.meta.get("h_out") or H_OUT)


def sample_split(samples: int, ratio: float, holdout: float | None = None) -> tuple[int, int, int]:
    """(training, validation, test) sample counts of a dataset of `samples` independent samples.

    Without `holdout`: test = round(10 % of the samples), validation as many, training
    round(ratio x samples). With `holdout` (a registry entry's fraction, e.g. 1/12): test and
    validation round(holdout x samples) each, and `ratio` is read as a share of the largest
    training part, round((samples - validation - test) x ratio / MAX_RATIO), so the largest
    ratio (0.8) trains on every sample before validation. NavierStokes1200 (holdout 1/12):
    1,000 / 100 / 100 at ratio 0.8 (FNO's 1,000 training samples, its 200 test samples halved
    into validation and test); NavierStokes (no holdout): 96 / 12 / 12 of 120.

    Raises:
        ProtocolError: bad ratio, or no training, validation or test sample.
    """
    ratio = check_ratio(ratio)
    n_test = int(round(samples * (holdout or TEST_FRAC)))
    n_val = int(round(samples * (holdout or VAL_FRAC)))
    pool = samples - n_test - n_val
    n_train = min(pool, int(round(pool * ratio / MAX_RATIO) if holdout else round(samples * ratio)))
    if n_train < 1 or n_test < 1 or n_val < 1:
        raise ProtocolError(f"ratio {ratio} leaves {max(n_train, 0)} training samples of {samples} "
                            f"({n_val} validation, {n_test} test); raise the ratio or generate more samples")
    return n_train, n_val, n_test


def split_for(data: Dataset, ratio: float) -> Split:
    """The split of a dataset: `split_steps` on its steps, or, for a dataset of independent
    samples (registry `layout: samples`, `sample_len` frames each), `sample_split` on whole
    samples (test the last ones, validation right before, training right before validation;
    the registry's `holdout` sets the validation and test share), returned in steps so that
    every part starts on a sample.

    Raises:
        ProtocolError: bad ratio, or fewer than one training sample.
    """
    total, length = data.flow.shape[0], data.meta.get("sample_len")
    if not length:
        return split_steps(total, ratio)
    samples = total // length
    n_train, n_val, n_test = sample_split(samples, ratio, data.meta.get("holdout"))
    test_start = samples - n_test
    val_start = test_start - n_val
    return Split((val_start - n_train) * length, val_start * length, test_start * length, samples * length)


TEACHER_DATA = ("disjoint", "same", "all", "none")


def teacher_split(split: Split, teacher_data: str) -> Split:
    """A split whose training part [train_start, val_start) holds the steps a teacher is fitted on
    (draw only its "train" windows: the teacher's validation and test windows stay the student's):
    - "disjoint" (FlowDistill section 2.2: data "unseen during the training process"): every step
      before the student's training part, [0, train_start); empty at ratio 0.8;
    - "same": the student's training part, [train_start, val_start);
    - "all": every step before validation, [0, val_start), whatever the ratio;
    - "none": no step of the target (an empty training part): a teacher from elsewhere, fitted on
      the other datasets its `extra_datasets` names.
    No option reaches validation or test; "disjoint" never reaches the student's part.

    Raises:
        ProtocolError: an unknown option (names the allowed ones).
    """
    if teacher_data not in TEACHER_DATA:
        raise ProtocolError(f"teacher_data={teacher_data!r}; use one of {', '.join(TEACHER_DATA)}")
    if teacher_data == "same":
        return split
    if teacher_data == "none":
        return Split(split.train_start, split.train_start, split.test_start, split.total)
    end = split.train_start if teacher_data == "disjoint" else split.val_start
    return Split(0, end, split.test_start, split.total)


def window_starts(split: Split, part: str, h_in: int = H_IN, h_out: int = H_OUT,
                  sample_len: int | None = None) -> np.ndarray:
    """Start steps of the windows of one part ("train", "val" or "test"), ascending int64.
    sample_len: the series is made of independent samples of that many steps: one window per
    sample of the part, starting at the sample's first step."""
    if sample_len:
        bounds = {"train": (split.train_start, split.val_start), "val": (split.val_start, split.test_start),
                  "test": (split.test_start, split.total)}
        if part not in bounds:
            raise ProtocolError(f"unknown part {part!r}; use train, val or test")
        return np.arange(*bounds[part], sample_len, dtype=np.int64)
    if part == "train":
        lo, hi = split.train_start, split.val_start - h_in - h_out
    elif part == "val":
        lo, hi = split.val_start - h_in, split.test_start - h_in - h_out
    elif part == "test":
        lo, hi = split.test_start - h_in, split.total - h_in - h_out
    else:
        raise ProtocolError(f"unknown part {part!r}; use train, val or test")
    return np.arange(max(lo, 0), hi + 1, dtype=np.int64)


@dataclass(frozen=True)
class Scaler:
    """Per-channel z-score fitted on the training part: mean [C], std [C] (original units)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, flow: np.ndarray, split: Split) -> "Scaler":
        part = flow[split.train_start:split.val_start]
        std = part.std(axis=(0, 1))
        return cls(part.mean(axis=(0, 1)).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32))

    def transform(self, x):
        return (x - _like(self.mean, x)) / _like(self.std, x)

    def inverse(self, x):
        """Normalised [..., C] back to original units."""
        return x * _like(self.std, x) + _like(self.mean, x)


def _like(a: np.ndarray, x):
    return torch.as_tensor(a, device=x.device, dtype=x.dtype) if isinstance(x, torch.Tensor) else a


class Windows:
    """The windows of one dataset, ratio and part, gathered per batch.

    Batches are dicts of tensors:
        x [B, H_in, N, C] normalised inputs, tod/dow [B, H_in] int64,
        y [B, H_out, N, C] targets in original units, tod_out/dow_out [B, H_out] int64 (the
        targets' calendar), index [B] positions within the part,
        start [B] int64 first input step of each window (steps since the dataset's `start`),
        dataset: the dataset's registry name (str), scaler: its `Scaler` (the one the runner maps
        a z-scored prediction back to original units with),
        y_teacher [B, H_out, N, C] when teacher predictions were attached,
        history [B, lookback, N, C] in original units when `lookback` > H_in: the `lookback` steps
        that end with the window's last input step (a model's declared lookback, e.g. one week
        for a seasonal naive forecast; `bench.protocol.registry` documents the contract). Steps before
        step 0 of the series are NaN: the model decides what to do there.

    Attributes:
        lookback: steps of history a batch carries (default H_in: no `history` key); set it to
            the model's `lookback` before drawing batches.
    """

    def __init__(self, data: Dataset, split: Split, part: str, scaler: Scaler,
                 h_in: int | None = None, h_out: int | None = None, max_windows: int | None = None, seed: int = 0,
                 series: tuple[torch.Tensor, torch.Tensor] | None = None, stride: int | None = None):
        """`h_in`, `h_out`: default the dataset's (`horizons`). `series`: (flow, normalised flow)
        [T, N, C] tensors to share with the other parts of the same split (see `prepare`); built
        here when None. `stride`: keep every stride-th window (the quick preset's training
        windows; the span of time covered does not change)."""
        h_in = h_in or horizons(data)[0]
        h_out = h_out or horizons(data)[1]
        self.data, self.part, self.h_in, self.h_out, self.scaler = data, part, h_in, h_out, scaler
        starts = window_starts(split, part, h_in, h_out, data.meta.get("sample_len"))
        if stride and stride > 1:
            starts = starts[::stride]
        if max_windows is not None and len(starts) > max_windows:
            keep = np.sort(np.random.default_rng(seed).choice(len(starts), max_windows, replace=False))
            starts = starts[keep]
        self.starts = starts
        self.flow, self.flow_norm = series or series_tensors(data, scaler)   # [T, N, C] each
        self.tod = torch.from_numpy(data.tod)
        self.dow = torch.from_numpy(data.dow)
        self.teacher: torch.Tensor | None = None
        self.teacher_latent: torch.Tensor | None = None
        self.lookback = h_in
        self._targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def attach_teacher(self, predictions: np.ndarray, latents: np.ndarray | None = None) -> None:
        """Teacher predictions [len(self), H_out, N, C] in original units, aligned with self.starts,
        and optionally the teacher's latents [len(self), ...] (batches then carry `z_teacher`)."""
        expected = (len(self), self.h_out, self.data.num_nodes, self.data.num_channels)
        if tuple(predictions.shape) != expected:
            raise ProtocolError(f"teacher predictions have shape {tuple(predictions.shape)}, the {self.part} "
                                f"windows need {expected}")
        if latents is not None and len(latents) != len(self):
            raise ProtocolError(f"teacher latents cover {len(latents)} windows, the {self.part} windows are {len(self)}")
        self.teacher = torch.as_tensor(predictions, dtype=torch.float32)
        self.teacher_latent = None if latents is None else torch.as_tensor(latents)

    def batch(self, positions) -> dict[str, torch.Tensor]:
        positions = torch.as_tensor(positions, dtype=torch.int64)
        s = torch.from_numpy(self.starts)[positions]
        t_in = s[:, None] + torch.arange(self.h_in)
        t_out = s[:, None] + self.h_in + torch.arange(self.h_out)
        out = {"x": self.flow_norm[t_in], "tod": self.tod[t_in], "dow": self.dow[t_in],
               "y": self.flow[t_out], "tod_out": self.tod[t_out], "dow_out": self.dow[t_out],
               "index": positions, "start": s, "dataset": self.data.name, "scaler": self.scaler}
        if self.teacher is not None:
            out["y_teacher"] = self.teacher[positions]
        if self.teacher_latent is not None:
            out["z_teacher"] = self.teacher_latent[positions].float()
        if self.lookback > self.h_in:
            t_hist = s[:, None] + self.h_in - self.lookback + torch.arange(self.lookback)
            history = self.flow[t_hist.clamp(min=0)]
            out["history"] = history.masked_fill((t_hist < 0)[:, :, None, None], float("nan"))
        return out

    def subset(self, n: int | None) -> "Windows":
        """At most `n` windows, evenly spaced over the part (a fixed, seed-free choice), sharing
        this object's series; `self` when n is None or not smaller than the part."""
        if n is None or n >= len(self):
            return self
        out = copy.copy(self)
        keep = np.linspace(0, len(self) - 1, n).round().astype(np.int64)
        out.starts = self.starts[keep]
        out.teacher = None if self.teacher is None else self.teacher[keep]
        out.teacher_latent = None if self.teacher_latent is None else self.teacher_latent[keep]
        out._targets = None
        return out

    def targets(self) -> torch.Tensor:
        """Targets [W, H_out, N, C] of every window in original units (computed once)."""
        if self._targets is None:
            self._targets = torch.cat([b["y"] for b in self.batches(1024)])
        return self._targets

    def num_batches(self, batch_size: int) -> int:
        """Batches `batches(batch_size)` yields: one epoch's optimiser steps."""
        return math.ceil(len(self) / batch_size)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for i in range(0, len(self), batch_size):
            yield self.batch(order[i:i + batch_size])


VOLUME_BUCKETS = 4


def volume_buckets(flow: np.ndarray, split: Split, q: int = VOLUME_BUCKETS) -> np.ndarray:
    """Traffic-volume bucket of every region: [N] int in 0 (lowest) .. q-1, equal-size buckets by
    the rank of the region's mean flow (all channels) over the training steps."""
    mean = flow[split.train_start:split.val_start].mean(axis=(0, 2))
    rank = np.empty(len(mean), dtype=np.int64)
    rank[np.argsort(mean, kind="stable")] = np.arange(len(mean))
    return rank * q // len(mean)


def series_tensors(data: Dataset, scaler: Scaler) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow series [T, N, C] in original units and z-scored: the only copies windows read."""
    flow = torch.from_numpy(np.array(data.flow))
    return flow, scaler.transform(flow)


def prepare(data: Dataset, ratio: float, max_train_windows: int | None = None, seed: int = 0,
            train_stride: int | None = None, train_start: int | None = None):
    """Split, fit the scaler on training steps, and build the three window sets (training
    windows: every `train_stride`-th, then at most `max_train_windows` drawn with `seed`).
    `train_start`: the first training step instead of the ratio's (an oracle's training part,
    extended back; never later than the ratio's, never into validation).

    Returns:
        (split, scaler, {"train": Windows, "val": Windows, "test": Windows}); the three window
        sets share one raw and one normalised copy of the series.
    """
    split = split_for(data, ratio)
    if train_start is not None:
        if not 0 <= train_start <= split.train_start:
            raise ProtocolError(f"train_start {train_start} must lie in [0, {split.train_start}] (the ratio's first "
                                f"training step); an extended training part never reaches validation")
        split = Split(train_start, split.val_start, split.test_start, split.total)
    scaler = Scaler.fit(data.flow, split)
    series = series_tensors(data, scaler)
    parts = {part: Windows(data, split, part, scaler, max_windows=max_train_windows if part == "train" else None,
                           seed=seed, series=series, stride=train_stride if part == "train" else None)
             for part in ("train", "val", "test")}
    return split, scaler, parts


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def weekday_coverage(data: Dataset, ratio: float) -> dict:
    """Which days of the week the training part at `ratio` covers, and the share of test windows
    whose targets fall (at least in part) on a day the training part never shows: the
    day-of-week embedding of such a day is never trained.

    Returns {"covered": [weekday names], "missing": [weekday names], "test_share": share of test
    windows with a target step on a missing day (0 when every day is covered)}; data.dow counts
    0 = Monday, as the registry's calendar does.

    Raises:
        ProtocolError: a bad ratio.
    """
    split = split_for(data, ratio)
    seen = set(np.unique(np.asarray(data.dow[split.train_start:split.val_start])).tolist())
    h_in, h_out = horizons(data)
    starts = window_starts(split, "test", h_in, h_out, data.meta.get("sample_len"))
    targets = np.asarray(data.dow)[starts[:, None] + h_in + np.arange(h_out)]
    hit = ~np.isin(targets, sorted(seen)).all(axis=1) if len(starts) else np.zeros(0, bool)
    return {"covered": [WEEKDAYS[d] for d in sorted(seen)], "missing": [WEEKDAYS[d] for d in range(7) if d not in seen],
            "test_share": float(hit.mean()) if len(hit) else 0.0}


class MixedWindows:
    """Training windows of a target dataset plus windows of other datasets (instruction tuning on
    several datasets of one city, as UrbanGPT and FlowDistill section 2.2 do).

    Each epoch yields every batch of the target and as many batches drawn from the other
    datasets (all of them in turn, in shuffled order), interleaved at random. A batch holds
    windows of one dataset only; its `dataset` key names it.
    """

    def __init__(self, target: Windows, others: list[Windows]):
        self.target, self.others = target, [w for w in others if len(w)]

    def __len__(self) -> int:
        if not len(self.target):
            return sum(len(w) for w in self.others)
        return len(self.target) * (2 if self.others else 1)

    def num_batches(self, batch_size: int) -> int:
        """Batches `batches(batch_size)` yields: the target's, then as many of the others' (all of
        theirs once when the target has none)."""
        own = self.target.num_batches(batch_size)
        if not self.others:
            return own
        return own + (own or sum(w.num_batches(batch_size) for w in self.others))

    def batches(self, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None):
        def chunks(w: Windows):
            order = torch.randperm(len(w), generator=generator) if shuffle else torch.arange(len(w))
            return [(w, order[i:i + batch_size]) for i in range(0, len(w), batch_size)]
        plan = chunks(self.target)
        if self.others:
            pools = [chunks(w) for w in self.others]
            # as many batches of the others as of the target; all of theirs once when the target has none
            n = len(plan) or sum(len(p) for p in pools)
            plan += [pools[i % len(pools)][(i // len(pools)) % len(pools[i % len(pools)])] for i in range(n)]
        order = torch.randperm(len(plan), generator=generator) if shuffle else torch.arange(len(plan))
        for i in order.tolist():
            windows, positions = plan[i]
            yield windows.batch(positions)
