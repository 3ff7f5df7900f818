"""Official STSGCN (Davidham3/STSGCN @ 3f825f6, MXNet symbol API) vs our baselines/stsgcn.py on NYCTaxi,
training ratio 0.4, same split / windows / batch order / epochs. Two processes: this script runs in the
project's torch venv; benchmarks/faithfulness/official_stsgcn_run.py runs the official model in a separate
MXNet venv (never install MXNet into the project's venv). Run (from the repository root, PYTHONPATH=.):

    python benchmarks/faithfulness/compare_stsgcn.py export --out /tmp/stsgcn_nyctaxi.npz
    OMP_NUM_THREADS=1 /work/venv-mxnet/bin/python benchmarks/faithfulness/official_stsgcn_run.py \\
        --data /tmp/stsgcn_nyctaxi.npz --epochs 1 --out /tmp/stsgcn_official.npz --init-out /tmp/stsgcn_official_init.npz \\
        --scaled-out /tmp/stsgcn_official_scaled.npz --final-out /tmp/stsgcn_official_final.npz
    python benchmarks/faithfulness/compare_stsgcn.py check --init /tmp/stsgcn_official_init.npz   # also _scaled, _final
    python benchmarks/faithfulness/compare_stsgcn.py ours --epochs 1 --out /tmp/stsgcn_ours.json
    python benchmarks/faithfulness/compare_stsgcn.py table --official /tmp/stsgcn_official.npz --ours /tmp/stsgcn_ours.json

`export` writes what the official side reads: the exact windows of C.load() (x and y in original units,
both channels), our scaler's mean/std, the dataset adjacency our model receives (ModelInfo.adjacency),
our localized 3N x 3N graph (a cross-check only) and the per-epoch batch orders of a torch.Generator
seeded 0 (the order ours draws in bench.execution.train.fit). `check` loads the official initial weights into
ours and compares one test batch. `table` scores the official test predictions (inflow, original units)
with bench.protocol.metrics' masked MAE/RMSE, the same functions as ours.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402


def export(args):
    data, split, scaler, parts = C.load(report=True)
    out = {}
    for part in ("train", "val", "test"):
        w = parts[part]
        s = torch.from_numpy(w.starts)
        t_in = s[:, None] + torch.arange(C.H_IN)
        out[f"{part}_x"] = w.flow[t_in].numpy()                              # [W, 12, N, 2] original units
        out[f"{part}_y"] = w.targets().numpy()                               # [W, 12, N, 2] original units
        out[f"{part}_starts"] = w.starts
        # the batches' z-scored x is scaler.transform of the same values
        assert torch.allclose(next(w.batches(4))["x"], scaler.transform(w.flow[t_in[:4]]))
    gen = torch.Generator().manual_seed(0)                                  # = set_seed(0)'s generator in train_ours
    out["perms"] = np.stack([torch.randperm(len(parts["train"]), generator=gen).numpy() for _ in range(args.max_epochs)])
    from baselines.stsgcn import localized_adjacency
    info = C.registry.ModelInfo.of(data, scaler, C.H_IN, C.H_OUT)
    out.update(mean=scaler.mean, std=scaler.std, adjacency=info.adjacency,
               localized=localized_adjacency(info.adjacency))
    np.savez(args.out, **out)
    C.log(f"wrote {args.out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items()))


def _ours_model(data, scaler):
    entry = C.registry.get("stsgcn")
    return entry.cls(entry.config(), C.registry.ModelInfo.of(data, scaler, C.H_IN, C.H_OUT))


def check(args):
    """Official weights (exported by official_stsgcn_run.py --init-out / --scaled-out / --final-out) copied into
    ours: the code's unnamed FullyConnected layers in creation order (input FC, then layer / window / GCN, then
    hidden and output FC of each horizon head), embeddings and mask by name; ours' inflow input weights = the
    official single-channel ones, outflow input weights 0, inflow head rows = official. The official output
    (raw regression) and ours' z-scored channel 0 are then the same numbers."""
    data, split, scaler, parts = C.load()
    init = np.load(args.init)
    names = [str(n) for n in init["names"]]
    arr = {n: init["p" + str(i)] for i, n in enumerate(names)}
    fc = sorted({n.rsplit("_", 1)[0] for n in names if n.startswith("fullyconnected")}, key=lambda s: int(s[14:]))
    ours = _ours_model(data, scaler)
    fresh = _ours_model(data, scaler)                                         # ours' own initialisation
    sd = ours.state_dict()
    order = ["inp"] + [f"layers.{l}.modules_.{i}.fcs.{j}" for l, layer in enumerate(ours.layers)
                       for i in range(len(layer.modules_)) for j in range(ours.cfg.gcn_layers)]
    order += [f"heads.{h}.{k}" for h in range(len(ours.heads)) for k in (0, 2)]
    assert len(order) == len(fc), (len(order), len(fc))                   # FCs in creation order
    new = {"mask": torch.tensor(arr["_mask"])}
    for l in range(len(ours.layers)):
        new[f"layers.{l}.temporal"] = torch.tensor(arr[f"_stsgcl_{l}_emb_t_emb"])
        new[f"layers.{l}.spatial"] = torch.tensor(arr[f"_stsgcl_{l}_emb_v_emb"])
    for ours_name, off in zip(order, fc):
        w, b = torch.tensor(arr[off + "_weight"]), torch.tensor(arr[off + "_bias"])
        if ours_name == "inp":                                                # [64, 1] -> [64, 2], outflow 0
            w = torch.cat([w, torch.zeros_like(w)], dim=1)
        elif ours_name.startswith("heads.") and ours_name.endswith(".2"):     # [1, 128] -> [2, 128], row 0
            w2, b2 = sd[ours_name + ".weight"].clone(), sd[ours_name + ".bias"].clone()
            w2[0], b2[0] = w[0], b[0]
            w, b = w2, b2
        new[ours_name + ".weight"], new[ours_name + ".bias"] = w, b
    ours.load_state_dict(new, strict=False)
    missing = set(sd) - set(new) - {"adj"}
    assert not missing, missing
    C.log(f"official localized graph == ours: {np.array_equal(arr['adj'], ours.adj.numpy())}")
    def bound(shape):                                                         # MXNet Xavier: fans of dims 0, 1 x rest
        hw = int(np.prod(shape[2:]))
        return float(np.sqrt(3e-4 / ((shape[0] * hw + shape[1] * hw) / 2)))
    for key, ours_p in (("_stsgcl_0_emb_v_emb", fresh.layers[0].spatial), ("_stsgcl_0_emb_t_emb", fresh.layers[0].temporal)):
        C.log(f"{key}: official max |w| {np.abs(arr[key]).max():.3e} (Xavier bound {bound(arr[key].shape):.3e}); "
              f"ours' own init max |w| {ours_p.abs().max().item():.3e}")
    x = torch.tensor(init["x"])                                               # [B, 12, N, 2] original units
    with torch.no_grad():
        y_ours = ours.eval()(scaler.transform(x))[..., 0]
    y_off = torch.tensor(init["y"])
    diff, scale = (y_ours - y_off).abs(), y_off.abs().max().item()
    C.log(f"forward check (official weights from {args.init} in ours, {len(x)} test windows): max |y ours - y official| = "
          f"{diff.max().item():.2e}, median {diff.median().item():.2e} (|y| max {scale:.2e})")


def ours(args):
    data, split, scaler, parts = C.load(report=True)
    row = C.train_ours("stsgcn", data, scaler, parts, args.epochs, C.log)
    with open(args.out, "w") as f:
        json.dump(row, f)
    C.log(C.table([row]))


def table(args):
    data, split, scaler, parts = C.load()
    off = np.load(args.official)
    truth = parts["test"].targets()[..., 0]
    pred = torch.tensor(off["test_pred"])
    assert pred.shape == truth.shape, (pred.shape, truth.shape)
    mae0, rmse0 = C.metrics(pred, truth)
    rows = [dict(model="official STSGCN (MXNet, in=1, predicts ch0)", epochs=int(off["epochs"]), best=int(off["best_epoch"]),
                 secs=float(off["train_s"]), mae0=mae0, rmse0=rmse0, mae=float("nan"), rmse=float("nan"),
                 params=int(off["params"]))]
    C.log(f"official: val MAE per epoch {np.round(off['val_mae'], 4).tolist()}, official-code test MAE "
          f"{float(off['test_mae_official']):.4f} (utils.masked_mae_np), params without the constant adj "
          f"{int(off['params'])} (with it {int(off['params_with_adj'])})")
    if args.ours:
        with open(args.ours) as f:
            rows.append(json.load(f))
    C.log("\nRESULTS (test, original units, masked where truth == 0; ch0 = inflow)")
    C.log(C.table(rows))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export"); p.add_argument("--out", default="/tmp/stsgcn_nyctaxi.npz")
    p.add_argument("--max-epochs", type=int, default=20, help="batch orders written (one per epoch)")
    p = sub.add_parser("check"); p.add_argument("--init", default="/tmp/stsgcn_official_init.npz")
    p = sub.add_parser("ours"); p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", default="/tmp/stsgcn_ours.json")
    p = sub.add_parser("table"); p.add_argument("--official", default="/tmp/stsgcn_official.npz")
    p.add_argument("--ours", default="/tmp/stsgcn_ours.json")
    args = ap.parse_args()
    {"export": export, "check": check, "ours": ours, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
