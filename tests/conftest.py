import numpy as np
import pytest

from bench.protocol.data import Dataset, load_dataset


@pytest.fixture(scope="session", autouse=True)
def step_costs(tmp_path_factory):
    """The plan's per-step costs measured once for the whole test session, in a folder of its own
    (never the user's cache)."""
    from bench.execution import plan
    plan.COST_CACHE = tmp_path_factory.mktemp("costs") / "step-costs.json"
    return plan.COST_CACHE


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of small tensors (they run fastest so); the setting is restored
    for the other modules. Use it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def taxi():
    """The real NYCTaxi series (from ../shared/data or BENCH_DATA_DIR)."""
    return load_dataset("NYCTaxi")


@pytest.fixture(scope="session")
def taxi_small(taxi):
    """The first 16 regions of NYCTaxi: a small slice of real data."""
    return taxi.slice_nodes(16)


def synthetic(T=480, N=6, C=2, seed=0, interval_min=30) -> Dataset:
    """A synthetic daily-periodic series, for unit tests only."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None]
    flow = (10 + 5 * np.sin(2 * np.pi * t / (1440 // interval_min)) + rng.random((T, N, C))).astype(np.float32)
    per_day = 1440 // interval_min
    adj = np.zeros((N, N), np.float32)
    for i in range(N - 1):
        adj[i, i + 1] = adj[i + 1, i] = 1
    return Dataset("synthetic", flow, (np.arange(T) % per_day), (np.arange(T) // per_day) % 7, adj,
                   {"interval_min": interval_min, "channel_names": ["inflow", "outflow"][:C]})
