"""Tests of the Navier-Stokes data generator (bench/protocol/navier_stokes.py): exact solutions, invariants,
the random initial field, generate()/write(), the memory refusal and bad-input errors."""
import json
import math

import numpy as np
import pytest
import torch

from bench.protocol import navier_stokes as ns


pytestmark = pytest.mark.usefixtures("one_thread")           # tiny FFTs run fastest on one thread


def grid(n):
    x = torch.arange(n, dtype=torch.float64) / n
    return x[:, None], x[None, :]          # axis 0 is x, axis 1 is y


@pytest.mark.parametrize("m", [1, 2])
def test_taylor_green_decays_at_the_exact_rate(m):
    # w0 = cos(kx) cos(ky) has psi proportional to w, so u . grad w = 0 and w(t) = w0 exp(-2 nu k^2 t).
    n, nu, k, dt = 32, 1e-2, 2 * math.pi * m, 2.5e-3
    x, y = grid(n)
    w0 = (2 * k * torch.cos(k * x) * torch.cos(k * y))[None]
    w = ns.solve(w0, 0.0, nu, t_final=0.5, dt=dt, record_every=0.125)
    assert w.shape == (1, n, n, 4)
    a = 0.5 * dt * nu * 2 * k ** 2
    for i, t in enumerate([0.125, 0.25, 0.375, 0.5]):
        exact = w0[0] * math.exp(-2 * nu * k ** 2 * t)
        assert ((w[0, ..., i] - exact).norm() / exact.norm()).item() < 1e-4
        # and exactly the Crank-Nicolson amplification ((1 - a) / (1 + a))^steps: the nonlinear term is 0
        discrete = w0[0] * ((1 - a) / (1 + a)) ** round(t / dt)
        assert ((w[0, ..., i] - discrete).norm() / exact.norm()).item() < 1e-10


def test_nonlinear_term_has_the_right_sign_and_axes():
    # w0 = cos(2 pi x) + cos(4 pi y): exactly dw/dt = -u . grad w = 1.5 sin(2 pi x) sin(4 pi y) at t = 0
    # with u = (d psi/dy, -d psi/dx), -Laplacian psi = w (x = axis -2), nu = 0, no forcing.
    x, y = grid(32)
    w0 = (torch.cos(2 * math.pi * x) + torch.cos(4 * math.pi * y))[None]
    tau = 1e-4
    rate = (ns.solve(w0, 0.0, 0.0, t_final=tau, dt=1e-5, record_every=tau)[0, ..., 0] - w0[0]) / tau
    expected = 1.5 * torch.sin(2 * math.pi * x) * torch.sin(4 * math.pi * y)
    assert (rate - expected).abs().max().item() < 1e-2 * expected.abs().max().item()


def test_mean_vorticity_is_conserved():
    n = 32
    w0 = ns.grf(3, n, torch.Generator().manual_seed(0))
    w = ns.solve(w0, ns.forcing(n), 1e-5, t_final=0.5, dt=1e-2, record_every=0.1)
    assert torch.isfinite(w).all()
    assert w.mean(dim=(1, 2)).abs().max().item() < 1e-10
    assert ns.forcing(n).mean().abs().item() < 1e-12


def test_heun_is_second_order_in_time():
    n = 32
    w0 = ns.grf(1, n, torch.Generator().manual_seed(3))
    f = ns.forcing(n)
    ref = ns.solve(w0, f, 1e-3, 0.5, 0.5 / 160, 0.5)
    err = [(ns.solve(w0, f, 1e-3, 0.5, dt, 0.5) - ref).norm().item() for dt in (0.5 / 10, 0.5 / 20)]
    assert err[0] / err[1] > 3.0


def test_grf_zero_mean_reproducible_and_fno_scaled():
    n = 32
    a = ns.grf(200, n, torch.Generator().manual_seed(0))
    assert a.shape == (200, n, n) and a.dtype == torch.float64
    assert a.mean(dim=(1, 2)).abs().max().item() < 1e-12
    assert torch.equal(a[:5], ns.grf(5, n, torch.Generator().manual_seed(0)))
    assert not torch.allclose(a[:5], ns.grf(5, n, torch.Generator().manual_seed(1)))
    # pointwise variance of FNO's field: 2 * 7^3 * sum_{k != 0} (4 pi^2 |k|^2 + 49)^{-2.5}
    k = np.fft.fftfreq(n, 1 / n)
    lam = 4 * math.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) + 49
    lam[0, 0] = np.inf
    expected = 2 * 7 ** 3 * (lam ** -2.5).sum()
    assert abs(a.var().item() / expected - 1) < 0.15


def test_generate_shape_dtype_and_batch_independence():
    kw = dict(num_samples=3, seed=1, resolution=32, dt=0.05, frames=2, save_size=16, progress=False)
    u = ns.generate(batch_size=2, **kw)
    assert u.shape == (3, 2, 16, 16) and u.dtype == np.float32
    assert np.isfinite(u).all() and np.abs(u).max() < 10
    np.testing.assert_allclose(u, ns.generate(batch_size=3, **kw), atol=1e-5)
    u64 = ns.generate(batch_size=3, dtype=torch.float64, **kw)
    np.testing.assert_allclose(u, u64, atol=1e-4)          # float32 solver agrees with float64


def test_generate_threads_setting_is_restored():
    threads = torch.get_num_threads()
    ns.generate(num_samples=1, resolution=16, save_size=16, dt=0.5, frames=1, threads=threads + 1, progress=False)
    assert torch.get_num_threads() == threads


def test_generate_matches_subsampled_solve():
    u = ns.generate(num_samples=1, seed=4, resolution=32, dt=0.05, frames=2, save_size=16, progress=False)
    w0 = ns.grf(1, 32, torch.Generator().manual_seed(4))
    w = ns.solve(w0, ns.forcing(32), 1e-5, 2.0, 0.05, 1.0, dtype=torch.float32)[:, ::2, ::2]
    np.testing.assert_allclose(u, w.permute(0, 3, 1, 2).numpy(), atol=1e-5)


def test_write_round_trips(tmp_path):
    u = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    path = ns.write(tmp_path / "sub" / "ns.npz", u, {"nu": 1e-5, "resolution": 32, "dt": 0.05, "seed": 1, "frames": 3})
    with np.load(path) as z:
        np.testing.assert_array_equal(z["u"], u)
        meta = json.loads(str(z["meta"]))
    assert meta["nu"] == 1e-5 and meta["generator_version"] == ns.GENERATOR_VERSION
    assert [p.name for p in path.parent.iterdir()] == ["ns.npz"]      # no temporary file left behind


def test_huge_request_is_refused_before_solving(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("solver ran")
    monkeypatch.setattr(ns, "solve", boom)
    monkeypatch.setattr(ns, "grf", boom)
    with pytest.raises(ns.SolverSizeError, match="GiB") as info:
        ns.generate(num_samples=10 ** 5, resolution=8192, batch_size=10 ** 4, progress=False)
    assert isinstance(info.value, ValueError) and "batch_size" in str(info.value)
    assert ns.estimate_bytes(2, 256) == 2 * ns.estimate_bytes(1, 256)


@pytest.mark.parametrize("kwargs, name", [
    (dict(resolution=100, save_size=64), "resolution"),
    (dict(dt=0.0), "dt"),
    (dict(dt=0.3), "dt"),
    (dict(nu=-1e-5), "nu"),
    (dict(num_samples=0), "num_samples"),
    (dict(batch_size=-1), "batch_size"),
])
def test_bad_generate_inputs(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ns.generate(progress=False, **kwargs)


def test_bad_solve_inputs():
    w0 = torch.zeros(1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="multiple of dt"):
        ns.solve(w0, 0.0, 1e-3, t_final=1.0, dt=0.3)
    with pytest.raises(ValueError, match="dt"):
        ns.solve(w0, 0.0, 1e-3, t_final=1.0, dt=-1e-3)
    with pytest.raises(ValueError, match="nu"):
        ns.solve(w0, 0.0, -1.0, t_final=1.0, dt=1e-3)
