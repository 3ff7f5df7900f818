"""The documentation stays navigable: README.md is a short front door, every relative Markdown link
in it and under docs/ resolves, and the tests command CI extracts is still there."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """Targets of `[text](target)` links outside fenced code blocks, without external ones and
    without pure #anchors; any #anchor is stripped."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    out = []
    for target in LINK.findall(text):
        if target.startswith(EXTERNAL):
            continue
        target = target.split("#", 1)[0]
        if target:
            out.append(target)
    return out


def test_readme_is_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"


def test_docs_exist():
    assert (ROOT / "docs").is_dir()
    assert list((ROOT / "docs").rglob("*.md"))


def test_relative_links_resolve():
    broken = [f"{path.relative_to(ROOT)}: {target}" for path in markdown_files()
              for target in relative_links(path) if not (path.parent / target).exists()]
    assert not broken, "links that resolve to nothing:\n" + "\n".join(broken)


def test_readme_keeps_the_tests_command():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert "# tests" in lines
    i = lines.index("# tests")
    assert lines[i + 1] == ". .venv/bin/activate && python -m pytest -q -p no:cacheprovider"


def test_the_suite_table_of_the_docs_matches_the_registry():
    from bench.suites import suites
    fmt = lambda ratios: ", ".join(f"{r:g}" for r in ratios)
    rows = {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([a-z-]+)` \|.*\|([^|]*)\|\s*$",
                                                                 (ROOT / "docs" / "suites.md").read_text(), re.M)}
    for suite in suites(listed_only=True):
        assert suite.name in rows, f"docs/suites.md has no row for suite {suite.name}"
        assert rows[suite.name] == f"{fmt(suite.ratios)} (quick: {fmt(suite.quick_ratios)})", suite.name


def test_default_teachers_named_in_the_docs_are_the_registrys():
    from bench.protocol import registry
    text = (ROOT / "docs" / "architecture.md").read_text()
    for model, teacher in (("easyst", "stwa"), ("st-mlp", "stwa"), ("flowdistill", "flowdistill-teacher")):
        assert registry.get(model).config().teacher == teacher
    assert "`easyst` (teacher: STWA" in text and "`st-mlp` (T-ITS 2024, distilled from STWA by default" in text
    assert "`flowdistill` (student distilled from it)" in text          # it: the LLM teacher named just before


FINDINGS = {   # findings page -> (committed table, column) whose every value the page must state
    "distillation-before-controls.md": [("reports/distill/distill.csv", "MAE"), ("reports/distill-llm/distill.csv", "MAE")],
    "early-stopping.md": [("reports/distill-fixed-rounds/distill.csv", "MAE")],
    "teachers.md": [("reports/teachers/teachers.csv", "test MAE"), ("reports/teachers/teachers.csv", "test RMSE")],
    "distillation.md": [("reports/distill-controls/distill-1.csv", "MAE"),
                        ("reports/distill-delta-quick/distill-delta.csv", "MAE")],
    "data-efficiency.md": [("reports/data-efficiency-1.csv", "0.1 MAE"), ("reports/data-efficiency-1.csv", "0.5 MAE")],
    "sdkd.md": [("reports/sdkd-ns-full/sdkd-1.csv", "MSE"), ("reports/sdkd-ns-lr3/sdkd-1.csv", "MSE"),
                ("reports/sdkd-nyctaxi-quick/sdkd-1.csv", "MSE")],
}


def test_findings_pages_state_the_committed_numbers():
    import pandas as pd
    for page, tables in FINDINGS.items():
        text = (ROOT / "docs" / "findings" / page).read_text().replace(",", "")
        stated = [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text)]
        for table, column in tables:
            path = ROOT / table
            assert path.exists(), f"{page} names {table}, which is not committed"
            values = [float(v.split()[0]) for v in pd.read_csv(path, dtype=str)[column].dropna() if v.strip()]
            assert values, (page, table, column)
            missing = [v for v in values if not any(abs(v - n) <= max(0.006, 0.002 * abs(v)) for n in stated)]
            assert not missing, f"docs/findings/{page} does not state {missing} of {table} ({column})"
