"""RQ4 (Fig. 7-9): FlowDistill's delta and lambdas one at a time around the defaults; and "search",
the report section of a joint Ray Tune search (`bench run --suite sweep --search`)."""
from __future__ import annotations

import json

import pandas as pd

from bench.protocol import registry, stats
from bench.suites.base import Suite, SuiteError, model_overrides, register_suite
from bench.suites.plots import units_of
from bench.suites.tables import converged_cell, ok_overall, seed_cell, steps_cell


# RQ4 (section 4.5, Fig. 7-9): each value tried with the others at their defaults
SWEEP_GRID = {
    "delta": (1.0, 3.0, 10.0, 15.0, 30.0),
    "lambda_tbl": (0.05, 0.10, 0.15, 0.20, 0.25),
    "lambda_kl": (5e-4, 1e-3, 2e-3, 5e-3, 1e-2),
    "lambda_spa": (0.2, 0.4, 0.6, 0.8),
    "lambda_tem": (0.25, 0.30, 0.35, 0.40, 0.45),
}

def sweep_configs(models, settings: dict | None = None, quick: bool = False) -> list[dict]:
    """SWEEP_GRID one parameter at a time: one override per (parameter, value), none for the value
    that equals the default (that point is the default trial, shared by every parameter).
    A parameter fixed with --set is not swept; `quick` keeps each parameter's smallest and
    largest value (and the default).

    Raises:
        SuiteError: a model of the sweep lacks one of the swept fields.
    """
    out = [{}]
    for m in models:
        cfg = registry.get(m).config()
        missing = [k for k in SWEEP_GRID if not hasattr(cfg, k)]
        if missing:
            raise SuiteError(f"the sweep varies {', '.join(missing)}, which model {m!r} does not have; "
                             f"sweep flowdistill or one of its variants")
    default = registry.get(models[0]).config()
    for key, values in SWEEP_GRID.items():
        if key in (settings or {}):
            continue
        values = (values[0], values[-1]) if quick else values
        out += [{key: v} for v in values if v != getattr(default, key)]
    return out


def sweep_plan(suite, models, preset, teacher, settings) -> list[tuple]:
    """Each model with each `sweep_configs` override (the quick preset: each parameter's extremes)."""
    t_config: dict[str, dict] = {}
    config = model_overrides(models, teacher, settings, t_config, dict(preset.teacher_swap))
    return [(m, config[m] | extra, t_config.get(m, {}), None) for m in models
            for extra in sweep_configs(models, settings, quick=preset.quick)]


def sweep_points(df: pd.DataFrame, grid: dict | None = None) -> pd.DataFrame:
    """One row per (parameter, value, seed) of a one-at-a-time sweep: the default trial (no
    override) counts as the default value of every parameter. Columns param, value, seed, mae, rmse."""
    grid = grid or SWEEP_GRID
    ok = ok_overall(df)
    rows = []
    for _, r in ok.iterrows():
        cfg = json.loads(r["config"]) if r["config"] else {}
        swept = [k for k in cfg if k in grid]
        if len(swept) > 1:
            continue
        params = swept or list(grid)
        default = registry.get(r["model"]).config()
        for k in params:
            rows.append({"param": k, "value": float(cfg.get(k, getattr(default, k))), "seed": r["seed"],
                         "mae": r["mae"], "rmse": r["rmse"], "trial_id": r["trial_id"], "default": not swept})
    return pd.DataFrame(rows, columns=["param", "value", "seed", "mae", "rmse", "trial_id", "default"])

def sweep_frame(df: pd.DataFrame, history_dir=None) -> pd.DataFrame:
    """Fig. 7-9 as a table: parameter, value ("(default)" marks the default point), MAE and RMSE
    (mean, ± std over seeds), and each value's change of MAE against the default with the MAE
    difference, its 95 % interval and p-value of the paired test over seeds and day blocks of test
    windows (`bench.protocol.stats`), Holm-adjusted over the table (none without `history_dir`)."""
    pts = sweep_points(df)
    if pts.empty:
        return pd.DataFrame()
    order = {k: i for i, k in enumerate(SWEEP_GRID)}
    pts = pts.assign(rank=pts["param"].map(order)).sort_values(["rank", "value"])
    trials = ok_overall(df)
    rows, tests = [], []
    for (k, v), g in pts.groupby(["param", "value"], sort=False):
        default = pts[(pts["param"] == k) & pts["default"]]
        is_default = bool(g["default"].any())
        change = ""
        if not is_default and len(default):
            change = f"{(g['mae'].mean() / default['mae'].mean() - 1) * 100:+.1f} %"
            tests.append((len(rows), stats.compare(history_dir, g, default)))
        own = trials[trials["trial_id"].astype(str).isin(set(g["trial_id"].astype(str)))]
        rows.append({"parameter": k, "value": f"{v:g}" + (" (default)" if is_default else ""),
                     "seeds": len(g), "MAE": seed_cell(g["mae"], own), "RMSE": seed_cell(g["rmse"]),
                     "steps": steps_cell(own), "converged": converged_cell(own), "MAE vs default": change})
    for (i, test), p in zip(tests, stats.holm([t["p"] for _, t in tests])):
        cell = stats.diff_cell(test, p)
        if cell:
            rows[i]["MAE vs default"] += f" ({cell})"
    return pd.DataFrame(rows)


def search_specs(suite, dataset: str, preset: str, models, ratios, seeds, epochs, teacher, settings: dict,
                 teacher_data: str, space: dict, samples: int, **paths) -> list:
    """One TrialSpec per configuration drawn from the search `space` (`bench.execution.search`),
    suite "search": the suite's single model with each sampled config, one seed each.

    Raises:
        SuiteError: not exactly one model, or a space key that is not a config field of it.
    """
    import dataclasses

    from bench.execution import search
    from bench.suites.base import build_specs
    models = list(models or suite.models)
    if len(models) != 1:
        raise SuiteError("--search tunes one model; give --models NAME")
    fields = {f.name for f in dataclasses.fields(registry.get(models[0]).config())}
    unknown = sorted(set(space) - fields)
    if unknown:
        raise SuiteError(f"--space {', '.join(unknown)}: model {models[0]!r} has no such config field")
    plain = dataclasses.replace(suite, plan=None, quick_seeds=None)    # each model once, one seed per sampled config
    base = build_specs(plain, dataset, preset, models, ratios, seeds, epochs, teacher, settings, teacher_data, **paths)
    return [dataclasses.replace(s, suite="search", config=s.config | cfg)
            for cfg in search.sample(space, samples) for s in base]


def _sweep_figure(df: pd.DataFrame):
    """Test MAE against each swept parameter, the others at their defaults."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    pts = sweep_points(df)
    units = units_of(df["dataset"].iloc[0])
    params = [p for p in SWEEP_GRID if p in set(pts["param"])]
    fig, axes = plt.subplots(1, max(len(params), 1), figsize=(3.2 * max(len(params), 1), 3.6), squeeze=False)
    for ax, p in zip(axes[0], params):
        sub = pts[pts["param"] == p]
        sns.lineplot(data=sub, x="value", y="mae", marker="o", errorbar="sd", err_style="bars", ax=ax)
        if p in ("delta", "lambda_kl"):
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel(f"test MAE ({units})")
    fig.suptitle("FlowDistill: one hyperparameter at a time, the others at their defaults (Fig. 7-9)")
    fig.tight_layout()
    return fig


def search_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per sampled configuration of a joint search: its settings, status, epochs, test
    MAE/RMSE (finished) and the last validation MAE (pruned), best first."""
    ok = df[(df["horizon"].astype(str) == "all") & (df["bucket"].astype(str) == "all")].copy()
    if ok.empty:
        return pd.DataFrame()
    rows = [{"config": r["config"], "status": r["status"], "epochs": r["epochs"], "MAE": round(r["mae"], 2),
             "RMSE": round(r["rmse"], 2)} for _, r in ok.iterrows()]
    return pd.DataFrame(rows).sort_values(["status", "MAE"]).reset_index(drop=True)


def _search_figure(df: pd.DataFrame):
    """Each sampled configuration's MAE against each numeric setting (x: pruned by ASHA)."""
    import matplotlib.pyplot as plt
    ok = df[df["status"].isin(["ok", "pruned"])].copy()
    configs = [json.loads(c) if c else {} for c in ok["config"]]
    keys = sorted({k for c in configs for k, v in c.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        xs = [c.get(k) for c in configs]
        for status, marker in (("ok", "o"), ("pruned", "x")):
            m = (ok["status"] == status).to_numpy()
            ax.scatter([x for x, keep in zip(xs, m) if keep], ok["mae"][m], marker=marker, label=status)
        ax.set_xlabel(k)
        ax.set_ylabel("test MAE (finished) / last val MAE (pruned)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Joint search: each sampled configuration")
    fig.tight_layout()
    return fig


register_suite(Suite(
    "sweep", "RQ4 (Fig. 7-9): delta, lambda_tbl, lambda_kl, lambda_spa, lambda_tem one at a time around "
    "the defaults at ratio 0.3 (quick: 0.5, 2 seeds) (`--search` for a joint Ray Tune search)", ("flowdistill",),
    (0.3,), (0.5,), kind="sweep", quick_seeds=2, title="RQ4: hyperparameters (Fig. 7-9)", rank=40, in_all=True,
    plan=sweep_plan,
    tables=lambda df, folder: [("MAE / RMSE per value, against the default (MAE difference [95 % interval], p of the "
                                "paired test over seeds and day blocks of test windows, Holm-adjusted over the table, * < 0.05)", sweep_frame(df, folder / "history"))],
    figures=lambda df, title: [("figure", _sweep_figure(df))]))
register_suite(Suite(
    "search", "the sampled configurations of `bench run --suite sweep --search` (a joint Ray Tune search)",
    ("flowdistill",), (0.3,), (0.5,), kind="search", title="RQ4+: joint hyperparameter search (Ray Tune, ASHA)",
    rank=75, runnable=False,
    tables=lambda df, folder: [("sampled configurations, best validation MAE first", search_frame(df))],
    figures=lambda df, title: [("figure", _search_figure(df))]))
