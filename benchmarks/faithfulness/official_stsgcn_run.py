"""MXNet side of compare_stsgcn.py: trains the OFFICIAL STSGCN (Davidham3/STSGCN @ 3f825f6, imported from
benchmarks/faithfulness/official_stsgcn or $OFFICIAL_STSGCN, never copied) on the windows that
`compare_stsgcn.py export` wrote, and saves its test predictions (inflow, original units). Runs in a
separate venv with MXNet 1.9.1 (the code targets 1.4):

    python3 -m venv /work/venv-mxnet && /work/venv-mxnet/bin/pip install mxnet==1.9.1 "numpy<1.24"
    OMP_NUM_THREADS=1 /work/venv-mxnet/bin/python benchmarks/faithfulness/official_stsgcn_run.py \\
        --data /tmp/stsgcn_nyctaxi.npz --epochs 1 --out /tmp/stsgcn_official.npz --init-out /tmp/stsgcn_official_init.npz \
        --scaled-out /tmp/stsgcn_official_scaled.npz --final-out /tmp/stsgcn_official_final.npz

One epoch takes 35-45 min on one shared CPU thread: the code's dense 600 x 600 graph product (84 per forward)
costs about 25 CPU-seconds per training step of 32 windows, against about 1-3 s for ours (sparse product).

Official pieces used as they are: utils.construct_model (input FC 64 + ReLU, models/stsgcn.py's network and
Huber loss, rho 1, unmasked, MakeLoss), utils.get_adjacency_matrix / construct_adj (localized graph),
utils.masked_mae_np (validation criterion), config/PEMS08/individual_GLU_mask_emb.json (the default
"individual_GLU_mask_emb" setting), main.py's Module / Xavier(magnitude 3e-4) init / Adam with
PolyScheduler(pwr 2, one-epoch linear warm-up, max_update = steps per epoch x epochs) / best validation
epoch tested.

Glue (each said here, nothing else changed):
- MXNet 1.9.1 compatibility: mx.init.Constant is given a numpy array where the code passes a Python list
  (1.9's Constant.dumps calls .tolist()/.asnumpy() on it; 1.4 accepted lists). Same values.
- data: one input channel (inflow, as the code's generate_seq keeps channel 0), z-scored with our scaler's
  channel-0 mean/std (the code: one scalar mean/std of its training windows); labels = raw inflow, as the code.
  num_of_vertices 200; the adjacency is written as an edge CSV for the code's own reader.
- batch order: the epoch orders of a torch.Generator seeded 0 (ours' order, from the export); the last partial
  batch is padded with the first windows of the epoch's order, as the code's NDArrayIter (last_batch_handle
  'pad') does, so every epoch has 1129 // 32 + 1 = 36 steps as in the code.
- learning-rate schedule: max_update from the official config's 200 epochs (--schedule-epochs), i.e. the
  first E epochs of the official run, not a schedule compressed into E epochs (which needs E >= 2).
- validation/test prediction with NDArrayIter(batch 32, no shuffle) and Module.predict, as main.py.
- seeds: mx.random.seed(0), np.random.seed(0) before init.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import mxnet as mx

OFFICIAL = os.environ.get("OFFICIAL_STSGCN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "official_stsgcn"))
sys.path.insert(0, OFFICIAL)

_constant_init = mx.init.Constant.__init__


def _constant_accepting_lists(self, value):                     # 1.4 -> 1.9 compatibility only
    _constant_init(self, np.asarray(value, dtype=np.float32) if isinstance(value, list) else value)


mx.init.Constant.__init__ = _constant_accepting_lists

from utils import construct_model, masked_mae_np  # noqa: E402  (official)


def log(text):
    print(text, flush=True)


def save(path, **arrays):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/stsgcn_nyctaxi.npz")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--schedule-epochs", type=int, default=None, help="epochs of the lr schedule (default: config's 200)")
    ap.add_argument("--out", default="/tmp/stsgcn_official.npz")
    ap.add_argument("--init-out", default=None, help="write the initial weights and one test batch's output here")
    ap.add_argument("--scaled-out", default=None, help="with --init-out: weights x100, biases U(-0.1, 0.1), and output")
    ap.add_argument("--final-out", default=None, help="write the last epoch's weights and one test batch's output here")
    ap.add_argument("--max-steps", type=int, default=None, help="timing probe: stop each epoch after this many steps")
    args = ap.parse_args()

    d = np.load(args.data)
    n = d["train_x"].shape[2]
    with open(os.path.join(OFFICIAL, "config", "PEMS08", "individual_GLU_mask_emb.json")) as f:
        config = json.load(f)
    adj_csv = os.path.join(tempfile.gettempdir(), "stsgcn_nyctaxi_edges.csv")
    rows, cols = np.nonzero(d["adjacency"])
    with open(adj_csv, "w") as f:                                  # the code reads "from,to,cost" rows
        f.write("from,to,cost\n")
        f.writelines(f"{i},{j},1\n" for i, j in zip(rows, cols))
    config.update(num_of_vertices=n, adj_filename=adj_csv, id_filename=None, graph_signal_matrix_filename=args.data)
    log(json.dumps(config, sort_keys=True))
    batch_size, epochs = config["batch_size"], args.epochs
    mean0, std0 = float(d["mean"][0]), float(d["std"][0])

    def inputs(part):                                              # (W, 12, N, 1) z-scored inflow
        return ((d[part + "_x"][..., 0:1] - mean0) / std0).astype(np.float32)

    train_x, train_y = inputs("train"), d["train_y"][..., 0].astype(np.float32)
    val_x, val_y = inputs("val"), d["val_y"][..., 0].astype(np.float32)
    test_x, test_y = inputs("test"), d["test_y"][..., 0].astype(np.float32)
    perms = d["perms"]
    assert perms.shape[0] >= epochs, f"export wrote {perms.shape[0]} batch orders, need {epochs}"

    net = construct_model(config)                                  # official (adj, mask, embeddings, loss)
    mod = mx.mod.Module(net, data_names=["data"], label_names=["label"], context=mx.cpu())
    mod.bind(data_shapes=[("data", (batch_size, config["points_per_hour"], n, 1))],
             label_shapes=[("label", (batch_size, config["points_per_hour"], n))])
    mx.random.seed(0)
    np.random.seed(0)
    mod.init_params(initializer=mx.init.Xavier(magnitude=0.0003))
    global_train_steps = len(train_x) // batch_size + 1
    sched_epochs = args.schedule_epochs or config["epochs"]
    lr_sch = mx.lr_scheduler.PolyScheduler(max_update=global_train_steps * sched_epochs * config["max_update_factor"],
                                           base_lr=config["learning_rate"], pwr=2, warmup_steps=global_train_steps)
    mod.init_optimizer(optimizer=config["optimizer"], optimizer_params=(("lr_scheduler", lr_sch),))
    params = mod.get_params()[0]
    n_all = int(sum(np.prod(v.shape) for v in params.values()))
    n_params = n_all - int(np.prod(params["adj"].shape))         # adj is a BlockGrad constant
    log(f"Number of Parameters: {n_all} (main.py's count; without the constant adj {n_params})")
    loc = params["adj"].asnumpy()
    log(f"official localized graph == ours (export): {np.array_equal(loc, d['localized'])}")

    def predict(x):
        it = mx.io.NDArrayIter(x, None, batch_size=batch_size, shuffle=False, label_name="label")
        return mod.predict(it)[1].asnumpy()

    def export_weights(path, **extra):
        arg_params = mod.get_params()[0]
        names = sorted(arg_params)
        save(path, names=np.array(names), x=d["test_x"][:batch_size], y=predict(inputs("test")[:batch_size]),
             **{f"p{i}": arg_params[k].asnumpy() for i, k in enumerate(names)}, **extra)
        log(f"wrote weights and one test batch's output to {path}")

    if args.init_out:
        export_weights(args.init_out)
        if args.scaled_out:                  # the initial outputs are ~1e-9: also a check at O(1) output scale
            init_np = {k: v.asnumpy() for k, v in params.items()}
            rng = np.random.default_rng(0)
            scaled = {k: (mx.nd.array(rng.uniform(-0.1, 0.1, v.shape)) if k.endswith("_bias") else v * 100)
                      for k, v in params.items() if k not in ("adj", "_mask")}
            scaled.update(adj=params["adj"], _mask=params["_mask"])
            mod.set_params(scaled, {}, allow_missing=False)
            export_weights(args.scaled_out)
            mod.set_params({k: mx.nd.array(v) for k, v in init_np.items()}, {})      # back to the initial weights
            assert all(np.array_equal(v.asnumpy(), init_np[k]) for k, v in mod.get_params()[0].items())

    best, best_epoch, val_hist, train_s = 1e6, 0, [], 0.0
    for epoch in range(1, epochs + 1):
        t = time.time()
        order = perms[epoch - 1]
        steps = -(-len(order) // batch_size)
        order = np.concatenate([order, order[: steps * batch_size - len(order)]])   # NDArrayIter 'pad'
        total = 0.0
        for s in range(steps):
            if args.max_steps and s >= args.max_steps:
                break
            idx = order[s * batch_size:(s + 1) * batch_size]
            batch = mx.io.DataBatch([mx.nd.array(train_x[idx])], [mx.nd.array(train_y[idx])])
            t0 = time.time()
            mod.forward_backward(batch)
            mod.update()
            loss = float(mod.get_outputs()[0].mean().asscalar())     # mean Huber of the batch (logging only)
            total += loss
            if s < 3 or s % 6 == 5:
                log(f"  epoch {epoch} step {s + 1}/{steps}: huber {loss:.3f}  lr {lr_sch(mod._optimizer.num_update):.2e}  "
                    f"{time.time() - t0:.1f}s")
        val_pred = predict(val_x)
        val_mae = float(masked_mae_np(val_y, val_pred, 0))
        val_hist.append(val_mae)
        train_s += time.time() - t
        log(f"[official] epoch {epoch}: train huber {total / steps:.4f}  val MAE (ch0) {val_mae:.4f}  "
            f"epoch time {time.time() - t:.1f}s")
        if val_mae < best:
            best, best_epoch = val_mae, epoch
            test_pred = predict(test_x)
            test_mae = float(masked_mae_np(test_y, test_pred, 0))
            log(f"[official] epoch {epoch}: test MAE (ch0, official masked_mae_np) {test_mae:.4f}")
        save(args.out, test_pred=test_pred, best_epoch=best_epoch, epochs=epoch, val_mae=np.array(val_hist),
             train_s=train_s, params=n_params, params_with_adj=n_all, test_mae_official=test_mae)
    if args.final_out:
        export_weights(args.final_out)
    log(f"[official] best epoch {best_epoch}, train+val time {train_s:.1f}s; wrote {args.out}")


if __name__ == "__main__":
    main()
