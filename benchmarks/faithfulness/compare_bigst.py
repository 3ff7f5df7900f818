"""Official BigST (usail-hkust/BigST @ 830cb52, model.py) vs our baselines/bigst.py on NYCTaxi,
training ratio 0.4, same split / windows / batch order / epochs. Run:
    python benchmarks/faithfulness/compare_bigst.py [--epochs 10]

Official glue: args as run.py defaults with `--use_residual --use_bn` (hid/node/time dim 32, 3 layers,
tau 0.25, 64 random features, dropout 0.3), num_nodes=200, time_num=48, week_num=7, in_dim=3;
input (B, N, T, 3) = [inflow z-scored with our scaler's channel-0 mean/std, tod/48, dow]; output
(B, N, 12) normalised inflow, inverse-transformed with channel-0 mean/std; loss: official
metrics.masked_mae(pred, real, 0.0) in original units (trainer.py); Adam lr 1e-3, wd 1e-4, eps 1e-8,
MultiStepLR [80, 100] x0.1, batch 16, grad clip 5 (run.py). Validation: masked val MAE after each
epoch over all validation windows (the official code averages per-batch MAEs), best epoch restored.
"""
import argparse
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.environ.get("OFFICIAL_BIGST", os.path.join(HERE, "official_bigst")))
import torch  # noqa: E402

import _common as C  # noqa: E402
import metrics as off_metrics  # noqa: E402  (official metrics.py)
import model as off_model  # noqa: E402  (official model.py)

ARGS = types.SimpleNamespace(tau=0.25, num_layers=3, random_feature_dim=64, use_residual=True, use_bn=True,
                             use_spatial=False, use_long=False, dropout=0.3, time_num=48, week_num=7, num_nodes=200,
                             node_dim=32, time_dim=32, hid_dim=32, output_length=12, in_dim=3)


def official_input(batch, steps_per_day):
    b, t, n, _ = batch["x"].shape
    x = torch.stack([batch["x"][..., 0],
                     (batch["tod"].float() / steps_per_day)[:, :, None].expand(b, t, n),
                     batch["dow"].float()[:, :, None].expand(b, t, n)], dim=-1)       # (B, T, N, 3)
    return x.transpose(1, 2)                                                           # (B, N, T, 3)


def forward_equivalence(data, scaler, parts, log):
    """Official initial weights copied into ours (outflow input weights zeroed, inflow head rows), both in
    eval mode with the SAME random projection matrix patched in (the two draw it differently by design):
    checks that the rest of the forward pass is the same function."""
    import baselines.bigst as ours_mod
    C.set_seed(0)
    off = off_model.BigST(ARGS)
    entry = C.registry.get("bigst")
    ours = entry.cls(entry.config(), C.registry.ModelInfo.of(data, scaler, C.H_IN, C.H_OUT))
    sd, o = off.state_dict(), ours.state_dict()
    new = {"node_emb": sd["node_emb_layer"], "tod_emb": sd["time_emb_layer"], "dow_emb": sd["week_emb_layer"],
           "w1.weight": sd["W_1.weight"][..., 0, 0], "w1.bias": sd["W_1.bias"],
           "w2.weight": sd["W_2.weight"][..., 0, 0], "w2.bias": sd["W_2.bias"], "input.bias": sd["input_emb_layer.bias"]}
    w_off = sd["input_emb_layer.weight"][..., 0, 0].reshape(32, 12, 3)
    w = torch.zeros(32, 12, 4)
    w[:, :, 0], w[:, :, 2], w[:, :, 3] = w_off[:, :, 0], w_off[:, :, 1], w_off[:, :, 2]
    new["input.weight"] = w.reshape(32, 48)
    for i in range(3):
        for a, b in (("input_fc", "fc_in"), ("output_fc", "fc_out")):
            new[f"layers.{i}.{b}.weight"] = sd[f"linear_conv.{i}.{a}.weight"][..., 0, 0]
            new[f"layers.{i}.{b}.bias"] = sd[f"linear_conv.{i}.{a}.bias"]
        new[f"norms.{i}.weight"], new[f"norms.{i}.bias"] = sd[f"bn.{i}.weight"], sd[f"bn.{i}.bias"]
    hw, hb = o["head.weight"].clone(), o["head.bias"].clone()
    hw[0::2], hb[0::2] = sd["regression_layer.weight"][..., 0, 0], sd["regression_layer.bias"]
    new["head.weight"], new["head.bias"] = hw, hb
    ours.load_state_dict(new)
    fixed = off_model.create_random_matrix(64, 32, seed=123)
    saved = (off_model.create_random_matrix, ours_mod.orthogonal_random_matrix)
    off_model.create_random_matrix = lambda m, d, seed=0, **k: fixed
    ours_mod.orthogonal_random_matrix = lambda m, d, g: fixed
    try:
        off.eval(), ours.eval()
        batch = next(parts["test"].batches(8))
        with torch.no_grad():
            y_off = off(official_input(batch, data.steps_per_day))[0].permute(0, 2, 1)
            y_ours = ours(batch["x"], batch["tod"], batch["dow"])[..., 0]
    finally:
        off_model.create_random_matrix, ours_mod.orthogonal_random_matrix = saved
    log(f"forward check (official weights in ours, same random matrix, eval): max |y ours - y official| = "
        f"{(y_ours - y_off).abs().max().item():.2e} (|y| max {y_off.abs().max().item():.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    log = C.log
    data, split, scaler, parts = C.load(report=True)
    forward_equivalence(data, scaler, parts, log)
    mean0, std0 = float(scaler.mean[0]), float(scaler.std[0])
    rows = []

    # ---- official
    C.set_seed(0)
    official = off_model.BigST(ARGS)

    def forward(batch):                      # -> [B, 12, N] original units
        out, _ = official(official_input(batch, data.steps_per_day))                  # (B, N, 12) normalised
        return (out * std0 + mean0).permute(0, 2, 1)

    def loss_fn(batch):                      # trainer.py: masked_mae(inverse(output), inverse(real), 0.0)
        return off_metrics.masked_mae(forward(batch), batch["y"][..., 0], 0.0)

    optim = torch.optim.Adam(official.parameters(), lr=1e-3, weight_decay=1e-4, eps=1e-8)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[80, 100], gamma=0.1)
    rows.append(C.train_official("official BigST (in_dim=3, predicts ch0)", official, forward, loss_fn, optim, parts,
                                 args.epochs, 16, log, grad_clip=5.0, sched=sched))
    log(C.table(rows))

    # ---- ours
    rows.append(C.train_ours("bigst", data, scaler, parts, args.epochs, log))
    log("\nRESULTS (test, original units, masked where truth == 0; ch0 = inflow)")
    log(C.table(rows))


if __name__ == "__main__":
    main()
