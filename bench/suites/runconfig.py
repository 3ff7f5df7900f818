"""A run described in a file: `bench run --config FILE.yaml`.

The file holds what `bench run` takes as flags, under the flags' names (dashes or underscores):

    suite: distill                  # a suite name, or all
    dataset: NYCTaxi
    models: [flowdistill]           # or "flowdistill,easyst"
    ratios: [0.1]
    seeds: 5
    quick: false                    # the preset: quick or full (also `preset: quick`)
    teacher: seasonal-naive-week
    teacher_data: disjoint
    set: {tbl_gate: batch, tbl_target: teacher, lambda_tbl: 1}
    executor: ray
    out: results/distill

validated by pydantic (`RunConfig`: an unknown key, a wrong type or a value outside the allowed
ones is an error that names the file, the key and what is allowed). Flags given on the command
line override the file. Every run writes the resolved configuration to `OUT/run.yaml` (and
`OUT/SUITE/run.yaml`), so `bench run --config OUT/run.yaml` runs the same trials again (a rerun
skips the finished ones).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.protocol.errors import BenchError
from bench.execution.results import atomic_write
from bench.protocol.split import TEACHER_DATA, check_ratio


class RunConfigError(BenchError, ValueError):
    """A run file that cannot be read or does not validate; the message names the file and key."""


def _listed(value):
    """"a,b" or [a, b] -> [a, b] (a YAML list or the flag's comma-separated form)."""
    if value is None or isinstance(value, list):
        return value
    return [v.strip() for v in str(value).split(",") if v.strip()]


class RunConfig(BaseModel):
    """What `bench run` takes, as a file (see the module docstring); None: the flag's default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    suite: str
    dataset: str | None = None
    models: list[str] | None = None
    ratios: list[float] | None = None
    seeds: int | None = Field(default=None, ge=1)
    epochs: int | None = Field(default=None, ge=1)
    preset: Literal["quick", "full"] | None = None
    quick: bool | None = None
    fixed_rounds: bool | None = None
    teacher: str | None = None
    teacher_data: Literal[TEACHER_DATA] | None = None          # type: ignore[valid-type]
    settings: dict[str, Any] | None = Field(default=None, alias="set")
    nodes: int | None = Field(default=None, ge=1)
    executor: Literal["ray", "inline"] | None = None
    address: str | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None
    gpus_per_trial: float | None = Field(default=None, ge=0)
    out: str | None = None
    report: str | None = None
    no_report: bool | None = None
    data_dir: str | None = None
    registry: str | None = None
    yes: bool | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value):
        return _listed(value)

    @field_validator("ratios", mode="before")
    @classmethod
    def _ratios(cls, value):
        return [check_ratio(r) for r in _listed(value)] if value is not None else None


def load(path: str | Path) -> dict:
    """The flags a run file sets ({flag dest: value}, only the keys it holds).

    Raises:
        RunConfigError: a missing file, malformed YAML, an unknown key or a wrong value (names the
            file, the key and what is allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"--config {path}: no such file; write a YAML file (see configs/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RunConfigError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', None) or exc})") from exc
    if not isinstance(raw, dict):
        raise RunConfigError(f"{path}: a run file maps flag names to values (e.g. `suite: distill`), not "
                             f"{type(raw).__name__}")
    # YAML 1.1 reads a bare `yes:` key as the boolean True
    raw = {("yes" if k is True else str(k)).replace("-", "_"): v for k, v in raw.items()}
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(file)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(f.alias or name for name, f in RunConfig.model_fields.items()))
                problems.append(f"unknown key {key!r} (allowed: {allowed})")
            else:
                problems.append(f"key {key!r}: {err['msg']} (got {err.get('input')!r})")
        raise RunConfigError(f"{path}: " + "; ".join(problems)) from exc
    values = config.model_dump(exclude_unset=True, by_alias=False)
    preset = values.pop("preset", None)
    if preset is not None and "quick" not in values:
        values["quick"] = preset == "quick"
    if "settings" in values:
        values["settings"] = list(values["settings"].items())
    return values


def write(args, folders) -> None:
    """The resolved configuration of a run (its flags after file and command line) as run.yaml in
    each of `folders` (atomic writes)."""
    keep = [name for name in RunConfig.model_fields if name not in ("preset",)]
    resolved = {}
    for name in keep:
        value = getattr(args, name, None)
        if value is None or value is False or value == []:
            continue
        if name == "settings":
            resolved["set"] = dict(value)
            continue
        resolved[name] = value
    text = "# the resolved configuration of a run: bench run --config THIS_FILE runs it again\n" + \
        yaml.safe_dump(resolved, sort_keys=False)
    for folder in folders:
        target = Path(folder) / "run.yaml"
        atomic_write(target, lambda tmp: Path(tmp).write_text(text))
