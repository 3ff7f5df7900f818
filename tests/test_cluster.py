"""A Ray cluster shown, not assumed: a head and a worker started with `ray start` as two
local nodes on loopback, each with one CPU; `bench run --address` spreads a small suite over both
(the node of every row in trials.csv), the rows come back to the driver's results folder, a student
on one node reads the teacher cache another node wrote, killing the worker mid-suite loses no
finished trial, and the rerun completes. An unreachable address fails within seconds."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bench.protocol.data import data_root
from bench.execution.results import read_trials
from bench.execution.runner import ClusterError, check_address

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
SEEDS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    """`ray start ... --block` in its own process group; returns once it says it started."""
    proc = subprocess.Popen([RAY, "start", *args, "--num-cpus=1", "--block", "--disable-usage-stats"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ray start {' '.join(args)} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM: the node's shutdown hook stops its raylet and workers; SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.fixture
def cluster(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))     # short paths: Ray's unix sockets
    port = _free_port()
    # token authentication as Ray's default for `ray start --head`, with this cluster's own token
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                        "BENCH_DATA_DIR": str(data_root())}
    head = _start_node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                        f"--temp-dir={root / 'h'}"], tmp_path / "head.log", env)
    worker = None
    try:
        worker = _start_node([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                              f"--temp-dir={root / 'w'}"], tmp_path / "worker.log", env)
        raylet_log = next((root / "w").glob("session_*/logs/raylet.out")).read_text()
        worker_id = re.search(r"Setting node ID node_id=([0-9a-f]+)", raylet_log).group(1)
        yield f"127.0.0.1:{port}", worker, worker_id[:8], env
    finally:
        for proc in (worker, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _trials_on(node: subprocess.Popen) -> frozenset[int]:
    """The pids of this node's Ray workers that run a Tune trial (titled ray::ImplicitFunc.train: the
    actor of a function trainable inside its train call; an idle actor kept for reuse is not one)."""
    try:
        procs = psutil.Process(node.pid).children(recursive=True)
        return frozenset(p.pid for p in procs if " ".join(p.cmdline()).startswith("ray::ImplicitFunc.train"))
    except psutil.Error:
        return frozenset()


def _kill_node(node: subprocess.Popen) -> None:
    """A machine lost at once: SIGKILL to the node's `ray start`, its raylet and every Ray worker
    process under it (a worker left alone would finish its trial and report it)."""
    procs = [psutil.Process(node.pid)] + psutil.Process(node.pid).children(recursive=True)
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _bench(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_suite_spreads_over_two_nodes_and_survives_losing_the_worker(cluster, tmp_path):
    address, worker, worker_id, env = cluster
    out = tmp_path / "results"
    # teacher fits spread over the nodes: two ratios, one CPU per node, one CPU per fit
    fit = _bench(["teacher", "fit", "--teacher", "flowdistill-wo-tb", "--ratios", "0.1,0.2", "--epochs", "1",
                  "--nodes", "8", "--address", address, "--out", str(out)], env)
    output = fit.communicate(timeout=300)[0]
    assert fit.returncode == 0, output[-3000:]
    metas = []
    for cache in (out / "teachers").rglob("flowdistill-wo-tb-*.npz"):
        with np.load(cache) as z:
            metas.append(json.loads(str(z["meta"])))
    assert sorted(m["ratio"] for m in metas) == [0.1, 0.2] and len({m["node"] for m in metas}) == 2
    assert all(m["node"] in output for m in metas)             # `bench teacher list` shows where each was fitted

    # 10 epochs: a trial lasts a few seconds, long enough to be caught mid-trial on a fast machine (at 2 epochs
    # the 6 trials took 2 s each and the suite could end before the kill condition held)
    args = ["run", "--suite", "data-efficiency", "--models", "flowdistill", "--teacher", "seasonal-naive-week",
            "--ratios", "0.1", "--seeds", str(SEEDS), "--epochs", "10", "--nodes", "8", "--address", address,
            "--out", str(out), "--no-report"]
    path = out / "data-efficiency" / "trials.csv"
    run = _bench(args, env)
    killed_after, state, since = None, None, 0.0
    deadline = time.monotonic() + 400
    while run.poll() is None and time.monotonic() < deadline and killed_after is None:
        df = read_trials(path)
        ok = df[(df["status"] == "ok") & (df["horizon"] == "all") & (df["bucket"] == "all")]
        busy = _trials_on(worker)
        if (busy, len(ok)) != state:
            state, since = (busy, len(ok)), time.monotonic()
        # mid-trial: after a trial ran on each node, the worker has held a trial for a second
        # while no row came in (a trial that already reported is not "mid-trial")
        elif busy and ok["node"].nunique() >= 2 and len(ok) < SEEDS and time.monotonic() - since > 1.0:
            _kill_node(worker)
            killed_after = ok.set_index("trial_id")["mae"]
        time.sleep(0.2)
    output = run.communicate(timeout=60)[0]
    assert killed_after is not None, f"the suite ended before the worker ran a second trial:\n{output[-3000:]}"

    df = read_trials(path)
    overall = df[(df["horizon"] == "all") & (df["bucket"] == "all")].set_index("trial_id")
    assert len(overall) == SEEDS, output[-3000:]                # every trial has a row in the driver's folder
    assert (overall.loc[killed_after.index, "status"] == "ok").all()   # nothing finished was lost
    np.testing.assert_allclose(overall.loc[killed_after.index, "mae"], killed_after)
    # the trial the worker held died with it: recorded with Ray's reason, the suite went on
    lost = overall[overall["status"] == "error"]
    assert len(lost) >= 1 and lost["error"].str.contains("Ray trial failed: .*actor", case=False).all(), \
        output[-6000:]
    on_worker = overall.index[overall["node"].str.endswith("/" + worker_id)]
    assert set(on_worker) <= set(killed_after.index), output[-6000:]     # nothing finished there after the kill
    nodes = set(overall.loc[overall["status"] == "ok", "node"])
    assert len(nodes) == 2 and all(n.count("/") == 1 for n in nodes), nodes
    # the teacher's predictions were cached by one node and read by students on both
    (cache,) = (out / "teachers").rglob("seasonal-naive-week-*.npz")
    with np.load(cache) as z:
        teacher_node = json.loads(str(z["meta"]))["node"]
    assert teacher_node in nodes and nodes - {teacher_node}

    rerun = _bench(args, env)
    output = rerun.communicate(timeout=400)[0]
    assert rerun.returncode == 0, output[-3000:]
    assert f"resuming: {SEEDS - len(lost)} of {SEEDS} trials already finished in {path}" in output
    df = read_trials(path)
    overall = df[(df["horizon"] == "all") & (df["bucket"] == "all")].set_index("trial_id")
    assert len(overall) == SEEDS and (overall["status"] == "ok").all(), overall[["status", "error"]]
    np.testing.assert_allclose(overall.loc[killed_after.index, "mae"], killed_after)


def test_unreachable_address_fails_within_seconds(tmp_path, capsys):
    from bench.cli import main
    port = _free_port()                                         # nothing listens there
    start = time.monotonic()
    code = main(["run", "--suite", "data-efficiency", "--models", "flowdistill-wo-tb", "--ratios", "0.1",
                 "--address", f"127.0.0.1:{port}", "--out", str(tmp_path), "--no-report"])
    assert code == 2 and time.monotonic() - start < 10
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    with pytest.raises(ClusterError, match="not HOST:PORT"):
        check_address("headnode")
    check_address(None)                                         # a local Ray: nothing to check
