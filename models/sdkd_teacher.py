"""SDKD's teacher: encoder -> latent evolution (convolution for high frequencies + self-attention
for low frequencies, summed and layer-normed) -> decoder (Li et al., "Frequency-Aligned Knowledge
Distillation for Lightweight Spatiotemporal Forecasting", ICCV 2025, arXiv 2507.02939; the notes
../shared/paper/sdkd-summary.md section 2 call it ST-AlterNet).

Known from the notes: Z = E(X); Z_h = sigma(Conv2D(Z)); Z_l = softmax(Q K^T / sqrt d) V;
Z_evolved = LayerNorm(Z_h + Z_l); a decoder maps Z_evolved back to frames. Inferred (written here,
the alternative a switch): frames folded into channels as in SimVP (the released code's teachers);
a residual around each block; attention over the H' x W' cells of the latent (tokens = cells);
`branches = "parallel"` applies both branches in every block (the notes' formula), "alternating"
gives odd blocks the convolution and even blocks the attention; the encoder halves the grid while
both sides stay >= 2 * `min_latent` (64 x 64 Navier-Stokes -> 16 x 16 latent; 10 x 20 NYC grids
keep their size). Widths: SimVP's hid_S = 64; hid_T = 128 instead of 512 (CPU budget, a switch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, check_choice, register
from models.grid import fold, from_frames, grid_shape, to_frames, unfold
from models.sdkd_student import task_loss

BRANCHES = ("parallel", "alternating")


@dataclass
class SDKDTeacherConfig(TrainConfig):
    """hid_s: encoder/decoder width (SimVP hid_S); hid_t: latent width (SimVP hid_T = 512, here
    128); n_t: latent-evolution blocks (SimVP N_T = 8, here 4); heads: attention heads;
    min_latent: the encoder halves H and W while both stay >= 2 * min_latent; branches: see the
    module docstring. Training as reported (notes section 5): Adam, fixed lr 1e-4, at most 300
    epochs, early stopping; batch 16 and patience 20 are our choices (not reported). Task loss:
    MSE (||G(X) - Y||^2), on z-scored values, masked like every metric."""

    hid_s: int = 64
    hid_t: int = 128
    n_t: int = 4
    heads: int = 4
    min_latent: int = 16
    branches: str = "parallel"
    task_loss: str = "mse"
    lr: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 300
    patience: int = 20

    CHOICES = {"branches": BRANCHES, "task_loss": ("mse", "mae")}


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, GroupNorm, SiLU (SimVP's ConvSC)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class EvolutionBlock(nn.Module):
    """One latent-evolution block on [B, D, h, w]: z + LayerNorm(Z_h + Z_l), Z_h = SiLU(Conv3x3(z))
    (high frequencies), Z_l = multi-head self-attention over the h * w cells (low frequencies);
    `use` = "both", "conv" or "attn" (the alternating switch drops the other branch)."""

    def __init__(self, dim: int, heads: int, use: str = "both"):
        super().__init__()
        self.use = use
        self.conv = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.SiLU()) if use != "attn" else None
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True) if use != "conv" else None
        self.norm = nn.LayerNorm(dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, d, h, w = z.shape
        tokens = z.flatten(2).transpose(1, 2)                        # [B, h*w, D]
        mixed = torch.zeros_like(tokens)
        if self.conv is not None:
            mixed = mixed + self.conv(z).flatten(2).transpose(1, 2)
        if self.attn is not None:
            mixed = mixed + self.attn(tokens, tokens, tokens, need_weights=False)[0]
        out = tokens + self.norm(mixed)
        return out.transpose(1, 2).reshape(b, d, h, w)


@register("sdkd-teacher", "SDKD teacher (ICCV 2025): conv + self-attention latent evolution on grid frames")
class SDKDTeacher(nn.Module):
    """Encoder -> latent evolution -> decoder on grid frames.

    forward: x [B, H_in, N, C] z-scored (N = H * W of the dataset's `grid`), tod/dow unused ->
    [B, H_out, N, C] z-scored. `latent(batch)` gives the evolved latent [B, hid_t, H', W'] that
    SDKD's latent mode matches.

    Raises:
        ValueError: the dataset has no grid (names the registry field), or a bad `branches`.
    """

    Config = SDKDTeacherConfig
    description = "sdkd-teacher"
    needs_grid = True       # the registry's flag: suites leave grid models out on datasets without a grid

    def __init__(self, cfg: SDKDTeacherConfig, info: ModelInfo):
        super().__init__()
        check_choice("branches", cfg.branches, BRANCHES)
        self.cfg, self.info = cfg, info
        self.grid = grid_shape(info, "sdkd-teacher")
        c_in, c_out = info.h_in * info.num_channels, info.h_out * info.num_channels
        downs, (h, w) = 0, self.grid
        while h >= 2 * cfg.min_latent and w >= 2 * cfg.min_latent:
            downs, h, w = downs + 1, (h + 1) // 2, (w + 1) // 2
        self.latent_size = (h, w)
        self.stem = conv_block(c_in, cfg.hid_s)
        self.down = nn.ModuleList([conv_block(cfg.hid_s, cfg.hid_s, stride=2) for _ in range(downs)])
        self.to_latent = nn.Conv2d(cfg.hid_s, cfg.hid_t, 1)
        uses = ["both"] * cfg.n_t if cfg.branches == "parallel" else [("conv", "attn")[i % 2] for i in range(cfg.n_t)]
        self.evolve = nn.Sequential(*[EvolutionBlock(cfg.hid_t, cfg.heads, u) for u in uses])
        self.from_latent = nn.Conv2d(cfg.hid_t, cfg.hid_s, 1)
        self.up = nn.ModuleList([nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               conv_block(cfg.hid_s, cfg.hid_s)) for _ in range(downs)])
        self.head = nn.Sequential(conv_block(2 * cfg.hid_s, cfg.hid_s), nn.Conv2d(cfg.hid_s, c_out, 1))

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction [B, H_out, N, C], latent [B, hid_t, H', W'])."""
        skip = self.stem(fold(to_frames(x, self.grid)))
        z = skip
        for layer in self.down:
            z = layer(z)
        latent = self.evolve(self.to_latent(z))
        z = self.from_latent(latent)
        for layer in self.up:
            z = layer(z)
        z = z[..., :self.grid[0], :self.grid[1]]
        out = self.head(torch.cat([z, skip], dim=1))
        return from_frames(unfold(out, self.info.h_out)), latent

    def forward(self, x, tod=None, dow=None):
        return self._run(x)[0]

    def latent(self, batch: dict) -> torch.Tensor:
        """The evolved latent [B, hid_t, H', W'] of a batch (SDKD's latent-mode target)."""
        return self._run(batch["x"])[1]

    def forward_train(self, batch):
        """The training pass: (z-scored prediction [B, H_out, N, C], {pred_z: the same})."""
        pred_z = self.forward(batch["x"])
        return pred_z, {"pred_z": pred_z}

    def training_loss(self, pred, batch, pred_z):
        """MSE (or MAE) on z-scored values, masked; logs the masked MAE in original units."""
        return task_loss(pred, pred_z, batch, self.cfg.task_loss)
