"""`--set KEY=VALUE` routing: which config field of which model (and of its teacher) a setting
reaches, and the errors of a setting that reaches none or is ambiguous."""
from __future__ import annotations

import dataclasses

from bench.protocol import registry
from bench.protocol.errors import BenchError


class SuiteError(BenchError, ValueError):
    """Unknown suite or preset; the message lists the known ones."""


# fields declared by more than one model that mean the same in each (else a bare --set is refused)
SAME_MEANING = ("tbl_gate", "tbl_target", "lambda_tbl")

def _fields(name: str) -> set[str]:
    """The config fields `--set` may change for a model (a reference forecaster has no training ones)."""
    fields = {f.name for f in dataclasses.fields(registry.get(name).config())}
    return fields - set(registry.TRAINING_FIELDS) if not registry.trains(name) else fields

def _declared_by(name: str, key: str) -> type:
    """The Config class that first declares `key` for a model (TrainConfig for the shared training
    fields, even where a model's Config gives them its own default)."""
    return next(c for c in reversed(registry.get(name).cls.Config.__mro__) if key in getattr(c, "__annotations__", {}))

def _keys_for(name: str, settings: dict) -> list[str]:
    """The `--set` keys that reach model `name`: bare keys it has, and keys scoped to it ("model.key":
    the model named, or any model registered on the same class, i.e. its variants)."""
    out = []
    for key in settings:
        scope, _, field = key.rpartition(".")
        if scope and registry.get(scope).cls is not registry.get(name).cls:
            continue
        if field in _fields(name):
            out.append(key)
    return out

def _settings_for(name: str, settings: dict) -> dict:
    """{field: value} of the settings that reach model `name` (`_keys_for`)."""
    return {key.rpartition(".")[2]: settings[key] for key in _keys_for(name, settings)}

def _check_meanings(names, settings: dict) -> None:
    """A bare key that reaches fields declared by different models (FlowDistill's delta, a gate
    threshold in MAE units, against EasyST's, in SmoothL1 units) is ambiguous.

    Raises:
        SuiteError: naming the models and the scoped form.
    """
    for key in (k for k in settings if "." not in k and k not in SAME_MEANING):
        owners = {}
        for name in names:
            if key in _fields(name):
                owners.setdefault(_declared_by(name, key), name)
        if len(owners) > 1:
            named = ", ".join(f"{m} ({c.__name__})" for c, m in owners.items())
            example = next(iter(owners.values()))
            raise SuiteError(f"--set {key}: fields of different meaning in {named}; scope it to one model, "
                             f"e.g. --set {example}.{key}={settings[key]}")

def model_overrides(models, teacher: str | None = None, settings: dict | None = None,
                    teacher_configs: dict | None = None, swap: dict | None = None) -> dict[str, dict]:
    """Config overrides per model: `teacher` replaces the teacher of every model that has one
    (without it, `swap` {default teacher: replacement} replaces those named there);
    each `settings` key goes to every model whose Config has that field, and to its teacher's
    (collected per model in `teacher_configs` when a dict is given). A key "model.field" goes to
    that model (and its variants, or to it as a teacher) only.

    Raises:
        SuiteError: the teacher is not registered, a setting fits none of the models, or a bare
            key reaches fields of different meaning in different models (see `_check_meanings`).
    """
    settings = settings or {}
    if teacher is not None and teacher not in registry.names():
        raise SuiteError(f"--teacher {teacher!r} is not a registered model; see `bench list models`")
    for key in settings:
        if "." in key:
            registry.get(key.rpartition(".")[0])     # raises UnknownModelError listing the registered names
    out, used, reached = {}, set(), []
    for m in models:
        cfg = registry.get(m).config()
        out[m] = _settings_for(m, settings)
        used |= set(_keys_for(m, settings))
        reached.append(m)
        new = teacher if teacher is not None else (swap or {}).get(cfg.teacher)
        if new is not None and cfg.teacher:
            out[m]["teacher"] = new
        registry.get(m).config(**out[m])          # raises ValueError naming a value of the wrong type
        t_name = out[m].get("teacher", cfg.teacher)
        if t_name:
            t_keys = [k for k in _keys_for(t_name, settings) if k.rpartition(".")[2] != "teacher"]
            t_cfg = _settings_for(t_name, {k: settings[k] for k in t_keys})
            registry.get(t_name).config(**t_cfg)
            used |= set(t_keys)
            reached.append(t_name)
            if teacher_configs is not None:
                teacher_configs[m] = t_cfg
    _check_meanings(dict.fromkeys(reached), settings)
    unused = set(settings) - used
    if unused:
        hint = (" (reference forecasters are not trained: they have no training settings)"
                if {k.rpartition(".")[2] for k in unused} & set(registry.TRAINING_FIELDS) else "")
        raise SuiteError(f"--set {', '.join(sorted(unused))}: no model of this run has such a config field{hint}")
    return out
