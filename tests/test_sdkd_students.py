"""SDKD's students on the Navier-Stokes grid (64 x 64, 10 -> 10 frames, one channel): parameter
counts against the teacher's, circular padding's translation equivariance on the torus, and
receptive fields measured as the input cells one output cell's gradient reaches."""
import numpy as np
import pytest
import torch

from bench.protocol import registry

N = 64
NS = registry.ModelInfo(N * N, 1, 10, 10, 1, np.eye(1, dtype=np.float32), None, "NavierStokes", {"grid": [N, N]})


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str, **config):
    torch.manual_seed(0)
    entry = registry.get(name)
    return entry.cls(entry.config(**config), NS).eval()        # eval: BatchNorm's running statistics, no dropout


def params(name: str, **config) -> int:
    return sum(p.numel() for p in build(name, **config).parameters())


def test_parameter_counts_on_navier_stokes():
    teacher = params("sdkd-teacher")
    assert teacher == 1_100_874
    assert params("sdkd-unet") == 45_146 and params("sdkd-resnet") == 44_410           # 4 % of the teacher
    assert params("sdkd-unet-large") == 216_002 and params("sdkd-resnet-large") == 213_754
    for name in ("sdkd-unet-large", "sdkd-resnet-large"):
        assert 0.15 < params(name) / teacher < 0.30                                   # SDKD's notes: 20-30 %
    assert params("sdkd-unet-large-kd") == params("sdkd-unet-large")                  # KD adds no weights
    assert params("sdkd-unet-large-sdkd-latent") == 216_002 + 40 * 128 + 128          # the 1x1 adapter to 128
    assert params("sdkd-unet", padding="circular") == 45_146                          # padding adds none


def _roll(frames: torch.Tensor, shift) -> torch.Tensor:
    return torch.roll(frames, shifts=shift, dims=(-2, -1))


def _shift_error(model, shift) -> float:
    """max |model(shift(x)) - shift(model(x))| on a periodic field x [2, 10, 64, 64]."""
    g = torch.Generator().manual_seed(1)
    cells = torch.arange(N, dtype=torch.float32) * 2 * torch.pi / N
    field = torch.sin(3 * cells)[:, None] * torch.cos(2 * cells)[None, :] + 0.3 * torch.randn(2, 10, N, N, generator=g)
    flat = lambda f: f.reshape(2, 10, N * N, 1)
    with torch.no_grad():
        shifted_in = model(flat(_roll(field, shift))).reshape(2, 10, N, N)
        shifted_out = _roll(model(flat(field)).reshape(2, 10, N, N), shift)
    return float((shifted_in - shifted_out).abs().max())


@pytest.mark.parametrize("name, config, shift", [
    ("sdkd-unet-large", {}, (16, 48)),               # four stride-2 levels: shifts by multiples of 16
    ("sdkd-resnet-large", {}, (5, 13)),              # full resolution: every shift
    ("sdkd-unet", {"padding": "circular"}, (4, 60)),
    ("sdkd-resnet", {"padding": "circular"}, (1, 63)),
])
def test_circular_padding_commutes_with_shifts_of_a_periodic_field(name, config, shift):
    assert _shift_error(build(name, **config), shift) < 1e-5


@pytest.mark.parametrize("name", ["sdkd-unet", "sdkd-resnet"])
def test_zero_padding_does_not(name):
    assert _shift_error(build(name), (4, 60)) > 1e-2               # the default keeps the committed reports' students


def _receptive_field(model) -> tuple[int, int]:
    """(rows, columns) of the input cells that output cell (32, 32) of the first output frame reads."""
    x = torch.randn(1, 10, N * N, 1, requires_grad=True)
    model(x).reshape(1, 10, N, N)[0, 0, 32, 32].backward()
    reached = x.grad.reshape(10, N, N).abs().sum(0) > 0
    rows, cols = np.nonzero(reached.numpy())
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_receptive_fields():
    assert _receptive_field(build("sdkd-unet")) == (13, 13)
    assert _receptive_field(build("sdkd-resnet")) == (19, 19)
    for name in ("sdkd-unet-large", "sdkd-resnet-large"):           # every cell of the grid
        assert _receptive_field(build(name)) == (N, N)


def test_large_students_run_on_small_city_grids():
    # 10 x 20 (NYCTaxi) and 2 x 20: the U-Net's levels go down to one cell, the ResNet's dilations
    # are cut to the grid's shorter side (circular padding wraps at most once)
    for h, w in ((10, 20), (2, 20)):
        info = registry.ModelInfo(h * w, 2, 12, 12, 48, np.eye(1, dtype=np.float32), None, "grid", {"grid": [h, w]})
        for name in ("sdkd-unet-large", "sdkd-resnet-large"):
            entry = registry.get(name)
            out = entry.cls(entry.config(), info)(torch.randn(3, 12, h * w, 2))
            assert out.shape == (3, 12, h * w, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="use one of zeros, circular"):
        registry.get("sdkd-unet").config(padding="reflect")
