"""The trial context: what a trial reads, built once: its dataset (and node slice),
split, scaler, windows, the model's config and the model on its device. A trial, a teacher fit
and a teacher cache lookup all read the context instead of rebuilding it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from bench.protocol import registry
from bench.protocol.data import DataError, Dataset, load_dataset, load_registry
from bench.protocol.split import MixedWindows, Scaler, Split, Windows, horizons, prepare, split_for, teacher_split
from bench.execution.spec import TrialSpec
from bench.execution.train import resolve_device, set_seed


@dataclass
class TrialContext:
    """Everything one trial reads.

    Attributes:
        spec: the TrialSpec.
        data: the dataset, its first `spec.num_nodes` regions when set (`trial_data`).
        split: the chronological split at `spec.ratio`; scaler: z-score fitted on its training part.
        parts: {"train", "val", "test": Windows}, with the model's lookback set.
        cfg: the model's config with the spec's overrides and caps (`TrialSpec.model_config`).
        info: the ModelInfo the model was built from.
        model: the model (seeded with `spec.seed`), on `device`.
        device: where the model, its batches and its teacher's predictions live.
        teacher_meta: the meta of the teacher cache attached to the training windows (None: none yet).
    """

    spec: TrialSpec
    data: Dataset
    split: Split
    scaler: Scaler
    parts: dict[str, Windows]
    cfg: object
    info: registry.ModelInfo
    model: torch.nn.Module
    device: torch.device
    teacher_meta: dict | None = None


@lru_cache(maxsize=8)
def _trial_data(dataset: str, data_dir: str | None, registry_file: str | None, num_nodes: int | None) -> Dataset:
    data = load_dataset(dataset, data_dir, registry_file)
    return data.slice_nodes(num_nodes) if num_nodes else data


def trial_data(spec: TrialSpec) -> Dataset:
    """The spec's dataset (its first `num_nodes` regions when set), one object per process, so
    its `fingerprint` is hashed once.

    Raises:
        DataError: unknown dataset or missing files (the message names the fix).
    """
    return _trial_data(spec.dataset, spec.data_dir, spec.registry_file, spec.num_nodes)


def oracle_train_start(data: Dataset, split: Split, teacher: str, teacher_data: str) -> int:
    """The first training step of the oracle of `teacher`: the student's training part joined with
    the ground truth that the teacher's forecasts of the student's training windows carry.

    - A teacher that trains: its `teacher_data` part (`bench.protocol.split.teacher_split`) joined
      to the student's: step 0 for "disjoint" and "all", the student's own start for "same".
    - A reference forecaster with a lookback longer than H_in (seasonal naive: its forecast of
      step t is the flow at t - P): the training part extended back by that lag P (step 0 at most).
    - Any other reference forecaster (historical average: it only reads the student's part):
      the student's own start (the oracle is the student without teacher).
    The extension never reaches validation or test: it only moves the start earlier.

    Raises:
        UnknownModelError: `teacher` is not registered.
    """
    entry = registry.get(teacher)
    if entry.trains:
        return min(split.train_start, teacher_split(split, teacher_data).train_start)
    info = registry.ModelInfo.of(data, Scaler.fit(data.flow, split), *horizons(data))
    lag = registry.lookback(entry.cls(entry.config(), info), info.h_in)
    return max(0, split.train_start - lag) if lag > info.h_in else split.train_start


def build_context(spec: TrialSpec) -> TrialContext:
    """Load, split, scale, cut windows and build the model (seeded with `spec.seed`) on its
    device (`resolve_device(spec.device)`). A config with `oracle_of` trains on the training
    part extended back as `oracle_train_start` says (scaler fitted on the extended part).

    Raises:
        DataError, ProtocolError: bad dataset or ratio; DeviceError: --device cuda without CUDA.
    """
    data = trial_data(spec)
    cfg = spec.model_config()
    start = (oracle_train_start(data, split_for(data, spec.ratio), cfg.oracle_of, spec.teacher_data)
             if getattr(cfg, "oracle_of", None) else None)
    split, scaler, parts = prepare(data, spec.ratio, spec.max_train_windows, seed=spec.seed,
                                   train_stride=spec.train_stride, train_start=start)
    info = registry.ModelInfo.of(data, scaler, *horizons(data))
    set_seed(spec.seed)
    model = registry.get(spec.model).cls(cfg, info)
    for windows in parts.values():
        windows.lookback = registry.lookback(model, info.h_in)
    device = resolve_device(spec.device)
    return TrialContext(spec, data, split, scaler, parts, cfg, info, model.to(device), device)


def extra_dataset_names(spec: TrialSpec, cfg) -> list[str]:
    """The datasets named by the model's `extra_datasets` config ("same-city": every other
    registry dataset whose `city` equals the target's), target excluded.

    Raises:
        DataError: a named dataset is not in the registry.
    """
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


def extra_training_parts(spec: TrialSpec, cfg) -> list[tuple[str, registry.ModelInfo, Windows]]:
    """(name, ModelInfo, training windows) of each extra dataset of the model's config
    (`extra_dataset_names`): its training part at ratio 0.8, i.e. every step before its own
    validation and test parts, with the spec's node cap and training caps."""
    parts_of = []
    for name in extra_dataset_names(spec, cfg):
        data = _trial_data(name, spec.data_dir, spec.registry_file, None)     # loaded once per process
        if spec.num_nodes:
            data = data.slice_nodes(min(spec.num_nodes, data.num_nodes))
        _, scaler, parts = prepare(data, 0.8, spec.max_train_windows, seed=spec.seed, train_stride=spec.train_stride)
        parts_of.append((name, registry.ModelInfo.of(data, scaler, *horizons(data)), parts["train"]))
    return parts_of


def training_windows(ctx: TrialContext, train: Windows | None = None):
    """`train` (default: the context's training windows), or MixedWindows of it and the training
    windows of each extra dataset of the model's config (`extra_training_parts`), each registered
    with the model through `model.add_dataset(name, info)`."""
    train = ctx.parts["train"] if train is None else train
    extras = extra_training_parts(ctx.spec, ctx.cfg)
    if not extras:
        return train
    for name, info, _ in extras:
        ctx.model.add_dataset(name, info)
    return MixedWindows(train, [windows for _, _, windows in extras])
