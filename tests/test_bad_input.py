"""Bad input a new user can hit: each a clean exit 2 naming the file, flag or value, no traceback,
and no finished row lost."""
import pandas as pd

from bench.cli import main
from bench.execution.results import append_rows, read_trials


def test_a_report_of_floors_only(tmp_path, capsys):
    out = tmp_path / "floors"
    assert main(["run", "--suite", "data-efficiency", "--models", "seasonal-naive-week", "--ratios", "0.1",
                 "--nodes", "4", "--executor", "inline", "--out", str(out)]) == 0
    assert (out / "report" / "flowbench.pdf").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_bad_flags_and_files_exit_2_naming_them(tmp_path, capsys):
    base = ["run", "--suite", "data-efficiency", "--models", "seasonal-naive-week", "--nodes", "4",
            "--executor", "inline", "--no-report"]
    try:
        main(base + ["--ratios", "0.1,,0.5", "--out", str(tmp_path / "a")])
    except SystemExit as exc:
        assert exc.code == 2
    assert "empty item" in capsys.readouterr().err
    try:
        main(base + ["--ratios", "0.1", "--gpus-per-trial", "-1", "--out", str(tmp_path / "a")])
    except SystemExit as exc:
        assert exc.code == 2
    assert "GPU share" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(base + ["--ratios", "0.1", "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "bench: error: cannot write or read" in err and str(blocker) in err and "Traceback" not in err
    assert main(base + ["--ratios", "0.1", "--out", str(tmp_path / "ok")]) == 0
    assert main(["report", "--results", str(tmp_path / "ok"), "--out", str(blocker / "rep" / "flowbench.pdf")]) == 2
    err = capsys.readouterr().err
    assert "cannot write or read" in err and "Traceback" not in err
    garbled = tmp_path / "g" / "data-efficiency"
    garbled.mkdir(parents=True)
    (garbled / "trials.csv").write_bytes(b'\xff\xfe"a,b\n1,"2,3\n')
    assert main(["report", "--results", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert str(garbled / "trials.csv") in err and "not a readable trials table" in err


def test_an_error_row_never_replaces_a_finished_trial(tmp_path):
    path = tmp_path / "s" / "trials.csv"
    ok = {"trial_id": "t1", "status": "ok", "mae": 3.0, "horizon": "all", "bucket": "all", "model": "m"}
    append_rows(path, [ok, ok | {"horizon": 1}])
    append_rows(path, [{"trial_id": "t1", "status": "error", "error": "late failure of a second run"}])
    rows = read_trials(path)
    assert len(rows) == 2 and (rows["status"] == "ok").all()
    append_rows(path, [{"trial_id": "t2", "status": "error", "error": "x"}])
    append_rows(path, [{"trial_id": "t2", "status": "ok", "mae": 1.0, "horizon": "all", "bucket": "all"}])
    assert list(read_trials(path).query("trial_id == 't2'")["status"]) == ["ok"]      # a retried failure
    assert isinstance(pd.read_csv(path), pd.DataFrame)


def test_a_run_that_stops_on_an_error_is_marked_failed_in_commands_log(tmp_path, monkeypatch, capsys):
    from bench.execution import runner
    from bench.suites.report import _commands
    out = tmp_path / "r"
    base = ["run", "--suite", "data-efficiency", "--models", "seasonal-naive-week", "--ratios", "0.1", "--nodes", "4",
            "--executor", "inline", "--no-report", "--out", str(out)]
    assert main(base) == 0
    def boom(*args, **kwargs):
        raise ValueError("a check that fails once the run has started")
    monkeypatch.setattr(runner, "run", boom)
    assert main(base + ["--seeds", "2"]) == 2
    lines = (out / "data-efficiency" / "commands.log").read_text().splitlines()
    assert len(lines) == 2 and "[failed: ValueError: a check that fails" in lines[1] and "failed" not in lines[0]
    assert _commands(out, "data-efficiency") == [lines[0]]                  # the report lists the run that ran
    capsys.readouterr()


def test_two_runs_of_one_trial_at_once_train_it_once(tmp_path):
    import os
    import subprocess
    import sys
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--suite", "data-efficiency", "--models", "flowdistill-wo-tb",
           "--ratios", "0.1", "--nodes", "4", "--epochs", "2", "--executor", "inline", "--no-report", "--out", str(out)]
    env = os.environ | {"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])}
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [r.communicate(timeout=300) for r in runs]
    codes = sorted(r.returncode for r in runs)
    text = "\n".join(o + e for o, e in outputs)
    rows = read_trials(out / "data-efficiency" / "trials.csv")
    overall = rows[(rows["horizon"] == "all") & (rows["bucket"] == "all")]
    assert len(overall) == 1 and overall["status"].iloc[0] == "ok"
    # either the second run found the trial claimed (and said so) or already finished (and skipped it)
    assert codes in ([0, 0], [0, 130]), text
    assert "running now" in text or "already finished" in text
    assert not list((out / "data-efficiency" / "claims").glob("*.claim"))       # claims released


def test_a_stale_claim_is_taken_over(tmp_path):
    from bench.execution.runner import claim
    from bench.execution.spec import TrialSpec
    spec = TrialSpec("s", "NYCTaxi", "flowdistill-wo-tb", 0.1)
    folder = tmp_path / "claims"
    folder.mkdir()
    (folder / f"{spec.trial_id}.claim").write_text(f"{__import__('socket').gethostname()} 999999999\n")
    assert claim([spec], folder) == [spec]                       # its process is gone
    assert claim([spec], folder) == []                           # now ours, alive: a second claim fails


def test_per_epoch_logs_for_tensorboard_and_the_console(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--suite", "data-efficiency", "--models", "flowdistill-wo-tb", "--ratios", "0.1", "--nodes", "4",
                 "--epochs", "3", "--executor", "inline", "--no-report", "--log-level", "info", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("model flowdistill-wo-tb ratio=0.1 seed=0 epoch")]
    assert len(lines) == 3 and "val MAE" in lines[0]
    runs = list((out / "data-efficiency" / "tensorboard").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("flowdistill-wo-tb-r0.1-s0-")
    import struct

    from tensorboardX.proto.event_pb2 import Event
    values = []
    for file in runs[0].iterdir():                       # TFRecord: length, crc, event, crc
        data = file.read_bytes()
        while data:
            (n,) = struct.unpack("<Q", data[:8])
            event = Event.FromString(data[12:12 + n])
            data = data[12 + n + 4:]
            values += [(v.tag, event.step) for v in event.summary.value]
    assert [step for tag, step in values if tag == "val/val_mae"] == [1, 2, 3]
    assert any(tag == "train/loss" for tag, _ in values)


def test_the_plan_lists_what_the_run_executes_and_estimates_its_time(tmp_path, capsys, monkeypatch):
    import re

    from bench.execution import plan as plan_mod
    monkeypatch.setattr(plan_mod, "COST_CACHE", tmp_path / "costs.json")          # measured afresh here
    out = tmp_path / "r"
    flags = ["--suite", "data-efficiency", "--models", "flowdistill-wo-tb,seasonal-naive-week", "--ratios", "0.1",
             "--nodes", "4", "--epochs", "4", "--seeds", "2", "--executor", "inline", "--no-report", "--out", str(out)]
    assert main(["plan"] + flags) == 0
    printed = capsys.readouterr().out
    planned = set(re.findall(r"to run +model +(\S+) ratio=0\.1 seed=(\d)", printed))
    estimate = float(re.search(r"estimated (\d+) s of wall time", printed).group(1))
    assert not (out / "data-efficiency" / "trials.csv").exists()             # a plan runs nothing
    assert main(["run"] + flags) == 0
    run_out = capsys.readouterr().out
    wall = float(re.search(r"wall time (\d+) s", run_out).group(1))
    rows = read_trials(out / "data-efficiency" / "trials.csv")
    ran = {(m, str(s)) for m, s in rows[(rows["horizon"] == "all") & (rows["bucket"] == "all")][["model", "seed"]]
           .itertuples(index=False)}
    assert planned == ran and len(ran) == 4
    assert wall / 2 <= max(estimate, 1) <= 2 * max(wall, 1), (estimate, wall)
    assert main(["plan"] + flags) == 0
    assert "4 done" in capsys.readouterr().out
    assert (tmp_path / "costs.json").exists()


def test_a_long_run_waits_for_yes_on_a_machine_without_a_gpu(tmp_path, capsys, monkeypatch):
    from bench.execution import plan as plan_mod
    monkeypatch.setattr(plan_mod, "COST_CACHE", tmp_path / "costs.json")
    monkeypatch.setattr("bench.cli.LONG_RUN_S", 0.001)
    out = tmp_path / "r"
    flags = ["run", "--suite", "data-efficiency", "--models", "flowdistill-wo-tb", "--ratios", "0.1", "--nodes", "4",
             "--epochs", "1", "--executor", "inline", "--no-report", "--out", str(out)]
    assert main(flags) == 2
    assert "pass --yes to run it anyway" in capsys.readouterr().err
    assert not (out / "data-efficiency" / "trials.csv").exists()
    assert main(flags + ["--yes"]) == 0


def test_a_run_file_runs_the_same_trials_and_run_yaml_reproduces_them(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    out = tmp_path / "r"
    config.write_text(f"suite: distill\nteacher: seasonal-naive-week\nratios: [0.1]\nseeds: 2\nepochs: 1\nnodes: 4\n"
                      f"set: {{tbl_gate: batch, tbl_target: teacher, lambda_tbl: 1}}\nexecutor: inline\n"
                      f"no-report: true\nout: {out}\n")
    assert main(["run", "--config", str(config)]) == 0
    first = set(read_trials(out / "distill" / "trials.csv")["trial_id"])
    flags = ["run", "--suite", "distill", "--teacher", "seasonal-naive-week", "--ratios", "0.1", "--seeds", "2",
             "--epochs", "1", "--nodes", "4", "--set", "tbl_gate=batch", "--set", "tbl_target=teacher",
             "--set", "lambda_tbl=1", "--executor", "inline", "--no-report", "--out", str(tmp_path / "flags")]
    assert main(flags) == 0
    assert set(read_trials(tmp_path / "flags" / "distill" / "trials.csv")["trial_id"]) == first
    resolved = out / "run.yaml"
    assert resolved.exists() and (out / "distill" / "run.yaml").exists()
    capsys.readouterr()
    assert main(["run", "--config", str(resolved), "--out", str(tmp_path / "again")]) == 0     # a flag overrides
    assert set(read_trials(tmp_path / "again" / "distill" / "trials.csv")["trial_id"]) == first
    assert "distill" in capsys.readouterr().out


def test_run_file_errors_name_the_file_and_key(tmp_path, capsys):
    cases = {"unknown: 1\nsuite: distill\n": "unknown key 'unknown'",
             "suite: distill\nseeds: many\n": "key 'seeds'",
             "suite: distill\nexecutor: slurm\n": "key 'executor'",
             "suite: [distill\n": "not valid YAML at line",
             "- a\n- b\n": "maps flag names to values"}
    for i, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(text)
        assert main(["run", "--config", str(path)]) == 2, text
        err = capsys.readouterr().err
        assert str(path) in err and expected in err and "Traceback" not in err, err
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "give --suite NAME" in capsys.readouterr().err


def test_the_example_run_files_validate():
    from pathlib import Path

    from bench.suites import runconfig
    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        assert runconfig.load(path)["suite"]


def test_there_is_an_example_run_file_for_every_suite():
    from pathlib import Path

    from bench.suites import runconfig, suites
    files = (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
    covered = {runconfig.load(path)["suite"] for path in files}
    assert {s.name for s in suites(listed_only=True)} <= covered
