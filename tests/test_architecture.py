"""The harness's layout (issue 15): modules of bench/ import each other without a cycle, counting
imports inside functions too (a function-level import may delay a heavy module, never dodge a
cycle), and no model or baseline imports the runner side of bench/."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER_SIDE = {"bench.runner", "bench.trial", "bench.teacher", "bench.context", "bench.suites", "bench.report",
               "bench.summary", "bench.cli", "bench.results", "bench.spec", "bench.search", "bench.scalability"}


def imports_of(path: Path, package: str) -> set[str]:
    """Every `package.*` module that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package or node.module.startswith(package + "."):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}      # from bench import registry
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(package + ".")}
    return found


def graph(package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports, sub-packages included (a package is its __init__)."""
    mods = {}
    for p in (ROOT / package).rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    # a submodule's own package is its parent, not an import of it
    return {m: {d for d in imports_of(p, package) if d in mods and d != m and not m.startswith(d + ".")}
            for m, p in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(g):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_bench_has_no_import_cycle():
    g = graph("bench")
    assert len(g) > 10 and "bench.suites.ratio" in g and "bench.suites" in g
    assert find_cycle(g) is None, " -> ".join(find_cycle(g))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", ["models", "baselines"])
def test_models_know_nothing_of_the_runner(package):
    for path in (ROOT / package).glob("*.py"):
        assert not imports_of(path, "bench") & RUNNER_SIDE, path.name
