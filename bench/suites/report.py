"""`bench report`: one PDF from the results of every suite, plus each table as CSV and Markdown and
each figure as PNG beside it.

Pages: "What this run shows" (`bench.suites.summary`: sentences written from the numbers), a cover with the environment (dataset, protocol, hardware, software versions, project
commit) and the commands that produced the results, then for each suite with results its
table(s) (the paper's rows and columns, mean ± std over seeds) and its figure (error bars: one
standard deviation over seeds).
"""
from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.protocol.errors import BenchError
from bench import suites as S
from bench.suites import numbers, pdf, summary
from bench.protocol.data import load_dataset
from bench.protocol.split import H_IN, H_OUT, TEST_FRAC, VAL_FRAC, weekday_coverage
from bench.suites.plots import style, units_of



class ReportError(BenchError, RuntimeError):
    """No results to report; the message says where it looked."""


@dataclass
class Section:
    suite: str
    title: str
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, object]] = field(default_factory=list)     # (name, matplotlib Figure)
    commands: list[str] = field(default_factory=list)


def _commands(results: Path, suite: str) -> list[str]:
    log = results / suite / "commands.log"
    return [line.strip() for line in log.read_text().splitlines()
            if line.strip() and "  [failed: " not in line] if log.exists() else []   # runs that stopped on an error: not listed


def collect(results: str | Path, names=None) -> list[Section]:
    """A Section for each registered suite (or each of `names`) with finished rows under
    `results`, by rank: the suite's tables and figures (`tables_of`, `figures_of`)."""
    results = Path(results)
    style()
    sections = []
    for suite in S.suites():
        if names and suite.name not in names:
            continue
        folder = results / suite.name
        df = S.rows_of(suite, folder)
        if df.empty or not (df["status"] == "ok").any():
            continue
        sec = Section(suite.name, suite.title or suite.name, S.tables_of(suite, df, folder), S.figures_of(suite, df, folder))
        sec.commands = _commands(results, suite.name)
        sections.append(sec)
    return sections


def environment(results: Path) -> list[str]:
    """Lines of the environment page: protocol, hardware, software, project commit."""
    import importlib.metadata as md
    import subprocess

    import torch

    datasets, ratios = set(), {}
    for path in results.glob("*/trials.csv"):
        try:
            used = pd.read_csv(path, usecols=["dataset", "ratio"]).dropna()
        except Exception:
            continue
        datasets |= set(used["dataset"].astype(str))
        for d, r in used.drop_duplicates().itertuples(index=False):
            ratios.setdefault(str(d), set()).add(float(r))
    ratios = {d: sorted(r) for d, r in ratios.items()}
    coverage = []
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except Exception:
        mem = "?"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    versions = []
    for pkg in ("torch", "numpy", "pandas", "ray", "transformers", "peft", "matplotlib", "seaborn"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or "?"
    except Exception:
        commit = "?"
    spans, samples = [], []
    for d in sorted(datasets):
        try:
            data = load_dataset(d)
            if data.meta.get("sample_len"):          # independent samples: one window each, split on samples
                n = data.flow.shape[0] // data.meta["sample_len"]
                samples.append(f"{d}: {n} independent samples of {data.meta['sample_len']} frames, one window each "
                               f"(H_in = {data.meta['h_in']} -> H_out = {data.meta['h_out']}), split on samples; "
                               f"ratio 0.1 = {round(0.1 * n)} training samples; unmasked MSE, SSIM and band errors "
                               f"beside the masked metrics")
                continue
            days = data.flow.shape[0] / data.steps_per_day
            spans.append(f"{d}: {days:.0f} days ({data.flow.shape[0]} steps of {data.meta['interval_min']} min), so "
                         f"ratio 0.1 = {0.1 * days:.0f} days of training")
            for ratio in ratios.get(d, []):
                cover = weekday_coverage(data, ratio)
                coverage.append(f"{d} at ratio {ratio:g}: the training part covers {len(cover['covered'])} of 7 days "
                                f"of the week" + (f"; it never shows a {' or '.join(cover['missing'])}, and "
                                                  f"{cover['test_share']:.0%} of the test windows have targets on "
                                                  f"such a day (its day-of-week embedding is never trained)"
                                                  if cover["missing"] else ""))
        except Exception:
            pass
    return [
        f"generated {datetime.datetime.now().isoformat(timespec='seconds')} from {results.resolve()}",
        *(["span: " + "; ".join(spans) + ". The paper's NYC-Taxi and Chicago-Taxi span 01/01/21 - 12/31/21 "
           "(its Table 2: 365 days), so a ratio there means about 6 times more days than on a 60-day series."]
          if spans or not samples else []),
        *[f"samples: {line}" for line in samples],
        f"dataset(s): {', '.join(sorted(datasets)) or '?'} "
        f"({'; '.join(f'{d}: {units_of(d)}' for d in sorted(datasets))})",
        f"protocol: chronological split; validation {VAL_FRAC:.0%} and test {TEST_FRAC:.0%} of the steps at the end, "
        f"training ratio = share of steps right before validation; H_in = {H_IN} -> H_out = {H_OUT} (datasets of "
        f"samples: their own, above); "
        "z-score fitted on the training part only; masked MAE / RMSE / MAPE (truth = 0 left out) on the "
        "test windows in original units; volume buckets: quartiles of the regions' mean flow over the training steps.",
        *[f"weekdays: {line}" for line in coverage],
        "tests: each comparison is the mean difference of per-window test errors with a 95 % interval and a p-value "
        "from a t-test whose unit is a seed x a block of one day of test windows (two-way random effects, "
        "Satterthwaite degrees of freedom; bench.protocol.stats), adjusted by Holm within each table; "
        "`bench compare --results FOLDER` recomputes any of them from the numbers/ beside the report.",
        "spread: mean ± one standard deviation over seeds where a run used --seeds N > 1 (the paper reports single runs).",
        f"hardware: {cpu}, {os.cpu_count()} logical cores, {mem} memory, GPU: {gpu}",
        f"software: Python {platform.python_version()} on {platform.platform()}; {', '.join(versions)}",
        f"project commit: {commit}",
    ]


MANIFEST = ".report-files"      # beside a report: the files its last build wrote (a rebuild removes them first)


def default_out(results: str | Path) -> Path:
    """Where a report of `results` goes by default: inside it, `RESULTS/report/flowbench.pdf`
    (never over a committed report under reports/)."""
    return Path(results) / "report" / "flowbench.pdf"


def _clear_previous(folder: Path) -> None:
    """Remove the files the last build listed in `folder/MANIFEST` (and its numbers/), nothing else."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return
    for name in manifest.read_text().splitlines():
        path = folder / name
        if name and path.is_file() and path.resolve().parent == folder.resolve():
            path.unlink()
    manifest.unlink()


ARCHIVED = ("Archived report. Its numbers (trials.csv and per-window errors) were not kept, so it cannot be "
            "recomputed; this PDF lays out again the tables and figures committed beside it, unchanged. Its p-values "
            "come from a test that is withdrawn: a Wilcoxon test on seed-averaged errors of consecutive test windows "
            "taken as independent, without correction for multiplicity; they are too small. Read its findings page "
            "under docs/findings/ for what still stands.")


def relayout(folder: str | Path, out: str | Path, log=print) -> dict:
    """Lay out again, with the report's current layout (`bench.suites.pdf`), a committed report
    folder that holds only its tables (`<stem>.md` / `.csv`) and figures (`<stem>.png`): an
    "archived" first page, then each table (its title from the Markdown file) and figure. Nothing
    is recomputed.

    Raises:
        ReportError: the folder holds no table.
    """
    folder, out = Path(folder), Path(out)
    tables = []
    for md in sorted(folder.glob("*.md")):
        csv = md.with_suffix(".csv")
        if not csv.exists():
            continue
        title = md.read_text().splitlines()[0].lstrip("# ").strip() if md.read_text().strip() else md.stem
        tables.append((title, pd.read_csv(csv, dtype=str, keep_default_na=False), []))
    if not tables:
        raise ReportError(f"{folder} holds neither results (*/trials.csv), nor numbers/, nor tables (*.md with *.csv)")
    figures = [(png.stem, png) for png in sorted(folder.glob("*.png"))]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pages = pdf.write(tmp, "Archived report", [ARCHIVED], f"FlowBench report: {folder.name}",
                      [f"tables and figures of {folder}"], [{"title": folder.name, "tables": tables, "figures": figures}])
    os.replace(tmp, out)
    log(f"report: {out} ({pages} pages; archived: {len(tables)} tables and {len(figures)} figures laid out again)")
    return {"pdf": out, "pages": pages, "files": [out], "suites": []}


def build(results: str | Path = "results", out: str | Path | None = None, suites=None,
          log=print) -> dict:
    """Write the PDF (default `default_out(results)`) and, beside it, `<suite>[-k].csv/.md` per
    table and `<suite>[-k].png` per figure. A build first removes the files the last build into the
    same folder wrote (listed in its MANIFEST), so no stale table or figure stays beside a new
    report; other files there are left alone.

    Beside them goes `numbers/` (`bench.suites.numbers.pack`): trials.csv and the per-window test
    errors of every suite in the report, from which `build(that folder, ...)` rebuilds the report.
    `results` may be such a report folder (its numbers are unpacked to a temporary folder first).

    Returns {"pdf": path, "pages": n, "files": [...], "suites": [...]}.

    Raises:
        ReportError: `results` does not exist, or no suite under it has finished trials.
    """
    import matplotlib.pyplot as plt

    results = Path(results)
    out = Path(out) if out is not None else default_out(results)
    if results.is_dir() and not any(results.glob("*/trials.csv")) and numbers.has_numbers(results):
        import tempfile                              # a report folder: rebuild its results from its numbers
        with tempfile.TemporaryDirectory(prefix="bench-numbers-") as tmp:
            return build(numbers.unpack(results, Path(tmp) / results.name), out, suites, log)
    if results.is_dir() and not any(results.glob("*/trials.csv")) and any(results.glob("*.md")):
        return relayout(results, out, log)
    known = [s.name for s in S.suites()]
    unknown = set(suites or []) - set(known)
    if unknown:
        raise ReportError(f"unknown suite(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    if not results.is_dir():
        raise ReportError(f"results folder {results.resolve()} does not exist; run `bench run --suite NAME` first "
                          f"(its --out) or pass --results DIR")
    sections = collect(results, suites)
    if not sections:
        raise ReportError(f"no finished trials under {results.resolve()}; run `bench run --suite NAME` first "
                          f"(or pass --results DIR)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_previous(out.parent)
    files = []
    cover = ["What ran, and how (each suite's commands are listed on its pages and below).", ""]
    cover += environment(results)
    cover += ["", "suites in this report:"] + [f"  {s.suite}: {s.title}" for s in sections]
    commands = dict.fromkeys(c.split("  ", 1)[-1] for s in sections for c in s.commands)   # distinct, in order
    cover += ["", "commands (each suite's own pages give the time of its last run):"] + [f"  {c}" for c in commands]
    laid_out = []
    for sec in sections:
        tables = []
        for i, (name, table) in enumerate(sec.tables):
            stem = sec.suite if len(sec.tables) == 1 else f"{sec.suite}-{i + 1}"
            table.to_csv(out.parent / f"{stem}.csv", index=False)
            (out.parent / f"{stem}.md").write_text(f"# {sec.title}: {name}\n\n" + S.frame_text(table) + "\n")
            files += [out.parent / f"{stem}.csv", out.parent / f"{stem}.md"]
            notes = []
            if table.astype(str).apply(lambda c: c.str.contains(S.NOT_CONVERGED)).to_numpy().any():
                notes.append(f"{S.NOT_CONVERGED}: a trial of this cell did not converge (its epoch budget ran out "
                             "before early stopping fired)")
            if sec.commands:
                notes.append("command: " + sec.commands[-1].split("  ", 1)[-1])
            tables.append((name, table, notes))
        figures = []
        for i, (name, fig) in enumerate(sec.figures):
            png = out.parent / (f"{sec.suite}.png" if len(sec.figures) == 1 else f"{sec.suite}-{i + 1}.png")
            title = fig.get_suptitle() or name
            fig.savefig(png, dpi=130, bbox_inches="tight")
            plt.close(fig)
            files.append(png)
            figures.append((title, png))
        laid_out.append({"title": sec.title, "tables": tables, "figures": figures})
    tmp = out.with_name(f".{out.name}.tmp")
    pages = pdf.write(tmp, "What this run shows", summary.summary_lines(results, [s.suite for s in sections]),
                      "FlowBench report: FlowDistill (arXiv 2504.02094) under one protocol", cover, laid_out)
    os.replace(tmp, out)
    files += numbers.pack(results, out.parent, [s.suite for s in sections])
    (out.parent / MANIFEST).write_text("\n".join(sorted({out.name} | {Path(f).name for f in files
                                                                      if Path(f).parent == out.parent})) + "\n")
    log(f"report: {out} ({pages} pages, {len(sections)} suites); tables and figures beside it in {out.parent}/, "
        f"the numbers behind them in {out.parent / numbers.NUMBERS}/ (`bench report --results {out.parent}` "
        f"rebuilds it from them)")
    return {"pdf": out, "pages": pages, "files": files, "suites": [s.suite for s in sections]}
