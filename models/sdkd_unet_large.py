"""U-Net student of SDKD at the size the notes describe (Li et al., ICCV 2025, arXiv 2507.02939;
../shared/paper/sdkd-summary.md section 3: a student of 20-30 % of the teacher, U-Net the best).

The same blocks as `models.sdkd_unet` (Conv2d + BatchNorm2d + LeakyReLU, ConvTranspose2d up,
concatenated skips, frames folded into channels), deeper: two 3x3 convolutions per level and four
stride-2 levels, channels `widths` = 16, 32, 32, 40, 40 (64 -> 32 -> 16 -> 8 -> 4 cells on
Navier-Stokes), circular padding (the Navier-Stokes domain is a torus). Its latent for SDKD's
latent mode is the bottleneck (40 channels, 31 % of the teacher's 128).

Size on Navier-Stokes (64 x 64, 10 -> 10 frames): 216,002 parameters, 19.6 % of sdkd-teacher's
1,100,874. Receptive field: the encoder alone spans 95 cells (ten 3x3 convolutions at input steps
1, 1, 1, 2, 2, 4, 4, 8, 8, 16 cells: 1 + 2 x 47), so every output cell sees the whole 64 x 64 grid
(wrapped). With circular padding the model commutes with shifts by multiples of 16
cells (2^levels), exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.protocol.registry import ModelInfo
from models.grid import fold, from_frames, to_frames, unfold
from models.sdkd_student import GridStudent, SDKDStudentConfig, latent_adapter, register_student
from models.sdkd_unet import down, skip_join, up


@dataclass
class SDKDUNetLargeConfig(SDKDStudentConfig):
    """widths: channels per level, full resolution first (len(widths) - 1 stride-2 levels; the last
    is the bottleneck); padding: circular (the students of `models.sdkd_unet` keep zeros);
    teacher_width: the latent-mode adapter's output width (sdkd-teacher's hid_t)."""

    widths: tuple[int, ...] = (16, 32, 32, 40, 40)
    padding: str = "circular"
    teacher_width: int = 128


def double(c_in: int, c_out: int, stride: int, padding: str) -> nn.Sequential:
    """Two `down` blocks, the first with `stride`: one level of the U-Net."""
    return nn.Sequential(down(c_in, c_out, stride, padding), down(c_out, c_out, 1, padding))


@register_student("sdkd-unet-large", "SDKD's U-Net student at about 20 % of the teacher (circular padding)",
                  ("kd", "sdkd", "sdkd-low", "sdkd-latent"))
class SDKDUNetLarge(GridStudent):
    """forward: x [B, H_in, N, C] z-scored (N = H * W of the dataset's `grid`) -> [B, H_out, N, C].

    Raises:
        ValueError: no grid in the dataset's registry entry, bad kd / sdkd_on / padding, kd without
            teacher, fewer than two widths.
    """

    Config = SDKDUNetLargeConfig

    def __init__(self, cfg: SDKDUNetLargeConfig, info: ModelInfo):
        super().__init__(cfg, info, "sdkd-unet-large")
        ws, pad = tuple(cfg.widths), cfg.padding
        if len(ws) < 2:
            raise ValueError(f"model sdkd-unet-large: widths={ws}; give at least two levels, e.g. (16, 32, 32, 40, 40)")
        c_in, c_out = info.h_in * info.num_channels, info.h_out * info.num_channels
        self.encoder = nn.ModuleList([double(c_in, ws[0], 1, pad)] +
                                     [double(a, b, 2, pad) for a, b in zip(ws[:-1], ws[1:])])
        self.ups = nn.ModuleList([up(b, a) for a, b in zip(ws[:-1], ws[1:])])
        self.decoder = nn.ModuleList([double(2 * a, a, 1, pad) for a in ws[:-1]])
        self.head = nn.Conv2d(ws[0], c_out, 1)
        self.adapter = latent_adapter(cfg, ws[-1], cfg.teacher_width)

    def _run(self, x):
        skips, h = [], fold(to_frames(x, self.grid))
        for level in self.encoder:
            h = level(h)
            skips.append(h)
        latent = skips.pop()
        h = latent
        for level in reversed(range(len(self.ups))):
            h = self.decoder[level](skip_join(self.ups[level](h), skips[level]))
        return from_frames(unfold(self.head(h), self.info.h_out)), latent
