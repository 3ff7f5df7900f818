"""Dataset registry: which files make a dataset, where they live, and how to read them.

The registry is `bench/protocol/datasets.yaml` plus any user YAML file with the same fields
(`--registry FILE` or the environment variable BENCH_REGISTRY). Files are read from a data root:
`--data-dir`, else BENCH_DATA_DIR, else `../shared/data` beside the project (the mirror on the
team's machines).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from fractions import Fraction
from pathlib import Path

import numpy as np
import yaml

from bench.protocol.errors import BenchError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_REGISTRY = Path(__file__).with_name("datasets.yaml")
DEFAULT_DATASET = "NYCTaxi"


class DataError(BenchError, ValueError):
    """A dataset is unknown, missing, corrupt or malformed; the message says which and the fix."""


@dataclass(frozen=True)
class Dataset:
    """One real traffic dataset, ready for the protocol.

    Attributes:
        name: registry name, e.g. "NYCTaxi".
        flow: [T, N, C] float32 flows in the dataset's units (C = 2: inflow, outflow for grids).
        tod: [T] int64 time-of-day slot, 0 .. steps_per_day - 1.
        dow: [T] int64 day of week, 0 = Monday .. 6 = Sunday.
        adjacency: [N, N] float32 adjacency (binary 8-neighbour for the NYC grids).
        meta: city, kind (taxi, bike, ...), interval_min, units, start, source, channel_names.
    """

    name: str
    flow: np.ndarray
    tod: np.ndarray
    dow: np.ndarray
    adjacency: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return self.flow.shape[1]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the flow array's bytes (16 hex digits), computed once per Dataset object: the
        data part of a teacher cache's key."""
        return hashlib.sha256(np.ascontiguousarray(self.flow).tobytes()).hexdigest()[:16]

    @property
    def num_channels(self) -> int:
        return self.flow.shape[2]

    @property
    def steps_per_day(self) -> int:
        return 24 * 60 // int(self.meta["interval_min"])

    @property
    def grid(self) -> tuple[int, int]:
        """(H, W) of a dataset whose regions are the cells of a city grid (or an image), regions in
        row-major order (region n is row n // W, column n % W).

        Raises:
            DataError: the registry entry has no `grid` field (names the field and the fix).
        """
        grid = self.meta.get("grid")
        if not grid:
            raise DataError(f"dataset {self.name} has no grid shape: a grid model needs `grid: [H, W]` "
                            f"(rows, columns; regions in row-major order) in its registry entry")
        return int(grid[0]), int(grid[1])

    def slice_nodes(self, n: int) -> "Dataset":
        """The first `n` regions only (for tests and smoke runs); adjacency is cut to match. A grid
        keeps its first n // W rows when n is a multiple of its width W, else it loses its grid."""
        grid = self.meta.get("grid")
        kept = [n // grid[1], grid[1]] if grid and n % grid[1] == 0 else None
        return Dataset(self.name, self.flow[:, :n], self.tod, self.dow,
                       self.adjacency[:n, :n], dict(self.meta, num_nodes=n, grid=kept))


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: argument, then BENCH_DATA_DIR, then ../shared/data of the project."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"]).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def load_registry(extra: str | os.PathLike | None = None) -> dict[str, dict]:
    """Built-in entries updated by a user YAML (argument or BENCH_REGISTRY).

    Raises:
        DataError: the YAML file is missing, malformed (names file and line) or not a mapping of
            name -> entry with a `data` path.
    """
    entries = yaml.safe_load(BUILTIN_REGISTRY.read_text())
    extra = extra or os.environ.get("BENCH_REGISTRY")
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise DataError(f"dataset registry file {path} does not exist; pass an existing YAML file to --registry")
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise DataError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}); see docs/protocol.md, "
                            f"'Your own dataset'") from exc
        if not isinstance(user, dict):
            raise DataError(f"{path} must map dataset names to entries (see docs/protocol.md, 'Your own dataset')")
        for name, entry in user.items():
            if not isinstance(entry, dict) or "data" not in entry:
                raise DataError(f"{path}: entry {name!r} needs at least `data:` (path of an npz with [T, N, C])")
        entries.update(user)
    return entries


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_files(name: str, entry: dict, root: Path) -> None:
    wanted = [entry["data"]] + ([entry["adjacency"]] if entry.get("adjacency") else [])
    for rel in wanted:
        path = root / rel
        if not path.is_file():
            raise DataError(
                f"dataset {name}: file {rel} is missing under data root {root}. "
                f"Source: {entry.get('source', 'not recorded')}. Put the file there, or point "
                f"--data-dir / BENCH_DATA_DIR at the folder that holds it.")
    for rel, expected in (entry.get("sha256") or {}).items():
        got = sha256(root / rel)
        if got != expected:
            raise DataError(
                f"dataset {name}: file {rel} has sha256 {got[:16]}..., expected {expected[:16]}...; "
                f"the file is corrupt or a different version. Fetch it again from: {entry.get('source')}")


def _read_npz(path: Path, key: str, name: str) -> np.ndarray:
    try:
        with np.load(path) as archive:
            if key not in archive.files:
                raise DataError(f"dataset {name}: {path.name} has no key {key!r} (keys: {archive.files}); "
                                f"set `data_key`/`adjacency_key` in the registry entry")
            return np.asarray(archive[key])
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError from a truncated archive
        raise DataError(f"dataset {name}: cannot read {path} ({type(exc).__name__}: {exc}); "
                        f"the file is truncated or not an npz archive") from exc


def _read_series(path: Path, entry: dict, name: str) -> np.ndarray:
    """The raw series of a registry entry: npz (`data_key`) or CSV with a header row of node ids
    and one row per step (T-GCN style); `missing_value` entries become 0 (masked by every metric
    and loss)."""
    if path.suffix == ".csv":
        import pandas as pd
        try:
            raw = pd.read_csv(path).to_numpy(dtype=np.float64)
        except Exception as exc:
            raise DataError(f"dataset {name}: cannot read {path} as CSV ({type(exc).__name__}: {exc})") from exc
    else:
        raw = _read_npz(path, entry.get("data_key", "data"), name)
    if entry.get("missing_value") is not None:
        raw = np.where(raw == entry["missing_value"], 0, raw)
    return raw


def knn_adjacency(lat: np.ndarray, lon: np.ndarray, k: int) -> np.ndarray:
    """Binary symmetric adjacency linking each node to its k nearest nodes (equirectangular
    distance on lat/lon in degrees): [N, N] float32, zero diagonal."""
    x = np.radians(lon) * np.cos(np.radians(np.mean(lat)))
    y = np.radians(lat)
    dist = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    adj = np.zeros(dist.shape, dtype=np.float32)
    rows = np.repeat(np.arange(len(lat)), nearest.shape[1])
    adj[rows, nearest.ravel()] = 1.0
    return np.maximum(adj, adj.T)


def _read_adjacency(path: Path, entry: dict, name: str, num_nodes: int) -> np.ndarray:
    if path.suffix == ".npz":
        adj = _read_npz(path, entry.get("adjacency_key", "adj_mx"), name)
    elif path.suffix == ".npy":
        adj = np.load(path)
    elif path.suffix == ".csv" and entry.get("adjacency_format") == "matrix":   # N x N, no header (T-GCN)
        adj = np.loadtxt(path, delimiter=",", ndmin=2)
    elif path.suffix == ".csv":  # distance.csv: from,to,cost (ASTGCN / LargeST style)
        edges = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        adj = np.zeros((num_nodes, num_nodes))
        i, j = edges[:, 0].astype(int), edges[:, 1].astype(int)
        if i.max(initial=0) >= num_nodes or j.max(initial=0) >= num_nodes:
            raise DataError(f"dataset {name}: {path.name} names node {max(i.max(), j.max())} but the series has {num_nodes} nodes")
        adj[i, j] = adj[j, i] = 1.0
    else:
        raise DataError(f"dataset {name}: adjacency {path.name} must be .npz, .npy or distance .csv")
    if adj.shape != (num_nodes, num_nodes):
        raise DataError(f"dataset {name}: adjacency has shape {adj.shape} but the series has {num_nodes} nodes; "
                        f"expected ({num_nodes}, {num_nodes})")
    if not np.isfinite(adj).all():
        raise DataError(f"dataset {name}: adjacency {path.name} holds NaN or inf")
    return adj.astype(np.float32)


def time_features(start: str, interval_min: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Time-of-day slot and day of week of each step.

    Args:
        start: ISO time stamp of step 0, e.g. "2015-01-01T00:00".
        interval_min: step length in minutes (must divide a day).
        steps: T.
    Returns:
        tod [T] in 0 .. 1440/interval_min - 1 and dow [T] in 0 (Monday) .. 6.
    """
    if 1440 % interval_min:
        raise DataError(f"interval_min={interval_min} does not divide a day (1440 minutes)")
    t0 = datetime.fromisoformat(start)
    per_day = 1440 // interval_min
    first_slot = (t0.hour * 60 + t0.minute) // interval_min
    slots = first_slot + np.arange(steps)
    return (slots % per_day).astype(np.int64), ((t0.weekday() + slots // per_day) % 7).astype(np.int64)


def check_grid(grid, num_nodes: int, name: str) -> list[int] | None:
    """The registry's `grid: [H, W]` as a list of two ints (None when absent).

    Raises:
        DataError: not two positive ints, or H * W differs from the number of regions.
    """
    if grid is None:
        return None
    if not (isinstance(grid, (list, tuple)) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
        raise DataError(f"dataset {name}: grid {grid!r} must be [H, W], two positive ints (rows, columns)")
    if grid[0] * grid[1] != num_nodes:
        raise DataError(f"dataset {name}: grid {list(grid)} holds {grid[0] * grid[1]} cells but the series has "
                        f"{num_nodes} regions; fix `grid` in the registry entry (H * W must equal the region count)")
    return [int(grid[0]), int(grid[1])]


def _samples_as_series(raw: np.ndarray, name: str) -> tuple[np.ndarray, list[int], int]:
    """Samples [S, T, H, W] or [S, T, H, W, C] as one series [S * T, H * W, C] (samples one after
    another, regions row-major), with the grid [H, W] and the sample length T."""
    if raw.ndim == 4:
        raw = raw[..., None]
    if raw.ndim != 5:
        raise DataError(f"dataset {name}: layout `samples` needs [S, T, H, W] or [S, T, H, W, C]; got {raw.shape}")
    s, t, h, w, c = raw.shape
    return raw.reshape(s * t, h * w, c), [h, w], t


def holdout_share(value, name: str) -> float | None:
    """A registry entry's `holdout` (a samples dataset's validation and test share each, a number
    or a fraction such as "1/12"; `bench.protocol.split.sample_split`) as a float, None when absent.

    Raises:
        DataError: not a fraction in (0, 0.5).
    """
    if value is None:
        return None
    try:
        share = float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError) as exc:
        raise DataError(f"dataset {name}: holdout {value!r} is not a number; give a fraction such as 1/12") from exc
    if not 0 < share < 0.5:
        raise DataError(f"dataset {name}: holdout {value!r} must lie in (0, 0.5): validation and test take it each")
    return share


def validate_flow(flow: np.ndarray, name: str, signed: bool = False) -> np.ndarray:
    """Check a flow series and return it as [T, N, C] float32.

    signed: negative values are allowed (fields such as vorticity; registry `signed: true`).

    Raises:
        DataError: wrong number of axes, NaN or inf, or negative flows (unless signed).
    """
    if flow.ndim == 2:
        flow = flow[:, :, None]
    if flow.ndim != 3:
        raise DataError(f"dataset {name}: flow series has shape {flow.shape}; expected [T, N, C] or [T, N]")
    if not np.isfinite(flow).all():
        bad = int((~np.isfinite(flow)).sum())
        raise DataError(f"dataset {name}: flow series holds {bad} NaN/inf values; clean or impute them first")
    if not signed and (flow < 0).any():
        raise DataError(f"dataset {name}: flow series holds {int((flow < 0).sum())} negative values; "
                        f"flows are counts (mark missing values as 0, which the masked metrics skip)")
    return flow.astype(np.float32)


def load_dataset(name: str = DEFAULT_DATASET, data_dir=None, registry=None) -> Dataset:
    """Load a registered dataset from the data root, verifying checksums.

    Raises:
        DataError: unknown name (lists the known ones), missing file (says where it comes from),
            checksum mismatch, unreadable archive, NaN/inf/negative flows, adjacency of wrong size.
    """
    return _load(name, str(data_root(data_dir)), str(registry or os.environ.get("BENCH_REGISTRY") or ""))


@lru_cache(maxsize=4)
def _load(name: str, root: str, registry: str) -> Dataset:
    entries = load_registry(registry or None)
    if name not in entries:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(entries))} "
                        f"(add your own with --registry FILE)")
    entry, root_path = entries[name], Path(root)
    _check_files(name, entry, root_path)
    raw = _read_series(root_path / entry["data"], entry, name)
    grid, sample_len = entry.get("grid"), None
    if entry.get("layout", "series") == "samples":
        raw, grid, sample_len = _samples_as_series(raw, name)
    elif entry.get("layout", "series") != "series":
        raise DataError(f"dataset {name}: layout {entry['layout']!r}; use `series` or `samples`")
    if raw.ndim == 3 and entry.get("channels") is not None:
        raw = raw[..., list(entry["channels"])]
    flow = validate_flow(raw, name, signed=bool(entry.get("signed")))
    flow.setflags(write=False)
    grid = check_grid(grid, flow.shape[1], name)
    h_in, h_out = int(entry.get("h_in", 12)), int(entry.get("h_out", 12))
    if sample_len and h_in + h_out > sample_len:
        raise DataError(f"dataset {name}: h_in + h_out = {h_in + h_out} exceeds the {sample_len} frames of a sample")
    holdout = holdout_share(entry.get("holdout"), name)
    if holdout is not None and not sample_len:
        raise DataError(f"dataset {name}: holdout applies to `layout: samples` only; drop it from the entry")
    if entry.get("adjacency"):
        adj = _read_adjacency(root_path / entry["adjacency"], entry, name, flow.shape[1])
    elif entry.get("adjacency_knn"):                # k nearest sensors from `lat`/`lon` arrays of the data npz
        lat = _read_npz(root_path / entry["data"], "lat", name)
        lon = _read_npz(root_path / entry["data"], "lon", name)
        adj = knn_adjacency(lat, lon, int(entry["adjacency_knn"]))
    else:
        adj = np.eye(flow.shape[1], dtype=np.float32)
    interval = int(entry.get("interval_min", 60))
    tod, dow = time_features(str(entry.get("start", "2000-01-03T00:00")), interval, flow.shape[0])
    meta = {k: entry.get(k) for k in ("city", "kind", "units", "start", "source")}
    if sample_len:                                  # simulated samples: no calendar
        tod, dow = np.zeros_like(tod), np.zeros_like(dow)
    meta.update(interval_min=interval, num_nodes=flow.shape[1],
                channel_names=entry.get("channel_names") or [f"ch{i}" for i in range(flow.shape[2])],
                grid=grid, sample_len=sample_len, h_in=h_in, h_out=h_out, signed=bool(entry.get("signed")),
                holdout=holdout)
    return Dataset(name, flow, tod, dow, adj, meta)
