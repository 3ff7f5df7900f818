"""The harness's layout: bench/ is layers, protocol -> execution -> suites -> cli, each
importing only downward; its modules import each other without a cycle, counting imports inside
functions too (a function-level import may delay a heavy module, never dodge a cycle); models and
baselines import nothing of bench/ but its protocol layer."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("bench.protocol", "bench.execution", "bench.suites", "bench.cli")     # bottom first


def layer(module: str) -> int:
    """The index in LAYERS of the layer `module` belongs to (bench itself: -1)."""
    return next((i for i, top in enumerate(LAYERS) if module == top or module.startswith(top + ".")), -1)


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


def test_bench_is_layers_that_import_only_downward():
    g = graph("bench")
    assert all(layer(m) >= 0 for m in g if m != "bench"), [m for m in g if layer(m) < 0 and m != "bench"]
    upward = [f"{m} -> {d}" for m, deps in g.items() for d in deps if layer(d) > layer(m)]
    assert not upward, upward
    assert layer("bench.execution.runner") == 1 and layer("bench.cli") == 3


@pytest.mark.parametrize("package", ["models", "baselines"])
def test_models_know_nothing_of_the_runner(package):
    for path in (ROOT / package).glob("*.py"):
        above = {d for d in imports_of(path, "bench") if layer(d) > 0}
        assert not above, (path.name, above)
