"""What defines a trial: `TrialSpec`, a frozen record of (suite, dataset, model, ratio, seed),
config overrides and the preset's caps; its `trial_id` names the trial in results and caches."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from bench.protocol import registry


@dataclass(frozen=True)
class TrialSpec:
    """Everything that defines a trial. `config` overrides the model's Config defaults.

    Budgets are in optimiser steps, never in seconds, so a trial means the same on any machine:
    `max_steps` is the trial's step budget (None: the model's own epochs), `max_epochs` caps its
    epochs, `max_batches` makes an epoch a round of at most that many steps (validation,
    learning-rate steps and patience then count rounds; `fixed_rounds`: every round exactly
    that many steps, see `bench.execution.train.fit`) and `max_patience` caps its patience.
    Those caps, `max_train_windows` and `num_nodes` (keep the first n regions, for tests) apply to
    the model and to its teacher alike, except the step budget: `teacher_max_steps` is its
    teacher's (None: none). `teacher_config` overrides the teacher's Config defaults;
    `train_stride` keeps every n-th training window and `max_val_windows` caps the validation
    windows early stopping reads (model and teacher alike; the test set is never cut).
    `teacher_data` says what the teacher is fitted on (`bench.protocol.split.teacher_split`: disjoint,
    same or all); it is part of the identity of teachers, of distilled students and of oracles
    (config `oracle_of`) only.
    `device` (auto, cpu, cuda; see `bench.execution.train.resolve_device`) is where the model, its batches
    and its teacher's predictions live; it is not part of the identity (rows record it).
    `checkpoint_root`: the results folder; a trained trial keeps its best weights in
    `checkpoint_root/<suite>/checkpoints/<trial_id>.pt` (`checkpoint_path`); None keeps none. Not
    part of the identity."""

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
    fixed_rounds: bool = False
    checkpoint_root: str | None = None

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
        if self.fixed_rounds:
            out["fixed_rounds"] = True
        if self.suite == "teacher" or self.has_teacher() or self.config.get("oracle_of"):
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

    def checkpoint_path(self):
        """Where this trial's best weights go (None without `checkpoint_root`)."""
        from pathlib import Path
        return None if not self.checkpoint_root else Path(self.checkpoint_root) / self.suite / "checkpoints" / \
            f"{self.trial_id}.pt"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
