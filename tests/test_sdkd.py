"""SDKD on grids: the grid view of the windows, frequency bands against hand-computed values, the
teacher and students on real NYCTaxi, the teacher's latents reaching a latent-mode student, and the
sample layout that Navier-Stokes uses."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from bench.protocol import registry
from bench.protocol.data import DataError, check_grid, load_dataset
from bench.protocol.metrics import masked_mae
from bench.protocol.split import ProtocolError, horizons, prepare, split_for
from bench.execution.train import fit, predict, set_seed, training_loss
from bench.execution.context import build_context
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial
from models.grid import fold, from_frames, to_frames, unfold
from bench.protocol.metrics import band_errors, grid_metrics, low_band
from models.spectral import sdkd_loss

GRID_MODELS = [n for n in registry.names() if n.startswith("sdkd-")]


def test_regions_are_row_major_cells_of_the_registry_grid(taxi):
    assert taxi.grid == (10, 20)
    x = torch.arange(2 * 3 * 200 * 2, dtype=torch.float32).reshape(2, 3, 200, 2)
    frames = to_frames(x, taxi.grid)
    assert frames.shape == (2, 3, 2, 10, 20)
    assert frames[1, 2, 1, 4, 7] == x[1, 2, 4 * 20 + 7, 1]              # region n = row n // W, column n % W
    torch.testing.assert_close(from_frames(frames), x)
    torch.testing.assert_close(unfold(fold(frames), 3), frames)
    # the grid's 8-neighbour adjacency links exactly the cells next to each other in that order
    r, c = 4, 7
    nbrs = set(np.nonzero(taxi.adjacency[r * 20 + c])[0])
    assert nbrs == {(r + dr) * 20 + c + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)}


def test_grid_errors_name_the_registry_field(taxi):
    with pytest.raises(DataError, match="H \\* W must equal"):
        check_grid([10, 10], 200, "NYCTaxi")
    with pytest.raises(DataError, match="two positive ints"):
        check_grid([10], 200, "NYCTaxi")
    assert taxi.slice_nodes(40).grid == (2, 20)                        # whole rows keep a grid
    cut = taxi.slice_nodes(16)
    with pytest.raises(DataError, match="`grid: \\[H, W\\]`"):
        cut.grid
    info = registry.ModelInfo.of(cut, prepare(cut, 0.1)[1], 12, 12)
    for name in GRID_MODELS:
        entry = registry.get(name)
        with pytest.raises(ValueError, match="no grid shape.*`grid: \\[H, W\\]`"):
            entry.cls(entry.config(), info)


def test_data_efficiency_runs_the_sdkd_models_only_where_there_is_a_grid():
    from bench.suites import SUITES
    from bench.suites.base import SuiteError, build_specs
    assert {n for n in registry.names() if registry.get(n).needs_grid} == set(GRID_MODELS)
    suite = SUITES["data-efficiency"]
    models = lambda ds, **kw: {s.model for s in build_specs(suite, ds, ratios=(0.1,), **kw)}
    sdkd = {"sdkd-teacher", "sdkd-unet", "sdkd-unet-sdkd"}
    assert sdkd <= models("NYCTaxi") and sdkd <= models("NYCTaxi", num_nodes=40)     # 2 whole rows of 20
    assert not sdkd & models("LosLoop") and not sdkd & models("NYCTaxi", num_nodes=16)
    assert "flowdistill" in models("LosLoop") and not sdkd & models("NYCTaxi", preset="quick")
    with pytest.raises(SuiteError, match="sdkd-unet: grid model.*LosLoop has no grid.*`grid: \\[H, W\\]`"):
        build_specs(suite, "LosLoop", models=["flowdistill", "sdkd-unet"], ratios=(0.1,))


def test_band_errors_split_the_mse_exactly_hand_computed():
    h, w = 8, 10
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    const = torch.full((h, w), 3.0)
    low, high = band_errors(const, torch.zeros(h, w), 0.25)
    assert low.item() == pytest.approx(9.0) and high.item() == pytest.approx(0.0, abs=1e-6)
    checker = torch.where((x + y) % 2 == 0, 1.0, -1.0)                  # frequency (0.5, 0.5): highest
    low, high = band_errors(checker, torch.zeros(h, w), 0.25)
    assert low.item() == pytest.approx(0.0, abs=1e-6) and high.item() == pytest.approx(1.0)
    wave = 2.0 * torch.cos(2 * np.pi * x / 10)                          # f_x = 0.1 = 0.2 Nyquist: low band
    low, high = band_errors(wave, torch.zeros(h, w), 0.25)              # mean of (2 cos)^2 = 2
    assert low.item() == pytest.approx(2.0) and high.item() == pytest.approx(0.0, abs=1e-6)
    low, high = band_errors(wave, torch.zeros(h, w), 0.15)              # now above the cut-off
    assert low.item() == pytest.approx(0.0, abs=1e-6) and high.item() == pytest.approx(2.0)
    for shape in [(3, 5, 7, 9), (2, 16, 16), (4, 10, 20)]:              # odd and even widths: Plancherel
        a, b = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
        low, high = band_errors(a, b, 0.3)
        assert (low + high).item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-10)
    # 10 x 20 grid, cut-off 0.25 Nyquist = 0.125 cycles/cell: f_y in {0, +-0.1}, f_x in {0, 0.05, 0.1}
    # with f_y^2 + f_x^2 <= 0.125^2: (0,0) (0,.05) (0,.1) (+-.1,0) (+-.1,.05) -> 7 rfft coefficients
    assert int(low_band(10, 20, 0.25).sum()) == 7
    with pytest.raises(ValueError, match="k_c"):
        low_band(8, 8, 0.0)


def test_sdkd_with_alpha_one_is_plain_mse_kd_and_alpha_weights_the_low_band():
    s, t = torch.randn(4, 3, 2, 10, 20), torch.randn(4, 3, 2, 10, 20)
    loss, logs = sdkd_loss(s, t, 0.25, 1.0)
    assert loss.item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-5)
    loss, logs = sdkd_loss(s, t, 0.25, 0.25)
    assert loss.item() == pytest.approx(logs["kd_high"] + 0.25 * logs["kd_low"], rel=1e-5)
    alpha = lambda name: registry.get(name).config().alpha
    assert alpha("sdkd-unet-sdkd") == 0.25 and alpha("sdkd-unet-sdkd-low") == 4
    loss, logs = sdkd_loss(s, t, 0.25, 4.0)                             # sdkd-unet-sdkd-low: the low band 4x
    assert loss.item() == pytest.approx(logs["kd_high"] + 4 * logs["kd_low"], rel=1e-5)
    s.requires_grad_(True)
    sdkd_loss(s, t.requires_grad_(True), 0.25, 0.5)[0].backward()
    assert t.grad is None and s.grad.abs().sum() > 0                    # the teacher is frozen


@pytest.mark.parametrize("name", ["sdkd-teacher", "sdkd-unet", "sdkd-resnet"])
@pytest.mark.parametrize("dataset", ["NYCTaxi", "NYCBike1"])            # 10 x 20 and 16 x 8 grids
def test_grid_models_map_windows_to_windows(name, dataset):
    data = load_dataset(dataset)
    _, scaler, parts = prepare(data, 0.1)
    info = registry.ModelInfo.of(data, scaler, *horizons(data))
    entry = registry.get(name)
    model = entry.cls(entry.config(), info)
    batch = parts["train"].batch(range(3))
    out = model(batch["x"], batch["tod"], batch["dow"])
    assert out.shape == batch["y"].shape
    loss, logs = training_loss(model, batch)
    assert torch.isfinite(loss) and logs["mae"] > 0


def test_students_are_light_next_to_the_teacher(taxi):
    _, scaler, _ = prepare(taxi, 0.1)
    info = registry.ModelInfo.of(taxi, scaler, 12, 12)
    params = {n: sum(p.numel() for p in registry.get(n).cls(registry.get(n).config(), info).parameters())
              for n in ("sdkd-teacher", "sdkd-unet", "sdkd-resnet")}
    assert params["sdkd-unet"] < 0.3 * params["sdkd-teacher"] and params["sdkd-resnet"] < 0.3 * params["sdkd-teacher"]


def test_kd_needs_a_teacher_and_bad_choices_are_refused():
    with pytest.raises(ValueError, match="needs a teacher"):
        registry.get("sdkd-unet").cls(registry.get("sdkd-unet").config(kd="output"), None)
    with pytest.raises(ValueError, match="use one of"):
        registry.get("sdkd-unet").config(sdkd_on="middle")


def test_unet_learns_on_a_slice_of_real_nyctaxi():
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="sdkd-unet", ratio=0.1, num_nodes=40,
                     config={"lr": 3e-3}, max_epochs=6)
    ctx = build_context(spec)
    parts, cfg, model = ctx.parts, ctx.cfg, ctx.model
    before = float(masked_mae(predict(model, parts["val"]), parts["val"].targets()))
    result = fit(model, cfg, parts["train"], parts["val"], set_seed(0))
    assert result.best_val_mae < 0.75 * before
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


def test_the_teachers_latents_reach_a_latent_mode_student(tmp_path):
    base = TrialSpec(suite="t", dataset="NYCTaxi", model="sdkd-unet-sdkd-latent", ratio=0.1, num_nodes=40,
                     max_epochs=1, teacher_data="same", cache_dir=str(tmp_path), max_val_windows=16)
    from bench.execution import teacher as teacher_mod
    t_spec = teacher_mod.teacher_spec(base, "sdkd-teacher")
    path = teacher_mod.fit_teacher(t_spec)
    with np.load(path) as z:
        assert z["latent"].shape[1:] == (128, 2, 20) and z["latent"].dtype == np.float16
    ctx = build_context(base)
    parts, model = ctx.parts, ctx.model
    teacher_mod.attach(parts, t_spec)
    batch = parts["train"].batch(range(4))
    assert batch["z_teacher"].shape == (4, 128, 2, 20)
    loss, logs = training_loss(model, batch)
    assert logs["kd"] > 0 and logs["kd_low"] >= 0 and logs["kd_high"] > 0
    rows = run_trial(base)
    assert rows[0]["status"] == "ok", rows[0].get("error")
    assert rows[0]["teacher_mae"] > 0 and rows[0]["teacher_train_mae"] > 0
    large = build_context(dataclasses.replace(base, model="sdkd-unet-large-sdkd-latent"))   # the same cache
    teacher_mod.attach(large.parts, t_spec)
    loss, logs = training_loss(large.model, large.parts["train"].batch(range(4)))
    assert torch.isfinite(loss) and logs["kd"] > 0


def _write_samples(root, samples=30, frames=20, size=8, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(samples, frames, size, size)).astype(np.float32)
    (root / "ns").mkdir(parents=True, exist_ok=True)
    np.savez(root / "ns" / "tiny.npz", u=u)
    reg = root / "reg.yaml"
    reg.write_text("Tiny:\n  layout: samples\n  data: ns/tiny.npz\n  data_key: u\n  signed: true\n"
                   "  h_in: 10\n  h_out: 10\n")
    return u, reg


def test_samples_layout_one_window_per_sample_split_on_samples(tmp_path):
    u, reg = _write_samples(tmp_path)
    data = load_dataset("Tiny", tmp_path, reg)
    assert data.flow.shape == (30 * 20, 64, 1) and data.grid == (8, 8) and horizons(data) == (10, 10)
    assert (data.flow < 0).any()                                       # signed field accepted
    split = split_for(data, 0.5)
    assert (split.train_start, split.val_start, split.test_start, split.total) == (9 * 20, 24 * 20, 27 * 20, 600)
    _, scaler, parts = prepare(data, 0.5)
    assert len(parts["train"]) == 15 and len(parts["val"]) == 3 and len(parts["test"]) == 3
    assert (parts["test"].starts % 20 == 0).all()
    batch = parts["test"].batch([1])                                   # sample 28: frames 0-9 in, 10-19 out
    np.testing.assert_allclose(to_frames(batch["y"], data.grid)[0, :, 0].numpy(), u[28, 10:], rtol=1e-6)
    with pytest.raises(ProtocolError, match="training samples"):
        split_for(data, 0.01)


def test_samples_layout_refuses_windows_longer_than_a_sample_and_unsigned_negatives(tmp_path):
    _, reg = _write_samples(tmp_path, seed=1)
    reg.write_text(reg.read_text().replace("h_out: 10", "h_out: 12"))
    with pytest.raises(DataError, match="exceeds the 20 frames"):
        load_dataset("Tiny", tmp_path, reg)
    reg.write_text(reg.read_text().replace("h_out: 12", "h_out: 10").replace("  signed: true\n", ""))
    with pytest.raises(DataError, match="negative"):
        load_dataset("Tiny", tmp_path, reg)


def test_grid_metrics_hand_case_and_in_the_rows_of_a_grid_dataset():
    truth = torch.rand(3, 2, 200, 1) + 1.0
    m = grid_metrics(truth.clone(), truth, (10, 20))
    assert m["mse"] == 0 and m["ssim"] == pytest.approx(1.0) and m["err_low"] == m["err_high"] == 0
    assert np.isnan(grid_metrics(truth[:, :, :40], truth[:, :, :40], (2, 20))["ssim"])   # no window fits 2 rows
    m = grid_metrics(truth + 0.5, truth, (10, 20))                     # a constant bias is all low band
    assert m["mse"] == pytest.approx(0.25) and m["err_low"] == pytest.approx(0.25) and m["err_high"] < 1e-9
    rows = run_trial(TrialSpec(suite="t", dataset="NYCTaxi", model="seasonal-naive-week", ratio=0.1))
    assert rows[0]["err_low"] + rows[0]["err_high"] == pytest.approx(rows[0]["mse"], rel=1e-4)
    assert rows[0]["mse"] == pytest.approx(rows[0]["rmse_unmasked"] ** 2, rel=1e-4) and 0 < rows[0]["ssim"] < 1
    assert "ssim" not in rows[1]


def test_sdkd_suite_end_to_end_on_samples_with_cost_and_report(tmp_path, capsys):
    from pypdf import PdfReader

    from bench import suites
    from bench.cli import main
    from bench.suites.report import build
    from bench.execution.results import read_trials, trials_path
    _, reg = _write_samples(tmp_path, samples=60, size=16)
    out = tmp_path / "results"
    argv = ["run", "--no-report", "--suite", "sdkd", "--dataset", "Tiny", "--registry", str(reg), "--data-dir", str(tmp_path),
            "--models", "sdkd-teacher,sdkd-unet,sdkd-unet-kd,sdkd-unet-sdkd", "--epochs", "1", "--seeds", "2",
            "--quick", "--executor", "inline", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    df = read_trials(trials_path(out, "sdkd"))
    overall = suites.ok_overall(df)
    assert sorted(overall["model"].value_counts().items()) == [("sdkd-teacher", 2), ("sdkd-unet", 2),
                                                               ("sdkd-unet-kd", 2), ("sdkd-unet-sdkd", 2)]
    assert (overall.loc[overall["model"] == "sdkd-unet-kd", "teacher_data"] == "same").all()   # the suite's default
    assert (pd.to_numeric(overall["ssim"]) <= 1).all() and (pd.to_numeric(overall["mse"]) > 0).all()
    table = suites.sdkd_frame(df, out / "sdkd" / "history")
    kd = table[table["model"] == "sdkd-unet-kd"].iloc[0]
    for metric in ("MSE", "rel L2"):                                    # 6 test samples, each its own window
        assert "% (p=" in kd[f"{metric} vs no KD"] and kd[f"{metric} MDE"].endswith(" %")
        assert kd[f"{metric} verdict"].startswith(("no effect larger than", "better by", "worse by"))
    assert 0 < float(kd["rel L2"].split()[0]) < 2 and len(kd["fRMSE low / mid / high"].split(" / ")) == 3
    assert list(table["model"])[0] == "sdkd-teacher" and table["of teacher (MSE / MAE / rel L2)"].iloc[0] == ""
    assert kd["steps (best epoch)"].endswith("(best 1 of 1), converged: no (2 of 2)")  # --epochs 1: never stopped
    assert not table["model"].str.contains("FNO Table 1").any()        # FNO's numbers only beside Navier-Stokes
    ns = suites.sdkd_frame(df.assign(dataset="NavierStokes"), out / "sdkd" / "history")
    fno = ns[ns["model"].str.contains("FNO Table 1 \\(other data, same equation and resolution\\)")]
    assert list(fno["rel L2"]) == ["0.156", "0.198", "0.275"] and (fno["MSE"] == "").all()
    assert "speed-up" in printed                                        # teacher and student, side by side
    cost = pd.read_csv(out / "sdkd-cost" / "trials.csv")
    assert set(cost["model"]) == {"sdkd-teacher", "sdkd-unet"} and (cost["status"] == "ok").all()   # the students run
    frame = suites.cost_frame(cost)
    assert frame["model"].iloc[0] == "sdkd-teacher" and frame["params vs teacher"].iloc[0] == "100%"
    assert set(cost["measure"]) == {"memory", "train_memory", "latency"} and (cost["value"] >= 0).all()
    assert frame["train peak MB"].ne("").all() and frame["train memory vs teacher"].iloc[0] in ("100%", "")
    pdf = build(out, tmp_path / "r.pdf")
    text = "".join(page.extract_text() for page in PdfReader(pdf["pdf"]).pages)
    assert "SDKD" in text and "81.3" in text and "high band" in text


def test_bench_data_make_navier_stokes_writes_what_the_registry_reads(tmp_path, capsys):
    from bench.cli import main
    reg = tmp_path / "reg.yaml"
    reg.write_text("NS4:\n  layout: samples\n  data: navier_stokes/ns_V1e-05_N4_T20.npz\n  data_key: u\n"
                   "  signed: true\n  h_in: 10\n  h_out: 10\n  holdout: 1/4\n")
    argv = ["data", "make", "navier-stokes", "--samples", "4", "--resolution", "64", "--dt", "0.01",
            "--threads", "1", "--data-dir", str(tmp_path), "--registry", str(reg)]
    assert main(argv) == 0
    assert "NS4 reads it: 2 training / 1 validation / 1 test samples at ratio 0.8" in capsys.readouterr().out
    path = tmp_path / "navier_stokes" / "ns_V1e-05_N4_T20.npz"
    with np.load(path) as z:
        assert z["u"].shape == (4, 20, 64, 64) and np.isfinite(z["u"]).all()       # --samples 4: 4 samples
    data = load_dataset("NS4", tmp_path, reg)
    assert data.grid == (64, 64) and data.flow.shape == (80, 4096, 1)
    split = split_for(data, 0.8)                                                 # holdout 1/4: 2 / 1 / 1
    assert (split.train_start, split.val_start, split.test_start) == (0, 40, 60)
    assert main(argv) == 0 and "exists" in capsys.readouterr().out            # never overwritten silently
    assert main(["data", "make", "navier-stokes", "--resolution", "65536", "--data-dir", str(tmp_path)]) == 2
    assert "GiB" in capsys.readouterr().err


def test_navier_stokes_1200_splits_1000_100_100():
    from bench.protocol.data import Dataset, holdout_share, load_registry
    from bench.protocol.split import sample_split
    entry = load_registry()["NavierStokes1200"]
    holdout = holdout_share(entry["holdout"], "NavierStokes1200")
    assert holdout == 1 / 12 and "--samples 1200" in entry["source"]
    assert sample_split(1200, 0.8, holdout) == (1000, 100, 100)                 # FNO's 1,000 training samples
    assert sample_split(1200, 0.4, holdout) == (500, 100, 100)                  # ratio: share of the largest part
    assert sample_split(600, 0.8, holdout) == (500, 50, 50) and sample_split(120, 0.8) == (96, 12, 12)
    frames = np.zeros((1200 * 20, 4, 1), np.float32)                            # 1,200 samples of 20 frames
    data = Dataset("NS1200", frames, np.zeros(24000, np.int64), np.zeros(24000, np.int64), np.eye(4, dtype=np.float32),
                   {"sample_len": 20, "holdout": holdout, "grid": [2, 2], "h_in": 10, "h_out": 10})
    split = split_for(data, 0.8)
    assert (split.train_start, split.val_start, split.test_start, split.total) == (0, 1000 * 20, 1100 * 20, 24000)
    with pytest.raises(DataError, match="must lie in"):
        holdout_share("3/4", "X")
    with pytest.raises(ProtocolError, match="training samples"):
        sample_split(4, 0.8, 0.4)


def test_navier_stokes_missing_says_how_to_make_it(tmp_path):
    with pytest.raises(DataError, match="bench data make navier-stokes"):
        load_dataset("NavierStokes", tmp_path)


def test_persistence_repeats_the_last_input_step(taxi):
    rows = run_trial(TrialSpec(suite="t", dataset="NYCTaxi", model="persistence", ratio=0.1))
    _, scaler, parts = prepare(taxi, 0.1)
    test = parts["test"]
    truth = test.targets()
    last = torch.cat([b["x"][:, -1:] for b in test.batches(512)])
    expected = masked_mae(scaler.inverse(last).expand_as(truth), truth)
    assert rows[0]["mae"] == pytest.approx(float(expected), rel=1e-5) and rows[0]["epochs"] == 0


def test_training_mean_forecasts_each_regions_mean_over_the_training_targets(taxi):
    rows = run_trial(TrialSpec(suite="t", dataset="NYCTaxi", model="training-mean", ratio=0.1))
    _, _, parts = prepare(taxi, 0.1)
    mean = parts["train"].targets().mean((0, 1), dtype=torch.float64).float()        # [N, C]
    truth = parts["test"].targets()
    expected = masked_mae(mean.expand_as(truth), truth)
    assert rows[0]["mae"] == pytest.approx(float(expected), rel=1e-4) and rows[0]["epochs"] == 0
    assert rows[0]["mae"] != pytest.approx(float(masked_mae(torch.zeros_like(truth), truth)), rel=1e-2)
