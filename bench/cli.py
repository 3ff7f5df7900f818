"""`bench`: run FlowBench suites, report them, and list what is registered.

    bench run --suite data-efficiency --quick
    bench run --suite all --quick          # every suite, then the report
    bench report                           # results/report/flowbench.pdf from results/
    bench list models | datasets | suites
    bench export --results results --trial ID --int8   # the trial's model as ONNX fp32 and int8
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import yaml

from bench.protocol import registry, stats
from bench.protocol.errors import BenchError
from bench.protocol.data import DEFAULT_DATASET, data_root, load_dataset, load_registry
from bench.protocol.split import TEACHER_DATA, ProtocolError, check_ratio, split_for
from bench.execution.train import DEVICES, resolve_device
from bench.suites import runconfig
from bench.suites.report import ReportError
from bench.execution import runner
from bench.execution.plan import LONG_RUN_S, make_plan, plan_lines, summary as plan_summary
from bench.execution.results import atomic_write, read_trials
from bench.execution.spec import TrialSpec
from bench.execution.teacher import TEACHER_SEED
from bench.suites import (PRESETS, SUITES, SuiteError, build_specs, frame_text, get_suite, load_plugins, rows_of,
                          run_order, suites, tables_of)
from tabulate import tabulate


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list; give comma-separated {kind}")
        return items
    return parse


def _ratios(text: str):
    if any(not part.strip() for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; give comma-separated ratios, e.g. 0.1,0.5")
    try:
        return [check_ratio(r) for r in _csv("ratios")(text)]
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a GPU share >= 0 (e.g. 1, 0.5, or 0 for none)")
    return value


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = [-1]
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds >= 0 (e.g. 0,1,2)")
    return seeds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench", description="FlowBench: distilling spatio-temporal models into lightweight "
        "traffic-flow forecasters (FlowDistill, arXiv 2504.02094) under one protocol.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  bench run --suite data-efficiency --quick\n"
               "  bench run --suite data-efficiency --models flowdistill,stwa --ratios 0.1,0.4 --seeds 3\n"
               "  bench run --suite sweep --quick --seeds 3\n"
               "  bench run --suite sweep --search --space delta=1,3,10,30 --space lambda_kl=loguniform:5e-4:1e-2 "
               "--samples 20\n"
               "  bench run --suite all --quick          (every suite, then the report)\n"
               "  bench report --results results --out reports/my-run/flowbench.pdf\n"
               "  bench list models")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite of trials and print its table",
                         description="Run every (model, ratio, seed) trial of a suite, teachers first. "
                         "Rows go to OUT/SUITE/trials.csv as each trial ends; a rerun skips finished trials.")
    run.add_argument("--config", metavar="FILE.yaml", help="a run file holding these flags by name (see configs/; "
                     "flags given here override it); every run writes its resolved one to OUT/run.yaml")
    run.add_argument("--suite", help=f"one of: {', '.join(s.name for s in suites(listed_only=True))}, "
                     f"or all ({', '.join(run_order())} in that order, then `bench report`); more suites: modules "
                     "named in $BENCH_SUITES (see bench/suites/__init__.py)")
    run.add_argument("--dataset", help=f"registered dataset (default: the suite's, else {DEFAULT_DATASET}; "
                     "sdkd: NavierStokes and NYCTaxi)")
    run.add_argument("--models", type=_csv("model names"), help="comma-separated models (default: the suite's)")
    run.add_argument("--ratios", type=_ratios, help="comma-separated training ratios in (0, 0.8]")
    run.add_argument("--seeds", type=_positive_int, help="seeds 0..N-1 per trial (default: the suite's: " + ", ".join(
        f"{s.name} {s.seeds}" + (f" ({s.quick_seeds} under --quick)" if s.quick_seeds else "")
        for s in suites(listed_only=True) if s.seeds > 1 or s.quick_seeds) + ", else 1)")
    run.add_argument("--epochs", type=_positive_int, help="cap on training epochs of every model")
    run.add_argument("--teacher", help="teacher of every distilled model in the run (default: each model's own, "
                     "e.g. " + ", ".join(f"{registry.get(m).config().teacher} for {m}" for m in ("flowdistill", "easyst"))
                     + "; the quick preset gives those seasonal-naive-week)")
    run.add_argument("--set", dest="settings", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                     help="config override for every model that has KEY, e.g. --set tbl_target=teacher, or for "
                     "one model and its variants: --set flowdistill.delta=3 (a bare KEY whose meaning differs "
                     "between models, like delta in flowdistill and easyst, is refused; repeatable; VALUE is "
                     "read as YAML)")
    run.add_argument("--teacher-data", choices=TEACHER_DATA,
                     help="what teachers are fitted on: disjoint (default, FlowDistill section 2.2: every step "
                     "before the student's training part, plus the other datasets a teacher names), same (the "
                     "student's part; the sdkd suite's default), all (every step before validation), none (no step of "
                     "the dataset: a teacher from elsewhere, fitted on the datasets its extra_datasets names); "
                     "never validation or test")
    run.add_argument("--nodes", type=_positive_int, help="keep only the first N regions (smoke tests)")
    run.add_argument("--quick", action="store_true", help=f"quick preset: {PRESETS['quick'].description}")
    run.add_argument("--fixed-rounds", action="store_true", help="with --quick: every round is exactly 20 "
                     "optimiser steps (the shuffle carries on into the next epoch), so patience (5 rounds = 100 "
                     "steps) and learning-rate steps are the same at every ratio; without it an epoch shorter "
                     "than 20 steps is a shorter round (NYCTaxi at ratio 0.1: 4 steps, patience 20 steps). "
                     "Trains the light models longer at low ratios. Give it its own --out: the tables do not tell "
                     "the two kinds of rounds apart")
    run.add_argument("--out", default="results", help="results folder (default results/)")
    run.add_argument("--executor", choices=["ray", "inline"], default="ray",
                     help="ray: Ray Tune trials (default); inline: one by one in this process")
    run.add_argument("--address", help="Ray cluster to run on: HOST:PORT of its head, as `ray start --head` prints "
                     "(default: a local Ray instance); --out, the data root and the teacher cache must be paths "
                     "every node sees (docs/cluster.md)")
    run.add_argument("--device", choices=DEVICES, default="auto", help="where models, batches and teacher "
                     "predictions live: auto (CUDA when present, default), cpu or cuda")
    run.add_argument("--gpus-per-trial", type=_share, help="GPU share each Ray trial requests (default: 1 when the "
                     "Ray cluster, or this machine, has GPUs, 0 otherwise; e.g. 0.5 runs two trials per GPU)")
    run.add_argument("--search", action="store_true", help="with --suite sweep: a joint search over --space / "
                     "--space-file with Ray Tune's ASHA scheduler (results in OUT/search/) instead of the grid")
    run.add_argument("--space", action="append", default=[], metavar="KEY=SPEC",
                     help="search space entry (repeatable): KEY=v1,v2,... | KEY=uniform:LO:HI | "
                     "KEY=loguniform:LO:HI | KEY=randint:LO:HI")
    run.add_argument("--space-file", help="search space YAML: {KEY: [values] | {loguniform: [LO, HI]}, ...}")
    run.add_argument("--samples", type=_positive_int, default=16, help="configurations the search draws (default 16)")
    run.add_argument("--report", default=None,
                     help="where the PDF report of the results folder goes after the run (default "
                          "OUT/report/flowbench.pdf; tables, figures and numbers/ beside it)")
    run.add_argument("--no-report", action="store_true", help="skip the report (build it later with `bench report`)")
    run.add_argument("--log-level", choices=("warning", "info"), default="warning",
                     help="info: one line per training epoch of every trial on stderr (inline runs; every run writes "
                          "per-epoch curves for TensorBoard under OUT/SUITE/tensorboard/: `tensorboard --logdir OUT`)")
    run.add_argument("--yes", action="store_true", help="run even when the plan estimates more than 2 hours on a "
                     "machine without a GPU")
    _data_flags(run)
    plan = sub.add_parser("plan", help="what `bench run` with the same flags would run, and what it would take",
                          description="The trials of the run (done, running elsewhere, to run), the teachers to fit "
                          "first, and an estimate of wall time and peak memory on this machine: each trial's step "
                          "budget x seconds per step measured once on this machine (cached). `bench run` prints the "
                          "same plan before it starts.")
    for action in run._actions[1:]:                 # the same flags as `bench run`
        plan._add_action(action)

    rep = sub.add_parser("report", help="build the PDF report (and CSV/Markdown tables, PNG figures) from results",
                         description="One PDF: environment and commands, then each suite's table and figure. "
                         "Each table is also written as CSV and Markdown, each figure as PNG, beside the PDF.")
    rep.add_argument("--results", default="results", help="results folder (default results/)")
    rep.add_argument("--suite", type=_csv("suite names"), help="comma-separated suites (default: every suite "
                     "with results)")
    rep.add_argument("--out", default=None, help="PDF path (default RESULTS/report/flowbench.pdf); a rebuild into "
                     "the same folder first removes what the last report there wrote, nothing else")

    ev = sub.add_parser("evaluate", help="score a trained trial's kept weights again on a test set",
                        description="Load OUT/SUITE/checkpoints/TRIAL.pt (every trained trial keeps its best "
                        "weights) and score the model on the test windows of --dataset at --ratio (default: the "
                        "trial's own; the test windows are the same at every ratio, the z-score is that ratio's "
                        "training part). On its own data it gives the metrics of the trial's row.")
    ev.add_argument("--results", required=True, help="results folder the trial ran in (its --out)")
    ev.add_argument("--trial", required=True, help="trial_id (trials.csv's column)")
    ev.add_argument("--dataset", help="another registered dataset of the same shape")
    ev.add_argument("--ratio", type=float, help="another training ratio (its z-score)")
    _data_flags(ev)

    exp = sub.add_parser("export", help="export a trained trial's inference graph (ONNX or TorchScript, fp32 or "
                         "int8) and check it on the test windows",
                         description="Load OUT/SUITE/checkpoints/TRIAL.pt (a trial that kept no weights is trained "
                         "again from the spec in OUT/SUITE/history/TRIAL.json), export the model's inference graph "
                         "(no sampling, dropout or loss terms; free batch axis) to OUT/exports/, run it (onnxruntime "
                         "for ONNX) on every test window and print each form's file size, its largest deviation from "
                         "the PyTorch model (relative to the largest output; an fp32 export above 1e-4 is refused) "
                         "and its test MAE. --int8 also writes the model with int8 weights (onnxruntime's dynamic "
                         "quantisation, or torch.ao's for TorchScript), keeping in fp32 the fewest matrix products "
                         "that hold its validation MAE within --int8-budget of fp32's. docs/deploy.md")
    exp.add_argument("--results", required=True, help="results folder the trial ran in (its --out)")
    exp.add_argument("--trial", required=True, help="trial_id (trials.csv's column)")
    exp.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="onnx (default; needs onnx, "
                     "onnxscript and onnxruntime: pip install -e \".[export]\") or torchscript")
    exp.add_argument("--int8", action="store_true", help="also write and score the model with int8 weights")
    exp.add_argument("--int8-budget", type=float, default=0.005, metavar="SHARE",
                     help="the largest relative rise of validation MAE the int8 form may cost; the matrix products "
                     "that cost most stay fp32 until it fits (default 0.005; a large value: every one int8)")
    _data_flags(exp)

    cmp_ = sub.add_parser("compare", help="the paired test of any two rows of a results or report folder",
                          description="Without ROW_A ROW_B: list the rows (suite, ratio, model, config, seeds, MAE) "
                          "of a results folder, or of a report folder through its numbers/. With them: the "
                          "difference of their per-window test errors (A - B), its 95 %% interval and p-value from "
                          "the paired test over seeds and day blocks of test windows (bench.protocol.stats). The "
                          "p-value is that of this one comparison; the report's tables adjust theirs by Holm.")
    cmp_.add_argument("--results", required=True, help="results folder, or a report folder holding numbers/")
    cmp_.add_argument("--suite", help="only the rows of this suite")
    cmp_.add_argument("--metric", choices=tuple(stats.METRIC_KEYS), default="mae",
                      help="per-window error compared (default mae; rel_l2: FNO's relative L2, grids only)")
    cmp_.add_argument("rows", nargs="*", type=int, metavar="ROW", help="two row numbers from the listing")

    tea = sub.add_parser("teacher", help="fit teachers ahead of student runs, or list cached teachers",
                         description="A teacher of (dataset, ratio) is fitted on the part --teacher-data names "
                         "(default disjoint: every step before the student's training part; same: the student's "
                         "part; all: every step before validation) and its predictions for every window are "
                         "cached in OUT/teachers/; students of the same dataset, ratio, teacher data and preset "
                         "read that cache.")
    tsub = tea.add_subparsers(dest="action", required=True)
    tfit = tsub.add_parser("fit", help="fit a teacher for the given ratios, save its weights and cache its "
                           "predictions of every window")
    tpred = tsub.add_parser("predict", help="cache the predictions of every window from the weights a "
                            "`bench teacher fit --skip-predict` saved (same flags)")
    timp = tsub.add_parser("import", help="cache an external teacher's predictions from an npz file: `pred` "
                           "[windows, H_out, N, C] in original units for the windows a teacher cache covers, in time "
                           "order (the training windows; the teacher's validation "
                           "windows; every test window), optionally `starts` [windows]")
    timp.add_argument("file", help="npz file with the predictions")
    for t in (tfit, tpred, timp):
        t.add_argument("--teacher", default="flowdistill-teacher",
                       help="registered model the teacher is (default flowdistill-teacher; e.g. stwa)")
        t.add_argument("--dataset", default=DEFAULT_DATASET)
        t.add_argument("--ratios", type=_ratios, required=True, help="comma-separated training ratios")
        t.add_argument("--epochs", type=_positive_int, help="cap on training epochs (match the student run)")
        t.add_argument("--quick", action="store_true", help="the quick preset's caps (match a --quick run)")
        t.add_argument("--set", dest="settings", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                       help="teacher config override, e.g. --set keep_layers=0 --set lm=PATH (repeatable)")
        t.add_argument("--teacher-data", choices=TEACHER_DATA, default="disjoint",
                       help="what the teacher is fitted on (match the student run; see `bench run --help`)")
        t.add_argument("--device", choices=DEVICES, default="auto", help="where the teacher runs: auto (CUDA when "
                       "present), cpu or cuda (match the student run)")
        t.add_argument("--nodes", type=_positive_int, help="keep only the first N regions (smoke tests)")
        t.add_argument("--out", default="results")
        _data_flags(t)
    for t in (tfit, tpred):
        t.add_argument("--seeds", type=_seed_list, default=[TEACHER_SEED], metavar="S[,S...]",
                       help=f"teacher seeds, one fit each (default {TEACHER_SEED}, the seed students read)")
    tfit.add_argument("--skip-predict", action="store_true", help="train and save weights only")
    tfit.add_argument("--executor", choices=["ray", "inline"],
                      help="inline: in this process with every core and progress bars (default without "
                      "--address); ray: one Ray Tune trial per ratio (default with --address)")
    tfit.add_argument("--address", help="Ray cluster that fits the ratios, spread over its nodes: HOST:PORT of "
                      "its head; --out must be a folder every node sees at the same path")
    tls = tsub.add_parser("list", help="list cached teacher predictions")
    tls.add_argument("--out", default="results")
    tcmp = tsub.add_parser("compare", help="cached teachers grouped over seeds (mean and sd), each tested "
                           "against a baseline teacher", description="One row per teacher, what it is and its "
                           "data, over the seeds fitted (`bench teacher fit --seeds`). With --baseline, every other "
                           "row of the same dataset, ratio and teacher data is tested against it on the per-window "
                           "test MAE (seeds x day blocks of test windows, bench.protocol.stats), Holm-adjusted "
                           "over the table.")
    tcmp.add_argument("--out", default="results")
    tcmp.add_argument("--baseline", help="teacher name or part of its description, e.g. flowdistill-teacher-wo-lm")
    tcmp.add_argument("--csv", help="also write the table to this CSV file, and the per-window test MAE behind "
                      "it beside it (STEM-windows.csv.gz)")

    dat = sub.add_parser("data", help="make datasets that are generated rather than downloaded",
                         description="Generated datasets are written into the data root, where the registry "
                         "finds them.")
    dsub = dat.add_subparsers(dest="action", required=True)
    mk = dsub.add_parser("make", help="generate a dataset into the data root",
                         description="navier-stokes: FNO's 2-D Navier-Stokes (vorticity on the unit torus, "
                         "viscosity 1e-5, forcing 0.1(sin 2pi(x+y) + cos 2pi(x+y)), Gaussian random initial "
                         "field), our pseudo-spectral Crank-Nicolson solver, 20 frames of 64 x 64 per sample, "
                         "one per time unit. Default: the registry's NavierStokes (small: about 8 minutes on 2 "
                         "CPU cores); --full: NavierStokes1200, FNO's own 1,200 samples at 256 x 256 and "
                         "dt 1e-4 (a GPU machine's job).")
    mk.add_argument("name", choices=["navier-stokes"])
    mk.add_argument("--samples", type=_positive_int, help="samples to generate (default 120; --full: 1200); the file "
                    "is named by the count: 120 is NavierStokes (96 / 12 / 12 at ratio 0.8), 1200 NavierStokes1200 "
                    "(1,000 / 100 / 100); another count needs an entry of its own (--registry)")
    mk.add_argument("--seed", type=int, default=0, help="seed of the initial fields (default 0)")
    mk.add_argument("--resolution", type=_positive_int, help="solver grid (default 128; --full: 256); a "
                    "multiple of 64")
    mk.add_argument("--dt", type=float, help="solver time step (default 2.5e-3; --full: 1e-4)")
    mk.add_argument("--batch-size", type=_positive_int, default=20, help="samples solved at once (default 20)")
    mk.add_argument("--threads", type=_positive_int, help="torch threads while solving (default: torch's, the "
                    "cores); 1 where other jobs keep the cores busy (2 threads on 2 busy cores run many times slower)")
    mk.add_argument("--full", action="store_true", help="FNO's settings: 1200 samples, 256 x 256, dt 1e-4")
    mk.add_argument("--force", action="store_true", help="overwrite an existing file")
    _data_flags(mk)

    lst = sub.add_parser("list", help="list registered models, datasets or suites")
    lst.add_argument("what", choices=["models", "datasets", "suites"])
    _data_flags(lst)
    return p


def _data_flags(p) -> None:
    p.add_argument("--data-dir", help="data root (default: $BENCH_DATA_DIR, else ../shared/data beside the project)")
    p.add_argument("--registry", help="extra dataset registry YAML (default: $BENCH_REGISTRY)")


def cmd_list(args) -> int:
    if args.what == "models":
        for name in registry.names():
            entry = registry.get(name)
            teacher = entry.config().teacher
            print(f"{name:20s} {entry.description}" + (f" [teacher: {teacher}]" if teacher else ""))
    elif args.what == "suites":
        for s in suites(listed_only=True):
            quick = f" (quick: {', '.join(s.quick_models)})" if s.quick_models else ""
            print(f"{s.name:18s} {s.description}\n{'':18s} models: {', '.join(s.models)}{quick}; "
                  f"ratios: {', '.join(f'{r:g}' for r in s.ratios)} (quick: {', '.join(f'{r:g}' for r in s.quick_ratios)}); "
                  f"seeds: {s.seeds}" + (f" (quick: {s.quick_seeds})" if s.quick_seeds else "") +
                  ("; in --suite all" if s.in_all else "; not in --suite all"))
        for pr in PRESETS.values():
            print(f"preset {pr.name:11s} {pr.description}")
    else:
        root = data_root(args.data_dir)
        print(f"data root: {root}")
        for name, entry in load_registry(args.registry).items():
            present = (root / entry["data"]).is_file()
            what = (f"{entry.get('kind', '')} samples, {entry.get('h_in', 12)} -> {entry.get('h_out', 12)} frames"
                    if entry.get("layout") == "samples" else f"{entry.get('city', '')}, {entry.get('interval_min', '?')} min")
            grid = f", grid {entry['grid'][0]} x {entry['grid'][1]}" if entry.get("grid") else ""
            print(f"{name:12s} {what}{grid}, {'present' if present else 'MISSING ' + str(root / entry['data'])}")
    return 0


def _paths(args) -> tuple[Path, str, str | None]:
    """Absolute (out, data root, registry file): Ray Tune runs each trial in its own working
    directory, so no relative path may reach a trial."""
    extra = args.registry or os.environ.get("BENCH_REGISTRY")
    return (Path(args.out).resolve(), str(data_root(args.data_dir)),
            str(Path(extra).resolve()) if extra else None)


def cmd_run(args) -> int:
    if args.search and args.suite != "sweep":
        raise SuiteError("--search belongs to --suite sweep (a joint search over FlowDistill's hyperparameters)")
    if args.suite != "all":
        code = _run_suite(args, args.suite)
        if code != 130:
            _report_after_run(args)
        return code
    if args.ratios or args.models or args.search:
        raise SuiteError("--suite all runs each suite with its own models and ratios; drop --models/--ratios/"
                         "--search, or run one suite at a time")
    if args.command == "run" and not args.yes:      # the whole run's estimate decides, not each suite's
        collect: list[float] = []
        for name in run_order():
            _run_suite(argparse.Namespace(**vars(args), collect=collect), name)
        _refuse_long(sum(collect), args)
        args = argparse.Namespace(**{**vars(args), "yes": True})
    start, codes = time.perf_counter(), {}
    for name in run_order():
        print(f"\n=== {name} ===")
        codes[name] = _run_suite(args, name)
        if codes[name] == 130:
            return 130
    _report_after_run(args)
    print(f"all suites: {time.perf_counter() - start:.0f} s; " + ", ".join(
        f"{n}: {'ok' if c == 0 else 'failed trials'}" for n, c in codes.items()))
    return max(codes.values())


FAILED_MARK = "  [failed: "      # a commands.log line of a run that stopped on an error (the report skips it)


def _log_command(out: Path, suite: str, argv: list[str]) -> str:
    """Append the command line `bench ARGV` to OUT/SUITE/commands.log (the report lists it);
    returns the line written (`_mark_failed` marks it when the run then stops on an error)."""
    path = out / suite / "commands.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{datetime.datetime.now().isoformat(timespec='seconds')}  {shlex.join(['bench'] + list(argv))}"
    with path.open("a") as f:
        f.write(line + "\n")
    return line


def _mark_failed(out: Path, suite: str, line: str, exc: BaseException) -> None:
    """Mark `line` of OUT/SUITE/commands.log as a run that stopped on `exc` (its rows, if any, stay)."""
    path = out / suite / "commands.log"
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    if line in lines:
        i = len(lines) - 1 - lines[::-1].index(line)
        lines[i] = f"{line}{FAILED_MARK}{type(exc).__name__}: {str(exc)[:160]}]"
        path.write_text("\n".join(lines) + "\n")


def _report_after_run(args) -> None:
    """The PDF report of the run's results folder (unless --no-report); a folder without finished
    trials gets a note instead (the run's own exit code stands)."""
    if args.no_report or args.command == "plan":
        return
    from bench.suites import report
    try:
        report.build(args.out, args.report or report.default_out(args.out))
    except ReportError as exc:
        print(f"no report: {exc}", file=sys.stderr)


def _check_cluster(args) -> None:
    """--address: with the Ray executor only, and reachable (a clear error within seconds)."""
    if args.address and args.executor == "inline":
        raise SuiteError("--address runs trials on a Ray cluster; drop --executor inline")
    runner.check_address(args.address)


def _console_log(level: str) -> None:
    """The "bench" logger's lines (one per epoch at info) to this process's stderr, once."""
    import logging
    logger = logging.getLogger("bench")
    logger.setLevel(logging.INFO if level == "info" else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    class TqdmHandler(logging.Handler):       # a line between progress-bar refreshes, never inside a bar
        def emit(self, record):
            from tqdm.auto import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)


def _apply_config(args, p: argparse.ArgumentParser) -> None:
    """Fill the flags not given on the command line from --config's run file (`bench.suites.runconfig`).

    Raises:
        RunConfigError: the file does not validate; SuiteError: no suite from either.
    """
    if getattr(args, "config", None):
        sub = p._subparsers._group_actions[0].choices[args.command]
        given = {a.dest for a in sub._actions for opt in a.option_strings
                 if any(x == opt or x.startswith(opt + "=") for x in args.argv)}
        for key, value in runconfig.load(args.config).items():
            if key not in given:
                setattr(args, key, value)
    if not args.suite:
        raise SuiteError("give --suite NAME (see `bench list suites`) or --config FILE.yaml with `suite: NAME`")


def _refuse_long(estimate_s: float, args) -> None:
    """Stop before a run whose plan estimates more than LONG_RUN_S on a machine without a GPU.

    Raises:
        SuiteError: naming the estimate and the way on (--yes, or a narrower run).
    """
    import torch
    if estimate_s > LONG_RUN_S and not torch.cuda.is_available() and not args.address:
        raise SuiteError(f"the plan estimates {estimate_s / 3600:.1f} h of wall time on this machine without a GPU "
                         f"(`bench plan` with the same flags lists every trial); pass --yes to run it anyway, or "
                         f"narrow it (--models, --ratios, --seeds, --quick)")


def _run_suite(args, name: str) -> int:
    _console_log(getattr(args, "log_level", "warning"))
    _check_cluster(args)
    suite = get_suite(name)
    for m in args.models or []:
        registry.get(m)
    if args.epochs and args.models and not any(registry.trains(m) for m in args.models):
        what = "is a reference forecaster" if len(args.models) == 1 else "are reference forecasters"
        raise SuiteError(f"--epochs {args.epochs}: {', '.join(args.models)} {what}: not trained, so no epochs; "
                         f"drop --epochs")
    datasets = [args.dataset] if args.dataset else list(suite.datasets or (DEFAULT_DATASET,))
    args = argparse.Namespace(**{**vars(args), "dataset": datasets[0],
                                 "teacher_data": args.teacher_data or suite.teacher_data or "disjoint"})
    for dataset in datasets:
        data = load_dataset(dataset, args.data_dir, args.registry)  # fail early on missing/corrupt data
        for ratio in args.ratios or []:                             # and on a ratio too small for it, before Ray
            split_for(data, ratio)
    preset = "quick" if args.quick else "full"
    if args.fixed_rounds and not args.quick:
        raise SuiteError("--fixed-rounds shapes the quick preset's rounds; add --quick (the full preset trains "
                         "whole epochs)")
    resolve_device(args.device)                                     # --device cuda without CUDA: a clear error
    out, data_dir, registry_file = _paths(args)
    if suite.execute:
        return _run_execute(args, suite, preset, out, data_dir, registry_file)
    scheduler = None
    if args.search:
        specs = _search_specs(args, suite, preset, out, data_dir, registry_file)
        scheduler = "asha" if args.executor == "ray" else None
    else:
        specs = [s for dataset in datasets
                 for s in build_specs(suite, dataset, preset, args.models, args.ratios, args.seeds, args.epochs,
                                      args.teacher, dict(args.settings), args.teacher_data, data_dir=data_dir,
                                      registry_file=registry_file,
                                      cache_dir=str(out / "teachers"), num_nodes=args.nodes)]
    specs = [dataclasses.replace(s, checkpoint_root=str(out), device=args.device, fixed_rounds=args.fixed_rounds)
             for s in specs]                        # each trial keeps its weights
    table_name = specs[0].suite
    planned = make_plan(specs, out, args.executor)
    lines = plan_lines(planned, args.executor)
    if args.command == "plan":
        print("\n".join(lines))
        return 0
    estimate = plan_summary(planned, args.executor)["wall_s"]
    if getattr(args, "collect", None) is not None:  # `--suite all`: the estimates are summed first
        args.collect.append(estimate)
        return 0
    print(lines[-1])
    if not args.yes:
        _refuse_long(estimate, args)
    runconfig.write(args, [out])
    runconfig.write(argparse.Namespace(**{**vars(args), "suite": name}), [out / table_name])
    logged = _log_command(out, table_name, args.argv)
    print(f"suite {table_name} on {', '.join(datasets)}, preset {preset}: {len(specs)} trials -> {out / table_name}/")
    start = time.perf_counter()
    try:
        path = runner.run(specs, str(out), args.executor, args.address, scheduler=scheduler,
                          gpus_per_trial=args.gpus_per_trial)
    except KeyboardInterrupt:               # Ctrl-C in an inline run: finished trials are on disk
        print(f"\ninterrupted: run the same command again to resume (finished trials in "
              f"{out / table_name} are skipped)", file=sys.stderr)
        return 130
    except Exception as exc:                # a check that failed once the run had started
        _mark_failed(out, table_name, logged, exc)
        raise
    df = read_trials(path)
    df = df[df["trial_id"].astype(str).isin({s.trial_id for s in specs})]
    print(f"\n{table_name} on {', '.join(datasets)} (test set, original units)")
    shown = SUITES[table_name]              # "search" for `--suite sweep --search`: a report-only suite
    extra = suite.after_run(datasets, preset, out, args.nodes, data_dir, registry_file) if suite.after_run else []
    for title, table in tables_of(shown, df, path.parent) + extra:
        print(f"\n{title}\n{frame_text(table)}")
    print(f"\nwall time {time.perf_counter() - start:.0f} s; results in {path}")
    failed = set(df.loc[~df["status"].isin(["ok", "pruned"]), "trial_id"])
    missing = len(specs) - df["trial_id"].nunique()
    if failed:
        print(f"{len(failed)} trial(s) failed; see the error column of {path}", file=sys.stderr)
    if missing:
        elsewhere = sum((path.parent / "claims" / f"{s.trial_id}.claim").exists() for s in specs)
        print(f"{missing} of {len(specs)} trial(s) did not finish here" +
              (f" ({elsewhere} are running in another process)" if elsewhere else "") +
              "; run the same command again to resume (finished trials are skipped)", file=sys.stderr)
        return 130
    return 1 if failed else 0


def _search_specs(args, suite, preset, out, data_dir, registry_file):
    """The search run's specs (`bench.suites.sweep.search_specs`) from the flags."""
    from bench.execution import search
    from bench.suites.sweep import search_specs
    return search_specs(suite, args.dataset, preset, args.models, args.ratios, args.seeds, args.epochs, args.teacher,
                        dict(args.settings), args.teacher_data, search.load_space(args.space, args.space_file),
                        args.samples, data_dir=data_dir, registry_file=registry_file,
                        cache_dir=str(out / "teachers"), num_nodes=args.nodes)


def _run_execute(args, suite, preset, out, data_dir, registry_file) -> int:
    """A suite that runs itself (its `execute` hook, e.g. scalability's points), then its tables."""
    _log_command(out, suite.name, args.argv)
    start = time.perf_counter()
    path, ids = suite.execute(suite, args.dataset, args.models or list(suite.models), preset,
                              args.seeds or suite.seeds, out, num_nodes=args.nodes, data_dir=data_dir,
                              registry_file=registry_file)
    df = rows_of(suite, path.parent)
    df = df[df["trial_id"].astype(str).isin(ids)]
    for title, table in tables_of(suite, df, path.parent):
        print(f"\n{title}\n{frame_text(table)}")
    print(f"\nwall time {time.perf_counter() - start:.0f} s; results in {path}")
    failed = (df["status"] != "ok").sum()
    if failed:
        print(f"{failed} point(s) failed; see the error column of {path}", file=sys.stderr)
    return 1 if failed else 0


def cmd_report(args) -> int:
    from bench.suites import report
    report.build(args.results, args.out or report.default_out(args.results), args.suite)
    return 0


def cmd_evaluate(args) -> int:
    from bench.execution.trial import evaluate_checkpoint, find_checkpoint
    path = find_checkpoint(args.results, args.trial)
    if path is None:
        raise SuiteError(f"no kept weights of trial {args.trial} under {args.results}/*/checkpoints/; give a trial_id "
                         f"of trials.csv from a run of this version (every trained trial keeps its weights)")
    if args.ratio is not None:
        check_ratio(args.ratio)
    rows = evaluate_checkpoint(path, args.dataset, args.ratio, args.data_dir, args.registry)
    overall = rows[0]
    print(f"trial {args.trial} ({path.parent.parent.name}) on {args.dataset or 'its dataset'}"
          f"{f' at ratio {args.ratio:g}' if args.ratio else ''}: test MAE {overall['mae']:.4f}, "
          f"RMSE {overall['rmse']:.4f}, MAPE {overall['mape']:.2f} %")
    table = read_trials(path.parent.parent / "trials.csv")
    own = table[(table["trial_id"] == args.trial) & (table["horizon"].astype(str) == "all")
                & (table["bucket"].astype(str) == "all")]
    if len(own):
        print(f"its row in trials.csv: MAE {own['mae'].iloc[0]:.4f}, RMSE {own['rmse'].iloc[0]:.4f}")
    return 0


def cmd_export(args) -> int:
    from bench.execution.export import export_trial
    rows = export_trial(args.results, args.trial, args.format, args.int8, args.data_dir, args.registry,
                        log=lambda line: print(line, file=sys.stderr), budget=args.int8_budget)
    shown = [{"form": r["form"], "file": r["file"] or "(the kept weights)", "size KB": f"{r['size_kb']:.1f}",
              "max rel. deviation": f"{r['max_rel_dev']:.1e}", "test MAE": f"{r['mae']:.4f}",
              "int8 matrix products": r["int8_layers"]} for r in rows]
    print(f"trial {args.trial}: inference graph exported to {Path(args.results) / 'exports'}/\n"
          + tabulate(shown, headers="keys", disable_numparse=True))
    return 0


def cmd_compare(args) -> int:
    import tempfile

    from bench.suites import numbers
    results = Path(args.results)
    if not results.is_dir():
        raise numbers.NumbersError(f"--results {results}: no such folder")
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        if not any(results.glob("*/trials.csv")):
            results = numbers.unpack(results, Path(tmp) / "results")
        if not args.rows:
            rows = numbers.groups(results, args.suite)
            if rows.empty:
                raise numbers.NumbersError(f"no finished trials under {args.results}")
            print(rows.drop(columns="trial_ids").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            return 0
        if len(args.rows) != 2:
            raise numbers.NumbersError(f"give two row numbers (got {len(args.rows)}); without them the rows are listed")
        out = numbers.compare_groups(results, *args.rows, metric=args.metric, suite=args.suite, shown=args.results)
    label = lambda r: f"{r['model']} {r['config'] or '(defaults)'} at ratio {r['ratio']:g} ({r['seeds']} seeds)"
    print(f"A: row {args.rows[0]}: {label(out['a'])}\nB: row {args.rows[1]}: {label(out['b'])}")
    print(f"per-window {args.metric} A - B: {out['diff']:+.4f}, 95 % interval [{out['lo']:+.4f}, {out['hi']:+.4f}], "
          f"p = {out['p']:.3g} (t, {out['df']:.1f} df; {out['seeds']} seeds x {out['blocks']} blocks of "
          f"{out['block']} test windows; this comparison alone, not Holm-adjusted)")
    print("per seed: " + ", ".join(f"{d:+.4f}" for d in out["seed_diffs"]))
    return 0


def _r(value, digits: int = 3):
    return "" if value is None else round(float(value), digits)


def cmd_teacher(args) -> int:
    from bench.execution import teacher as teacher_mod
    root = Path(args.out).resolve() / "teachers"
    if args.action == "list":
        rows = teacher_mod.cached_teachers(root)
        shown = [{k: _r(v, 1 if k.endswith(" s") else 3) if k in ("val MAE", "test MAE", "test RMSE", "train s",
                                                               "predict s") else v for k, v in r.items()} for r in rows]
        print(tabulate(shown, headers="keys") if rows else f"no cached teachers under {root}")
        return 0
    if args.action == "compare":
        table = teacher_mod.teacher_table(root, args.baseline)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if args.csv:
            atomic_write(Path(args.csv), lambda tmp: table.to_csv(tmp, index=False, float_format="%.4f"))
            windows = Path(args.csv).with_name(Path(args.csv).stem + "-windows.csv.gz")
            atomic_write(windows, lambda tmp: teacher_mod.teacher_window_errors(root).to_csv(
                tmp, index=False, float_format="%.5g", compression="gzip"))
            print(f"wrote {args.csv} and {windows} (the per-window test MAE behind it)")
        return 0
    entry = registry.get(args.teacher)
    settings = dict(args.settings)
    entry.config(**settings)                    # raises ValueError naming a bad key or value
    resolve_device(args.device)                 # --device cuda without CUDA: a clear error
    load_dataset(args.dataset, args.data_dir, args.registry)
    out, data_dir, registry_file = _paths(args)
    preset = PRESETS["quick" if args.quick else "full"]
    # the teacher spec of a student run with the same flags, so that their cache keys agree
    specs = [teacher_mod.teacher_spec(
        TrialSpec(suite="teacher", dataset=args.dataset, model=args.teacher, ratio=r, teacher_config=settings,
                  **preset.caps(args.teacher, epochs=args.epochs) | {"teacher_max_steps": preset.max_steps(args.teacher)},
                  num_nodes=args.nodes, teacher_data=args.teacher_data,
                  device=args.device,
                  data_dir=data_dir,
                  registry_file=registry_file, cache_dir=str(root)), args.teacher) for r in args.ratios]
    specs = [dataclasses.replace(spec, seed=seed) for spec in specs for seed in getattr(args, "seeds", [spec.seed])]
    if args.action == "import":
        for spec in specs:
            print(f"cached {teacher_mod.import_predictions(spec, args.file)}")
    elif args.action == "predict":
        for spec in specs:
            print(f"cached {teacher_mod.predict_teacher(spec, show=True)}")
    else:
        _check_cluster(args)
        if (args.executor or ("ray" if args.address else "inline")) == "inline":
            for spec in specs:
                teacher_mod.fit_teacher(spec, progress=_epoch_printer(spec), show=True,
                                        predict_windows=not args.skip_predict)
        else:
            runner.fit_teachers(specs, str(out), "ray", args.address)
    return cmd_teacher(argparse.Namespace(action="list", out=args.out))


def cmd_data(args) -> int:
    """`bench data make navier-stokes`: solve, then write navier_stokes/ns_V1e-05_N{S}_T20[_s{seed}].npz
    into the data root (the file the registry's NavierStokes / NavierStokes1200 entries read)."""
    import numpy as np

    from bench.protocol import navier_stokes as ns
    settings = dict(ns.FULL if args.full else ns.DEFAULT)
    for key, value in (("num_samples", args.samples), ("resolution", args.resolution), ("dt", args.dt)):
        if value is not None:
            settings[key] = value
    name = f"ns_V{settings['nu']:.0e}_N{settings['num_samples']}_T{settings['frames']}"
    path = data_root(args.data_dir) / "navier_stokes" / (name + (f"_s{args.seed}" if args.seed else "") + ".npz")
    if path.exists() and not args.force:
        print(f"{path} exists; --force to overwrite it")
        return 0
    print(f"solving {settings['num_samples']} samples at {settings['resolution']}^2, dt {settings['dt']:g}, "
          f"seed {args.seed} -> {path}", file=sys.stderr)
    start = time.perf_counter()
    u = ns.generate(seed=args.seed, batch_size=args.batch_size, threads=args.threads, **settings)
    solve_s = time.perf_counter() - start
    ns.write(path, u, {**settings, "seed": args.seed, "solve_s": round(solve_s, 1)})
    print(f"wrote {path}: u {tuple(u.shape)} (samples, frames, H, W), |w| <= {np.abs(u).max():.2f}, "
          f"{solve_s:.0f} s ({solve_s / len(u):.2f} s per sample)")
    print(_sample_split_note(path.relative_to(data_root(args.data_dir)).as_posix(), len(u), args.registry))
    return 0


def _sample_split_note(relpath: str, samples: int, registry_file=None) -> str:
    """Which registry entries read the file at `relpath` (under the data root) and their split at
    the largest ratio (`bench.protocol.split.sample_split`), or how to register it."""
    from bench.protocol.data import holdout_share
    from bench.protocol.split import MAX_RATIO, sample_split
    readers = {n: e for n, e in load_registry(registry_file).items() if e.get("data") == relpath}
    if not readers:
        return (f"no registry entry reads {relpath}; add one with --registry FILE (copy NavierStokes1200's entry: "
                f"`holdout: 1/12` holds out round(N / 12) samples for validation and as many for test)")
    parts = []
    for name, entry in readers.items():
        try:
            n = sample_split(samples, MAX_RATIO, holdout_share(entry.get("holdout"), name))
            parts.append(f"{name} reads it: {n[0]:,} training / {n[1]:,} validation / {n[2]:,} test samples at "
                         f"ratio {MAX_RATIO:g}")
        except BenchError as exc:
            parts.append(f"{name} reads it, but {exc}")
    return "; ".join(parts)


def _epoch_printer(spec):
    def show(epoch, logs):
        print(f"{spec.model} ratio={spec.ratio:g} epoch {epoch}: loss {logs.get('loss', float('nan')):.3f} "
              f"val MAE {logs['val_mae']:.3f}", file=sys.stderr, flush=True)
    return show


def main(argv=None) -> int:
    try:
        load_plugins()                    # suites named in $BENCH_SUITES join the built-in ones
    except SuiteError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    p = parser()
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.command in ("run", "plan"):
        try:
            _apply_config(args, p)
        except BenchError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 2
    commands = {"run": cmd_run, "plan": cmd_run, "list": cmd_list, "teacher": cmd_teacher, "report": cmd_report, "data": cmd_data,
                "compare": cmd_compare, "evaluate": cmd_evaluate, "export": cmd_export}
    try:
        return commands[args.command](args)
    except (BenchError, ValueError, FloatingPointError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:              # an unwritable --out, a full disk: name the path, no traceback
        where = exc.filename or "a file"
        print(f"bench: error: cannot write or read {where}: {exc.strerror or exc}; choose another folder (--out, "
              f"--results) or free it", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
