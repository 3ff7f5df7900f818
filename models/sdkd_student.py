"""What SDKD's students share: their distillation settings and their loss (Li et al., ICCV 2025,
arXiv 2507.02939; notes ../shared/paper/sdkd-summary.md sections 3-5). Not a model: the U-Net
(`models.sdkd_unet`) and the ResNet (`models.sdkd_resnet`) students use it.

L_tot = ||G(X) - Y||^2 + lambda_kd * L_KD, with L_KD by `kd`:
- "none": no teacher (the student baseline);
- "output": plain output KD, MSE between student and teacher forecasts;
- "sdkd": frequency-aligned KD, E_high + alpha * E_low of the difference (`models.spectral`),
  on the forecasts (`sdkd_on = "output"`, the notes' formula) or on the latents (`"latent"`, the
  abstract's "teacher's latent space": the student's bottleneck through a 1x1-conv adapter to the
  teacher's width, resized to the teacher latent's grid).
Every term is computed on z-scored values (one scale for lambda on every dataset); the task term
is masked like every metric (entries whose truth is 0 are left out).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.protocol.metrics import masked_mae
from bench.protocol.registry import TrainConfig, check_choice, register
from models.grid import grid_shape, to_frames
from models.spectral import align_latent, sdkd_loss

KD_MODES = ("none", "output", "sdkd")
SDKD_ON = ("output", "latent")
TASK_LOSSES = ("mse", "mae")
# a student convolution's padding (torch `padding_mode`): "zeros", or "circular" on a periodic domain
# (Navier-Stokes lives on a torus: the cells past one edge are those of the opposite edge)
PADDINGS = ("zeros", "circular")


@dataclass
class SDKDStudentConfig(TrainConfig):
    """kd, sdkd_on: see the module docstring; padding: the convolutions' padding mode, "zeros" or
    "circular" (`PADDINGS`); lambda_kd, alpha: weights of L_KD and of its low
    band, neither reported. alpha = 1 makes SDKD plain MSE KD (Plancherel: E_low + E_high is the
    spatial MSE), so the bands matter only for alpha != 1; we take 0.25, weighting the high band
    4x, because the students' weakness is high-frequency (notes section 7, Fig. 2: the U-Net
    without KD over-smooths); lambda_kd = 1 (the notes suggest {0.1, 1}); k_c: cut-off as a
    fraction of the Nyquist frequency (not reported; a quarter, as the notes suggest). Training as
    reported: Adam, fixed lr 1e-4, at most 300 epochs, early stopping (batch 16 and patience 20
    are our choices)."""

    kd: str = "none"
    sdkd_on: str = "output"
    padding: str = "zeros"
    lambda_kd: float = 1.0
    alpha: float = 0.25
    k_c: float = 0.25
    task_loss: str = "mse"
    lr: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 300
    patience: int = 20
    teacher: str | None = None

    CHOICES = {"kd": KD_MODES, "sdkd_on": SDKD_ON, "task_loss": TASK_LOSSES, "padding": PADDINGS}


def check_student(cfg: SDKDStudentConfig, model: str) -> None:
    """Raises ValueError for an unknown kd / sdkd_on / task_loss, or kd without a teacher."""
    check_choice("kd", cfg.kd, KD_MODES)
    check_choice("sdkd_on", cfg.sdkd_on, SDKD_ON)
    check_choice("task_loss", cfg.task_loss, TASK_LOSSES)
    check_choice("padding", cfg.padding, PADDINGS)
    if cfg.kd != "none" and not cfg.teacher:
        raise ValueError(f"model {model}: kd={cfg.kd} needs a teacher; set teacher=sdkd-teacher (or --teacher NAME)")


def task_loss(pred: torch.Tensor, pred_z: torch.Tensor, batch: dict, kind: str) -> tuple[torch.Tensor, dict]:
    """||G(X) - Y||^2 (kind "mse") or |G(X) - Y| ("mae") on z-scored values (the truth z-scored
    with the batch's `scaler`), over the entries whose truth is not 0; pred_z [B, H_out, N, C]
    z-scored, pred the same in original units. Logs `mae`: the masked MAE in original units."""
    y = batch["y"]
    mask = ~torch.isclose(y, torch.zeros_like(y))
    diff = (pred_z - batch["scaler"].transform(y))[mask]
    loss = diff.pow(2).mean() if kind == "mse" else diff.abs().mean()
    return loss, {"mae": masked_mae(pred.detach(), y).item()}


def student_loss(pred: torch.Tensor, pred_z: torch.Tensor, feature: torch.Tensor, adapter, batch: dict,
                 cfg: SDKDStudentConfig, grid: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """L_tot of a student batch: pred [B, H_out, N, C] in original units and pred_z the same
    z-scored (the KD terms compare z-scored forecasts), feature [B, c, h, w] the student's
    latent (read in latent mode only), adapter the 1x1 conv to the teacher's width (or None).
    With a teacher, logs `teacher_mae` (its masked MAE on the batch, original units) and `kd`.

    Raises:
        KeyError: kd on a batch without the teacher's forecast (`y_teacher`) or, in latent mode,
            without its latent (`z_teacher`): the teacher cache was made without them.
    """
    loss, logs = task_loss(pred, pred_z, batch, cfg.task_loss)
    if cfg.kd == "none":
        return loss, logs
    if "y_teacher" not in batch:
        raise KeyError("kd needs the teacher's forecast in the batch (y_teacher); the runner attaches it "
                       "when the config names a teacher")
    teacher = batch["scaler"].transform(batch["y_teacher"])
    logs["teacher_mae"] = masked_mae(batch["y_teacher"], batch["y"]).item()
    if cfg.kd == "output":
        kd = (pred_z - teacher).pow(2).mean()
    elif cfg.sdkd_on == "output":
        kd, bands = sdkd_loss(to_frames(pred_z, grid), to_frames(teacher, grid), cfg.k_c, cfg.alpha)
        logs |= bands
    else:
        if "z_teacher" not in batch:
            raise KeyError("sdkd_on=latent needs the teacher's latents (z_teacher); the teacher's cache holds "
                           "them only when the teacher defines latent(batch) (sdkd-teacher does): refit it")
        target = batch["z_teacher"].to(feature.dtype)
        kd, bands = sdkd_loss(align_latent(adapter(feature), tuple(target.shape[-2:])), target, cfg.k_c, cfg.alpha)
        logs |= bands
    logs["kd"] = kd.item()
    return loss + cfg.lambda_kd * kd, logs


class GridStudent(nn.Module):
    """What the U-Net and the ResNet student share: the checks and the grid of `__init__`, and
    `forward`, `forward_train` and `training_loss` over their own `_run(x) -> (prediction
    [B, H_out, N, C] z-scored, latent [B, c, h, w])`; a subclass sets `self.adapter`
    (`latent_adapter`).

    Raises:
        ValueError: bad kd / sdkd_on / task_loss, kd without a teacher (`check_student`), or a
            dataset without a grid (`models.grid.grid_shape`).
    """

    needs_grid = True       # the registry's flag: suites leave grid models out on datasets without a grid

    def __init__(self, cfg: SDKDStudentConfig, info, name: str):
        super().__init__()
        check_student(cfg, name)
        self.cfg, self.info = cfg, info
        self.grid = grid_shape(info, name)

    def forward(self, x, tod=None, dow=None):
        return self._run(x)[0]

    def forward_train(self, batch):
        """The training pass: (z-scored prediction [B, H_out, N, C], {pred_z: the same, latent})."""
        pred_z, latent = self._run(batch["x"])
        return pred_z, {"pred_z": pred_z, "latent": latent}

    def training_loss(self, pred, batch, pred_z, latent):
        return student_loss(pred, pred_z, latent, self.adapter, batch, self.cfg, self.grid)


# the distillation variants registered beside a student: name suffix -> (what it adds, config overrides)
KD_VARIANTS = {
    "kd": ("plain output KD (MSE to the teacher's forecast)", {"kd": "output"}),
    "sdkd": ("frequency-aligned KD on the forecast", {"kd": "sdkd"}),
    "sdkd-low": ("frequency-aligned KD weighting the low band 4x (alpha 4): on Navier-Stokes the students trail "
                 "the teacher in the low band, not the high", {"kd": "sdkd", "alpha": 4.0}),
    "sdkd-latent": ("frequency-aligned KD on the teacher's latent", {"kd": "sdkd", "sdkd_on": "latent"}),
}


def register_student(name: str, what: str, variants=("kd", "sdkd")):
    """Class decorator: register a student as `name` (no KD, "WHAT without distillation") and each
    of `variants` (keys of `KD_VARIANTS`) as `name-VARIANT` taught by sdkd-teacher."""
    def wrap(cls):
        register(name, f"{what} without distillation")(cls)
        for variant in variants:
            adds, overrides = KD_VARIANTS[variant]
            register(f"{name}-{variant}", f"{what} with {adds}", teacher="sdkd-teacher", **overrides)(cls)
        return cls
    return wrap


def latent_adapter(cfg: SDKDStudentConfig, width: int, teacher_width: int) -> nn.Module | None:
    """The 1x1 conv from the student's latent width to the teacher's, in latent mode only."""
    return nn.Conv2d(width, teacher_width, 1) if cfg.kd == "sdkd" and cfg.sdkd_on == "latent" else None
