"""ResNet student of SDKD at the size the notes describe (Li et al., ICCV 2025, arXiv 2507.02939;
../shared/paper/sdkd-summary.md section 3: a student of 20-30 % of the teacher).

The residual blocks of `models.sdkd_resnet` (two 3x3 convolutions with dropout and an identity
skip) at full grid resolution, frames folded into channels, one width (48) throughout, with
dilations 1, 2, 4, 8, 16 (one block each) so that the receptive field covers the grid, and circular
padding (the Navier-Stokes domain is a torus). A dilation larger than the grid's shorter side is
cut to that side (circular padding wraps at most once: 10 x 20 NYC grids get 1, 2, 4, 8, 10). Its
latent for SDKD's latent mode is the last block's output (48 channels, 38 % of the teacher's 128).

Size on Navier-Stokes (64 x 64, 10 -> 10 frames): 213,754 parameters, 19.4 % of sdkd-teacher's
1,100,874. Receptive field 127 x 127 cells (stem 3x3, then each block 4 x its dilation: 3 + 4 x 31),
so every output cell sees the whole 64 x 64 grid (wrapped). With circular padding the model
commutes with every shift of the grid, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.protocol.registry import ModelInfo
from models.grid import fold, from_frames, to_frames, unfold
from models.sdkd_resnet import ResBlock, stem
from models.sdkd_student import GridStudent, SDKDStudentConfig, latent_adapter, register_student


@dataclass
class SDKDResNetLargeConfig(SDKDStudentConfig):
    """width: channels of every block; dilations: one residual block per entry (capped at the
    grid's shorter side); dropout: inside each block; padding: circular (the students of
    `models.sdkd_resnet` keep zeros); teacher_width: the latent-mode adapter's output width."""

    width: int = 48
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    dropout: float = 0.1
    padding: str = "circular"
    teacher_width: int = 128


@register_student("sdkd-resnet-large", "SDKD's ResNet student at about 20 % of the teacher (dilated, circular padding)")
class SDKDResNetLarge(GridStudent):
    """forward: x [B, H_in, N, C] z-scored (N = H * W of the dataset's `grid`) -> [B, H_out, N, C].

    Raises:
        ValueError: no grid in the dataset's registry entry, bad kd / sdkd_on / padding, kd without
            teacher, no dilation or one below 1.
    """

    Config = SDKDResNetLargeConfig

    def __init__(self, cfg: SDKDResNetLargeConfig, info: ModelInfo):
        super().__init__(cfg, info, "sdkd-resnet-large")
        if not cfg.dilations or min(cfg.dilations) < 1:
            raise ValueError(f"model sdkd-resnet-large: dilations={tuple(cfg.dilations)}; give positive ints, "
                             f"e.g. (1, 2, 4, 8, 16)")
        w, c_in, c_out = cfg.width, info.h_in * info.num_channels, info.h_out * info.num_channels
        self.stem = stem(c_in, w, cfg.padding)
        self.blocks = nn.Sequential(*[ResBlock(w, w, cfg.dropout, min(d, *self.grid), cfg.padding)
                                      for d in cfg.dilations])
        self.head = nn.Conv2d(w, c_out, 1)
        self.adapter = latent_adapter(cfg, w, cfg.teacher_width)

    def _run(self, x):
        latent = self.blocks(self.stem(fold(to_frames(x, self.grid))))
        return from_frames(unfold(self.head(latent), self.info.h_out)), latent
