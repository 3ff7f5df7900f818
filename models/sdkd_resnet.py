"""ResNet student of SDKD (Li et al., ICCV 2025, arXiv 2507.02939; notes
../shared/paper/sdkd-summary.md section 3): residual blocks of two 3x3 convolutions with dropout
and an identity skip, channels growing from `width` to 2 * `width` (a 1x1 projection where the
width changes), at full grid resolution. Inferred: frames folded into channels (as for the U-Net;
the released code pools over time per frame). Its latent for SDKD's latent mode is the last block's
output (2 * width = 32 channels, 25 % of the teacher's 128).

Size on Navier-Stokes (64 x 64, 10 -> 10 frames): 44,410 parameters, 4 % of sdkd-teacher's
1,100,874. Receptive field 19 x 19 cells (nine 3x3 convolutions); zero padding by default,
`padding="circular"` wraps the edges. The larger ResNet at about 20 % of the teacher, with dilated
blocks whose receptive field covers the 64 x 64 grid: `models.sdkd_resnet_large`.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.protocol.registry import ModelInfo
from models.grid import fold, from_frames, to_frames, unfold
from models.sdkd_student import GridStudent, SDKDStudentConfig, latent_adapter, register_student


@dataclass
class SDKDResNetConfig(SDKDStudentConfig):
    """width: channels of the first stage (the second has 2 * width); blocks: residual blocks per
    stage; dropout: inside each block; teacher_width: the latent-mode adapter's output width."""

    width: int = 16
    blocks: int = 2
    dropout: float = 0.1
    teacher_width: int = 128


class ResBlock(nn.Module):
    """x + Conv-BN-ReLU-Dropout-Conv-BN(x), then ReLU; a 1x1 projection when widths differ.
    [B, c_in, H, W] -> [B, c_out, H, W]. Both 3x3 convolutions have `dilation` (padding as much,
    of mode `padding`): the block widens the receptive field by 4 * dilation cells."""

    def __init__(self, c_in: int, c_out: int, dropout: float, dilation: int = 1, padding: str = "zeros"):
        super().__init__()
        conv = lambda a, b: nn.Conv2d(a, b, 3, 1, dilation, dilation, padding_mode=padding)
        self.body = nn.Sequential(conv(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(), nn.Dropout(dropout),
                                  conv(c_out, c_out), nn.BatchNorm2d(c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.skip(x) + self.body(x))


def stem(c_in: int, width: int, padding: str = "zeros") -> nn.Sequential:
    """Conv3x3 (padding 1 of mode `padding`) + BatchNorm2d + ReLU: [B, c_in, H, W] -> [B, width, H, W]."""
    return nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1, padding_mode=padding), nn.BatchNorm2d(width), nn.ReLU())


@register_student("sdkd-resnet", "SDKD's ResNet student")
class SDKDResNet(GridStudent):
    """forward: x [B, H_in, N, C] z-scored (N = H * W of the dataset's `grid`) -> [B, H_out, N, C].

    Raises:
        ValueError: no grid in the dataset's registry entry, bad kd / sdkd_on, kd without teacher.
    """

    Config = SDKDResNetConfig

    def __init__(self, cfg: SDKDResNetConfig, info: ModelInfo):
        super().__init__(cfg, info, "sdkd-resnet")
        w, c_in, c_out = cfg.width, info.h_in * info.num_channels, info.h_out * info.num_channels
        widths = [w] * cfg.blocks + [2 * w] * cfg.blocks
        self.stem = stem(c_in, w, cfg.padding)
        self.blocks = nn.Sequential(*[ResBlock(a, b, cfg.dropout, padding=cfg.padding)
                                      for a, b in zip([w] + widths[:-1], widths)])
        self.head = nn.Conv2d(2 * w, c_out, 1)
        self.adapter = latent_adapter(cfg, 2 * w, cfg.teacher_width)

    def _run(self, x):
        latent = self.blocks(self.stem(fold(to_frames(x, self.grid))))
        return from_frames(unfold(self.head(latent), self.info.h_out)), latent

