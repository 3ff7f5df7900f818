"""benchmarks/cost.py: the full preset's cost from measured seconds per step (a tiny CPU run)."""
import json
import math

from bench.protocol import registry
from bench.protocol.data import load_dataset
from bench.protocol.split import split_for


def test_cost_counts_steps_trials_hours_and_the_7b_flops(tmp_path, capsys):
    from benchmarks import cost
    out = tmp_path / "cost.json"
    assert cost.main(["--device", "cpu", "--steps", "2", "--teacher-steps", "1", "--teacher-layers", "1",
                      "--nodes", "8", "--models", "flowdistill-wo-tb,flowdistill-teacher", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SMOKE RUN: measured on the first 8 regions" in printed and "CPU-core-hours at" in printed
    doc = json.loads(out.read_text())
    rows = {r["model"]: r for r in doc["models"]}
    assert set(rows) == {"flowdistill-wo-tb", "flowdistill-teacher"} and doc["smoke"]
    assert all(r["s_per_step"] > 0 for r in doc["models"] + doc["teachers"])

    # steps: max_epochs x ceil(training windows / batch), windows from the split by hand (H_in + H_out = 24)
    taxi, cfg = load_dataset("NYCTaxi"), registry.get("flowdistill-wo-tb").config()
    ratios = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    windows = [split_for(taxi, r).val_start - split_for(taxi, r).train_start - 24 + 1 for r in ratios]
    assert windows[0] == 265                                       # 6 days: 288 half hours - 24 + 1
    row = rows["flowdistill-wo-tb"]
    assert row["steps_all_ratios"] == sum(cfg.max_epochs * math.ceil(w / cfg.batch_size) for w in windows)
    assert row["trials"] == 21
    assert math.isclose(row["device_hours"], row["s_per_step"] * row["steps_all_ratios"] * 3 / 3600)
    assert math.isclose(row["wall_hours_8"], max(row["device_hours"] / 8,
                                                 row["s_per_step"] * max(row["steps_per_ratio"].values()) / 3600))

    # the 7B teacher: 6 x params x tokens per sample x (steps x windows the LM reads per step), at
    # 989 TFLOP/s x 0.35; lm_role residual: the LM reads lm_windows windows of each batch
    big, t_cfg = doc["big_teacher"], registry.get("flowdistill-teacher").config()
    assert t_cfg.lm_role == "residual" and big["batch"] == t_cfg.lm_windows
    assert len(big["tokens_per_chunk"]) == 2 and min(big["tokens_per_chunk"]) > 5 * 100   # 200 regions, 100 a chunk
    steps = sum(big["steps"].values())
    flops = 6 * 6.74e9 * (sum(big["tokens_per_chunk"]) / 2) * steps * t_cfg.lm_windows
    assert math.isclose(big["total_flops"], flops)
    assert math.isclose(big["device_hours"], flops / (989e12 * 0.35) / 3600)
    fit = next(r for r in doc["teachers"] if r["model"] == "flowdistill-teacher (teacher fit)")
    assert fit["steps_all_ratios"] == steps and fit["trials"] == 7


def test_the_benchmark_script_runs_to_its_end_on_a_tiny_slice(capsys):
    """`python -m benchmarks.run` on 8 regions: every section prints, grid models are listed as
    left out (8 regions are not NYCTaxi's 10 x 20 grid). Not a timed test: nothing is asserted on
    the figures."""
    from benchmarks.run import main
    main(["--nodes", "8", "--repeats", "1", "--batch", "4", "--skip-teacher"])
    printed = capsys.readouterr().out
    assert "1. inference" in printed and "2. data pipeline" in printed and "3. harness overhead" in printed
    assert "left out: sdkd-" in printed and "flowdistill" in printed
