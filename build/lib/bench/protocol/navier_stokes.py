"""Regenerate the FNO Navier-Stokes benchmark (NavierStokes_V1e-5_N1200_T20) with our own solver.

Source: Li et al., "Fourier Neural Operator for Parametric PDEs", ICLR 2021, section 5.3 and the
appendix on the Navier-Stokes data; SDKD notes ../shared/paper/sdkd-summary.md section 8 (SDKD's NS
file is that FNO file, shape (1200, 64, 64, 20), raw values, frames 0-9 in, 10-19 out).

Equation (vorticity form, unit torus [0, 1)^2, periodic; array axis -2 is x, axis -1 is y):
    dw/dt + u . grad w = nu Laplacian w + f,   -Laplacian psi = w,   u = (d psi/dy, -d psi/dx),
    f(x, y) = 0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y))),
    w0 ~ N(0, 7^{3/2} (-Laplacian + 49 I)^{-2.5}), with FNO's normalisation of that Gaussian field
    (the factor 7^{3/2} scales the square root of the spectrum; pointwise variance
    2 * 7^3 * sum_{k != 0} (4 pi^2 |k|^2 + 49)^{-2.5}, about 0.26^2).
Solver: pseudo-spectral, 2/3-rule dealiasing of the nonlinear term, Crank-Nicolson for diffusion.
The nonlinear term is explicit: Heun (2nd order, the default) or forward Euler (`heun=False`, FNO's
own scheme). Frames are recorded at t = 1, ..., T (w0 is not recorded) and subsampled to save_size.

DEFAULT, the small dataset: 120 samples (a tenth of FNO's 1200; split 100/20 like FNO's 1000/200)
solved at 128^2 with Heun, dt = 2.5e-3, float32, batches of 20: measured 6 min 17 s wall on 2 idle
CPU cores (torch.set_num_threads(2), 0.36 ms per sample and step), peak RSS 0.35 GiB; all frames
finite, |w| <= 3.84, std 0.28 (t=1) to 1.75 (t=20). Checked on two draws: 128^2 frames differ from a
256^2 solve (dt 1e-3) by 0.1-0.8 % at t = 1..15 and 4 % at t = 20 (chaotic growth); dt = 5e-3 gives
the same frames as 2.5e-3, while dt = 6.25e-3 blows up near t = 19 (explicit stability limit; it
falls as |w| grows), so the default keeps a x2.5 margin. At 256^2, Heun blows up at dt = 2.5e-3, not
at 1e-3. FNO's Euler scheme at dt = 1e-4 matches Heun at 2.5e-3 to < 0.1 % (128^2, t = 1..5).
Threads: 2 threads are 2x faster than 1 on idle cores but 15-40x SLOWER than 1 while other jobs keep
the cores busy (measured; OpenMP over-subscription), hence generate(threads=...).
FULL is FNO's setting (1200 samples, 256^2, dt = 1e-4, forward Euler): about 90 h on 2 idle CPU
cores (1.3 ms per sample and step measured), a job for a GPU.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

GENERATOR_VERSION = "flowbench-ns-1"
DEFAULT = dict(num_samples=120, resolution=128, dt=2.5e-3, nu=1e-5, frames=20, save_size=64)
FULL = dict(num_samples=1200, resolution=256, dt=1e-4, nu=1e-5, frames=20, save_size=64, heun=False)
_FIELDS_PER_SAMPLE = 40   # float64 N x N work arrays per sample: measured peak ~19 (+ frames), x2 margin


class SolverSizeError(ValueError):
    """The requested solve would not fit in the available memory; the message says what to lower."""


def _check_positive(**kw) -> None:
    for name, value in kw.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}; pass a value > 0")


def forcing(n: int) -> torch.Tensor:
    """FNO's forcing f(x, y) = 0.1 (sin(2 pi (x+y)) + cos(2 pi (x+y))) on the n x n grid x_i = i / n.

    Returns [n, n] float64 (axis 0 is x). Zero mean. Source: Li et al. 2021, section 5.3.
    """
    x = torch.arange(n, dtype=torch.float64) / n
    s = 2 * math.pi * (x[:, None] + x[None, :])
    return 0.1 * (torch.sin(s) + torch.cos(s))


def _wavenumbers(n: int):
    """Angular wavenumbers 2 pi k for rfft2 layout: kx [n, 1], ky [1, n//2+1] (float64)."""
    kx = torch.fft.fftfreq(n, 1.0 / n).to(torch.float64)[:, None] * 2 * math.pi
    ky = torch.fft.rfftfreq(n, 1.0 / n).to(torch.float64)[None, :] * 2 * math.pi
    return kx, ky


def grf(num: int, n: int, generator: torch.Generator | None = None, alpha: float = 2.5,
        tau: float = 7.0) -> torch.Tensor:
    """Periodic zero-mean Gaussian random fields on the n x n grid of the unit torus: [num, n, n] float64.

    FNO's GaussianRF (alpha = 2.5, tau = 7), written N(0, 7^{3/2} (-Laplacian + 49 I)^{-2.5}) in the
    paper: Fourier amplitude sqrt(2) tau^{alpha-1} (4 pi^2 |k|^2 + tau^2)^{-alpha/2}, mode k = 0 removed
    (every sample has zero mean). Drawn as filtered real white noise from `generator`, one sample after
    the other (reproducible per seed). Raises ValueError if num or n is not positive.
    Source: Li et al. 2021, section 5.3 (initial condition w0 ~ mu).
    """
    _check_positive(num=num, n=n)
    kx, ky = _wavenumbers(n)
    sqrt_spec = math.sqrt(2) * tau ** (alpha - 1) * (kx ** 2 + ky ** 2 + tau ** 2) ** (-alpha / 2)
    sqrt_spec[0, 0] = 0.0
    # one draw per sample, so sample i does not depend on how generate() batches the samples
    noise = torch.stack([torch.randn(n, n, generator=generator, dtype=torch.float64) for _ in range(num)])
    return torch.fft.irfft2(torch.fft.rfft2(noise) * (n * sqrt_spec), s=(n, n))


def solve(w0: torch.Tensor, forcing: torch.Tensor | float, nu: float, t_final: float, dt: float,
          record_every: float = 1.0, heun: bool = True, dtype: torch.dtype = torch.float64,
          bar=None) -> torch.Tensor:
    """Integrate the vorticity equation from w0 and record frames at t = record_every, 2 record_every, ...

    w0: [B, N, N] vorticity on the grid x_i = i / N.
    forcing: [N, N] tensor or a scalar 0. nu: viscosity (> 0, or 0 for Euler tests). t_final, dt,
    record_every: time units; record_every must be a whole number of steps, t_final a whole number of
    records. heun: Heun (2nd order) for the nonlinear term, else forward Euler (FNO). dtype: working
    precision (float32 is ~3x faster on CPU; FNO ran float32). bar: optional object with update(n)
    (a tqdm bar), advanced once per step.
    Returns [B, N, N, frames] in dtype, frames = t_final / record_every (w0 not included).
    Raises ValueError for non-positive dt/t_final/record_every, negative nu, or a non-integer ratio.
    Source: Li et al. 2021, section 5.3 and the appendix on the NS data (pseudo-spectral, Crank-Nicolson).
    """
    _check_positive(dt=dt, t_final=t_final, record_every=record_every)
    if nu < 0:
        raise ValueError(f"nu must be >= 0, got {nu!r}")
    steps = round(record_every / dt)
    frames = round(t_final / record_every)
    if abs(steps * dt - record_every) > 1e-9 * record_every or abs(frames * record_every - t_final) > 1e-9 * t_final:
        raise ValueError(f"record_every ({record_every}) must be a multiple of dt ({dt}) and t_final "
                         f"({t_final}) a multiple of record_every; pick dt = record_every / integer")
    n = w0.shape[-1]
    kx, ky = (k.to(dtype) for k in _wavenumbers(n))
    lap = kx ** 2 + ky ** 2                       # symbol of -Laplacian
    inv_lap = torch.where(lap > 0, 1.0 / lap.clamp_min(1e-30), torch.zeros(()))
    dx, dy = kx.clone(), ky.clone()               # derivative symbols with the Nyquist mode zeroed
    if n % 2 == 0:
        dx[n // 2] = 0.0
        dy[:, -1] = 0.0
    kcut = 2.0 / 3.0 * (n // 2) * 2 * math.pi
    dealias = ((kx.abs() <= kcut) & (ky.abs() <= kcut)).to(dtype)
    dx, dy = 1j * dx, 1j * dy                     # d/dx, d/dy; times inv_lap: w_h -> u_h, v_h
    to_u, to_v = dy * inv_lap, -dx * inv_lap
    a = 0.5 * dt * nu * lap
    decay, gain = (1 - a) / (1 + a), dt / (1 + a)
    half_gain = 0.5 * gain
    f_h = torch.fft.rfft2(forcing.to(dtype)) if torch.is_tensor(forcing) else 0.0

    def nonlinear(w_h):                            # rfft2 of u . grad w, dealiased
        u, v, wx, wy = (torch.fft.irfft2(w_h * m, s=(n, n)) for m in (to_u, to_v, dx, dy))
        return torch.fft.rfft2(u * wx + v * wy) * dealias   # (separate calls: a stacked batch is slower)

    w_h = torch.fft.rfft2(w0.to(dtype))
    out = torch.empty(*w0.shape, frames, dtype=dtype)
    for frame in range(frames):
        for _ in range(steps):
            base, n1 = decay * w_h + gain * f_h, nonlinear(w_h)
            w_h = base - gain * n1                                           # Euler-CN predictor
            if heun:
                w_h = base - half_gain * (n1 + nonlinear(w_h))               # Heun-CN corrector
            if bar is not None:
                bar.update(1)
        out[..., frame] = torch.fft.irfft2(w_h, s=(n, n))
    return out


def estimate_bytes(batch: int, resolution: int, num_samples: int = 0, frames: int = 20,
                   save_size: int = 64) -> int:
    """Peak memory (bytes) of generate(): solver work arrays for one batch plus the output arrays.

    batch x resolution^2 x 40 float64 work fields (a Heun step; measured peak ~19, float32 needs half)
    + batch x resolution^2 x frames recorded frames + num_samples x frames x save_size^2 float32 result.
    An upper bound; the Python and torch runtime itself is not counted.
    """
    work = batch * resolution ** 2 * 8 * (_FIELDS_PER_SAMPLE + frames)
    return int(work + num_samples * frames * save_size ** 2 * 4)


def generate(num_samples: int = DEFAULT["num_samples"], seed: int = 0, resolution: int = DEFAULT["resolution"],
             dt: float = DEFAULT["dt"], nu: float = DEFAULT["nu"], frames: int = DEFAULT["frames"],
             save_size: int = DEFAULT["save_size"], batch_size: int = 20, heun: bool = True,
             dtype: torch.dtype = torch.float32, threads: int | None = None, progress: bool = True) -> np.ndarray:
    """Generate the NS dataset: returns u [num_samples, frames, save_size, save_size] float32.

    Sample i's w0 is drawn at `resolution` from a torch.Generator seeded with `seed` (batches in
    order), solved to t = frames with step dt, recorded at t = 1..frames, subsampled every
    resolution // save_size points (FNO). dt in time units, must divide 1; nu: viscosity; dtype: solver
    precision (see solve). threads: torch intra-op threads while solving (None: leave as set); use 1 on
    a machine busy with other jobs. A tqdm bar counts solver steps over all batches (on stderr).
    Raises ValueError (bad parameter; the message names it and the fix), SolverSizeError before
    any solving when estimate_bytes() exceeds psutil.virtual_memory().available, and
    FloatingPointError if a batch blows up (non-finite or |w| >= 50: dt above the stability limit).
    Source: Li et al. 2021, section 5.3; FULL holds FNO's own settings.
    """
    import psutil
    from tqdm.auto import tqdm
    _check_positive(num_samples=num_samples, resolution=resolution, dt=dt, nu=nu, frames=frames,
                    save_size=save_size, batch_size=batch_size)
    if resolution % save_size:
        raise ValueError(f"resolution ({resolution}) must be a multiple of save_size ({save_size}); "
                         f"use e.g. resolution={save_size * max(1, round(resolution / save_size))}")
    if abs(round(1.0 / dt) * dt - 1.0) > 1e-9:
        raise ValueError(f"dt ({dt}) must divide one time unit (frames are 1 apart); use dt = 1 / integer")
    batch = min(batch_size, num_samples)
    need, avail = estimate_bytes(batch, resolution, num_samples, frames, save_size), psutil.virtual_memory().available
    if need > avail:
        raise SolverSizeError(f"generate() needs about {need / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB "
                              f"is available; lower batch_size (now {batch}) or resolution (now {resolution}), "
                              f"or num_samples if the result alone is too large")
    gen, threads_before = torch.Generator().manual_seed(seed), torch.get_num_threads()
    sub, steps = resolution // save_size, round(1.0 / dt)
    f = forcing(resolution)
    result = np.empty((num_samples, frames, save_size, save_size), np.float32)
    bar = tqdm(total=steps * frames * math.ceil(num_samples / batch), desc="navier-stokes", unit="step",
               disable=not progress, mininterval=2.0)
    try:
        torch.set_num_threads(threads or threads_before)
        for start in range(0, num_samples, batch):
            w0 = grf(min(batch, num_samples - start), resolution, gen)
            w = solve(w0, f, nu, float(frames), dt, 1.0, heun=heun, dtype=dtype, bar=bar)[:, ::sub, ::sub]
            if not (torch.isfinite(w).all() and w.abs().max() < 50):
                raise FloatingPointError(f"solution blew up: dt={dt} is above the stability limit at resolution "
                                         f"{resolution}; lower dt (halve it)")
            result[start:start + len(w0)] = w.permute(0, 3, 1, 2).numpy()
    finally:
        bar.close()
        torch.set_num_threads(threads_before)
    return result


def write(path: str | os.PathLike, samples: np.ndarray, meta: dict) -> Path:
    """Write samples [S, T, H, W] as float32 key `u` plus key `meta` (a JSON string) to an .npz file.

    Atomic: written to a temporary file in the same folder, then os.replace()d onto `path`. meta should
    hold nu, resolution, dt, seed, frames; generator_version is added. Returns the path.
    Raises ValueError if samples is not 4-D.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 4:
        raise ValueError(f"samples must be [S, T, H, W], got shape {samples.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "generator_version": GENERATOR_VERSION, "layout": "S,T,H,W"}
    fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, u=samples, meta=np.array(json.dumps(meta)))
        os.chmod(tmp, 0o644)                       # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Generate the Navier-Stokes dataset (FNO, nu = 1e-5) as an .npz file.")
    ap.add_argument("out", help="output .npz path")
    ap.add_argument("--full", action="store_true", help="FNO's full setting (1200 samples, 256^2, dt 1e-4)")
    ap.add_argument("--num-samples", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads; 1 if other jobs share the cores")
    args = ap.parse_args()
    cfg = dict(FULL if args.full else DEFAULT, **({"num_samples": args.num_samples} if args.num_samples else {}))
    u = generate(seed=args.seed, threads=args.threads, **cfg)
    print(write(args.out, u, {**cfg, "seed": args.seed, "threads": args.threads}))
