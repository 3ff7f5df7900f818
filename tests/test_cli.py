import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

ROWS = 1 + 12 + 4          # overall, horizons 1..12, volume buckets q1..q4

from bench.cli import main


def test_list_commands(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "flowdistill " in out and "flowdistill-wo-tb" in out and "stwa" in out and "easyst" in out
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "NYCTaxi" in out and "grid 10 x 20" in out and "NavierStokes vorticity samples, 10 -> 10 frames" in out
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    assert "data-efficiency" in out and "sdkd" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "data-efficiency", "--models", "nope"], "unknown model 'nope'"),
    (["run", "--suite", "nope"], "unknown suite 'nope'"),
    (["run", "--suite", "data-efficiency", "--dataset", "Atlantis"], "unknown dataset 'Atlantis'"),
    (["run", "--suite", "data-efficiency", "--data-dir", "/nonexistent"], "NYCTaxi.npz is missing"),
    (["run", "--suite", "data-efficiency", "--set", "no_such_field=1"], "no model of this run has"),
    (["run", "--suite", "data-efficiency", "--set", "delta=abc"], "config delta='abc' is not of type"),
    (["run", "--suite", "data-efficiency", "--teacher", "gpt-9"], "'gpt-9' is not a registered model"),
    (["run", "--suite", "data-efficiency", "--ratios", "0.005"], "ratio 0.005 leaves 14 training steps of 2880"),
    (["report", "--results", "/nonexistent/results"], "results folder /nonexistent/results does not exist"),
])
def test_bad_input_gives_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_ratio_names_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--suite", "data-efficiency", "--ratios", "0.1,0.9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--ratios" in err and "(0, 0.8]" in err


def test_cli_end_to_end_through_ray_tune(tmp_path):
    """`bench run` as a user types it, through Ray Tune, on a slice of real NYCTaxi."""
    cmd = [sys.executable, "-m", "bench.cli", "run", "--suite", "data-efficiency", "--models",
           "flowdistill,flowdistill-wo-tb", "--teacher", "stwa", "--ratios", "0.4", "--epochs", "1", "--nodes", "8",
           "--out", "results", "--report", "reports/flowbench.pdf"]   # relative, as in README: Ray trials run elsewhere
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": project + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "flowdistill (teacher: stwa, disjoint data)" in proc.stdout and "0.4 MAE" in proc.stdout
    assert "Token authentication" not in proc.stdout + proc.stderr        # Ray's notice stays out
    assert (tmp_path / "reports" / "flowbench.pdf").stat().st_size > 0      # every run ends with its report
    assert "flowdistill" in (tmp_path / "reports" / "data-efficiency-1.csv").read_text()
    df = pd.read_csv(tmp_path / "results" / "data-efficiency" / "trials.csv")
    assert len(df) == 2 * ROWS and (df["status"] == "ok").all()
    assert set(df["horizon"].astype(str)) == {"all"} | {str(h) for h in range(1, 13)}
    assert set(df["bucket"].astype(str)) == {"all", "q1", "q2", "q3", "q4"}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_mid_suite_loses_no_finished_trial_and_the_same_command_resumes(tmp_path, sig):
    cmd = [sys.executable, "-m", "bench.cli", "run", "--no-report", "--suite", "data-efficiency", "--executor", "inline",
           "--models", "flowdistill-wo-tb", "--ratios", "0.1,0.2", "--seeds", "2", "--epochs", "3",
           "--nodes", "8", "--out", str(tmp_path)]                  # 4 trials: the signal lands after the first
    total = 4 * ROWS
    csv = tmp_path / "data-efficiency" / "trials.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}     # tiny trials; no OpenMP spinning on a busy machine
    log = open(tmp_path / "first-run.log", "w")
    # a shell without job control starts background jobs with SIGINT ignored, and Python keeps it
    # ignored: restore the default so that the run sees Ctrl-C as a user's terminal sends it
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (csv.exists() and len(pd.read_csv(csv)) >= ROWS):
        time.sleep(0.05)
    proc.send_signal(sig)
    code = proc.wait(timeout=300)
    log.close()
    first = pd.read_csv(csv)                                   # complete, parseable table
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130), (tmp_path / "first-run.log").read_text()[-2000:]
    assert len(first) % ROWS == 0 and ROWS <= len(first) < total
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    final = pd.read_csv(csv)
    assert len(final) == total and (final["status"] == "ok").all()
    kept = first.merge(final, on=["trial_id", "horizon", "bucket"], suffixes=("_before", "_after"))
    assert len(kept) == len(first) and (kept["train_s_before"] == kept["train_s_after"]).all()


def test_prefitted_teacher_is_used_by_a_later_run(tmp_path, capsys):
    common = ["--epochs", "1", "--nodes", "8", "--out", str(tmp_path), "--executor", "inline"]
    assert main(["teacher", "fit", "--teacher", "stwa", "--ratios", "0.4", *common]) == 0
    assert "stwa" in capsys.readouterr().out
    assert main(["run", "--no-report", "--suite", "data-efficiency", "--models", "flowdistill", "--teacher", "stwa", "--ratios", "0.4",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "fitting" not in out and "flowdistill (teacher: stwa, disjoint data)" in out
    assert main(["teacher", "list", "--out", str(tmp_path)]) == 0
    assert "stwa" in capsys.readouterr().out


def test_malformed_registry_yaml_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "city.yaml"
    bad.write_text("MyCity:\n  data: x.npz\n  channels: [0, 1\n  start: 2024\n")
    assert main(["list", "datasets", "--registry", str(bad)]) == 2
    assert f"{bad}:4: not valid YAML" in capsys.readouterr().err


def test_fixed_rounds_belong_to_the_quick_preset_and_change_the_trial(tmp_path, capsys):
    import dataclasses

    from bench.cli import main as cli_main
    from bench.execution.spec import TrialSpec
    assert cli_main(["run", "--suite", "data-efficiency", "--fixed-rounds", "--out", str(tmp_path)]) == 2
    assert "--fixed-rounds" in capsys.readouterr().err and not (tmp_path / "data-efficiency").exists()
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill-wo-tb", ratio=0.1, max_batches=20)
    assert "fixed_rounds" not in spec.identity()                       # earlier results keep their ids
    assert dataclasses.replace(spec, fixed_rounds=True).trial_id != spec.trial_id
