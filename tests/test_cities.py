"""The other cities of the data mirror: Los Angeles loop speeds (T-GCN Los-loop) and Melbourne
pedestrian counts load under the protocol, and a light model and the floors run on them."""
import numpy as np
import pytest

from bench.protocol.data import data_root, knn_adjacency, load_dataset
from bench.execution.spec import TrialSpec
from bench.execution.trial import run_trial


@pytest.mark.parametrize("name, shape, interval", [("LosLoop", (2016, 207, 1), 5),
                                                    ("MelbournePedestrian", (16056, 55, 1), 60)])
def test_city_loads_with_its_calendar_and_graph(name, shape, interval):
    data = load_dataset(name)
    assert data.flow.shape == shape and data.meta["interval_min"] == interval
    assert (data.flow >= 0).all() and np.isfinite(data.flow).all()
    assert data.adjacency.shape == (shape[1], shape[1]) and (data.adjacency == data.adjacency.T).all()
    assert (data.adjacency.sum(1) > 0).all()


def test_melbourne_missing_marks_become_masked_zeros():
    raw = np.load(data_root() / "pedestrian_melbourne/pedestrian_melbourne.npz")["data"]
    data = load_dataset("MelbournePedestrian")
    missing = raw == -1
    assert missing.sum() == 12_393 and (data.flow[..., 0][missing] == 0).all()
    np.testing.assert_array_equal(data.flow[..., 0][~missing], raw[~missing])


def test_knn_adjacency_links_the_nearest_nodes():
    lat, lon = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.1, 0.3, 0.0])
    adj = knn_adjacency(lat, lon, 1)
    assert adj.tolist() == [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]


@pytest.mark.parametrize("dataset", ["LosLoop", "MelbournePedestrian"])
def test_a_light_model_and_the_floors_run_on_the_city(dataset):
    maes = {}
    for model in ("flowdistill-wo-tb", "seasonal-naive-day", "seasonal-naive-week", "historical-average"):
        rows = run_trial(TrialSpec(suite="t", dataset=dataset, model=model, ratio=0.3, num_nodes=8, max_epochs=2))
        assert rows[0]["status"] == "ok", rows[0]["error"]
        maes[model] = rows[0]["mae"]
    assert all(np.isfinite(v) and v > 0 for v in maes.values())
    if dataset == "LosLoop":            # one week of data: a week earlier is never there, persistence instead
        assert maes["seasonal-naive-week"] != maes["seasonal-naive-day"]
