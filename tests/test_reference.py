"""Reference forecasters (floors): seasonal naive and historical average against hand-computed values."""
import numpy as np
import pytest
import torch

from bench.protocol import registry
from bench.protocol.split import H_IN, H_OUT, prepare
from bench.protocol.registry import ModelInfo
from bench.execution.train import fit, predict, set_seed
from bench.execution.context import build_context
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial
from tests.conftest import synthetic


def _model(name, data, ratio=0.5):
    split, scaler, parts = prepare(data, ratio)
    entry = registry.get(name)
    model = entry.cls(entry.config(), ModelInfo.of(data, scaler, H_IN, H_OUT))
    for w in parts.values():
        w.lookback = registry.lookback(model, H_IN)
    return split, scaler, parts, model


def test_seasonal_naive_repeats_the_step_one_period_earlier():
    data = synthetic(T=800, N=3, seed=1)                      # 30-min steps: a week is 336 steps
    for name, period in (("seasonal-naive-week", 336), ("seasonal-naive-day", 48)):
        _, scaler, parts, model = _model(name, data)
        assert model.lookback == period
        test = parts["test"]
        batch = test.batch([0, 5])
        pred = scaler.inverse(model.forward_batch(batch))
        for row, s in enumerate(test.starts[[0, 5]]):
            targets = s + H_IN + np.arange(H_OUT)
            np.testing.assert_allclose(pred[row].numpy(), data.flow[targets - period], rtol=1e-6)


def test_seasonal_naive_falls_back_to_the_last_input_before_step_0():
    data = synthetic(T=800, N=3, seed=2)
    _, scaler, parts, model = _model("seasonal-naive-week", data, ratio=0.8)   # training from step 0
    train = parts["train"]
    assert train.starts[0] == 0
    batch = train.batch([0])
    assert torch.isnan(batch["history"][0, :336 - H_IN]).all() and not torch.isnan(batch["history"][0, -H_IN:]).any()
    pred = scaler.inverse(model.forward_batch(batch))
    # window 0: every target minus a week lies before step 0 -> the last input step, repeated
    np.testing.assert_allclose(pred[0].numpy(), np.repeat(data.flow[H_IN - 1][None], H_OUT, 0), rtol=1e-6)


def test_historical_average_is_the_mean_per_slot_of_the_training_targets():
    data = synthetic(T=1400, N=2, seed=3)
    split, scaler, parts, model = _model("historical-average", data, ratio=0.5)
    result = fit(model, model.cfg, parts["train"], parts["val"], set_seed(0))
    assert (result.epochs, result.steps, result.converged) == (0, 0, True)
    # by hand: every target step of every training window, once per window that holds it
    sums, counts = {}, {}
    for s in parts["train"].starts:
        for t in range(s + H_IN, s + H_IN + H_OUT):
            slot = (int(data.dow[t]), int(data.tod[t]))
            sums[slot] = sums.get(slot, 0) + data.flow[t].astype(np.float64)
            counts[slot] = counts.get(slot, 0) + 1
    test = parts["test"]
    pred = predict(model, test)
    s = test.starts[7]
    for h in (0, 6, 11):
        t = s + H_IN + h
        slot = (int(data.dow[t]), int(data.tod[t]))
        np.testing.assert_allclose(pred[7, h].numpy(), sums[slot] / counts[slot], rtol=1e-5)


def test_historical_average_fills_an_unseen_weekday_from_its_time_of_day():
    data = synthetic(T=900, N=2, seed=4)
    split, scaler, parts, model = _model("historical-average", data, ratio=0.1)   # 90 training steps: < 2 days
    fit(model, model.cfg, parts["train"], parts["val"], set_seed(0))
    per_day = data.steps_per_day
    seen = model.counts.view(7, per_day).sum(1) > 0
    assert not seen.all()
    unseen_day = int(torch.nonzero(~seen)[0])
    averages = model.averages().view(7, per_day, 2, 2)
    by_tod = model.sums.view(7, per_day, 2, 2).sum(0) / model.counts.view(7, per_day).sum(0)[:, None, None]
    covered = model.counts.view(7, per_day).sum(0) > 0
    torch.testing.assert_close(averages[unseen_day][covered], by_tod[covered])


def test_seasonal_naive_week_on_nyctaxi_scores_the_known_floor():
    rows = run_trial(TrialSpec(suite="t", dataset="NYCTaxi", model="seasonal-naive-week", ratio=0.1))
    assert rows[0]["status"] == "ok", rows[0]["error"]
    assert rows[0]["mae"] == pytest.approx(11.99, abs=0.01) and rows[0]["rmse"] == pytest.approx(27.25, abs=0.01)
    assert rows[0]["params"] == 0 and rows[0]["steps"] == 0 and len(rows[0]["window_mae"]) > 200


def test_a_reference_forecaster_has_no_training_settings():
    with pytest.raises(ValueError, match="reference forecaster: it is not trained, so it has no lr"):
        registry.get("seasonal-naive-week").config(lr=0.1)
    assert not registry.trains("historical-average") and registry.trains("flowdistill")
    spec = TrialSpec(suite="t", dataset="NYCTaxi", model="seasonal-naive-day", ratio=0.1, max_epochs=3, num_nodes=4)
    assert spec.model_config().max_epochs == registry.get("seasonal-naive-day").config().max_epochs
    model = build_context(spec).model
    assert registry.lookback(model, H_IN) == 48
