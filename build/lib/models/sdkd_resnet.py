"""ResNet student of SDKD (Li et al., ICCV 2025, arXiv 2507.02939; notes
../shared/paper/sdkd-summary.md section 3): residual blocks of two 3x3 convolutions with dropout
and an identity skip, channels growing from `width` to 2 * `width` (a 1x1 projection where the
width changes), at full grid resolution. Inferred: frames folded into channels (as for the U-Net;
the released code pools over time per frame). Its latent for SDKD's latent mode is the last block's
output (2 * width = 32 channels, 25 % of the teacher's 128).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.protocol.registry import ModelInfo, register
from models.grid import fold, from_frames, to_frames, unfold
from models.sdkd_student import GridStudent, SDKDStudentConfig, latent_adapter


@dataclass
class SDKDResNetConfig(SDKDStudentConfig):
    """width: channels of the first stage (the second has 2 * width); blocks: residual blocks per
    stage; dropout: inside each block; teacher_width: the latent-mode adapter's output width."""

    width: int = 16
    blocks: int = 2
    dropout: float = 0.1
    teacher_width: int = 128


class ResBlock(nn.Module):
    """x + Conv-BN-ReLU-Dropout-Conv-BN(x), then ReLU; a 1x1 projection when widths differ."""

    def __init__(self, c_in: int, c_out: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1), nn.BatchNorm2d(c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.skip(x) + self.body(x))


@register("sdkd-resnet", "SDKD's ResNet student without distillation")
@register("sdkd-resnet-kd", "SDKD's ResNet student with plain output KD (MSE to the teacher's forecast)",
          kd="output", teacher="sdkd-teacher")
@register("sdkd-resnet-sdkd", "SDKD's ResNet student with frequency-aligned KD on the forecast",
          kd="sdkd", teacher="sdkd-teacher")
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
        self.stem = nn.Sequential(nn.Conv2d(c_in, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU())
        self.blocks = nn.Sequential(*[ResBlock(a, b, cfg.dropout) for a, b in zip([w] + widths[:-1], widths)])
        self.head = nn.Conv2d(2 * w, c_out, 1)
        self.adapter = latent_adapter(cfg, 2 * w, cfg.teacher_width)

    def _run(self, x):
        latent = self.blocks(self.stem(fold(to_frames(x, self.grid))))
        return from_frames(unfold(self.head(latent), self.info.h_out)), latent

