"""Every suite's quick preset on a tiny slice of real NYCTaxi, the report built from those results,
sweep resume, trials shared across suites, and the table logic against hand-made results."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.execution import runner, search
from bench.cli import main
from bench.execution.results import read_trials, trials_path
from bench.execution.scalability import read_points
from bench.suites import SWEEP_GRID, ablation_frame, ratio_frame, suites, sweep_frame

# the fast flowdistill-wo-tb teaches here (any registered model can): the teacher contract, not its cost
TINY = ["--no-report", "--quick", "--nodes", "6", "--epochs", "1", "--executor", "inline", "--teacher", "flowdistill-wo-tb"]
ROWS = 1 + 12 + 4          # overall, horizons 1..12, volume buckets q1..q4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One results folder with every suite's quick preset run on 6 regions (1 epoch per trial)."""
    out = tmp_path_factory.mktemp("results")
    o = ["--out", str(out)]
    assert main(["run", "--suite", "data-scalability", "--models", "flowdistill,flowdistill-wo-tb,bigst"] + TINY + o) == 0
    assert main(["run", "--suite", "robustness", "--models", "flowdistill,bigst"] + TINY + o) == 0
    assert main(["run", "--suite", "ablation"] + TINY + o) == 0
    assert main(["run", "--suite", "sweep"] + TINY + o) == 0
    assert main(["run", "--no-report", "--suite", "scalability", "--quick", "--nodes", "6", "--models", "flowdistill"] + o) == 0
    assert main(["run", "--suite", "sweep", "--search", "--space", "delta=1,30", "--space",
                 "lambda_kl=loguniform:5e-4:1e-2", "--samples", "3"] + TINY + o) == 0
    return out


def test_data_scalability_quick_gives_table3_rows(results):
    df = read_trials(trials_path(results, "data-scalability"))
    assert (df["status"] == "ok").all()
    assert sorted(df["ratio"].unique()) == [0.1, 0.5, 0.7]
    assert df.groupby(["model", "ratio"]).size().eq(ROWS).all() and df["trial_id"].nunique() == 3 * 3
    table = ratio_frame(df)
    assert list(table.columns) == ["model", "0.1 MAE", "0.1 RMSE", "0.5 MAE", "0.5 RMSE", "0.7 MAE", "0.7 RMSE",
                                   "matches flowdistill@0.1", "steps", "converged"]
    assert list(table["model"])[-1].startswith("flowdistill")            # the student and its variants last
    fd = table[table["model"].str.startswith("flowdistill (")]
    assert fd["matches flowdistill@0.1"].item() == "0.1"
    # with the history files, the match carries the paired test (flowdistill against itself: no difference)
    tested = ratio_frame(df, history_dir=results / "data-scalability" / "history")
    labels = tested["matches flowdistill@0.1"].tolist()
    assert tested[tested["model"].str.startswith("flowdistill (")]["matches flowdistill@0.1"].item() == "0.1"
    assert all(x == "not reached" or x == "0.1" or "(p" in x for x in labels)


def test_robustness_quick_gives_horizon_and_bucket_rows(results):
    df = read_trials(trials_path(results, "robustness"))
    assert set(df["ratio"]) == {0.5} and set(df["model"]) == {"flowdistill", "bigst"}
    for _, g in df.groupby("model"):
        assert sorted(g["horizon"].astype(str)) == sorted(["all"] * 5 + [str(h) for h in range(1, 13)])
        assert sorted(g.loc[g["bucket"] != "all", "bucket"]) == ["q1", "q2", "q3", "q4"]


def test_robustness_reuses_the_trials_data_scalability_ran(results):
    a = read_trials(trials_path(results, "data-scalability"))
    b = read_trials(trials_path(results, "robustness"))
    a = a[(a["ratio"] == 0.5) & a["model"].isin(["flowdistill", "bigst"])].sort_values(["model", "horizon", "bucket"])
    b = b.sort_values(["model", "horizon", "bucket"])
    assert np.array_equal(a["mae"].to_numpy(), b["mae"].to_numpy())
    assert set(a["trial_id"]).isdisjoint(set(b["trial_id"])) and set(a["work_id"]) == set(b["work_id"])


def test_ablation_quick_gives_table4_rows(results):
    table = ablation_frame(read_trials(trials_path(results, "ablation")))
    assert list(table["model"]) == ["flowdistill", "flowdistill-wo-tb", "flowdistill-wo-ib", "flowdistill-wo-sc",
                                    "flowdistill-wo-tc"]
    assert table["MAE vs flowdistill"].iloc[0] == "+0.0 %" and (table["ratio"] == "0.5").all()
    tested = ablation_frame(read_trials(trials_path(results, "ablation")), history_dir=results / "ablation" / "history")
    assert tested["MAE vs flowdistill"].iloc[0] == "+0.0 %" and all(" p=" in x or " p<" in x for x in tested["MAE vs flowdistill"][1:])


def test_sweep_quick_tries_each_parameters_extremes_and_default(results):
    df = read_trials(trials_path(results, "sweep"))
    assert df["trial_id"].nunique() == (1 + 2 * len(SWEEP_GRID)) * 2         # the quick sweep runs 2 seeds
    table = sweep_frame(df)
    for key, values in SWEEP_GRID.items():
        got = table.loc[table["parameter"] == key, "value"].tolist()
        assert len(got) == 3 and got[0] == f"{values[0]:g}" and got[-1] == f"{values[-1]:g}"
        assert got[1].endswith("(default)")
    tested = sweep_frame(df, results / "sweep" / "history").set_index("value")
    assert (tested.loc[[v for v in tested.index if "default" in v], "MAE vs default"] == "").all()
    assert all("%" in x and "] p" in x for x in tested.loc[[v for v in tested.index if "default" not in v],
                                                           "MAE vs default"])


def test_scalability_quick_measures_every_point(results):
    df = read_points(results / "scalability" / "trials.csv")
    assert (df["status"] == "ok").all() and len(df) == 4 + 5
    mem = df[df["measure"] == "memory"].sort_values("x")
    lat = df[df["measure"] == "latency"].sort_values("x")
    assert list(mem["x"]) == [8, 16, 32, 64] and (mem["value"] > 0).all() and (mem["unit"] == "MB").all()
    assert list(lat["windows"]) == [32 * k for k in range(1, 6)]
    assert lat["value"].iloc[-1] > lat["value"].iloc[0]            # five times the windows take longer


def test_search_runs_the_sampled_configurations(results):
    df = read_trials(trials_path(results, "search"))
    overall = df[(df["horizon"].astype(str) == "all") & (df["bucket"].astype(str) == "all")]
    configs = [json.loads(c) for c in overall["config"]]
    assert len(configs) == 3 and all(set(c) - {"teacher"} == {"delta", "lambda_kl"} for c in configs)
    assert all(c["delta"] in (1, 30) and 5e-4 <= c["lambda_kl"] <= 1e-2 for c in configs)


def test_report_holds_every_section(results, tmp_path):
    from pypdf import PdfReader

    out = tmp_path / "rep" / "flowbench.pdf"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    reader = PdfReader(out)
    text = "\n".join(page.extract_text() for page in reader.pages)
    for suite in suites():                    # every registered suite that ran has its section
        if suite.name in ("data-efficiency", "distill", "distill-delta", "sdkd", "sdkd-lr"):
            continue                          # these suites did not run in this results set
        assert suite.title.split(":")[0] in text, suite.title
    for needle in ("What this run shows", "preset: quick", "best trained model", "hardware:", "software:",
                   "protocol:", "dataset(s): NYCTaxi", "bench run --suite sweep",
                   "matches flowdistill@0.1", "FlowDistill: one hyperparameter at a time"):
        assert needle in text, needle
    assert "(no finished trials)" not in text
    for suite in ("data-scalability", "robustness", "sweep", "scalability", "ablation", "search"):
        assert (out.parent / f"{suite}.png").stat().st_size > 10_000
        assert list(out.parent.glob(f"{suite}*.csv")) and list(out.parent.glob(f"{suite}*.md"))
    assert len(reader.pages) >= 1 + 7 + 6
    sizes = {(round(float(p.mediabox.width)), round(float(p.mediabox.height))) for p in reader.pages}
    assert sizes == {(842, 595)}                          # one page size, A4 landscape, figures included


def test_report_without_results_says_where_it_looked(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 2
    assert "no finished trials under" in capsys.readouterr().err


def test_sweep_resumes_without_rerunning_finished_trials(tmp_path, monkeypatch):
    o = ["--out", str(tmp_path)]
    assert main(["run", "--suite", "sweep"] + TINY + o) == 0
    path = trials_path(tmp_path, "sweep")
    before = read_trials(path)
    ids = sorted(before["trial_id"].unique())
    lost = set(ids[:4])                                       # an interrupted run: four trials never wrote rows
    before[~before["trial_id"].isin(lost)].to_csv(path, index=False)
    ran, real = [], runner.run_trial
    monkeypatch.setattr(runner, "run_trial", lambda spec, progress=None: ran.append(spec.trial_id) or real(spec))
    assert main(["run", "--suite", "sweep"] + TINY + o) == 0
    assert set(ran) == lost
    after = read_trials(path).set_index(["trial_id", "horizon", "bucket"]).sort_index()
    kept = before[~before["trial_id"].isin(lost)].set_index(["trial_id", "horizon", "bucket"]).sort_index()
    assert np.array_equal(after.loc[kept.index, "train_s"].to_numpy(), kept["train_s"].to_numpy())
    assert after.index.get_level_values(0).nunique() == len(ids)


def test_ratio_frame_finds_the_smallest_matching_ratio():
    rows = [("flowdistill", 0.1, 10.0), ("flowdistill", 0.3, 9.0), ("bigst", 0.1, 12.0), ("bigst", 0.3, 10.5),
            ("bigst", 0.5, 9.9), ("astgcn", 0.1, 15.0), ("astgcn", 0.5, 11.0)]
    df = pd.DataFrame([{"model": m, "ratio": r, "mae": v, "rmse": 2 * v, "teacher": "", "horizon": "all",
                        "bucket": "all", "status": "ok"} for m, r, v in rows])
    table = ratio_frame(df).set_index("model")
    assert table.loc["bigst", "matches flowdistill@0.1"] == "0.5"
    assert table.loc["astgcn", "matches flowdistill@0.1"] == "not reached"
    assert table.loc["astgcn", "0.3 MAE"] == "" and table.loc["bigst", "0.3 RMSE"] == "21.00"
    two_seeds = pd.concat([df, df.assign(mae=df["mae"] + 2)])
    assert ratio_frame(two_seeds).set_index("model").loc["bigst", "0.1 MAE"] == f"13.00 ± {math.sqrt(2):.2f}"


def test_ablation_frame_gives_the_change_against_flowdistill():
    df = pd.DataFrame([{"model": m, "ratio": 0.3, "mae": v, "rmse": v, "teacher": "", "horizon": "all",
                        "bucket": "all", "status": "ok"} for m, v in (("flowdistill", 6.54), ("flowdistill-wo-tb", 6.89))])
    assert ablation_frame(df)["MAE vs flowdistill"].tolist() == ["+0.0 %", "+5.4 %"]     # paper Table 4: 5.4 %


def test_search_space_from_flags_and_file(tmp_path):
    assert search.parse_entry("delta=1,3,10") == ("delta", {"choice": [1, 3, 10]})
    assert search.parse_entry("lambda_kl=loguniform:5e-4:1e-2") == ("lambda_kl", {"loguniform": [5e-4, 1e-2]})
    for bad, message in (("delta", "is not KEY=SPEC"), ("delta=normal:0:1", "unknown distribution 'normal'"),
                         ("lambda_kl=loguniform:0:1", "0 < LO < HI"), ("delta=uniform:a:2", "is not a number")):
        with pytest.raises(search.SearchSpaceError, match=message):
            search.parse_entry(bad)
    file = tmp_path / "space.yaml"
    file.write_text("delta: [1, 3]\nlambda_tbl: {uniform: [0.05, 0.25]}\n")
    space = search.load_space(["delta=10,30"], file)
    assert space == {"delta": {"choice": [10, 30]}, "lambda_tbl": {"uniform": [0.05, 0.25]}}
    draws = search.sample(space, 5, seed=0)
    assert draws == search.sample(space, 5, seed=0) and len(draws) == 5
    assert all(c["delta"] in (10, 30) and 0.05 <= c["lambda_tbl"] <= 0.25 for c in draws)
    assert len(search.sample({"delta": {"choice": [1, 2]}}, 5)) == 2          # only two distinct configurations
    with pytest.raises(search.SearchSpaceError, match="needs a search space"):
        search.load_space([], None)


def test_search_errors_name_the_fix(capsys):
    assert main(["run", "--suite", "robustness", "--search", "--space", "delta=1,3"]) == 2
    assert "--search belongs to --suite sweep" in capsys.readouterr().err
    assert main(["run", "--suite", "sweep", "--search", "--space", "gamma=1,2"]) == 2
    assert "has no such config field" in capsys.readouterr().err
    assert main(["run", "--suite", "all", "--ratios", "0.1"]) == 2
    assert "runs each suite with its own models and ratios" in capsys.readouterr().err


def test_pruned_trials_count_as_finished(tmp_path):
    from bench.execution.results import append_rows, finished_ids
    from bench.execution.spec import TrialSpec
    spec = TrialSpec(suite="search", dataset="NYCTaxi", model="flowdistill", ratio=0.3, config={"delta": 3.0})
    rows = runner.pruned_rows(spec, 2, 41.5)
    assert rows[0]["status"] == "pruned" and rows[0]["mae"] == 41.5 and rows[0]["epochs"] == 2
    append_rows(trials_path(tmp_path, "search"), rows)
    assert finished_ids(trials_path(tmp_path, "search")) == {spec.trial_id}


def test_an_empty_phase_starts_no_ray_run(tmp_path):
    # every teacher of a suite cached and every trial a student: the first phase has no item (Ray
    # Tune's grid_search over an empty list raised IndexError in the first quick run)
    import ray
    runner._execute([], "ray", None, str(tmp_path), "sweep", {})
    assert not ray.is_initialized()


def test_a_long_table_continues_over_pages_with_its_header(tmp_path):
    from pypdf import PdfReader

    from bench.suites import report
    rows = [{"suite": "ablation", "dataset": "NYCTaxi", "model": f"m{i:02d}", "teacher": "", "ratio": 0.5, "seed": 0,
             "horizon": "all", "bucket": "all", "mae": 10 + i, "rmse": 20 + i, "status": "ok", "trial_id": f"t{i}",
             "config": ""} for i in range(60)]
    (tmp_path / "ablation").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "ablation" / "trials.csv", index=False)
    out = report.build(tmp_path, tmp_path / "rep" / "flowbench.pdf")
    pages = [p.extract_text() for p in PdfReader(out["pdf"]).pages]
    holding = [t for t in pages if any(f"\nm{i:02d}\n" in t for i in range(60))]
    assert len(holding) >= 2 and all("MAE vs flowdistill" in t for t in holding)     # the header on every page
    assert all(f"m{i:02d}" in "\n".join(pages) for i in range(60))


def test_a_wide_table_is_split_into_parts_and_no_cell_is_cut(tmp_path):
    from pypdf import PdfReader

    from bench.suites import pdf
    wide = pd.DataFrame([{"ratio": "0.1", "teacher": f"t{r}"} | {f"col{c:02d}": f"v{r}x{c:02d}" for c in range(20)}
                         for r in range(4)] + [{"ratio": "0.3", "teacher": "t4"}])      # a row with empty (NaN) cells
    parts = pdf.column_parts(wide)
    assert len(parts) == 3 and all(list(p.columns[:2]) == ["ratio", "teacher"] for p in parts)
    assert sorted({c for p in parts for c in p.columns}) == sorted(wide.columns)
    out = tmp_path / "wide.pdf"
    pdf.write(out, "summary", ["a line"], "cover", ["  an indented line"],
              [{"title": "wide", "tables": [("the table", wide, ["a note"])], "figures": []}])
    text = "".join(p.extract_text() for p in PdfReader(out).pages).replace("\n", "")
    assert all(f"v{r}x{c:02d}" in text for r in range(4) for c in range(20))


def test_tables_mark_rows_that_did_not_converge():
    base = {"suite": "s", "dataset": "NYCTaxi", "teacher": "", "horizon": "all", "bucket": "all", "status": "ok",
            "rmse": 1.0, "config": ""}
    df = pd.DataFrame([base | {"model": "a", "ratio": 0.1, "seed": 0, "mae": 3.0, "converged": "True"},
                       base | {"model": "a", "ratio": 0.1, "seed": 1, "mae": 5.0, "converged": "False"},
                       base | {"model": "b", "ratio": 0.1, "seed": 0, "mae": 2.0, "converged": "True"}])
    table = ratio_frame(df).set_index("model")
    assert table.loc["a", "0.1 MAE"] == "4.00 ± 1.41 †" and table.loc["b", "0.1 MAE"] == "2.00"


def test_ratio_table_rows_by_meaning_floors_first_and_marked_with_steps():
    base = {"suite": "s", "dataset": "NYCTaxi", "teacher": "", "horizon": "all", "bucket": "all", "status": "ok",
            "rmse": 1.0, "config": "", "ratio": 0.1, "seed": 0}
    df = pd.DataFrame([base | {"model": "flowdistill-wo-tb", "mae": 3.0, "steps": 200, "converged": "True"},
                       base | {"model": "seasonal-naive-week", "mae": 4.0, "steps": 0, "converged": "True"},
                       base | {"model": "bigst", "mae": 5.0, "steps": 90, "converged": "False"}])
    table = ratio_frame(df)
    assert list(table["model"]) == ["seasonal-naive-week (floor)", "bigst", "flowdistill-wo-tb"]
    assert list(table["steps"]) == ["", "90", "200"] and list(table["converged"]) == ["", "no (1 of 1)", "yes"]


def test_the_widest_committed_table_has_every_cell_in_the_pdf(tmp_path):
    from pathlib import Path

    from pypdf import PdfReader

    from bench.suites import pdf
    root = Path(__file__).resolve().parents[1] / "reports"
    tables = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in root.rglob("*.csv")]
    widest = max(tables, key=lambda t: (len(t.columns), t.astype(str).apply(lambda c: c.str.len()).to_numpy().sum()))
    assert len(widest.columns) >= 15
    out = tmp_path / "widest.pdf"
    pdf.write(out, "summary", [], "cover", [], [{"title": "widest", "tables": [("widest", widest, [])], "figures": []}])
    squeeze = lambda text: "".join(text.split())
    text = squeeze("".join(p.extract_text() for p in PdfReader(out).pages))
    cells = {squeeze(str(v)) for v in widest.to_numpy().ravel()} | {squeeze(str(c)) for c in widest.columns}
    missing = sorted(c for c in cells if c and c not in text)
    assert not missing, missing[:10]
