"""Official ST-MLP student (zhangjunfeng1234/ST-MLP @ 6cab1da, student_model/models.py + mlp_mixer_pytorch/)
vs our baselines/st_mlp.py (kd_weight=0) on NYCTaxi, training ratio 0.4, same split / windows / batch
order / epochs. Run:
    python benchmarks/faithfulness/compare_st_mlp.py [--epochs 1] [--train-windows 128]
        [--val-windows 32] [--test-windows 64]      # the reduced budget reported (about 40 min)
A full epoch (1,129 windows) takes hours per side on one CPU thread (~25M parameters; the per-step MLP
64 -> 1024 -> 2048 -> 64 runs on every region and step); --side official / --side ours with --rows-out,
then --combine, runs the two sides as two processes (each needs about 8-10 GB of memory at batch 32).
--side ours --same-init (diagnostic): ours starts from the official initial weights (seed 0).

Official glue:
- model: MLP_Student as run_student.py builds it (depth 6, dropout2 0.1, hidden_list [1024, 2048],
  input_dim 64, output_dim 64, dropout_ratio 0.3, output 12); its two Mixers hard-code
  image_size=(12, 207) (METR-LA): the names MLPMixer / MLPMixer4 inside student_model.models are
  wrapped so that image_size=(12, N) with N = 200 regions; nothing else is changed;
- its forward ends with `h.cuda()`: on a machine without CUDA, torch.Tensor.cuda is made the identity;
- einops (imported by mlp_mixer_pytorch) is used when installed; otherwise a stand-in for the two
  Rearrange patterns the two Mixers use (exact reshapes/permutes) is put in sys.modules;
- input (B, T, N, 3) = [inflow z-scored with our scaler's channel-0 mean/std, time of day as a
  fraction of the day, day of week], the layout of the code's METR-LA data (generate_training_data.py);
  output (B, 12, N) normalised inflow, inverse-transformed with channel-0 mean/std;
- loss: the code's z-score branch of models/trainer.py `train` with its distillation term weighted by 0:
  official models/losses.py masked_mae(inverse(pred), truth, 0) in original units; Adam lr 2e-3,
  wd 1e-5, eps 1e-8, MultiStepLR x0.5 at [1, 30, 38, 46, 54, 200] stepped per epoch (configs/PEMS04.yaml,
  the flow configuration our docstring follows), batch 32. No gradient clipping: trainer.py clips
  `self.model` (the teacher), not the student it optimises. Curriculum: PEMS04.yaml has 30 warm-up
  epochs at the full horizon before the horizon curriculum starts, so it never starts in the few
  epochs run here (METR-LA.yaml would start it at once with horizon 1 for 6 epochs);
- validation: masked MAE (ch0) after each epoch over the validation windows used (the code averages
  per-batch MAEs), best epoch restored.
Ours: C.train_ours("st-mlp", kd_weight=0.0): the released code's loss (truth only), no teacher needed.
"""
import argparse
import importlib.util
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
OFFICIAL = os.environ.get("OFFICIAL_ST_MLP", os.path.join(HERE, "official_st_mlp"))
sys.path.insert(0, HERE)
import torch  # noqa: E402

import _common as C  # noqa: E402

sys.path.append(OFFICIAL)       # appended, after the project's imports: the project has its own `models`


def _einops_standin():
    """Only if einops is not installed: the two Rearrange patterns MLPMixer / MLPMixer4 use."""
    try:
        import einops.layers.torch  # noqa: F401
        return "einops"
    except ImportError:
        pass

    class Rearrange(torch.nn.Module):
        def __init__(self, pattern, **sizes):
            super().__init__()
            self.pattern, self.sizes = pattern, sizes

        def forward(self, x):
            s = self.sizes
            if self.pattern == "b c (h p1) (w p2) -> b (h w) (p1 p2 c)":
                b, c, hh, ww = x.shape
                p1, p2 = s["p1"], s["p2"]
                x = x.reshape(b, c, hh // p1, p1, ww // p2, p2).permute(0, 2, 4, 3, 5, 1)
                return x.reshape(b, (hh // p1) * (ww // p2), p1 * p2 * c)
            if self.pattern == "b n (t d) -> b n t d":
                return x.reshape(x.shape[0], x.shape[1], s["t"], s["d"])
            raise NotImplementedError(self.pattern)

    class Reduce(torch.nn.Module):
        def __init__(self, *a, **k):
            raise NotImplementedError("Reduce is not used by MLPMixer / MLPMixer4")

    pkg, layers, lt = (types.ModuleType(n) for n in ("einops", "einops.layers", "einops.layers.torch"))
    lt.Rearrange, lt.Reduce = Rearrange, Reduce
    pkg.layers, layers.torch = layers, lt
    sys.modules.update({"einops": pkg, "einops.layers": layers, "einops.layers.torch": lt})
    return "stand-in"


EINOPS = _einops_standin()
if not torch.cuda.is_available():
    torch.Tensor.cuda = lambda self, *a, **k: self        # the official forward calls h.cuda()
import mlp_mixer_pytorch as off_mixer  # noqa: E402  (official)
import student_model.models as off_models  # noqa: E402  (official)

_spec = importlib.util.spec_from_file_location("official_st_mlp_losses",
                                               os.path.join(OFFICIAL, "models", "losses.py"))
off_losses = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(off_losses)                  # models/losses.py alone (models/__init__ imports D2STGNN)


def official_student(n: int):
    """MLP_Student exactly as run_student.py builds it, with the hard-coded 207 regions set to n."""
    off_models.MLPMixer = lambda **kw: off_mixer.MLPMixer(**{**kw, "image_size": (12, n)})
    off_models.MLPMixer4 = lambda **kw: off_mixer.MLPMixer4(**{**kw, "image_size": (12, n)})
    nas = [1024, 2048]
    return off_models.MLP_Student(depth=6, dropout2=0.1, num_layers=len(nas) + 1, input_dim=64, hidden_dim=128,
                                  output_dim=64, dropout_ratio=0.3, hidden_list=nas, output=12)


def official_input(batch, steps_per_day):
    b, t, n, _ = batch["x"].shape
    return torch.stack([batch["x"][..., 0],
                        (batch["tod"].float() / steps_per_day)[:, :, None].expand(b, t, n),
                        batch["dow"].float()[:, :, None].expand(b, t, n)], dim=-1)    # (B, T, N, 3)


def _mixer_into(ours_prefix, off_prefix, sd, new, depth=6):
    """Official Mixer Sequential [Rearrange, Linear, depth x (token, channel), LayerNorm, Rearrange] -> ours."""
    new[f"{ours_prefix}.proj.weight"] = sd[f"{off_prefix}.1.weight"]
    new[f"{ours_prefix}.proj.bias"] = sd[f"{off_prefix}.1.bias"]
    for i in range(depth):
        o, p = f"{off_prefix}.{i + 2}", f"{ours_prefix}.blocks.{i}"
        for part, norm, mix, squeeze in ((0, "norm1", "token", True), (1, "norm2", "channel", False)):
            new[f"{p}.{norm}.weight"] = sd[f"{o}.{part}.norm.weight"]
            new[f"{p}.{norm}.bias"] = sd[f"{o}.{part}.norm.bias"]
            for a, b in ((0, 0), (3, 3)):
                w = sd[f"{o}.{part}.fn.{a}.weight"]
                new[f"{p}.{mix}.{b}.weight"] = w[..., 0] if squeeze else w          # Conv1d k=1 -> Linear
                new[f"{p}.{mix}.{b}.bias"] = sd[f"{o}.{part}.fn.{a}.bias"]
    new[f"{ours_prefix}.norm.weight"] = sd[f"{off_prefix}.{depth + 2}.weight"]
    new[f"{ours_prefix}.norm.bias"] = sd[f"{off_prefix}.{depth + 2}.bias"]


def official_weights_into_ours(off, ours):
    """Ours gets the official weights: outflow input weights zero, outflow head row kept (ours' own)."""
    sd, o, new = off.state_dict(), ours.state_dict(), {}
    _mixer_into("encoder", "MLPMixer", sd, new)
    _mixer_into("decoder", "MLPMixer4", sd, new)
    w_off = sd["MLPMixer.1.weight"].reshape(-1, 12, 3)                               # (p1 p2 c): step-major
    w = torch.zeros(w_off.shape[0], 12, 4)                                           # ours: [in, out, tod, dow]
    w[:, :, 0], w[:, :, 2], w[:, :, 3] = w_off[:, :, 0], w_off[:, :, 1], w_off[:, :, 2]
    new["encoder.proj.weight"] = w.reshape(w_off.shape[0], 48)
    for i, j in ((1, 0), (2, 3), (3, 6)):
        new[f"mlp.{j}.weight"] = sd[f"layers.linear{i}.weight"][..., 0, 0]
        new[f"mlp.{j}.bias"] = sd[f"layers.linear{i}.bias"]
    new["head.0.weight"], new["head.0.bias"] = sd["mlp1.fc1.linear.weight"][..., 0, 0], sd["mlp1.fc1.linear.bias"]
    hw, hb = o["head.2.weight"].clone(), o["head.2.bias"].clone()
    hw[0], hb[0] = sd["mlp1.fc2.linear.weight"][0, :, 0, 0], sd["mlp1.fc2.linear.bias"][0]
    new["head.2.weight"], new["head.2.bias"] = hw, hb
    ours.load_state_dict(new)


def forward_equivalence(data, scaler, parts, log):
    """Official initial weights copied into ours (outflow input weights zeroed, inflow row of the head),
    both in eval mode, one test batch: checks that the two forward passes are the same function."""
    C.set_seed(0)
    off = official_student(data.num_nodes)
    entry = C.registry.get("st-mlp")
    ours = entry.cls(entry.config(kd_weight=0.0), C.registry.ModelInfo.of(data, scaler, C.H_IN, C.H_OUT))
    official_weights_into_ours(off, ours)
    off.eval(), ours.eval()
    batch = next(parts["test"].batches(8))
    with torch.no_grad():
        y_off = off(official_input(batch, data.steps_per_day))                        # (B, 12, N) normalised
        y_ours = ours(batch["x"], batch["tod"], batch["dow"])[..., 0]
    log(f"forward check (official initial weights in ours, eval, 8 test windows, einops: {EINOPS}): "
        f"max |y ours - y official| = {(y_ours - y_off).abs().max().item():.2e} (|y| max {y_off.abs().max().item():.2f}); "
        f"params official {C.n_params(off)}, ours {C.n_params(ours)}")


def train_ours_from_official_init(data, scaler, parts, epochs, log):
    """Diagnostic (--same-init): ours trained exactly as C.train_ours does, but starting from the official
    model's initial weights (seed 0, as the official run), to separate initialisation from the rest."""
    C.set_seed(0)
    off = official_student(data.num_nodes)
    row = C.train_ours("st-mlp", data, scaler, parts, epochs, log, kd_weight=0.0, eval_batch_size=64,
                       prepare=lambda model: official_weights_into_ours(off, model))
    row["model"] = "ours (kd_weight=0), official init"
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-windows", type=int, default=None,
                    help="both sides train on this many evenly spaced training windows (Windows.subset); all if unset")
    ap.add_argument("--val-windows", type=int, default=None, help="same, validation windows (epoch selection)")
    ap.add_argument("--test-windows", type=int, default=None, help="same, test windows")
    ap.add_argument("--side", choices=("both", "official", "ours"), default="both",
                    help="train one side only (two processes in parallel); rows go to --rows-out")
    ap.add_argument("--same-init", action="store_true",
                    help="with --side ours: start ours from the official initial weights (diagnostic)")
    ap.add_argument("--rows-out", help="write the result rows as JSON here")
    ap.add_argument("--combine", nargs="+", metavar="ROWS_JSON", help="only print the table of these row files")
    args = ap.parse_args()
    log = C.log
    if args.combine:
        rows = []
        for name in args.combine:
            with open(name) as f:
                rows += json.load(f)
        log("\nRESULTS (test, original units, masked where truth == 0; ch0 = inflow)")
        log(C.table(rows))
        return
    data, split, scaler, parts = C.load(report=True)
    if args.side != "ours":
        forward_equivalence(data, scaler, parts, log)
    parts = dict(parts, train=parts["train"].subset(args.train_windows), val=parts["val"].subset(args.val_windows),
                 test=parts["test"].subset(args.test_windows))
    log(f"budget: {args.epochs} epochs, train/val/test windows used {len(parts['train'])}/{len(parts['val'])}/"
        f"{len(parts['test'])} (evenly spaced subsets, the same for both sides)")
    mean0, std0 = float(scaler.mean[0]), float(scaler.std[0])
    rows = []

    # ---- official
    if args.side in ("both", "official"):
        C.set_seed(0)
        official = official_student(data.num_nodes)

        def forward(batch):                      # -> [B, 12, N] original units
            return official(official_input(batch, data.steps_per_day)) * std0 + mean0

        def loss_fn(batch):                      # trainer.py: 0 * kd + masked_mae(inverse(pred), inverse(real), 0)
            return off_losses.masked_mae(forward(batch), batch["y"][..., 0], 0)

        optim = torch.optim.Adam(official.parameters(), lr=2e-3, weight_decay=1e-5, eps=1e-8)
        sched = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[1, 30, 38, 46, 54, 200], gamma=0.5)
        rows.append(C.train_official("official ST-MLP (predicts ch0)", official, forward, loss_fn, optim, parts,
                                     args.epochs, 32, log, grad_clip=None, sched=sched))
        log(C.table(rows))

    # ---- ours (eval_batch_size 64 as the official evaluation above: memory only, same numbers)
    if args.side in ("both", "ours"):
        if args.same_init:
            rows.append(train_ours_from_official_init(data, scaler, parts, args.epochs, log))
        else:
            rows.append(C.train_ours("st-mlp", data, scaler, parts, args.epochs, log, kd_weight=0.0,
                                     eval_batch_size=64))
    if args.rows_out:
        with open(args.rows_out, "w") as f:
            json.dump(rows, f)
    log("\nRESULTS (test, original units, masked where truth == 0; ch0 = inflow)")
    log(C.table(rows))


if __name__ == "__main__":
    main()
