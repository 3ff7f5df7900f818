"""Official ASTGCN_r (guoshnBJTU/ASTGCN-r-pytorch @ 768732e) vs our baselines/astgcn.py on NYCTaxi,
training ratio 0.4, same split / windows / batch order / epochs. Run:
    python benchmarks/faithfulness/compare_astgcn.py [--epochs 4] [--no-hadamard]

Official glue: x [B,12,N,2] z-scored -> (B, N, F_in=2, T=12); the official model predicts inflow
(channel 0) in raw units (B, N, 12); loss nn.MSELoss() (unmasked) on raw-unit inflow targets, as
train_ASTGCN_r.py; Adam lr 1e-3, batch 32, no clipping; K=3, 64/64 filters, 2 blocks, stride 1
(configurations/PEMS04_astgcn.conf). The official code's per-epoch val selection (MSE, checked before each
epoch's training) is replaced by masked val MAE after each epoch, the same rule as ours.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.environ.get("OFFICIAL_ASTGCN", os.path.join(HERE, "official_astgcn")))
import _shims  # noqa: E402

_shims.install()
import torch  # noqa: E402
from torch import nn  # noqa: E402

import _common as C  # noqa: E402
from model.ASTGCN_r import make_model  # noqa: E402  (official)

_shims.uninstall()


def forward_equivalence(data, scaler, parts, log):
    """Copy the official model's initial weights into ours (cheb='hadamard', as the official code) and
    compare the inflow predictions on one test batch: checks that the two forward passes are the same
    function (ours' final conv has 12 x 2 outputs; row h*2 of ours = row h of the official one)."""
    C.set_seed(0)
    off = make_model("cpu", 2, 2, 3, 64, 64, 1, data.adjacency.astype("float64"), 12, 12, data.num_nodes)
    entry = C.registry.get("astgcn")
    ours = entry.cls(entry.config(cheb="hadamard"), C.registry.ModelInfo.of(data, scaler, C.H_IN, C.H_OUT))
    sd, new = off.state_dict(), {}
    names = {"TAt.U": "tat.u", "TAt.be": "tat.be", "TAt.Ve": "tat.ve", "SAt.W": "sat.w", "SAt.bs": "sat.bs",
             "SAt.Vs": "sat.vs", "time_conv": "time_conv", "residual_conv": "residual", "ln": "norm"}
    for k, v in sd.items():
        if "Theta" in k or not k.startswith("BlockList"):
            continue
        tail = k.split(".", 2)[2]
        for a, b in names.items():
            if tail.startswith(a):
                new["blocks." + k.split(".")[1] + "." + b + tail[len(a):]] = v
    for i in range(len(off.BlockList)):
        new[f"blocks.{i}.cheb.theta"] = torch.stack([sd[f"BlockList.{i}.cheb_conv_SAt.Theta.{k}"] for k in range(3)])
        new[f"blocks.{i}.cheb.polys"] = ours.state_dict()[f"blocks.{i}.cheb.polys"]
    w, b = ours.state_dict()["final.weight"].clone(), ours.state_dict()["final.bias"].clone()
    w[0::2], b[0::2] = sd["final_conv.weight"], sd["final_conv.bias"]
    new["final.weight"], new["final.bias"] = w, b
    ours.load_state_dict(new)
    polys_off = torch.stack(off.BlockList[0].cheb_conv_SAt.cheb_polynomials)
    batch = next(parts["test"].batches(8))
    with torch.no_grad():
        y_off = off(batch["x"].permute(0, 2, 3, 1)).permute(0, 2, 1)                 # raw-unit regression
        y_ours = ours(batch["x"])[..., 0]                                            # same numbers, z-score label
    log(f"forward check (official weights in ours, cheb='hadamard'): max |T_k ours - T_k official| = "
        f"{(ours.blocks[0].cheb.polys - polys_off).abs().max().item():.2e}; max |y ours - y official| = "
        f"{(y_ours - y_off).abs().max().item():.2e} (|y| max {y_off.abs().max().item():.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--no-hadamard", action="store_true", help="skip our model with cheb='hadamard'")
    args = ap.parse_args()
    log = C.log
    data, split, scaler, parts = C.load(report=True)
    forward_equivalence(data, scaler, parts, log)
    rows = []

    # ---- official
    C.set_seed(0)
    official = make_model("cpu", 2, 2, 3, 64, 64, 1, data.adjacency.astype("float64"), 12, 12, data.num_nodes)
    mse = nn.MSELoss()

    def forward(batch):                      # -> [B, 12, N] raw units
        return official(batch["x"].permute(0, 2, 3, 1)).permute(0, 2, 1)

    def loss_fn(batch):                      # official: MSE(outputs (B,N,T), labels (B,N,T)) raw scale, no mask
        return mse(official(batch["x"].permute(0, 2, 3, 1)), batch["y"][..., 0].permute(0, 2, 1))

    optim = torch.optim.Adam(official.parameters(), lr=1e-3)
    rows.append(C.train_official("official ASTGCN_r (in=2, predicts ch0)", official, forward, loss_fn, optim, parts,
                                 args.epochs, 32, log))
    log(C.table(rows))

    # ---- ours
    rows.append(C.train_ours("astgcn", data, scaler, parts, args.epochs, log))
    log(C.table(rows))
    if not args.no_hadamard:
        rows.append(C.train_ours("astgcn", data, scaler, parts, args.epochs, log, cheb="hadamard"))
    log("\nRESULTS (test, original units, masked where truth == 0; ch0 = inflow)")
    log(C.table(rows))


if __name__ == "__main__":
    main()
