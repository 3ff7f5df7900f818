"""Grid models' view of the harness's windows: regions <-> image cells.

The harness hands every model x [B, H_in, N, C]. A dataset whose regions are the cells of a grid
says so in its registry entry (`grid: [H, W]`, regions in row-major order: region n is row
n // W, column n % W). Grid models (SDKD's teacher and students) read that shape here and see
frames [B, T, C, H, W], SDKD's layout (Li et al., ICCV 2025; notes section 1).
"""
from __future__ import annotations

import torch

from bench.protocol.data import check_grid
from bench.protocol.registry import ModelInfo


def grid_shape(info: ModelInfo, model: str) -> tuple[int, int]:
    """(H, W) of the dataset behind `info`.

    Raises:
        ValueError: the dataset's registry entry has no `grid` (names the field), or
            (`bench.protocol.data.check_grid`, a DataError) H * W is not the number of regions.
    """
    grid = info.meta.get("grid")
    if not grid:
        raise ValueError(f"model {model} is a grid model but dataset {info.dataset or '?'} has no grid shape; "
                         f"add `grid: [H, W]` (rows, columns, regions row-major) to its registry entry, "
                         f"or pick a dataset that has one (NYCTaxi, NYCBike1, NYCBike2, NavierStokes)")
    h, w = check_grid(list(grid), info.num_nodes, info.dataset or "?")     # the registry's own check
    return h, w


def to_frames(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, T, N, C] -> [B, T, C, H, W] (regions row-major)."""
    b, t, n, c = x.shape
    return x.permute(0, 1, 3, 2).reshape(b, t, c, *grid)


def from_frames(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, C, H, W] -> [B, T, N, C] with N = H * W (row-major), the inverse of `to_frames`."""
    b, t, c, h, w = frames.shape
    return frames.reshape(b, t, c, h * w).permute(0, 1, 3, 2)


def fold(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, C, H, W] -> [B, T * C, H, W]: frames folded into channels (SimVP, U-Net students)."""
    b, t, c, h, w = frames.shape
    return frames.reshape(b, t * c, h, w)


def unfold(images: torch.Tensor, t: int) -> torch.Tensor:
    """[B, T * C, H, W] -> [B, T, C, H, W], the inverse of `fold`."""
    b, tc, h, w = images.shape
    return images.reshape(b, t, tc // t, h, w)
