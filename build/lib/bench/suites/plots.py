"""Figure helpers shared by the suites: one colour per registered model in every figure, the
report's style, a dataset's units for axis labels."""
from __future__ import annotations

from bench.protocol import registry
from bench.protocol.data import load_registry
from bench.suites.tables import NOT_CONVERGED


def units_of(dataset: str) -> str:
    """The dataset's units from the registry ("flow per interval" when it gives none)."""
    try:
        return load_registry().get(dataset, {}).get("units", "flow per interval")
    except Exception:
        return "flow per interval"


def palette(labels) -> dict:
    """One colour per registered model, the same in every figure (a row label "model (teacher: ...)"
    takes its model's colour)."""
    import seaborn as sns
    names = registry.names()
    colours = sns.color_palette("tab20", 20) + sns.color_palette("Dark2", 8)
    out = {}
    for label in labels:
        model = str(label).split(" (")[0].removesuffix(f" {NOT_CONVERGED}")
        out[label] = colours[names.index(model) % len(colours)] if model in names else "0.5"
    return out


def style() -> None:
    """matplotlib without a display, seaborn's whitegrid theme."""
    import matplotlib
    matplotlib.use("Agg")
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="paper")
