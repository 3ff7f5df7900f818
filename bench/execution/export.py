"""Deployable forms of a trained model: its inference graph (`inference_graph`) exported to ONNX
(torch.onnx's torch.export-based exporter, run with onnxruntime) or to TorchScript, in fp32 or with
int8 weights, each checked against the PyTorch model on every test window (`export_trial`: the
`bench export` command; the latency benchmark builds its forms with the same functions). An int8
form keeps in fp32 the fewest matrix products that hold its validation MAE within INT8_BUDGET of
fp32's (`keep_fp32_within`; chosen on validation windows, reported on test windows).

Every exported model takes x [B, H_in, N, C] float32 (z-scored flows) and tod, dow [B, H_in] int64,
and returns [B, H_out, N, C] float32 (z-scored); B is free, N is fixed by the weights. Files go to
RESULTS/exports/: TRIAL_ID.onnx, TRIAL_ID.int8.onnx, TRIAL_ID.torchscript.pt, TRIAL_ID.int8.torchscript.pt.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import logging
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from bench.protocol import registry
from bench.protocol.errors import BenchError
from bench.protocol.metrics import score
from bench.execution.results import atomic_write
from bench.execution.spec import TrialSpec
from bench.execution.train import predict

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-4            # the largest relative deviation of an fp32 export from the PyTorch model
INT8_BUDGET = 0.005         # the largest relative rise of validation MAE an int8 form may cost (kept fp32 layers)
NEEDS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "torchscript": ()}


class ExportError(BenchError, ValueError):
    """A model or trial that cannot be exported here; the message names the problem and the fix."""


def require(fmt: str, int8: bool = False) -> None:
    """Check that the packages `fmt` needs (and int8 quantisation with it) are installed.

    Raises:
        ExportError: an unknown format (names the allowed ones) or a missing package (names the install).
    """
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}; use one of {', '.join(FORMATS)}")
    missing = [m for m in NEEDS[fmt] if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"--format {fmt} needs {', '.join(missing)}, not installed here; "
                          f"pip install -e \".[export]\" (or pip install {' '.join(missing)})")
    if fmt == "torchscript" and int8 and not hasattr(torch.ao.quantization, "quantize_dynamic"):
        raise ExportError(f"--int8 with torchscript needs torch.ao.quantization.quantize_dynamic, which torch "
                          f"{torch.__version__} lacks; use --format onnx --int8 (onnxruntime's quantisation)")


def inference_graph(model: nn.Module) -> nn.Module:
    """The deployable forward pass of `model` in eval mode: its `inference_graph()` when it defines
    one (the FlowDistill student: Z = mu alone, no dropout), else the model itself.

    Takes x [B, H_in, N, C] z-scored, tod/dow [B, H_in] int64 and gives [B, H_out, N, C] z-scored.
    Raises:
        ExportError: a model that reads more than (x, tod, dow) (`forward_batch`, a lookback longer
            than H_in) or has no weights (a reference forecaster).
    """
    name = type(model).__name__
    if not getattr(model, "trainable", True):
        raise ExportError(f"{name} is a reference forecaster: no weights to export; export a trained model's trial")
    info = getattr(model, "info", None)
    if hasattr(model, "forward_batch") or (info is not None and registry.lookback(model, info.h_in) > info.h_in):
        raise ExportError(f"{name} reads more than (x, tod, dow) of a window (history or the window's dataset), "
                          f"so it has no exportable inference graph; export a model that forecasts from its input "
                          f"window (e.g. flowdistill)")
    hook = getattr(model, "inference_graph", None)
    return (hook() if hook else model).eval()


def example_inputs(windows, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [b, H_in, N, C], tod [b, H_in], dow [b, H_in]) of the first b = min(batch, len(windows))
    windows, on the CPU: what an export traces."""
    b = windows.batch(torch.arange(min(batch, len(windows))))
    return b["x"].cpu(), b["tod"].cpu(), b["dow"].cpu()


def export_onnx(graph: nn.Module, example: tuple, path: Path) -> Path:
    """Write `graph` (CPU, eval mode) as one ONNX file at `path` with a free batch axis, through
    torch.onnx's torch.export-based exporter; `example`: (x, tod, dow) with a batch of 2 or more.

    Raises:
        ExportError: the exporter's packages are missing, or the graph cannot be exported (e.g. a
            forward that turns a tensor into a Python number); names the model and the cause.
    """
    require("onnx")
    batch = torch.export.Dim("batch", min=1, max=65536)

    def write(tmp):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, example, dynamo=True, external_data=False, verbose=False,
                                        input_names=["x", "tod", "dow"], output_names=["y"],
                                        dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
            program.save(tmp)
    _exporting(graph, lambda: atomic_write(Path(path), write))
    return Path(path)


def quantize_onnx(source: Path, path: Path, keep_fp32=()) -> Path:
    """Write the ONNX model `source` with int8 weights at `path`: onnxruntime's dynamic quantisation
    (the weights of every MatMul/Gemm node but those named in `keep_fp32` as signed int8 per tensor;
    their activations quantised on the fly per call).

    Raises:
        ExportError: onnxruntime is missing.
    """
    require("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    with _quiet():
        atomic_write(Path(path), lambda tmp: quantize_dynamic(str(source), tmp, weight_type=QuantType.QInt8,
                                                             nodes_to_exclude=list(keep_fp32)))
    return Path(path)


def onnx_layers(path: Path) -> list[str]:
    """The names of the weight-bearing matrix products (MatMul/Gemm nodes with a stored weight) of
    the ONNX model at `path`, in graph order: what `quantize_onnx` turns to int8."""
    import onnx
    model = onnx.load(str(path))
    stored = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and any(i in stored for i in n.input)]


def torch_int8(graph: nn.Module, keep_fp32=()) -> nn.Module:
    """A copy of `graph` whose Linear layers, but those named in `keep_fp32`, are quantised
    dynamically (torch.ao: int8 weights per tensor, activations per call).

    Raises:
        ExportError: torch lacks torch.ao.quantization.quantize_dynamic.
    """
    require("torchscript", int8=True)
    names = {n for n, m in graph.named_modules() if isinstance(m, nn.Linear) and n not in set(keep_fp32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                             # torch.ao's deprecation notices
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(graph), names, dtype=torch.qint8)


def keep_fp32_within(layers: list[str], build, error, budget: float = INT8_BUDGET) -> list[str]:
    """The layers to keep in fp32 so that an int8 model's error stays within `budget` (a relative
    rise) of fp32's: none when all-int8 fits; else the layers ranked by how much keeping each alone
    in fp32 lowers the error, kept one after another in that order until the rise fits (all of them
    at worst). `build(keep)` gives the model with `keep` in fp32, `error(model)` its error on held-out
    windows (validation, never test); `error(build(layers))` is the fp32 reference."""
    reference = error(build(layers))
    rise = lambda keep: error(build(keep)) / reference - 1                   # noqa: E731
    if rise([]) <= budget:
        return []
    ranked = sorted(layers, key=lambda layer: rise([layer]))
    for i in range(1, len(ranked) + 1):
        if rise(ranked[:i]) <= budget:
            return ranked[:i]
    return ranked


def export_torchscript(graph: nn.Module, example: tuple, path: Path) -> Path:
    """Write `graph` (CPU, eval mode; `torch_int8` gives its int8 form) traced to TorchScript at
    `path` (torch.jit.save).

    Raises:
        ExportError: the trace would not be faithful (a tensor turned into a Python number or
            another trace warning).
    """
    require("torchscript")

    def write(tmp):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)       # torch.jit is deprecated in favour of export
            warnings.simplefilter("error", torch.jit.TracerWarning)
            torch.jit.save(torch.jit.trace(graph, example, check_trace=False), tmp)
    _exporting(graph, lambda: atomic_write(Path(path), write))
    return Path(path)


def _exporting(graph: nn.Module, run) -> None:
    """run(); an exporter's failure becomes an ExportError naming the graph and the cause."""
    try:
        with _quiet():
            run()
    except BenchError:
        raise
    except Exception as exc:                   # noqa: BLE001 - every exporter failure means "not exportable"
        root = exc
        while (root.__cause__ or root.__context__) is not None:
            root = root.__cause__ or root.__context__
        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(root).strip().splitlines() or [""])[0])[:300]
        raise ExportError(f"{type(graph).__name__} cannot be exported ({type(root).__name__}: {first}); its forward "
                          f"must be one graph of tensor operations (no tensor read as a Python number)") from exc


class _quiet:
    """Silence the exporters' progress lines, graph dumps and log warnings (torch's, onnxruntime's advice)."""

    def __enter__(self):
        import contextlib
        import io
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self.stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        names = [""] + [n for n in logging.root.manager.loggerDict if n == "torch" or n.startswith("torch.")]
        self.levels = {name: logging.getLogger(name).level for name in names}
        for name in self.levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        self.stack.close()
        return False


class OnnxModel(nn.Module):
    """An ONNX file run by onnxruntime, as a model: forward(x [B, H_in, N, C] float32, tod, dow
    [B, H_in] int64) -> [B, H_out, N, C] float32 on the CPU.

    threads: onnxruntime's intra-op threads (None: its default, every core); providers: its
    execution providers (default: the CPU's).
    Raises:
        ExportError: onnxruntime is missing.
    """

    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        super().__init__()
        require("onnx")
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads:
            opts.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def forward(self, x, tod, dow):
        feeds = {name: t.detach().cpu().numpy() for name, t in zip(self.names, (x, tod, dow))}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def load_exported(path: Path, threads: int | None = None) -> nn.Module:
    """An exported file as a model (forward(x, tod, dow) -> [B, H_out, N, C]): `OnnxModel` for
    .onnx, torch.jit.load for .torchscript.pt.

    Raises:
        ExportError: an unknown file kind, or onnxruntime missing for an .onnx file.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxModel(path, threads)
    if path.name.endswith(SUFFIX["torchscript"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)        # torch.jit is deprecated in favour of export
            return torch.jit.load(str(path)).eval()
    raise ExportError(f"{path}: not an exported model (.onnx or {SUFFIX['torchscript']})")


def export_model(graph: nn.Module, model: nn.Module, ctx, folder: Path, stem: str, fmt: str = "onnx",
                 int8: bool = False, budget: float = INT8_BUDGET) -> list[dict]:
    """Export `graph` (the inference graph of `model`, on the CPU) in `fmt` to FOLDER/STEM.SUFFIX,
    with int8 also FOLDER/STEM.int8.SUFFIX, and score each form on the test windows of `ctx` (a
    `bench.execution.context.TrialContext`). The int8 form keeps in fp32 the fewest layers that hold
    its validation MAE within `budget` (relative) of fp32's (`keep_fp32_within`).

    Returns one row per form (PyTorch fp32 first): {"form", "file", "size_kb", "max_rel_dev"
    (max |y - y_pytorch| / max |y_pytorch| over every test window, original units), "mae" (test MAE,
    original units, as the trial's row computes it), "int8_layers" ("k of n" matrix products in int8;
    "" for fp32)}.
    Raises:
        ExportError: missing packages, a graph that cannot be exported, or an fp32 export whose
            deviation exceeds TOLERANCE (nothing written then).
    """
    require(fmt, int8)
    test = ctx.parts["test"]
    reference = predict(model, test, ctx.cfg.eval_batch_size)
    params_kb = sum(t.numel() * t.element_size() for t in graph.state_dict().values()) / 1024
    rows = [{"form": "pytorch fp32", "file": "", "size_kb": round(params_kb, 1), "max_rel_dev": 0.0,
             "mae": _mae(reference, ctx), "int8_layers": ""}]
    example = example_inputs(test)
    fp32 = Path(folder) / f"{stem}{SUFFIX[fmt]}"
    forms = [("fp32", fp32)] + ([("int8", Path(folder) / f"{stem}.int8{SUFFIX[fmt]}")] if int8 else [])
    scale = float(reference.abs().max()) or 1.0
    for kind, path in forms:
        layers = ""
        if kind == "fp32":
            export_onnx(graph, example, path) if fmt == "onnx" else export_torchscript(graph, example, path)
        else:
            layers = _export_int8(fmt, graph, example, fp32, path, ctx, budget)
        pred = predict(load_exported(path), test, ctx.cfg.eval_batch_size)
        dev = float((pred - reference).abs().max()) / scale
        if kind == "fp32" and not dev <= TOLERANCE:
            path.unlink()
            raise ExportError(f"the {fmt} export of {type(graph).__name__} deviates from the PyTorch model by "
                              f"{dev:.2e} (relative) on the test windows, above {TOLERANCE:g}; not kept")
        rows.append({"form": f"{fmt} {kind}", "file": str(path), "size_kb": round(path.stat().st_size / 1024, 1),
                     "max_rel_dev": dev, "mae": _mae(pred, ctx), "int8_layers": layers})
    return rows


def _export_int8(fmt: str, graph: nn.Module, example: tuple, fp32: Path, path: Path, ctx, budget: float) -> str:
    """Write the int8 form of `graph` at `path` (ONNX: quantised from the file `fp32`), its fp32
    layers chosen on the validation windows of `ctx` (`keep_fp32_within`); returns "k of n"
    (matrix products in int8)."""
    import tempfile

    from bench.protocol.metrics import masked_mae
    val = ctx.parts["val"]
    error = lambda m: float(masked_mae(predict(m, val, ctx.cfg.eval_batch_size), val.targets()))   # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        if fmt == "onnx":
            layers = onnx_layers(fp32)
            build = lambda keep: OnnxModel(quantize_onnx(fp32, Path(tmp) / "trial.onnx", keep))   # noqa: E731
        else:
            layers = [n for n, m in graph.named_modules() if isinstance(m, nn.Linear)]
            build = lambda keep: torch_int8(graph, keep)                                         # noqa: E731
        keep = keep_fp32_within(layers, build, error, budget)
    if fmt == "onnx":
        quantize_onnx(fp32, path, keep)
    else:
        export_torchscript(torch_int8(graph, keep), example, path)
    return f"{len(layers) - len(keep)} of {len(layers)}"


def _mae(pred: torch.Tensor, ctx) -> float:
    """The test MAE (original units) of predictions of every test window, as a trial's row gives it."""
    return float(score(pred, ctx.parts["test"], ctx.data, ctx.split)[0]["mae"])


def history_spec(results: Path, trial_id: str) -> TrialSpec | None:
    """The spec of trial `trial_id` as its run recorded it (RESULTS/SUITE/history/TRIAL_ID.json), or None."""
    for path in sorted(Path(results).glob(f"*/history/{trial_id}.json")):
        spec = json.loads(path.read_text()).get("spec")
        if spec:
            return TrialSpec(**spec)
    return None


def checkpoint_of(results: Path, trial_id: str, log=print) -> Path:
    """The kept weights of trial `trial_id` under `results`; a trial that kept none is trained again
    from the spec its run recorded (its teacher fitted first when not cached), which keeps them.

    Raises:
        ExportError: no such trial (neither weights nor a recorded spec), a reference forecaster,
            or a training that failed (names its error).
    """
    from bench.execution import runner
    from bench.execution.trial import find_checkpoint, run_trial
    path = find_checkpoint(results, trial_id)
    if path is not None:
        return path
    spec = history_spec(results, trial_id)
    if spec is None:
        raise ExportError(f"no trial {trial_id} under {results}: neither kept weights (*/checkpoints/{trial_id}.pt) "
                          f"nor its recorded spec (*/history/{trial_id}.json); give a trial_id of a trials.csv there "
                          f"(`bench compare --results {results}` lists the rows)")
    if not registry.trains(spec.model):
        raise ExportError(f"trial {trial_id} is {spec.model}, a reference forecaster: no weights to export")
    spec = dataclasses.replace(spec, checkpoint_root=str(Path(results).resolve()))
    log(f"trial {trial_id} ({spec.model}) kept no weights: training it again from its recorded spec")
    runner.fit_teachers(runner.teacher_specs([spec]), str(results), "inline", log=log)
    rows = run_trial(spec)
    if rows[0].get("status") != "ok":
        raise ExportError(f"training trial {trial_id} ({spec.model}) again failed: {rows[0].get('error')}")
    return spec.checkpoint_path()


def export_trial(results, trial_id: str, fmt: str = "onnx", int8: bool = False, data_dir=None,
                 registry_file=None, log=print, budget: float = INT8_BUDGET) -> list[dict]:
    """`bench export`: the trial's kept weights (`checkpoint_of`) loaded as `bench evaluate` loads
    them, its inference graph exported to RESULTS/exports/ (`export_model`).

    Returns `export_model`'s rows.
    Raises:
        ExportError: as `checkpoint_of`, `inference_graph` and `export_model`; ValueError: weights
            that do not fit the model (`load_checkpoint`).
    """
    from bench.execution.trial import load_checkpoint
    require(fmt, int8)
    path = checkpoint_of(Path(results), trial_id, log)
    ctx = load_checkpoint(path, data_dir=data_dir, registry_file=registry_file)
    model = ctx.model.cpu().eval()
    return export_model(inference_graph(model), model, ctx, Path(results) / "exports", trial_id, fmt, int8, budget)
