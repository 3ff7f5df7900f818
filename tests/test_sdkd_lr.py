"""The sdkd-lr suite: its trials, the schedule it chooses on validation (never the test set), and
the sdkd suite's run file that gives the choice to the student and all its variants."""
import pandas as pd
import pytest

from bench.execution.results import append_rows, trials_path
from bench.suites import SUITES, build_specs
from bench.suites import runconfig
from bench.suites.base import SuiteError
from bench.suites.sdkd_lr import LR_SCHEDULES, lr_frame, write_run_files


def test_the_plan_is_each_student_without_kd_under_each_schedule():
    specs = build_specs(SUITES["sdkd-lr"], "NavierStokes", models=["sdkd-unet-large", "sdkd-resnet"])
    assert len(specs) == 2 * len(LR_SCHEDULES) * 2                              # 2 students, 2 seeds
    assert {tuple(sorted(s.config.items())) for s in specs if s.model == "sdkd-resnet"} == \
        {tuple(sorted(c.items())) for _, c in LR_SCHEDULES}
    with pytest.raises(SuiteError, match="without KD"):
        build_specs(SUITES["sdkd-lr"], "NavierStokes", models=["sdkd-unet-kd"])
    with pytest.raises(SuiteError, match="varies lr"):
        build_specs(SUITES["sdkd-lr"], "NavierStokes", settings={"sdkd-unet.lr": 1e-3})


def _rows(specs, val_mae, converged):
    """Overall rows of finished trials: validation MAE and convergence per (model, lr), test MAE 0
    (the choice must not read it)."""
    return [{"suite": s.suite, "dataset": s.dataset, "model": s.model, "ratio": s.ratio, "seed": s.seed,
             "horizon": "all", "bucket": "all", "status": "ok", "trial_id": s.trial_id, "work_id": s.work_id,
             "config": s.config_label(), "mae": 0.0, "steps": 100, "epochs": 50, "best_epoch": 30,
             "val_mae": val_mae[(s.model, s.config["lr"], s.config.get("lr_decay", 1.0))] + 0.01 * s.seed,
             "converged": converged(s)} for s in specs]


def test_the_choice_is_the_best_converged_schedule_and_reaches_every_variant(tmp_path):
    specs = build_specs(SUITES["sdkd-lr"], "NavierStokes", models=["sdkd-unet", "sdkd-unet-large"])
    val = {(m, c["lr"], c.get("lr_decay", 1.0)): 0.50 for m in ("sdkd-unet", "sdkd-unet-large") for _, c in LR_SCHEDULES}
    val |= {("sdkd-unet", 3e-4, 1.0): 0.40, ("sdkd-unet", 1e-3, 1.0): 0.30,            # 1e-3: lower, not converged
            ("sdkd-unet-large", 1e-3, 0.5): 0.45}
    late = lambda s: not (s.model == "sdkd-unet" and s.config == {"lr": 1e-3})
    append_rows(trials_path(tmp_path, "sdkd-lr"), _rows(specs, val, late))
    frame = lr_frame(pd.read_csv(trials_path(tmp_path, "sdkd-lr")))
    chosen = frame[frame["chosen"] != ""].set_index("model")["schedule"]
    assert chosen.to_dict() == {"sdkd-unet": "3e-4 fixed", "sdkd-unet-large": "1e-3, halved every 30 epochs"}
    not_converged = frame[(frame["model"] == "sdkd-unet") & (frame["schedule"] == "1e-3 fixed")].iloc[0]
    assert not_converged["converged"] == "no (2 of 2)" and not_converged["val MAE"].startswith("0.305")
    [path] = write_run_files(tmp_path)
    assert path == tmp_path / "sdkd-lr" / "sdkd-run-NavierStokes.yaml"
    run = runconfig.load(path)
    assert run["suite"] == "sdkd" and run["seeds"] == 5 and run["out"] == str(tmp_path)
    settings = dict(run["settings"])
    assert settings == {"sdkd-unet.lr": 3e-4, "sdkd-unet-large.lr": 1e-3, "sdkd-unet-large.lr_decay": 0.5,
                        "sdkd-unet-large.lr_step": 30}
    sdkd = {s.model: s.config for s in build_specs(SUITES["sdkd"], "NavierStokes", settings=settings, seeds=1)}
    assert sdkd["sdkd-unet-large-sdkd"] == {"lr": 1e-3, "lr_decay": 0.5, "lr_step": 30}   # every variant of its class
    assert sdkd["sdkd-unet-kd"] == {"lr": 3e-4} and sdkd["sdkd-resnet"] == {} and sdkd["sdkd-teacher"] == {}
    large = next(s for s in specs if s.model == "sdkd-unet-large" and s.seed == 0 and s.config.get("lr_decay") == 0.5)
    again = next(s for s in build_specs(SUITES["sdkd"], "NavierStokes", settings=settings, seeds=1)
                 if s.model == "sdkd-unet-large")
    assert again.work_id == large.work_id                                       # the sdkd run reuses that trial
