"""`bench export`: a tiny student trained on a real slice of NYCTaxi, exported to ONNX and TorchScript
(fp32 and int8), equal to the PyTorch model within 1e-4 relative in fp32; the int8 models load and
predict [B, H_out, N, C]; the CLI end to end and its errors."""
import shutil

import pytest
import torch

from bench.cli import main
from bench.execution import export
from bench.execution.results import read_trials
from bench.protocol import registry
from bench.protocol.split import horizons, prepare

NODES = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A results folder holding one FlowDistill student (no teacher) trained for one epoch on 8 regions."""
    out = tmp_path_factory.mktemp("results")
    argv = ["run", "--no-report", "--suite", "data-efficiency", "--models", "flowdistill-wo-tb", "--ratios", "0.1",
            "--nodes", str(NODES), "--epochs", "1", "--executor", "inline", "--out", str(out)]
    assert main(argv) == 0
    rows = read_trials(out / "data-efficiency" / "trials.csv")
    return out, str(rows["trial_id"].iloc[0]), float(rows[rows["horizon"] == "all"]["mae"].iloc[0])


def test_the_students_inference_graph_is_its_eval_forward_without_training_work(taxi_small):
    _, scaler, parts = prepare(taxi_small, 0.5)
    entry = registry.get("flowdistill")
    torch.manual_seed(0)
    model = entry.cls(entry.config(), registry.ModelInfo.of(taxi_small, scaler, *horizons(taxi_small)))
    graph = export.inference_graph(model.eval())
    x, tod, dow = export.example_inputs(parts["test"], 3)
    with torch.no_grad():
        assert torch.equal(graph(x, tod, dow), model(x, tod, dow))
    kinds = {type(m).__name__ for m in graph.modules()}
    assert "Dropout" not in kinds and "VIB" not in kinds
    assert graph.mu.out_features == model.cfg.bottleneck


def test_a_model_without_an_exportable_graph_is_refused(taxi_small, tmp_path):
    _, scaler, parts = prepare(taxi_small, 0.5)
    info = registry.ModelInfo.of(taxi_small, scaler, *horizons(taxi_small))
    floor = registry.get("seasonal-naive-week")
    with pytest.raises(export.ExportError, match="reference forecaster"):
        export.inference_graph(floor.cls(floor.config(), info))
    bigst = registry.get("bigst")
    with pytest.raises(export.ExportError, match="BigST cannot be exported.*Python number"):
        export.export_torchscript(export.inference_graph(bigst.cls(bigst.config(), info)),
                                  export.example_inputs(parts["test"]), tmp_path / "bigst.torchscript.pt")
    assert not list(tmp_path.iterdir())                                 # nothing left behind


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_round_trip_fp32_equal_and_int8_predicts_the_right_shape(trained, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    out, tid, mae = trained
    rows = export.export_trial(out, tid, fmt, int8=True)
    assert [r["form"] for r in rows] == ["pytorch fp32", f"{fmt} fp32", f"{fmt} int8"]
    assert rows[0]["mae"] == pytest.approx(mae, rel=1e-5)              # the kept weights score as the trial's row
    assert rows[1]["max_rel_dev"] <= 1e-4 and rows[1]["mae"] == pytest.approx(mae, rel=1e-4)
    assert rows[2]["size_kb"] < rows[1]["size_kb"]                    # int8 weights, some kept fp32 at most
    kept, of = rows[2]["int8_layers"].split(" of ")
    assert 0 < int(kept) <= int(of) == 9                          # series FC, 6 encoder FCs, mu, head
    suffix = export.SUFFIX[fmt]
    assert (out / "exports" / f"{tid}{suffix}").exists() and (out / "exports" / f"{tid}.int8{suffix}").exists()
    # the files alone, against the PyTorch model, on a batch size the export never saw
    from bench.execution.trial import find_checkpoint, load_checkpoint
    ctx = load_checkpoint(find_checkpoint(out, tid))
    x, tod, dow = export.example_inputs(ctx.parts["test"], 5)
    with torch.no_grad():
        ref = ctx.model.eval()(x, tod, dow)
    fp32 = export.load_exported(out / "exports" / f"{tid}{suffix}")(x, tod, dow)
    assert torch.allclose(fp32, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    for b in (1, 5):
        y = export.load_exported(out / "exports" / f"{tid}.int8{suffix}")(x[:b], tod[:b], dow[:b])
        assert y.shape == (b, ctx.info.h_out, NODES, ctx.info.num_channels) and torch.isfinite(y).all()


def test_the_onnx_graph_holds_no_sampling_dropout_or_variance(trained):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out, tid, _ = trained
    path = out / "exports" / f"{tid}.onnx"
    if not path.exists():
        export.export_trial(out, tid, "onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MatMul" in ops and not ops & {"Dropout", "RandomNormal", "RandomNormalLike", "Softplus", "Exp"}


def test_bench_export_end_to_end_and_its_errors(trained, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out, tid, _ = trained
    assert main(["export", "--results", str(out), "--trial", tid, "--int8"]) == 0
    printed = capsys.readouterr().out
    for text in ("onnx fp32", "onnx int8", "max rel. deviation", "test MAE", f"{tid}.int8.onnx"):
        assert text in printed
    assert main(["export", "--results", str(out), "--trial", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: no trial nope") and "Traceback" not in err and "bench compare" in err


def test_a_trial_that_kept_no_weights_is_trained_again_from_its_recorded_spec(trained, tmp_path, capsys):
    out, tid, mae = trained
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    (copy / "data-efficiency" / "checkpoints" / f"{tid}.pt").unlink()
    rows = export.export_trial(copy, tid, "torchscript")
    assert (copy / "data-efficiency" / "checkpoints" / f"{tid}.pt").exists()
    assert rows[0]["mae"] == pytest.approx(mae, rel=1e-4)              # the same training again


def test_a_missing_package_is_named_with_its_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(export.ExportError, match=r"needs onnxruntime.*pip install -e \"\.\[export\]\""):
        export.require("onnx")
    with pytest.raises(export.ExportError, match="use one of onnx, torchscript"):
        export.require("tflite")


def test_int8_keeps_in_fp32_the_fewest_layers_that_fit_the_budget():
    rise = {"a": 0.001, "b": 0.02, "c": 0.004}               # what each layer's int8 weights add to the error
    build = lambda keep: set(keep)                            # noqa: E731
    error = lambda kept: 1 + sum(v for k, v in rise.items() if k not in kept)   # noqa: E731
    assert export.keep_fp32_within(list(rise), build, error, 0.03) == []           # all int8 fits
    assert export.keep_fp32_within(list(rise), build, error, 0.006) == ["b"]       # the costliest first
    assert export.keep_fp32_within(list(rise), build, error, 0.0) == ["b", "c", "a"]
