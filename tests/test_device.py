"""Device placement without a GPU: `resolve_device` and, on torch's "meta" device, that each
registered model's forward pass builds every tensor where its input is (a tensor left on the CPU
would raise when it meets a meta tensor)."""
import pytest
import torch

from bench.protocol import registry
from bench.execution.train import DeviceError, forward, resolve_device, to_device
from bench.execution.context import build_context
from bench.execution.spec import TrialSpec

# forward passes that meta tensors cannot run, for reasons other than placement
NOT_ON_META = {
    "bigst": "seeds its random features from q.sum().item(), as the official code does (w is moved to q's device)",
    "stsgcn": "its localized adjacency is a sparse matrix; torch has no sparse x dense product on meta",
}


def _lm_free(name: str) -> bool:
    return not name.startswith("flowdistill-teacher")          # the LLM teachers load a language model


@pytest.mark.parametrize("name", [n for n in registry.names() if _lm_free(n) and n not in NOT_ON_META])
def test_forward_keeps_every_tensor_on_the_input_device(name):
    defaults = registry.get(name).config()
    config = {"teacher": None} if defaults.teacher else {}
    if getattr(defaults, "kd", "none") != "none":
        config["kd"] = "none"                                # SDKD students refuse kd without a teacher
    # 20 regions: the first row of NYCTaxi's 10 x 20 grid, so grid models run too
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model=name, ratio=0.5, num_nodes=20, config=config)
    ctx = build_context(spec)
    parts, model = ctx.parts, ctx.model
    batch = to_device(parts["train"].batch([0, 1]), torch.device("meta"))
    model.to("meta")
    out = forward(model, batch)
    assert out.device.type == "meta" and tuple(out.shape) == (2, 12, 20, 2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="use one of auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="this machine has no CUDA device"):
            resolve_device("cuda")


def test_gpu_check_script_runs_on_the_cpu_and_catches_a_tensor_left_behind(capsys):
    from benchmarks import gpu
    assert gpu.main(["--device", "cpu", "--steps", "2", "--nodes", "6", "--no-suite",
                     "--models", "flowdistill,bigst,seasonal-naive-week",
                     "--latency", "--latency-requests", "3", "--latency-forms", "eager"]) == 0
    out = capsys.readouterr().out
    assert "flowdistill" in out and "bigst" in out and "steps/s" in out and "seasonal-naive-week" not in out
    assert "latency of the deployable forms on the CPU" in out and "windows/s" in out
    layer = torch.nn.Sequential(torch.nn.Linear(3, 2)).to("meta")
    found = gpu.watch_placement(layer, torch.device("meta"))
    with pytest.raises(Exception):
        layer(torch.zeros(4, 3))                          # a CPU tensor reaching a meta model
    assert found and "input of Sequential on cpu (4, 3)" in found[0]
