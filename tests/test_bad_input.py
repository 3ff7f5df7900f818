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
