"""Suites are plug-ins: a suite defined in a module of its own, named in $BENCH_SUITES,
appears in `bench list suites`, runs with `bench run --suite NAME` and gets a report section."""
import os
import subprocess
import sys
import textwrap

import pandas as pd

TOY = textwrap.dedent('''
    """A toy suite: two floors at one ratio, a table and two figures of its own."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from bench.suites.base import Suite, register_suite
    from bench.suites.tables import ok_overall


    def toy_tables(df, folder):
        ok = ok_overall(df)
        return [("toy table: MAE by model", ok.groupby("model", as_index=False)["mae"].mean().round(3))]


    def toy_figures(df, title):
        figs = []
        for name in ("mae", "rmse"):
            fig, ax = plt.subplots()
            ok_overall(df).plot.bar(x="model", y=name, ax=ax)
            figs.append((name, fig))
        return figs


    register_suite(Suite("toy", "a toy suite from a plug-in module", ("historical-average", "seasonal-naive-week"),
                         ratios=(0.5,), quick_ratios=(0.5,), rank=95, tables=toy_tables,
                         figures=toy_figures))
''')


def _bench(tmp_path, *argv, modules="toy_suite"):
    env = dict(os.environ, PYTHONPATH=str(tmp_path), BENCH_SUITES=modules)
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_suite_in_its_own_module_is_listed_run_and_reported(tmp_path):
    (tmp_path / "toy_suite.py").write_text(TOY)
    listed = _bench(tmp_path, "list", "suites")
    assert listed.returncode == 0, listed.stderr
    assert "toy " in listed.stdout and "a toy suite from a plug-in module" in listed.stdout
    out = tmp_path / "results"
    run = _bench(tmp_path, "run", "--suite", "toy", "--nodes", "4", "--executor", "inline", "--out", str(out),
                 "--report", str(tmp_path / "reports" / "flowbench.pdf"))
    assert run.returncode == 0, run.stderr
    assert "toy table: MAE by model" in run.stdout and "historical-average" in run.stdout
    rows = pd.read_csv(out / "toy" / "trials.csv")
    assert set(rows["model"]) == {"historical-average", "seasonal-naive-week"} and (rows["status"] == "ok").all()
    table = pd.read_csv(tmp_path / "reports" / "toy.csv")          # the report's section: the suite's own table
    assert list(table.columns) == ["model", "mae"] and len(table) == 2
    assert (tmp_path / "reports" / "flowbench.pdf").stat().st_size > 0
    # each of its two figures beside the report, neither overwriting the other
    pngs = [(tmp_path / "reports" / f"toy-{k}.png").read_bytes() for k in (1, 2)]
    assert pngs[0] != pngs[1]


def test_a_plug_in_that_cannot_be_imported_is_named(tmp_path):
    bad = _bench(tmp_path, "list", "suites", modules="no_such_suite_module")
    assert bad.returncode == 2 and "cannot import suite module 'no_such_suite_module'" in bad.stderr


def test_a_new_module_in_the_suites_package_is_discovered(tmp_path):
    """A suite module dropped into bench/suites/ is found without editing any import list."""
    import shutil
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "bench" / "suites"
    copy = tmp_path / "pkg" / "bench"
    shutil.copytree(package.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "suites" / "toy.py").write_text(TOY)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "pkg"))
    listed = subprocess.run([sys.executable, "-c", "import bench, bench.suites as s; "
                             "print(bench.__file__); print(' '.join(x.name for x in s.suites()))"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert str(copy) in listed.stdout and "toy" in listed.stdout.split()
