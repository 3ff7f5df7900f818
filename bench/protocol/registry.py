"""Model registry: name -> model class (+ config overrides). Adding a model is one new module.

The contract a registered model follows (the runner relies on nothing else):

- `Config`: a dataclass subclassing `bench.protocol.registry.TrainConfig`, holding the model's
  hyperparameters and its training settings, with its paper's or official code's defaults; an
  optional plain class attribute `CHOICES` {field: allowed values} makes any other value an error.
- `__init__(cfg: Config, info: ModelInfo)`.
- `forward(x, tod, dow) -> y`: x [B, H_in, N, C] z-scored flows, tod/dow [B, H_in] int64,
  y [B, H_out, N, C] z-scored predictions.
- optional `forward_train(batch) -> (y, aux)`: the training forward pass, y z-scored as `forward`'s
  and aux a dict of what the loss needs besides (e.g. a bottleneck's mu and var); default
  (`forward`'s y, {}).
- optional `training_loss(pred, batch, **aux) -> (loss, logs)`: pred is y in original units (the
  runner maps it back with the batch's `scaler`, in one place: `bench.execution.train.
  training_loss`), batch as built by `bench.protocol.split.Windows` (y and y_teacher in original
  units); without it the runner trains on the masked MAE in original units.
- a config field `teacher` (a registered model name or None): the runner then attaches that
  teacher's cached predictions to the training batches as `y_teacher`.
- optional `inference_graph() -> nn.Module`: the deployable forward pass, forward(x, tod, dow) -> y
  as `forward` gives in eval mode, without what only training needs (sampling, dropout, loss
  terms); `bench export` and the latency benchmark run it (default: the model itself in eval mode).
- optional `forward_batch(batch) -> y`: used instead of `forward` by models that need more than
  (x, tod, dow), e.g. the window's start step or the dataset name of a mixed batch.
- optional attribute `lookback` (int, steps): how many steps up to the window's last input step the
  model reads (default H_in). A model with lookback > H_in (the seasonal naive forecasts: one day
  or one week) gets `history` [B, lookback, N, C] in original units in every batch; steps before
  step 0 of the series are NaN there, and the model says in its docstring what it forecasts then.
- optional class attribute `trainable = False` (reference forecasters): no optimiser runs; the
  runner calls `observe(batch)` (when defined) once for every training batch, e.g. to gather a
  historical average, then predicts. Such a model has no training settings: a config change of
  lr, epochs, patience and the like is refused (`TRAINING_FIELDS`).
- optional config field `extra_datasets` (tuple of registry names, or ("same-city",)): the
  training windows of those datasets join the training set (batches carry `dataset`), and
  `add_dataset(name, info)` is called once per extra dataset before training.

Modules in `models/` and `baselines/` are imported on first use; each registers itself with
`@register("name")`.
"""
from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.protocol.errors import BenchError
from bench.protocol.split import Scaler


class UnknownModelError(BenchError, KeyError):
    """A model name that is not registered; the message lists the registered ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class TrainConfig:
    """Training settings shared by every model (each model overrides the defaults of its paper).

    lr: initial Adam learning rate; weight_decay: Adam L2; batch_size: windows per step;
    lr_decay / lr_step: multiply lr by lr_decay every lr_step epochs (lr_decay=1: constant), or at
    the epochs in lr_milestones when given;
    max_epochs, patience: early stopping on validation masked MAE; grad_clip: max grad norm or None;
    teacher: registered model whose cached predictions the loss uses, or None;
    teacher_shuffle: the teacher's forecasts are permuted across the training windows (same values,
    wrong windows; the distill suite's "shuffled teacher" control: distillation as a regulariser,
    with no knowledge in it);
    oracle_of: a registered teacher whose data this model trains on instead of reading its
    forecasts (the distill suite's "oracle" control: the training part joined with the ground
    truth the teacher's forecasts carry, `bench.execution.context.oracle_train_start`), or None;
    val_windows: early stopping on that many evenly spaced validation windows (None: all; for
    slow models); eval_batch_size: windows per prediction batch (validation, test, teacher caches).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    lr_decay: float = 1.0
    lr_step: int = 10
    lr_milestones: tuple[int, ...] | None = None
    max_epochs: int = 100
    patience: int = 10
    grad_clip: float | None = None
    teacher: str | None = None
    teacher_shuffle: bool = False
    oracle_of: str | None = None
    val_windows: int | None = None
    eval_batch_size: int = 256


@dataclass(frozen=True)
class ModelInfo:
    """What a model may know about the data: sizes, calendar, graph, scaler, the dataset's name and
    its registry metadata (city, start, interval_min, units, channel_names)."""

    num_nodes: int
    num_channels: int
    h_in: int
    h_out: int
    steps_per_day: int
    adjacency: np.ndarray = field(repr=False)
    scaler: Scaler = field(repr=False)
    dataset: str = ""
    meta: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, data, scaler: Scaler, h_in: int, h_out: int) -> "ModelInfo":
        """The info of a `bench.protocol.data.Dataset` with its fitted scaler."""
        return cls(data.num_nodes, data.num_channels, h_in, h_out, data.steps_per_day, data.adjacency, scaler,
                   data.name, dict(data.meta))


# TrainConfig fields that only mean something to a model that trains
TRAINING_FIELDS = ("lr", "weight_decay", "batch_size", "lr_decay", "lr_step", "lr_milestones", "max_epochs",
                   "patience", "grad_clip", "teacher_shuffle", "oracle_of")


def trains(name: str) -> bool:
    """False for a registered reference forecaster (class attribute `trainable = False`)."""
    return get(name).trains


def lookback(model, h_in: int) -> int:
    """The steps of history a model instance reads: its `lookback`, default `h_in`."""
    return int(getattr(model, "lookback", None) or h_in)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    overrides: dict
    description: str

    @property
    def trains(self) -> bool:
        """False for a reference forecaster (class attribute `trainable = False`)."""
        return getattr(self.cls, "trainable", True)

    @property
    def needs_grid(self) -> bool:
        """True for a grid model (class attribute `needs_grid = True`, e.g. SDKD's teacher and
        students): it runs only on a dataset whose registry entry has `grid: [H, W]`."""
        return getattr(self.cls, "needs_grid", False)

    def config(self, **changes: Any) -> TrainConfig:
        """The model's Config with registry overrides, then `changes`.

        Raises:
            ValueError: an unknown key, a value of the wrong type (names key, value, type), or a
            training setting (lr, max_epochs, ...) for a reference forecaster.
        """
        hints = typing.get_type_hints(self.cls.Config)
        unknown = set(changes) - set(hints)
        if not self.trains:
            untrained = sorted(set(changes) & set(TRAINING_FIELDS))
            if untrained:
                raise ValueError(f"model {self.name} is a reference forecaster: it is not trained, so it has no "
                                 f"{', '.join(untrained)}; drop the setting or the model")
        if unknown:
            raise ValueError(f"model {self.name}: unknown config key(s) {sorted(unknown)}; known: {sorted(hints)}")
        for key, value in changes.items():
            if not _fits(value, hints[key]):
                raise ValueError(f"model {self.name}: config {key}={value!r} is not of type {hints[key]}")
            allowed = getattr(self.cls.Config, "CHOICES", {}).get(key)
            if allowed and value not in allowed:
                raise ValueError(f"model {self.name}: config {key}={value!r}; use one of {', '.join(allowed)}")
        return self.cls.Config(**{**self.overrides, **changes})


def _fits(value, hint) -> bool:
    """Does `value` fit the annotation `hint` (int, float, str, bool, tuple[...], X | None)?"""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, (tuple, list)) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


_REGISTRY: dict[str, ModelEntry] = {}
_DISCOVERED = False


def register(name: str, description: str = "", **overrides):
    """Class decorator: register `cls` under `name` with config `overrides` (may be stacked)."""
    def wrap(cls):
        _REGISTRY[name] = ModelEntry(name, cls, overrides, description or (cls.__doc__ or "").strip().splitlines()[0])
        return cls
    return wrap


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    for package in ("models", "baselines"):
        pkg = importlib.import_module(package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{package}.{mod.name}")
    _DISCOVERED = True


def names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get(name: str) -> ModelEntry:
    """The registered entry; raises UnknownModelError listing the registered names."""
    _discover()
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))} "
                                f"(see `bench list models`)")
    return _REGISTRY[name]


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else ValueError naming the allowed values (a model's
    constructor checks its string options with it)."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; use one of {', '.join(allowed)}")
    return value
