"""U-Net student of SDKD (Li et al., ICCV 2025, arXiv 2507.02939; the notes' best student,
../shared/paper/sdkd-summary.md section 3): frames folded into channels, two stride-2 levels,
skip connections by concatenation; blocks Conv2d + BatchNorm2d + LeakyReLU and ConvTranspose2d +
BatchNorm2d + LeakyReLU, as the released code's `U_net` is described. Width 16 (bottleneck 32 =
25 % of the teacher's latent width 128: the notes' 20-30 %). Its latent for SDKD's latent mode is
the bottleneck. Usable without distillation, with output KD and with SDKD (`models.sdkd_student`).

Size on Navier-Stokes (64 x 64, 10 -> 10 frames): 45,146 parameters, 4 % of sdkd-teacher's
1,100,874. Receptive field 13 to 17 cells wide (by the cell's place on the stride-2 grid; 3x3 at
full resolution, 3x3 stride 2, 3x3 stride 2 at half, two 3x3 on the way up); zero padding by default, `padding="circular"` wraps the edges. The larger U-Net at about
20 % of the teacher, whose receptive field covers the 64 x 64 grid: `models.sdkd_unet_large`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.registry import ModelInfo
from models.grid import fold, from_frames, to_frames, unfold
from models.sdkd_student import GridStudent, SDKDStudentConfig, latent_adapter, register_student


@dataclass
class SDKDUNetConfig(SDKDStudentConfig):
    """width: channels of the first level (the bottleneck has 2 * width); teacher_width: the
    teacher latent's width that the latent-mode adapter maps to (sdkd-teacher's hid_t)."""

    width: int = 16
    teacher_width: int = 128


def down(c_in: int, c_out: int, stride: int, padding: str = "zeros") -> nn.Sequential:
    """Conv3x3 (`stride`, padding 1 of mode `padding`) + BatchNorm2d + LeakyReLU(0.2):
    [B, c_in, H, W] -> [B, c_out, ceil(H / stride), ceil(W / stride)]."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, padding_mode=padding), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.2))


def up(c_in: int, c_out: int) -> nn.Sequential:
    """ConvTranspose2d(2, stride 2) + BatchNorm2d + LeakyReLU(0.2): [B, c_in, h, w] -> [B, c_out, 2h, 2w]."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 2, 2), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


def skip_join(upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """The decoder's input: the upsampled map cropped to the skip's grid (an odd side gives one row
    or column more), concatenated with the skip on the channels."""
    return torch.cat([upsampled[..., :skip.shape[-2], :skip.shape[-1]], skip], dim=1)


@register_student("sdkd-unet", "SDKD's U-Net student", ("kd", "sdkd", "sdkd-low", "sdkd-latent"))
class SDKDUNet(GridStudent):
    """forward: x [B, H_in, N, C] z-scored (N = H * W of the dataset's `grid`) -> [B, H_out, N, C].

    Raises:
        ValueError: no grid in the dataset's registry entry, bad kd / sdkd_on, kd without teacher.
    """

    Config = SDKDUNetConfig

    def __init__(self, cfg: SDKDUNetConfig, info: ModelInfo):
        super().__init__(cfg, info, "sdkd-unet")
        w, c_in, c_out = cfg.width, info.h_in * info.num_channels, info.h_out * info.num_channels
        pad = cfg.padding
        self.enc1, self.enc2, self.bottom = down(c_in, w, 1, pad), down(w, 2 * w, 2, pad), down(2 * w, 2 * w, 2, pad)
        self.up2, self.dec2 = up(2 * w, 2 * w), down(4 * w, 2 * w, 1, pad)
        self.up1, self.dec1 = up(2 * w, w), down(2 * w, w, 1, pad)
        self.head = nn.Conv2d(w, c_out, 1)
        self.adapter = latent_adapter(cfg, 2 * w, cfg.teacher_width)

    def _run(self, x):
        e1 = self.enc1(fold(to_frames(x, self.grid)))
        e2 = self.enc2(e1)
        latent = self.bottom(e2)
        d2 = self.dec2(skip_join(self.up2(latent), e2))
        d1 = self.dec1(skip_join(self.up1(d2), e1))
        return from_frames(unfold(self.head(d1), self.info.h_out)), latent

