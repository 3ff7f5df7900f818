"""Exact metrics of a few tiny trials, written as JSON, to diff the code before and after a
refactor (on one machine: another CPU rounds differently, see tests/test_behaviour_kept.py).

    git stash; python -m benchmarks.behaviour before.json; git stash pop
    python -m benchmarks.behaviour after.json --compare before.json     # exit 1 on any difference

Each case: NYCTaxi at ratio 0.2, seed 1, 2 rounds of 3 steps, early stopping on 16 validation
windows, 12 regions (the grid models: all 200); a teacher named in the config is fitted first on
the same budget, so its training loss runs too. Prints per case the test MAE and RMSE, the last
round's training MAE and the teacher's test MAE. About 10 minutes on 2 CPU cores (the LLM
teacher's prediction of every window is most of it).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile

from bench.execution import teacher
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial

# (model, config, regions or None for all): every kind of training loss in the registry
CASES = [
    ("flowdistill-kd-element", {"teacher": "seasonal-naive-week"}, 12),
    ("flowdistill", {"teacher": "flowdistill-teacher-wo-lm"}, 12),
    ("flowdistill-wo-ib", {"teacher": "flowdistill-teacher"}, 12),
    ("flowdistill-wo-tb", {}, 12),
    ("easyst", {"teacher": "historical-average"}, 12),
    ("st-mlp", {"teacher": "historical-average"}, 12),
    ("stwa", {}, 12), ("astgcn", {}, 12), ("stsgcn", {}, 12), ("bigst", {}, 12),
    ("sdkd-unet-sdkd", {"teacher": "sdkd-teacher"}, None),
    ("sdkd-resnet-kd", {"teacher": "sdkd-teacher"}, None),
    ("sdkd-unet-sdkd-latent", {"teacher": "sdkd-teacher"}, None),
]


def measure(models: list[str] | None = None) -> dict:
    """{model: [status, error, mae, rmse, train_mae, teacher_mae]} of each case (or of `models`)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, config, nodes in CASES:
            if models and model not in models:
                continue
            spec = TrialSpec(suite="behaviour", dataset="NYCTaxi", model=model, ratio=0.2, num_nodes=nodes, seed=1,
                             max_epochs=2, max_batches=3, max_val_windows=16, cache_dir=tmp, config=config)
            if config.get("teacher"):
                teacher.fit_teacher(teacher.teacher_spec(spec, config["teacher"]))
            row = run_trial(spec)[0]
            out[model] = [row["status"], row["error"], row["mae"], row["rmse"], row.get("train_mae"),
                          row.get("teacher_mae")]
            print(model, out[model], flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--compare", help="a JSON file written before: report every case that differs")
    parser.add_argument("--models", help="comma-separated subset of the cases")
    args = parser.parse_args(argv)
    got = measure(args.models.split(",") if args.models else None)
    with open(args.out, "w") as f:
        json.dump(got, f, indent=1)
    if not args.compare:
        return 0
    with open(args.compare) as f:
        before = json.load(f)
    differ = [m for m in got if before.get(m) != got[m]]
    print(f"{len(got) - len(differ)} of {len(got)} cases identical"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
