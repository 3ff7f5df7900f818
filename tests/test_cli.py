import os
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main


def test_list_commands(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "flowdistill " in out and "flowdistill-wo-tb" in out and "stwa" in out and "easyst" in out
    assert main(["list", "datasets"]) == 0
    assert "NYCTaxi" in capsys.readouterr().out
    assert main(["list", "suites"]) == 0
    assert "data-efficiency" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "data-efficiency", "--models", "nope"], "unknown model 'nope'"),
    (["run", "--suite", "nope"], "unknown suite 'nope'"),
    (["run", "--suite", "data-efficiency", "--dataset", "Atlantis"], "unknown dataset 'Atlantis'"),
    (["run", "--suite", "data-efficiency", "--data-dir", "/nonexistent"], "NYCTaxi.npz is missing"),
])
def test_bad_input_gives_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_ratio_names_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--suite", "data-efficiency", "--ratios", "0.1,0.9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--ratios" in err and "(0, 0.8]" in err


def test_cli_end_to_end_through_ray_tune(tmp_path):
    """`bench run` as a user types it, through Ray Tune, on a slice of real NYCTaxi."""
    cmd = [sys.executable, "-m", "bench.cli", "run", "--suite", "data-efficiency", "--models",
           "flowdistill,flowdistill-wo-tb", "--ratios", "0.4", "--epochs", "1", "--nodes", "8",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "flowdistill (teacher: stwa)" in proc.stdout and "0.4 MAE" in proc.stdout
    df = pd.read_csv(tmp_path / "data-efficiency" / "trials.csv")
    assert len(df) == 2 * 13 and (df["status"] == "ok").all()
    assert set(df["horizon"].astype(str)) == {"all"} | {str(h) for h in range(1, 13)}
