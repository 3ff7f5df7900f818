"""Joint hyperparameter search (`bench run --suite sweep --search`): configurations drawn from a
search space given on the command line or in a YAML file, run as Ray Tune trials under an ASHA
scheduler that stops poor trials early on their validation MAE.

The configurations are drawn here with a seeded generator, before Tune sees them, so that a
rerun draws the same ones and skips those already finished or pruned (resume).

Space syntax, one parameter per entry:
    delta=1,3,10,30                 a choice among the listed values
    lambda_kl=loguniform:5e-4:1e-2  log-uniform between two bounds
    lambda_tbl=uniform:0.05:0.25    uniform between two bounds
    delta=randint:1:30              an integer in [1, 30]
YAML file: {delta: [1, 3, 10], lambda_kl: {loguniform: [5e-4, 1e-2]}, ...}
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from bench.protocol.errors import BenchError

DISTRIBUTIONS = ("uniform", "loguniform", "randint")


class SearchSpaceError(BenchError, ValueError):
    """A search-space entry that cannot be read; the message shows the accepted forms."""


HELP = "KEY=v1,v2,... | KEY=uniform:LO:HI | KEY=loguniform:LO:HI | KEY=randint:LO:HI"


def _number(text, key: str):
    value = text
    if isinstance(text, str):
        try:
            value = int(text) if text.strip().lstrip("+-").isdigit() else float(text)   # YAML reads 5e-4 as text
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SearchSpaceError(f"search space {key}: {text!r} is not a number ({HELP})")
    return value


def _value(text: str):
    """A listed value: a number where it reads as one (5e-4 included), else YAML (true, text)."""
    try:
        return _number(text.strip(), "")
    except SearchSpaceError:
        return yaml.safe_load(text.strip())


def _dist(key: str, kind: str, bounds) -> dict:
    if len(bounds) != 2:
        raise SearchSpaceError(f"search space {key}: {kind} takes two bounds LO:HI ({HELP})")
    lo, hi = (_number(b, key) for b in bounds)
    if not lo < hi or (kind == "loguniform" and lo <= 0):
        raise SearchSpaceError(f"search space {key}: bounds {lo}, {hi} must satisfy 0 < LO < HI for loguniform, "
                               f"LO < HI otherwise")
    return {kind: [lo, hi]}


def parse_entry(text: str) -> tuple[str, dict]:
    """"KEY=SPEC" -> (key, {"choice": [...]} | {"uniform"|"loguniform"|"randint": [lo, hi]}).

    Raises:
        SearchSpaceError: not KEY=SPEC, an unknown distribution, bad bounds or values.
    """
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or not spec:
        raise SearchSpaceError(f"search space entry {text!r} is not KEY=SPEC ({HELP})")
    head, colon, rest = spec.partition(":")
    if colon and head in DISTRIBUTIONS:
        return key, _dist(key, head, rest.split(":"))
    if colon:
        raise SearchSpaceError(f"search space {key}: unknown distribution {head!r}; use one of "
                               f"{', '.join(DISTRIBUTIONS)} or a list of values ({HELP})")
    return key, {"choice": [_value(v) for v in spec.split(",") if v.strip()]}


def load_space(entries: list[str] | None = None, file: str | Path | None = None) -> dict[str, dict]:
    """The search space from a YAML file, then command-line entries (which win on a shared key).

    Raises:
        SearchSpaceError: missing file, bad YAML, bad entry, or an empty space.
    """
    space: dict[str, dict] = {}
    if file:
        path = Path(file)
        if not path.is_file():
            raise SearchSpaceError(f"search space file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SearchSpaceError(f"search space file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise SearchSpaceError(f"search space file {path} must map parameter names to value lists or "
                                   f"{{uniform|loguniform|randint: [LO, HI]}}")
        for key, spec in raw.items():
            if isinstance(spec, list) and spec:
                space[key] = {"choice": spec}
            elif isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
                kind, bounds = next(iter(spec.items()))
                space[key] = _dist(key, kind, list(bounds))
            else:
                raise SearchSpaceError(f"search space file {path}: {key}: {spec!r} is neither a list of values nor "
                                       f"{{uniform|loguniform|randint: [LO, HI]}}")
    for entry in entries or []:
        key, dist = parse_entry(entry)
        space[key] = dist
    if not space:
        raise SearchSpaceError(f"--search needs a search space: --space {HELP.split(' | ')[0]} (repeatable) "
                               f"or --space-file FILE.yaml")
    return space


def sample(space: dict[str, dict], n: int, seed: int = 0) -> list[dict]:
    """`n` distinct configurations drawn from `space` with a generator seeded by `seed` (fewer
    when a choice-only space has fewer combinations)."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    for _ in range(n * 20):
        cfg = {}
        for key, dist in sorted(space.items()):
            kind, arg = next(iter(dist.items()))
            if kind == "choice":
                cfg[key] = arg[int(rng.integers(len(arg)))]
            elif kind == "uniform":
                cfg[key] = float(rng.uniform(*arg))
            elif kind == "loguniform":
                cfg[key] = float(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))
            else:
                cfg[key] = int(rng.integers(arg[0], arg[1] + 1))
        frozen = tuple(sorted(cfg.items()))
        if frozen not in seen:
            seen.add(frozen)
            out.append(cfg)
        if len(out) == n:
            break
    return out
