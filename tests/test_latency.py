"""The latency benchmark's table on a tiny configuration (8 regions, a few requests): its rows and
columns, the forms left out with the reason, the files it writes and the scalability section's
tables and figure built from them. No time is asserted."""
import pandas as pd
import pytest

from bench.suites import SUITES
from bench.suites.scalability import LATENCY_FIELDS, latency_figure, latency_tables, latency_verdict, read_latency


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from benchmarks.latency import main
    out = tmp_path_factory.mktemp("scalability")
    assert main(["--nodes", "8", "--requests", "5", "--batches", "1,32", "--threads", "1", "--models",
                 "flowdistill,bigst", "--forms", "eager,onnx-fp32,onnx-int8", "--out", str(out)]) == 0
    return out


def test_the_table_has_a_row_per_model_form_and_batch_and_names_what_is_left_out(tiny):
    df = read_latency(tiny)
    assert list(df.columns) == LATENCY_FIELDS
    ok = df[df["status"] == "ok"]
    got = set(zip(ok["model"], ok["form"], ok["batch"]))
    assert got == {(m, f, b) for m, f in [("flowdistill", "eager"), ("flowdistill", "onnx-fp32"),
                                          ("flowdistill", "onnx-int8"), ("bigst", "eager")] for b in (1, 32)}
    assert (ok["threads"] == 1).all() and (ok["device"] == "cpu").all() and (ok["p99_ms"] >= ok["p50_ms"]).all()
    assert (ok["timed"] == [5 if b == 1 else 10 for b in ok["batch"]]).all() and (ok["mflop_window"] > 0).all()
    assert ok["mae"].isna().all()                                     # untrained: no MAE claimed
    left = df[df["status"] == "left out"]
    assert set(left["form"]) == {"onnx-fp32", "onnx-int8"} and (left["model"] == "bigst").all()
    assert left["note"].str.contains("BigST cannot be exported").all()
    assert (tiny / "latency.png").stat().st_size > 10_000


def test_the_scalability_section_takes_the_table_the_verdict_and_the_figure(tiny):
    import matplotlib
    matplotlib.use("Agg")
    titles = [t for t, _ in SUITES["scalability"].tables(pd.DataFrame(columns=["status", "measure"]), tiny)]
    assert titles[-3:] == ["deployable forms: latency per request (batch 1) and windows/s (larger batches)",
                           "deployable forms: the student against BigST and EasyST", "deployable forms left out"]
    frame = latency_tables(tiny)[0][1]
    assert list(frame.columns) == ["device", "model", "form", "threads", "b1 p50 ms", "b1 p99 ms", "b32 windows/s",
                                   "MFLOP/window", "test MAE"] and len(frame) == 4
    verdict = latency_verdict(read_latency(tiny))
    assert verdict[0].startswith("batch 32, 1 thread(s): the student's best form") and "target >= 2x" in verdict[0]
    assert "target lower" in verdict[1] and any("not measured (untrained weights" in v for v in verdict)
    assert any(v.startswith("Fig. 10 claims the student's latency 42 % below bigst's") for v in verdict)
    assert latency_figure(read_latency(tiny)).axes
    assert latency_tables(tiny / "nowhere") == []


def test_a_report_folder_keeps_the_table_and_its_command(tiny, tmp_path):
    from bench.suites import numbers
    assert "python -m benchmarks.latency --nodes 8" in (tiny / "commands.log").read_text()
    results = tmp_path / "results"
    (results / "scalability").mkdir(parents=True)
    for name in ("latency.csv", "commands.log"):
        (results / "scalability" / name).write_text((tiny / name).read_text())
    (results / "scalability" / "trials.csv").write_text("trial_id,status\n")
    numbers.pack(results, tmp_path / "report")
    again = numbers.unpack(tmp_path / "report", tmp_path / "again")
    assert (again / "scalability" / "latency.csv").read_text() == (tiny / "latency.csv").read_text()
