"""The presets (caps applied to every trial of a run) and the model lists the suites and presets
share: the paper's comparison, the light models, the floors, the quick preset's step budgets and
teacher swap."""
from __future__ import annotations

from dataclasses import dataclass

from bench.protocol import registry


@dataclass(frozen=True)
class Preset:
    """Caps applied to every trial of a run (model and teacher alike); None keeps the model's own.

    Budgets count optimiser steps, never seconds (the same seed gives the same numbers on any
    machine). `max_batches` makes an epoch a round of at most that many steps (validation,
    learning-rate steps and patience count rounds; an epoch with fewer batches stays a shorter round:
    at ratio 0.1 on NYCTaxi 4 steps of 80 windows, so 5 rounds of patience are 20 steps there and
    about 55 at ratio 0.3); `max_epochs` caps the rounds and `max_patience` the
    patience; models named in `step_budgets` (the heavy ones, teachers included) stop after their
    fixed number of steps, the others train until early stopping fires or `max_epochs` runs out."""

    name: str
    description: str
    quick: bool = False           # use the suite's quick_ratios
    max_epochs: int | None = None
    max_train_windows: int | None = None
    max_batches: int | None = None
    train_stride: int | None = None         # keep every n-th training window (models and teachers)
    max_val_windows: int | None = None      # validation windows for early stopping (test never cut)
    max_patience: int | None = None         # cap on each model's patience (epochs, or rounds)
    step_budgets: tuple[tuple[str, int], ...] = ()   # (model, optimiser steps): fixed budgets
    teacher_swap: tuple[tuple[str, str], ...] = ()   # (a student's default teacher, the teacher it gets
                                                     # instead) unless --teacher names one

    def max_steps(self, model: str | None) -> int | None:
        """The fixed step budget of `model` (None: it trains until early stopping)."""
        return dict(self.step_budgets).get(model) if model else None

    def caps(self, model: str, config: dict | None = None, epochs: int | None = None) -> dict:
        """The TrialSpec fields of this preset for a trial of `model` with `config` overrides:
        its step budget and its teacher's (the teacher named by the config). `epochs` overrides
        max_epochs."""
        teacher = registry.get(model).config(**(config or {})).teacher
        return {"max_epochs": epochs or self.max_epochs, "max_steps": self.max_steps(model),
                "teacher_max_steps": self.max_steps(teacher), "max_patience": self.max_patience,
                "max_train_windows": self.max_train_windows, "max_batches": self.max_batches,
                "train_stride": self.train_stride, "max_val_windows": self.max_val_windows}


# forecasts that need no training: the floors every table shows beside the models
REFERENCES = ("seasonal-naive-week", "seasonal-naive-day", "historical-average")

# every model of the paper's comparison, then the floors, the most expensive first under the quick
# preset (the runner starts trials in this order); the quick preset leaves out ST-MLP (25 M
# parameters, about 14 s per batch of 32 windows on 2 CPU cores: benchmarks/run.py)
MODELS = ("easyst", "flowdistill-wo-tb", "flowdistill", "st-mlp", "flowdistill-teacher", "stwa", "stsgcn",
          "astgcn", "bigst") + REFERENCES

QUICK_MODELS = tuple(m for m in MODELS if m != "st-mlp")

# the first run (data-efficiency, quick preset): the light models, which converge on 2 CPU cores,
# the most expensive first (the runner starts them first: the cores idle least at the end), and the
# floors. The heavy models (and the LLM teacher) cannot train to convergence there (their quick rows
# say nothing about their accuracy) and cost a third of the suite; data-scalability's quick run has them
LIGHT_MODELS = ("easyst", "flowdistill-wo-tb", "flowdistill", "bigst") + REFERENCES


# the quick preset's fixed optimiser step budgets of the heavy models (teachers included): about
# about a minute each on one CPU core (s/step on NYCTaxi, one thread: LLM teacher 0.74, STWA 1.45,
# ASTGCN 1.04, STSGCN 5.8, ST-MLP about 14, SDKD's teacher 0.6 at batch 16); every other model trains
# until early stopping
QUICK_STEP_BUDGETS = (("flowdistill-teacher", 800), ("flowdistill-teacher-wo-lm", 800), ("stwa", 40), ("astgcn", 40),
                      ("stsgcn", 8), ("st-mlp", 6), ("sdkd-teacher", 400))

# the quick preset's teacher for the students whose default teacher is expensive to fit on a CPU
QUICK_TEACHER_SWAP = (("flowdistill-teacher", "seasonal-naive-week"), ("stwa", "seasonal-naive-week"))

PRESETS = {
    "full": Preset("full", "each model's own epochs and early stopping (meant for a GPU)"),
    "quick": Preset("quick", "each suite's quick ratios (`bench list suites`) and "
                             "models (no ST-MLP); every training window; an epoch is a round of at most 20 "
                             "optimiser steps (fewer where an epoch has fewer batches: 4 at ratio 0.1 on NYCTaxi), "
                             "early stopping on 64 evenly spaced validation windows (the test set "
                             "is whole) with patience at most 5 rounds; the light models (FlowDistill and its "
                             "variants, EasyST's student, BigST, the floors) train until early stopping fires (at "
                             "most 150 rounds), the heavy ones get a fixed step budget: " +
                             ", ".join(f"{m} {n}" for m, n in QUICK_STEP_BUDGETS) +
                             " steps; the students' teacher is seasonal-naive-week (no fit, better than the "
                             "students at low ratios; the LLM teacher predicting every training window costs 7-10 "
                             "min per ratio, and under its step budget it is no better than the same step last "
                             "week) unless "
                             "--teacher names one; the LLM teacher keeps its own row (data-efficiency: the light models "
                             "and the floors only); the sweep tries each "
                             "parameter's extremes and default; the ablation and the sweep run 2 seeds; meant for "
                             "2 CPU cores",
                    quick=True, max_epochs=150, max_batches=20, max_val_windows=64, max_patience=5,
                    step_budgets=QUICK_STEP_BUDGETS, teacher_swap=QUICK_TEACHER_SWAP),
}
