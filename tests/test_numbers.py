"""The numbers kept beside a report: a report rebuilt from them is the same, `bench compare` tests any
two rows from them; and the protocol page's weekday coverage on real NYCTaxi."""
import gzip

import pandas as pd
import pytest

from bench.cli import main
from bench.protocol.split import split_for, weekday_coverage
from bench.suites import numbers


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    argv = ["run", "--no-report", "--suite", "distill", "--teacher", "seasonal-naive-week", "--ratios", "0.1",
            "--nodes", "4", "--epochs", "1", "--seeds", "2", "--executor", "inline", "--out", str(out),
            "--set", "tbl_gate=batch", "--set", "tbl_target=teacher", "--set", "lambda_tbl=1"]
    assert main(argv) == 0
    return out


def test_a_report_rebuilds_from_its_numbers(tiny_run, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["report", "--results", str(tiny_run), "--out", str(first / "flowbench.pdf")]) == 0
    kept = sorted(p.name for p in (first / "numbers").iterdir())
    assert kept == ["distill-commands.log", "distill-trials.csv.gz", "distill-windows.csv.gz"]
    assert sum(p.stat().st_size for p in (first / "numbers").iterdir()) < 2 * 2 ** 20
    with gzip.open(first / "numbers" / "distill-trials.csv.gz", "rt") as fh:
        assert fh.read() == (tiny_run / "distill" / "trials.csv").read_text()
    windows = pd.read_csv(first / "numbers" / "distill-windows.csv.gz")
    assert windows.groupby("trial_id").size().nunique() == 1 and (windows["block"] == 48).all()
    assert windows["teacher_mae"].notna().any() and windows["teacher_mae"].isna().any()   # students and the rest
    # from the report folder alone, the same tables
    again = tmp_path / "again"
    assert main(["report", "--results", str(first), "--out", str(again / "flowbench.pdf")]) == 0
    for name in ("distill-1.csv", "distill-2.csv"):
        assert (first / name).read_text() == (again / name).read_text()
    capsys.readouterr()


def test_compare_lists_the_rows_and_tests_two_of_them(tiny_run, tmp_path, capsys):
    assert main(["report", "--results", str(tiny_run), "--out", str(tmp_path / "r" / "flowbench.pdf")]) == 0
    capsys.readouterr()
    assert main(["compare", "--results", str(tmp_path / "r")]) == 0
    listing = capsys.readouterr().out
    assert "oracle_of" in listing and "teacher_shuffle" in listing and "seasonal-naive-day" in listing
    rows = numbers.groups(tiny_run)
    base = int(rows[(rows["model"] == "flowdistill-wo-tb") & (rows["config"] == "")]["row"].iloc[0])
    oracle = int(rows[rows["config"].str.contains("oracle_of")]["row"].iloc[0])
    assert main(["compare", "--results", str(tmp_path / "r"), str(oracle), str(base)]) == 0
    printed = capsys.readouterr().out
    direct = numbers.compare_groups(tiny_run, oracle, base)
    assert f"{direct['diff']:+.4f}, 95 % interval [{direct['lo']:+.4f}, {direct['hi']:+.4f}]" in printed
    assert "2 seeds x 5 blocks of 48 test windows" in printed
    assert main(["compare", "--results", str(tiny_run), "0", "99"]) == 2
    assert "row 99 is not listed" in capsys.readouterr().err
    assert main(["compare", "--results", str(tmp_path / "nowhere")]) == 2


def test_weekday_coverage_of_the_training_part(taxi):
    # NYCTaxi starts on Thursday 2015-01-01; at ratio 0.1 its 6 training days hold no Wednesday
    cover = weekday_coverage(taxi, 0.1)
    split = split_for(taxi, 0.1)
    assert (split.val_start - split.train_start) // taxi.steps_per_day == 6
    assert cover["missing"] == ["Wednesday"] and len(cover["covered"]) == 6
    assert 0.14 < cover["test_share"] < 0.3                       # one test day of six, and the windows into it
    assert weekday_coverage(taxi, 0.3) == {"covered": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                                                       "Saturday", "Sunday"], "missing": [], "test_share": 0.0}


def test_every_committed_report_with_numbers_regenerates_its_tables(tmp_path, capsys):
    from pathlib import Path
    reports = Path(__file__).resolve().parents[1] / "reports"
    kept = [p.parent for p in reports.glob("*/numbers")]
    for folder in kept:
        out = tmp_path / folder.name
        assert main(["report", "--results", str(folder), "--out", str(out / "flowbench.pdf")]) == 0
        tables = sorted(p.name for p in folder.glob("*.csv"))
        assert tables, folder
        for name in tables:
            assert (out / name).read_text() == (folder / name).read_text(), f"{folder.name}/{name}"
    capsys.readouterr()


def test_a_report_goes_inside_its_results_folder_and_a_rebuild_leaves_nothing_stale(tiny_run, tmp_path, capsys):
    import shutil
    results = tmp_path / "results"
    shutil.copytree(tiny_run, results)
    assert main(["report", "--results", str(results)]) == 0
    folder = results / "report"
    assert (folder / "flowbench.pdf").exists() and (folder / "distill-1.csv").exists()
    (folder / "distill-9.csv").write_text("a stale table of an older build")      # as if an older build wrote it
    (folder / ".report-files").write_text((folder / ".report-files").read_text() + "distill-9.csv\n")
    (folder / "mine.txt").write_text("a user's file")
    assert main(["report", "--results", str(results)]) == 0
    assert not (folder / "distill-9.csv").exists() and (folder / "mine.txt").exists()
    assert (folder / "distill-1.csv").exists() and (folder / "numbers" / "distill-trials.csv.gz").exists()
    capsys.readouterr()


def test_a_kept_checkpoint_scores_as_its_trial(tiny_run, tmp_path, capsys):
    from bench.execution.results import read_trials
    from bench.execution.trial import evaluate_checkpoint
    rows = read_trials(tiny_run / "distill" / "trials.csv")
    overall = rows[(rows["horizon"] == "all") & (rows["bucket"] == "all")]
    for model in ("flowdistill", "flowdistill-wo-tb", "historical-average"):
        row = overall[overall["model"] == model].iloc[0]
        path = tiny_run / "distill" / "checkpoints" / f"{row['trial_id']}.pt"
        assert path.exists(), model
        again = evaluate_checkpoint(path)
        assert again[0]["mae"] == pytest.approx(row["mae"], rel=1e-5) and again[0]["rmse"] == pytest.approx(row["rmse"], rel=1e-5)
    tid = overall[overall["model"] == "flowdistill"]["trial_id"].iloc[0]
    assert main(["evaluate", "--results", str(tiny_run), "--trial", tid]) == 0
    printed = capsys.readouterr().out
    assert "test MAE" in printed and "its row in trials.csv" in printed
    assert main(["evaluate", "--results", str(tiny_run), "--trial", "nope"]) == 2
    assert "no kept weights of trial nope" in capsys.readouterr().err
    # another dataset of another shape: a clear error, no traceback
    assert main(["evaluate", "--results", str(tiny_run), "--trial", tid, "--dataset", "NYCBike1"]) == 2
    assert "do not fit NYCBike1" in capsys.readouterr().err


def test_an_archived_report_is_laid_out_again_from_its_tables(tmp_path, capsys):
    from pathlib import Path

    from pypdf import PdfReader
    folder = Path(__file__).resolve().parents[1] / "reports" / "distill"
    assert not (folder / "numbers").exists()
    out = tmp_path / "flowbench.pdf"
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 0
    text = "".join("".join(p.extract_text().split()) for p in PdfReader(out).pages)
    assert "Archivedreport" in text and "withdrawn" in text
    table = pd.read_csv(folder / "distill.csv", dtype=str, keep_default_na=False)
    assert all("".join(v.split()) in text for v in table["MAE"])
    capsys.readouterr()
