"""Figures of the downstream experiments (paper Figures 6-8) from :func:`~monai_cmri.experiments.tables.summarize` rows.

* :func:`substitution_figure`: AUROC against the percentage of real data, one line per condition
  (real only, real + synthetic) with a band of +- one standard deviation, and the 100 %-real
  baseline as a dashed line (Figures 6, 7).
* :func:`additive_figure`: AUROC against the synthetic data added, in percent of the real training
  set, with band and dashed baseline (Figure 8).

Each figure has one panel per test set (fastMRI, external), side by side, each ``PANEL`` inches at
``DPI`` dots per inch, so an image of ``k`` panels is ``k * PANEL[0] * DPI`` by ``PANEL[1] * DPI``
pixels. Drawn with Matplotlib's object API (no pyplot state, no backend switch) and written under a
temporary name renamed into place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_cmri.atomic import atomic_write
from monai_cmri.experiments.composition import ADDITIVE, REAL_ONLY, REAL_SYNTHETIC

__all__ = ["PANEL", "DPI", "substitution_figure", "additive_figure"]

#: Size of one panel, inches (width, height).
PANEL: tuple[float, float] = (5.0, 4.0)
#: Resolution of the PNG.
DPI: int = 100

_LABELS = {
    REAL_ONLY: "Real data only",
    REAL_SYNTHETIC: "Real data + synthetic substitution",
    ADDITIVE: "Real data + synthetic",
}
_COLORS = {REAL_ONLY: "tab:blue", REAL_SYNTHETIC: "tab:orange", ADDITIVE: "tab:green"}


def substitution_figure(
    rows: Sequence[Mapping[str, Any]], out: str | os.PathLike[str], metric: str = "AUROC", title: str | None = None
) -> Path:
    """Metric against real-data percentage for both substitution conditions (paper Figures 6, 7).

    Args:
        rows: summary rows with ``condition`` (:data:`REAL_ONLY`, :data:`REAL_SYNTHETIC`),
            ``fraction`` (real), ``test_set``, ``mean``, ``std``; other experiments are ignored.
        out: the PNG to write.
        metric: the y-axis label.
        title: figure title.

    Returns:
        ``out``.

    Raises:
        ValueError: if there is no substitution row, or a test set has no 100 %-real row (the baseline).
    """
    rows = [row for row in rows if row.get("condition") in (REAL_ONLY, REAL_SYNTHETIC)]
    if not rows:
        raise ValueError(f"{out}: no substitution results to plot")
    panels = []
    for test_set in _test_sets(rows):
        mine = [row for row in rows if row.get("test_set") == test_set]
        baseline = _at(mine, REAL_ONLY, 1.0) or _at(mine, REAL_SYNTHETIC, 1.0)
        if baseline is None:
            raise ValueError(f"{out}: test set {test_set}: no 100 % real result for the baseline")
        curves = {}
        for condition in (REAL_ONLY, REAL_SYNTHETIC):
            points = {float(row["fraction"]): row for row in mine if row["condition"] == condition}
            points.setdefault(1.0, baseline)  # both conditions are the full real set at 100 %
            curves[condition] = points
        panels.append((test_set, curves, baseline))
    return _draw(panels, out, "Percentage of real data (%)", metric, title)


def additive_figure(
    rows: Sequence[Mapping[str, Any]],
    out: str | os.PathLike[str],
    baselines: Mapping[Any, Mapping[str, float]] | None = None,
    metric: str = "AUROC",
    title: str | None = None,
) -> Path:
    """Metric against added synthetic data for the additive experiment (paper Figure 8).

    Args:
        rows: summary rows with ``condition`` :data:`ADDITIVE`, ``fraction`` (added synthetic data
            as a fraction of the real set), ``test_set``, ``mean``, ``std``; other rows are ignored,
            except the 100 %-real substitution rows, which give the baseline.
        out: the PNG to write.
        baselines: ``{test set: {"mean", "std"}}`` of the 100 %-real classifier, instead of the
            rows' own (an additive row at fraction 0, else a real-only row at fraction 1).
        metric: the y-axis label.
        title: figure title.

    Returns:
        ``out``.

    Raises:
        ValueError: if there is no additive row, or no baseline for a test set.
    """
    additive = [row for row in rows if row.get("condition") == ADDITIVE]
    if not additive:
        raise ValueError(f"{out}: no additive results to plot")
    panels = []
    for test_set in _test_sets(additive):
        mine = [row for row in rows if row.get("test_set") == test_set]
        baseline = (baselines or {}).get(test_set) or _at(mine, ADDITIVE, 0.0) or _at(mine, REAL_ONLY, 1.0)
        if baseline is None:
            raise ValueError(f"{out}: test set {test_set}: no 100 % real baseline; pass baselines")
        points = {float(row["fraction"]): row for row in mine if row.get("condition") == ADDITIVE}
        points.setdefault(0.0, baseline)
        panels.append((test_set, {ADDITIVE: points}, baseline))
    return _draw(panels, out, "Synthetic data added (% of the real training set)", metric, title)


def _draw(
    panels: Sequence[tuple[Any, Mapping[str, Mapping[float, Mapping[str, float]]], Mapping[str, float]]],
    out: str | os.PathLike[str],
    xlabel: str,
    metric: str,
    title: str | None,
) -> Path:
    from matplotlib.figure import Figure

    out = Path(out)
    fig = Figure(figsize=(PANEL[0] * len(panels), PANEL[1]), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for axis, (test_set, curves, baseline) in zip(axes, panels):
        for condition, points in curves.items():
            x = np.array(sorted(points))
            mean = np.array([points[f]["mean"] for f in x])
            std = np.array([_std(points[f]) for f in x])
            axis.plot(100 * x, mean, marker="o", markersize=4, color=_COLORS[condition], label=_LABELS[condition])
            axis.fill_between(100 * x, mean - std, mean + std, color=_COLORS[condition], alpha=0.2, linewidth=0)
        axis.axhline(baseline["mean"], color="0.3", linestyle="--", linewidth=1.2, label="100% real-data baseline")
        axis.set_xlim(-3, 103)
        axis.set_xticks(range(0, 101, 10))
        axis.set_xlabel(xlabel)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if test_set is not None:
            axis.set_title(str(test_set))
        axis.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return out


def _test_sets(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    seen: list[Any] = []
    for row in rows:
        if row.get("test_set") not in seen:
            seen.append(row.get("test_set"))
    return seen


def _at(rows: Sequence[Mapping[str, Any]], condition: str, fraction: float) -> Mapping[str, Any] | None:
    for row in rows:
        if row.get("condition") == condition and math.isclose(float(row["fraction"]), fraction):
            return row
    return None


def _std(row: Mapping[str, Any]) -> float:
    std = float(row.get("std", 0.0))
    return 0.0 if math.isnan(std) else std
