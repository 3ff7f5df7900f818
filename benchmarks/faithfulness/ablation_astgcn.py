"""Ablation: the OFFICIAL ASTGCN_r model (unchanged) trained with one glue change: its output is read
as z-scored inflow (pred = out * std0 + mean0), as our re-implementation does, instead of regressing
raw-unit targets directly. Loss stays the official unmasked MSE on raw units; everything else as
compare_astgcn.py. Isolates how much of the official-vs-ours gap comes from the output scale. Run:
    python benchmarks/faithfulness/ablation_astgcn.py [--epochs 4]
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare_astgcn as A  # noqa: E402  (installs shims, imports official make_model)
import _common as C  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    log = C.log
    data, split, scaler, parts = C.load()
    mean0, std0 = float(scaler.mean[0]), float(scaler.std[0])
    C.set_seed(0)
    official = A.make_model("cpu", 2, 2, 3, 64, 64, 1, data.adjacency.astype("float64"), 12, 12, data.num_nodes)
    mse = nn.MSELoss()

    def forward(batch):                      # -> [B, 12, N] raw units
        return (official(batch["x"].permute(0, 2, 3, 1)) * std0 + mean0).permute(0, 2, 1)

    def loss_fn(batch):                      # official unmasked MSE on raw units
        return mse(forward(batch), batch["y"][..., 0])

    optim = torch.optim.Adam(official.parameters(), lr=1e-3)
    rows = [C.train_official("official ASTGCN_r, z-scored output", official, forward, loss_fn, optim, parts,
                             args.epochs, 32, log)]
    log("\nRESULTS (test, original units, masked where truth == 0; ch0 = inflow)")
    log(C.table(rows))


if __name__ == "__main__":
    main()
