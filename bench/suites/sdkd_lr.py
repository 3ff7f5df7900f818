"""The sdkd-lr suite: the learning-rate schedule of each SDKD student, chosen on validation for the
student without KD and then used by all its variants (the same schedule for all: Stanton et al.,
NeurIPS 2021; ../shared/STYLE.md).

It trains each no-KD student (`LR_STUDENTS`) with each schedule of `LR_SCHEDULES` and picks, per
student, the schedule with the lowest mean best validation masked MAE (early stopping's metric)
among those under which every seed converged (early stopping fired before the epoch budget ran
out); where none did, the lowest overall, marked so. The test set plays no part. After the run it
writes, per dataset, the sdkd suite's run file `OUT/sdkd-lr/sdkd-run-DATASET.yaml`: the chosen
schedules as `--set STUDENT.KEY=VALUE` (a scoped key reaches the student and every variant
registered on its class, e.g. sdkd-unet-large-kd and -sdkd; never the teacher), 5 seeds, the same
results folder, so that `bench run --config OUT/sdkd-lr/sdkd-run-DATASET.yaml` runs the sdkd suite
with them (its no-KD trials of the chosen schedule are the ones run here, reused by work_id).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from bench.protocol import registry
from bench.execution.results import atomic_write, read_trials, trials_path
from bench.suites.base import Suite, SuiteError, model_overrides, register_suite
from bench.suites.tables import converged_cell, ok_overall, seed_cell

# the schedules tried (TrainConfig fields): SDKD's reported fixed 1e-4, faster fixed rates, and
# step decay (the harness's StepLR: lr x lr_decay every lr_step epochs)
LR_SCHEDULES = (
    ("1e-4 fixed (reported)", {"lr": 1e-4}),
    ("3e-4 fixed", {"lr": 3e-4}),
    ("1e-3 fixed", {"lr": 1e-3}),
    ("1e-3, halved every 30 epochs", {"lr": 1e-3, "lr_decay": 0.5, "lr_step": 30}),
    ("3e-3, halved every 30 epochs", {"lr": 3e-3, "lr_decay": 0.5, "lr_step": 30}),
)
LR_KEYS = ("lr", "lr_decay", "lr_step")
LR_STUDENTS = ("sdkd-unet", "sdkd-resnet", "sdkd-unet-large", "sdkd-resnet-large")
RUN_SEEDS = 5                 # seeds of the sdkd run that the written run file asks for


def lr_plan(suite, models, preset, teacher, settings) -> list[tuple]:
    """Each student without KD with each schedule of `LR_SCHEDULES` (and the run's other --set).

    Raises:
        SuiteError: a model with a teacher (the schedule is chosen without KD), or a --set of
            one of the varied keys (lr, lr_decay, lr_step).
    """
    varied = sorted({k.rpartition(".")[2] for k in settings or {}} & set(LR_KEYS))
    if varied:
        raise SuiteError(f"--set {', '.join(varied)}: the sdkd-lr suite varies {', '.join(LR_KEYS)} itself; drop it")
    config = model_overrides(models, teacher, settings)
    taught = [m for m in models if registry.get(m).config(**config[m]).teacher]
    if taught:
        raise SuiteError(f"{', '.join(taught)}: the schedule is chosen for the student without KD; name those "
                         f"(e.g. {', '.join(LR_STUDENTS)})")
    return [(m, config[m] | schedule, {}, None) for m in models for _, schedule in LR_SCHEDULES]


def schedule_of(config: str) -> tuple[str, dict]:
    """(label, {lr keys}) of a trial's config label (`TrialSpec.config_label`): the name in
    `LR_SCHEDULES`, or the keys themselves for a schedule outside it."""
    cfg = json.loads(config) if config else {}
    keys = {k: cfg[k] for k in LR_KEYS if k in cfg}
    for label, schedule in LR_SCHEDULES:
        if keys == schedule:
            return label, keys
    return ", ".join(f"{k} {v:g}" for k, v in keys.items()) or "model default", keys


def lr_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, ratio, student and schedule: the best validation masked MAE (mean ± std over
    seeds), the epochs of the best one, whether every seed converged, and "chosen" on the row of
    each student's schedule (see the module docstring)."""
    ok = ok_overall(df)
    if ok.empty:
        return pd.DataFrame()
    ok["schedule"] = [schedule_of(c)[0] for c in ok["config"].astype(str)]
    rows = []
    for (dataset, ratio, model), at in ok.groupby(["dataset", "ratio", "model"], sort=False):
        found = []
        for schedule, g in at.groupby("schedule", sort=False):
            val = pd.to_numeric(g["val_mae"], errors="coerce")
            converged = converged_cell(g)
            found.append({"dataset": dataset, "ratio": f"{ratio:g}", "model": model, "schedule": schedule,
                          "seeds": len(g), "val MAE": seed_cell(val, None, ".4g"), "_val": val.mean(),
                          "_all_converged": converged == "yes",
                          "best epoch": _range(pd.to_numeric(g["best_epoch"], errors="coerce")),
                          "epochs": _range(pd.to_numeric(g["epochs"], errors="coerce")), "converged": converged,
                          "_keys": schedule_of(str(g["config"].iloc[0]))[1]})
        pool = [f for f in found if f["_all_converged"] and f["_val"] == f["_val"]]
        pick = min(pool or [f for f in found if f["_val"] == f["_val"]] or found, key=lambda f: f["_val"])
        for f in found:
            f["chosen"] = ("chosen" if pool else "chosen (no schedule converged)") if f is pick else ""
        rows += found
    return pd.DataFrame(rows)


def _range(values: pd.Series) -> str:
    """"56-193" over seeds ("" when none)."""
    values = values.dropna()
    if values.empty:
        return ""
    lo, hi = int(values.min()), int(values.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def chosen_settings(frame: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """{(dataset, ratio): {"STUDENT.KEY": value}} of the chosen schedules of `lr_frame`."""
    out: dict[tuple[str, str], dict] = {}
    if frame.empty:
        return out
    for _, r in frame[frame["chosen"] != ""].iterrows():
        out.setdefault((r["dataset"], r["ratio"]), {}).update({f"{r['model']}.{k}": v for k, v in r["_keys"].items()})
    return out


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """`lr_frame` without its working columns (those whose names start with "_")."""
    return frame[[c for c in frame.columns if not c.startswith("_")]] if len(frame) else frame


def lr_tables(df: pd.DataFrame, folder: Path) -> list[tuple[str, pd.DataFrame]]:
    return [("learning-rate schedules of the students without KD: best validation masked MAE (mean ± std over "
             "seeds), epochs of the best one and run, convergence; the chosen schedule per student (lowest validation "
             "MAE among the schedules under which every seed converged)", shown(lr_frame(df)))]


def write_run_files(out, preset: str = "full", data_dir=None, registry_file=None) -> list[Path]:
    """Write the sdkd suite's run file per dataset of OUT/sdkd-lr/trials.csv (see the module
    docstring): OUT/sdkd-lr/sdkd-run-DATASET.yaml; returns the files written."""
    frame = lr_frame(read_trials(trials_path(out, "sdkd-lr")))
    written = []
    by_dataset: dict[str, dict] = {}
    for (dataset, ratio), settings in chosen_settings(frame).items():
        entry = by_dataset.setdefault(dataset, {"ratios": [], "set": {}})
        entry["ratios"].append(float(ratio))
        entry["set"].update(settings)
    for dataset, entry in by_dataset.items():
        run = {"suite": "sdkd", "dataset": dataset, "ratios": sorted(set(entry["ratios"])), "seeds": RUN_SEEDS,
               "quick": preset == "quick", "set": entry["set"], "out": str(out)}
        run |= {k: str(v) for k, v in (("data_dir", data_dir), ("registry", registry_file)) if v}
        path = Path(out) / "sdkd-lr" / f"sdkd-run-{dataset}.yaml"
        atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(run, sort_keys=False)))
        written.append(path)
    return written


def after_lr_run(datasets, preset: str, out, num_nodes=None, data_dir=None, registry_file=None) -> list[tuple]:
    """After the trials: the sdkd suite's run files with the chosen schedules (`write_run_files`)."""
    paths = write_run_files(out, preset, data_dir, registry_file)
    return [("the sdkd suite with these schedules, 5 seeds: bench run --config FILE",
             pd.DataFrame({"run file": [str(p) for p in paths],
                           "--set": [" ".join(f"--set {k}={v}" for k, v in yaml.safe_load(p.read_text())["set"].items())
                                     for p in paths]}))]


register_suite(Suite(
    "sdkd-lr", "the learning-rate schedule of each SDKD student without KD (" + ", ".join(LR_STUDENTS) + "), chosen "
    "on validation MAE among " + "; ".join(label for label, _ in LR_SCHEDULES) + " (every seed converged), 2 seeds; "
    "writes the sdkd suite's run file with the chosen schedules for the student and all its variants, 5 seeds "
    "(OUT/sdkd-lr/sdkd-run-DATASET.yaml)",
    LR_STUDENTS, (0.8,), (0.8,), kind="sdkd-lr", seeds=2, datasets=("NavierStokes1200",), teacher_data="same",
    title="SDKD: the students' learning-rate schedule, chosen on validation", rank=81, plan=lr_plan,
    tables=lr_tables, after_run=after_lr_run))
