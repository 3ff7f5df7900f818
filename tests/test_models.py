import numpy as np
import pytest
import torch

from bench import registry
from bench.protocol import H_IN, H_OUT, prepare
from bench.registry import ModelInfo
from bench.train import default_loss

MODELS = ["flowdistill", "flowdistill-wo-tb", "easyst", "stwa"]


def build(name, data, ratio=0.5, **changes):
    split, scaler, parts = prepare(data, ratio)
    info = ModelInfo(data.num_nodes, data.num_channels, H_IN, H_OUT, data.steps_per_day, data.adjacency, scaler)
    torch.manual_seed(0)
    return registry.get(name).cls(registry.get(name).config(**changes), info), parts, scaler


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape(name, taxi_small):
    model, parts, _ = build(name, taxi_small)
    batch = parts["train"].batch(torch.arange(5))
    out = model(batch["x"], batch["tod"], batch["dow"])
    assert out.shape == (5, H_OUT, 16, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_training_steps_lower_the_loss_on_real_data(name, taxi_small):
    """A few Adam steps on one fixed batch of real NYCTaxi windows lower the masked MAE."""
    model, parts, scaler = build(name, taxi_small)
    batch = parts["train"].batch(torch.arange(32))
    batch["y_teacher"] = batch["y"] + 1.0                       # a close teacher, for distilled models
    opt = torch.optim.Adam(model.parameters(), lr=model.cfg.lr)
    model.eval()
    before = default_loss(model, batch, scaler)[0].item()
    before_params = [p.detach().clone() for p in model.parameters()]
    model.train()
    for _ in range(60):
        loss, logs = model.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = default_loss(model, batch, scaler)[0].item()
    assert after < 0.8 * before, (before, after)
    assert any(not torch.equal(a, b) for a, b in zip(before_params, model.parameters()))


def test_flowdistill_loss_is_the_sum_of_its_terms(taxi_small):
    model, parts, _ = build("flowdistill", taxi_small, dropout=0.0)
    batch = parts["train"].batch(torch.arange(8))
    batch["y_teacher"] = batch["y"] * 1.1
    torch.manual_seed(1)
    loss, logs = model.training_loss(batch)
    cfg = model.cfg
    expected = (logs["mae"] + cfg.lambda_kl * logs["kl"] + cfg.lambda_spa * logs["spa"]
                + cfg.lambda_tem * logs["tem"] + cfg.lambda_tbl * logs["tbl"])
    assert logs["tbl_active"] == 1.0
    assert np.isclose(loss.item(), expected, rtol=1e-5)
    # w/o-TB: no teacher term even when a teacher is in the batch
    model_wo, _, _ = build("flowdistill-wo-tb", taxi_small)
    assert model_wo.cfg.teacher is None


def test_registry_lists_models_and_refuses_unknown_names():
    assert set(MODELS) <= set(registry.names())
    with pytest.raises(registry.UnknownModelError, match="registered: .*flowdistill"):
        registry.get("no-such-model")
    with pytest.raises(ValueError, match="unknown config key"):
        registry.get("stwa").config(no_such_key=1)


def test_paper_defaults_of_the_student():
    cfg = registry.get("flowdistill").config()
    assert (cfg.embed_dim, cfg.num_layers, cfg.bottleneck, cfg.delta) == (64, 3, 64, 10.0)
    assert (cfg.lambda_tbl, cfg.lambda_kl, cfg.lambda_spa, cfg.lambda_tem) == (0.1, 1e-3, 0.6, 0.35)
    assert (cfg.lr, cfg.lr_decay, cfg.batch_size, cfg.k_neighbours, cfg.tem_window) == (0.0055, 0.6, 80, 8, 12)
    assert cfg.teacher == "flowdistill-teacher"


def test_wo_ib_variant_is_deterministic_without_kl(taxi_small):
    model, parts, _ = build("flowdistill-wo-ib", taxi_small, dropout=0.0)
    batch = parts["train"].batch(torch.arange(4))
    model.train()
    first = model(batch["x"], batch["tod"], batch["dow"])
    assert torch.equal(first, model(batch["x"], batch["tod"], batch["dow"]))
    assert model.training_loss(batch)[1]["kl"] == 0.0
    sampled, _, _ = build("flowdistill", taxi_small, dropout=0.0)
    sampled.train()
    assert not torch.equal(sampled(batch["x"], batch["tod"], batch["dow"]),
                           sampled(batch["x"], batch["tod"], batch["dow"]))
