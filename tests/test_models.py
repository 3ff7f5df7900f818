import numpy as np
import pytest
import torch

from bench.protocol import registry
from bench.protocol.split import H_IN, H_OUT, prepare
from bench.protocol.registry import ModelInfo
from bench.execution.train import forward, training_loss

# every registered model is tested here, from the registry: a new model needs no edit of this file.
# Left out, with the test that covers them: the LLM teachers load a language model
# (tests/test_teacher_llm.py fits them on SmolLM2 and on a tiny LM the test builds).
ELSEWHERE = {n: "tests/test_teacher_llm.py" for n in registry.names() if n.startswith("flowdistill-teacher")}
MODELS = [n for n in registry.names() if n not in ELSEWHERE]
# the students that read their teacher's latents, which only a fitted sdkd-teacher's cache holds
NEEDS_TEACHER_LATENTS = {n: "tests/test_sdkd.py::test_the_teachers_latents_reach_a_latent_mode_student"
                         for n in registry.names() if n.endswith("-sdkd-latent")}
TRAINED = [n for n in MODELS if registry.trains(n) and n not in NEEDS_TEACHER_LATENTS]


def build(name, data, ratio=0.5, **changes):
    split, scaler, parts = prepare(data, ratio)
    info = ModelInfo.of(data, scaler, H_IN, H_OUT)
    torch.manual_seed(0)
    model = registry.get(name).cls(registry.get(name).config(**changes), info)
    for windows in parts.values():
        windows.lookback = registry.lookback(model, H_IN)
    return model, parts, scaler


def _batch(model, parts, n):
    batch = parts["train"].batch(torch.arange(n))
    batch["y_teacher"] = batch["y"] + 1.0                       # a close teacher, for distilled models
    return batch


@pytest.fixture(scope="module")
def taxi_row(taxi):
    """The first 20 regions of NYCTaxi: one row of its 10 x 20 grid, so grid models run too."""
    return taxi.slice_nodes(20)


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape(name, taxi_row):
    model, parts, _ = build(name, taxi_row)
    out = forward(model.eval(), _batch(model, parts, 5))
    assert out.shape == (5, H_OUT, 20, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", TRAINED)
def test_training_steps_lower_the_loss_on_real_data(name, taxi_row):
    """Adam steps at the model's own learning rate on one fixed batch of real NYCTaxi windows
    lower its training loss (measured with the same random draws before and after: dropout, latent
    samples) and change its parameters."""
    model, parts, scaler = build(name, taxi_row)
    batch = _batch(model, parts, 16)
    opt = torch.optim.Adam(model.parameters(), lr=model.cfg.lr)
    def loss_fn(b):
        return training_loss(model, b)
    model.train()

    def measured():
        torch.manual_seed(0)
        with torch.no_grad():
            return loss_fn(batch)[0].item()

    before = measured()
    before_params = [p.detach().clone() for p in model.parameters()]
    for _ in range(20):
        loss, logs = loss_fn(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = measured()
    assert after < before, (before, after)
    assert any(not torch.equal(a, b) for a, b in zip(before_params, model.parameters()))


def test_flowdistill_loss_is_the_sum_of_its_terms(taxi_small):
    model, parts, _ = build("flowdistill", taxi_small, dropout=0.0)
    batch = parts["train"].batch(torch.arange(8))
    batch["y_teacher"] = batch["y"] * 1.1
    torch.manual_seed(1)
    loss, logs = training_loss(model, batch)
    cfg = model.cfg
    expected = (logs["mae"] + cfg.lambda_kl * logs["kl"] + cfg.lambda_spa * logs["spa"]
                + cfg.lambda_tem * logs["tem"] + cfg.lambda_tbl * logs["tbl"])
    assert logs["tbl_active"] == 1.0
    assert np.isclose(loss.item(), expected, rtol=1e-5)
    # w/o-TB: no teacher term even when a teacher is in the batch
    model_wo, _, _ = build("flowdistill-wo-tb", taxi_small)
    assert model_wo.cfg.teacher is None


def test_registry_lists_models_and_refuses_unknown_names():
    assert {"flowdistill", "flowdistill-wo-tb", "easyst", "stwa", "seasonal-naive-week"} <= set(MODELS)
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
    assert training_loss(model, batch)[1]["kl"] == 0.0
    sampled, _, _ = build("flowdistill", taxi_small, dropout=0.0)
    sampled.train()
    assert not torch.equal(sampled(batch["x"], batch["tod"], batch["dow"]),
                           sampled(batch["x"], batch["tod"], batch["dow"]))


def test_the_runner_maps_each_training_prediction_back_with_its_batchs_own_scaler(taxi_row):
    """`train.training_loss` is the one place where a training prediction goes back to original
    units, with the z-score of the batch's own windows (a teacher's mixed batches come from
    datasets with different scalers): a model that predicts z = 0 gets each scaler's mean, and
    without a `training_loss` of its own it is trained on the masked MAE of that."""
    seen = []

    class Zero(torch.nn.Module):
        def forward(self, x, tod, dow):
            return torch.zeros(x.shape[0], H_OUT, x.shape[2], x.shape[3])

        def training_loss(self, pred, batch):
            seen.append(pred)
            return pred.sum(), {}

    (_, low, low_parts), (_, high, high_parts) = prepare(taxi_row, 0.1), prepare(taxi_row, 0.5)
    assert not np.allclose(low.mean, high.mean)
    for parts in (low_parts, high_parts):
        training_loss(Zero(), parts["train"].batch(torch.arange(3)))
    for pred, scaler in zip(seen, (low, high)):
        assert pred.shape == (3, H_OUT, 20, 2)
        assert torch.allclose(pred, torch.as_tensor(scaler.mean).expand(3, H_OUT, 20, 2))
    del Zero.training_loss
    batch = high_parts["train"].batch(torch.arange(3))
    loss, logs = training_loss(Zero(), batch)
    y, mean = batch["y"], torch.as_tensor(high.mean)
    expected = (y - mean).abs()[y != 0].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and logs == {"mae": loss.item()}
