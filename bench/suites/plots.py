"""Figure helpers shared by the suites: one visual language for every figure of every report.

- One colour per model name, the same in every figure (`colour_of`): the floors in greys, each with
  a dash style of its own (`floor_style`); teachers in one hue family (purples); FlowDistill's
  student and its variants in blues; the other light models and the graph baselines in hues of
  their own; a model not listed takes a colour from a fixed spare list by its registry position.
- Markers on every measured point; a line joins two points only where no ratio of the 0.1 grid
  lies between them (`measured_segments`), so no line suggests a trend through ratios that did
  not run.
- Legends outside the data (`legend_outside`); the report's style (`style`); a dataset's units.
"""
from __future__ import annotations

from bench.protocol import registry
from bench.protocol.data import load_registry
from bench.suites.tables import NOT_CONVERGED

# floors: grey level and dash style, one each
FLOORS = {"seasonal-naive-week": ("0.25", (0, (5, 2))), "seasonal-naive-day": ("0.45", (0, (1, 1.5))),
          "historical-average": ("0.6", (0, (5, 1.5, 1, 1.5))), "persistence": ("0.35", (0, (2, 2))),
          "training-mean": ("0.7", (0, (8, 2)))}

# every other model by family: teachers purple, FlowDistill's student blue, then distinct hues
COLOURS = {
    "flowdistill-teacher": "#6a3d9a", "flowdistill-teacher-wo-lm": "#9e7cc1", "stwa": "#cab2d6",
    "sdkd-teacher": "#54278f",
    "flowdistill": "#1f4e9c", "flowdistill-wo-tb": "#6baed6", "flowdistill-wo-ib": "#3182bd",
    "flowdistill-wo-sc": "#9ecae1", "flowdistill-wo-tc": "#08306b", "flowdistill-element": "#4292c6",
    "flowdistill-kd": "#2171b5", "flowdistill-kd-element": "#084594",
    "easyst": "#2ca02c", "bigst": "#d95f02", "st-mlp": "#e6ab02", "astgcn": "#a6761d", "stsgcn": "#e7298a",
    "sdkd-unet": "#1b9e77", "sdkd-unet-kd": "#66c2a5", "sdkd-unet-sdkd": "#006d2c", "sdkd-unet-sdkd-low": "#41ab5d",
    "sdkd-unet-sdkd-latent": "#74c476", "sdkd-resnet": "#b15928", "sdkd-resnet-kd": "#fdbf6f",
    "sdkd-resnet-sdkd": "#ff7f00",
}
SPARE = ("#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#393b79", "#637939", "#843c39")


def model_of(label) -> str:
    """The model name of a row label ("model (teacher: ...)", with or without the not-converged mark)."""
    return str(label).split(" (")[0].removesuffix(f" {NOT_CONVERGED}").strip()


def colour_of(label):
    """The colour of a model (or a row label of it), the same in every figure."""
    model = model_of(label)
    if model in FLOORS:
        return FLOORS[model][0]
    if model in COLOURS:
        return COLOURS[model]
    names = registry.names()
    return SPARE[names.index(model) % len(SPARE)] if model in names else "0.5"


def floor_style(model: str) -> tuple:
    """(grey, dash pattern) of a floor; a model that is not a listed floor gets mid grey, dashed."""
    return FLOORS.get(model, ("0.5", (0, (4, 2))))


def palette(labels) -> dict:
    """{label: colour} for seaborn's `palette=` (`colour_of` of each label)."""
    return {label: colour_of(label) for label in labels}


def measured_segments(xs, step: float = 0.1) -> list[list[int]]:
    """Indices of sorted x values (training ratios) grouped into runs that a line may join: two
    neighbours join only when they are at most `step` apart (no unmeasured grid ratio between)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    runs: list[list[int]] = []
    for i in order:
        if runs and xs[i] - xs[runs[-1][-1]] <= step + 1e-9:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def legend_outside(ax, **kwargs) -> None:
    """The axis' legend to the right of the data, never over it."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **kwargs)


def units_of(dataset: str) -> str:
    """The dataset's units from the registry ("flow per interval" when it gives none)."""
    try:
        return load_registry().get(dataset, {}).get("units", "flow per interval")
    except Exception:
        return "flow per interval"


def style() -> None:
    """matplotlib without a display, seaborn's whitegrid theme."""
    import matplotlib
    matplotlib.use("Agg")
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="paper")
