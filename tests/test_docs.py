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
