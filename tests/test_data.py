import shutil

import numpy as np
import pytest
import yaml

from bench.protocol.data import DataError, data_root, load_dataset, load_registry, time_features


def test_nyctaxi_loads_with_calendar_and_adjacency(taxi):
    assert taxi.flow.shape == (2880, 200, 2) and taxi.flow.dtype == np.float32
    assert taxi.adjacency.shape == (200, 200) and (taxi.adjacency == taxi.adjacency.T).all()
    assert int((taxi.adjacency > 0).sum()) == 1424                    # 8-neighbour grid, per the data README
    assert taxi.steps_per_day == 48 and taxi.tod[:3].tolist() == [0, 1, 2] and taxi.tod[48] == 0
    assert taxi.dow[0] == 3 and taxi.dow[48] == 4                      # 2015-01-01 was a Thursday
    assert taxi.meta["channel_names"] == ["inflow", "outflow"]


def test_time_features_from_start_and_interval():
    tod, dow = time_features("2024-01-07T23:00", 60, 3)               # a Sunday, last hour
    assert tod.tolist() == [23, 0, 1] and dow.tolist() == [6, 0, 0]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'Nope'.*NYCTaxi"):
        load_dataset("Nope")


def _mirror(tmp_path):
    """A copy of the NYC grid files in a temporary data root."""
    src = data_root() / "nyc_grid"
    shutil.copytree(src, tmp_path / "nyc_grid")
    for f in (tmp_path / "nyc_grid").iterdir():
        f.chmod(0o644)
    return tmp_path


def test_missing_file_names_file_and_source(tmp_path):
    root = _mirror(tmp_path)
    (root / "nyc_grid" / "NYCTaxi.npz").unlink()
    with pytest.raises(DataError, match=r"NYCTaxi.npz is missing.*PM-DMNet"):
        load_dataset("NYCTaxi", data_dir=root)


def test_corrupt_file_fails_checksum(tmp_path):
    root = _mirror(tmp_path)
    path = root / "nyc_grid" / "NYCTaxi.npz"
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="sha256"):
        load_dataset("NYCTaxi", data_dir=root)


def _user_dataset(tmp_path, data, adj_rows=None, name="MyCity"):
    np.savez(tmp_path / "my.npz", data=data)
    entry = {"data": "my.npz", "interval_min": 60, "start": "2024-01-01T00:00", "city": "Test"}
    if adj_rows is not None:
        (tmp_path / "distance.csv").write_text("from,to,cost\n" + "".join(f"{a},{b},1.0\n" for a, b in adj_rows))
        entry["adjacency"] = "distance.csv"
    reg = tmp_path / "reg.yaml"
    reg.write_text(yaml.safe_dump({name: entry}))
    return reg


def test_user_dataset_in_basicts_format_with_distance_csv(tmp_path):
    reg = _user_dataset(tmp_path, np.ones((100, 4, 1)), [(0, 1), (2, 3)])
    ds = load_dataset("MyCity", data_dir=tmp_path, registry=reg)
    assert ds.flow.shape == (100, 4, 1) and ds.steps_per_day == 24
    assert ds.adjacency[0, 1] == ds.adjacency[1, 0] == 1 and ds.adjacency[0, 2] == 0
    assert "MyCity" in load_registry(reg) and "NYCTaxi" in load_registry(reg)


@pytest.mark.parametrize("data, match", [
    (np.full((50, 3, 1), np.nan), "NaN/inf"),
    (-np.ones((50, 3, 1)), "negative"),
    (np.ones((50,)), "expected \\[T, N, C\\]"),
])
def test_bad_series_is_refused(tmp_path, data, match):
    reg = _user_dataset(tmp_path, data, name=f"Bad{abs(hash(match))}")
    with pytest.raises(DataError, match=match):
        load_dataset(f"Bad{abs(hash(match))}", data_dir=tmp_path, registry=reg)


def test_adjacency_of_wrong_size_is_refused(tmp_path):
    reg = _user_dataset(tmp_path, np.ones((50, 3, 1)), [(0, 5)], name="BadAdj")
    with pytest.raises(DataError, match="names node 5 but the series has 3 nodes"):
        load_dataset("BadAdj", data_dir=tmp_path, registry=reg)


def test_truncated_archive_is_refused(tmp_path):
    reg = _user_dataset(tmp_path, np.ones((500, 30, 2)), name="Trunc")
    raw = (tmp_path / "my.npz").read_bytes()
    (tmp_path / "my.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_dataset("Trunc", data_dir=tmp_path, registry=reg)
