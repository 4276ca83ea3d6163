"""Training sets of the substitution and additive experiments (paper 2.4.2, 3.3; Figures 6-8).

Both experiments train the normal-vs-abnormal classifier on a real patch file (the training split)
and a synthetic one (stage-2 samples decoded to patches, ``label`` = the sampled class). Only
normal and abnormal rows take part; cells are ``(sequence, class)`` of a row.

* **Substitution** at real fraction ``f``: the volumes of the real file are kept by
  :func:`~monai_cmri.experiments.fractions.nested_volumes` (stratum: the volume's class and
  sequence). *Real only* trains on the rows of the kept volumes. *Real + synthetic* adds, per cell,
  exactly as many synthetic rows of that cell as real rows were removed, so the set has the size
  and the cell composition of the full real set at every ``f``; at ``f = 0`` it is all synthetic
  (paper Figure 6, 0 % real), and at ``f = 1`` both conditions are the full real set.
* **Additive** at ``g``: every real row plus, per cell of ``N_c`` real rows,
  ``kept_count(g, N_c)`` synthetic rows of that cell (``round(g * N_c)``, halves up).

Synthetic rows of a cell are always taken from the front of one seeded order of that cell
(:func:`~monai_cmri.experiments.fractions.cell_order`, stream ``"synthetic"``), so the synthetic
part is nested too: it grows as the real fraction shrinks, and as ``g`` grows.

A volume's class is ``abnormal`` if any of its rows is abnormal (abnormal volumes also give
normal patches from outside their boxes, paper 2.1.3), else ``normal``; ``classes`` overrides it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monai_cmri.data.dataset import ABNORMAL, LABELS, NORMAL
from monai_cmri.experiments.fractions import FRACTIONS, cell_name, cell_order, kept_count, nested_volumes, take
from monai_cmri.experiments.rows import Rows, read_rows
from monai_cmri.experiments.sources import Source, make_source

__all__ = [
    "REAL_ONLY",
    "REAL_SYNTHETIC",
    "ADDITIVE",
    "SUBSTITUTION_FRACTIONS",
    "ADDITIVE_FRACTIONS",
    "TrainingSet",
    "volume_strata",
    "substitution",
    "additive",
]

#: Conditions of the substitution experiment, and the additive experiment's.
REAL_ONLY, REAL_SYNTHETIC, ADDITIVE = "real", "real+synthetic", "additive"
#: Real fractions of the substitution experiment, 0 % (all synthetic, real+synthetic only) to 100 %.
SUBSTITUTION_FRACTIONS: tuple[float, ...] = (0.0, *FRACTIONS)
#: Added synthetic data of the additive experiment, 10 % to 100 % of the real training set.
ADDITIVE_FRACTIONS: tuple[float, ...] = FRACTIONS


@dataclass(frozen=True)
class TrainingSet:
    """One training set: the sources a classifier reads and what they hold.

    Attributes:
        sources: source dicts (:mod:`monai_cmri.experiments.sources`), target ``"label"``.
        summary: ``{"experiment", "condition", "fraction", "seed", "volumes": {"kept", "total"},
            "rows": {"real", "synthetic", "total"}, "cells": {"SEQUENCE/class": {"real",
            "synthetic"}}}``, JSON-serialisable.
    """

    sources: list[Source]
    summary: dict[str, Any] = field(default_factory=dict)


def volume_strata(rows: Rows, classes: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """``{volume: (sequence, class)}`` for every volume with normal or abnormal rows.

    Args:
        rows: the real file's metadata.
        classes: ``{volume: class}`` to use instead of the class read from the rows.

    Raises:
        ValueError: if a volume has rows of two sequences, or ``classes`` lacks a volume.
    """
    strata: dict[str, tuple[str, str]] = {}
    sequences: dict[str, set[str]] = {}
    abnormal: dict[str, bool] = {}
    for row in rows.labeled().tolist():
        volume = rows.volumes[row]
        sequences.setdefault(volume, set()).add(rows.sequences[row])
        abnormal[volume] = abnormal.get(volume, False) or rows.labels[row] == LABELS[ABNORMAL]
    for volume in sorted(sequences):
        if len(sequences[volume]) != 1:
            raise ValueError(f"{rows.path}: volume {volume} has rows of several sequences {sorted(sequences[volume])}")
        if classes is not None:
            if volume not in classes:
                raise ValueError(f"{rows.path}: no class given for volume {volume}")
            volume_class = classes[volume]
        else:
            volume_class = LABELS[ABNORMAL] if abnormal[volume] else LABELS[NORMAL]
        strata[volume] = (next(iter(sequences[volume])), volume_class)
    return strata


def substitution(
    real: str | os.PathLike[str],
    synthetic: str | os.PathLike[str],
    fractions: Iterable[float] = SUBSTITUTION_FRACTIONS,
    seed: int = 0,
    at_least_one: bool = True,
    classes: Mapping[str, str] | None = None,
) -> dict[float, dict[str, TrainingSet]]:
    """Training sets of the substitution experiment at each real fraction (paper 2.4.2, Figures 6, 7).

    Args:
        real: the real training patch file.
        synthetic: decoded synthetic patches (``label`` = sampled class).
        fractions: real fractions in ``[0, 1]``.
        seed: draws the kept volumes and the synthetic rows.
        at_least_one: keep at least one volume of every stratum at every fraction above 0.
        classes: ``{volume: class}`` overriding the classes read from the rows.

    Returns:
        ``{fraction: {REAL_ONLY: set, REAL_SYNTHETIC: set}}`` in ascending fraction order; at a
        fraction that keeps no real row (0) only :data:`REAL_SYNTHETIC`.

    Raises:
        ValueError: if the real file has no normal or abnormal rows, or the synthetic file holds
            too few rows of a cell (the message names the cell and the fraction).
    """
    rows, pool = read_rows(real), read_rows(synthetic)
    labeled = _labeled(rows)
    strata = volume_strata(rows, classes)
    kept = nested_volumes(strata, fractions, seed, at_least_one)
    full = Counter(rows.cells(labeled))
    order = _synthetic_order(pool, seed)
    owners = rows.volumes[labeled].tolist()
    sets: dict[float, dict[str, TrainingSet]] = {}
    for f, volumes in kept.items():
        # A set lookup per row: np.isin on object (string) arrays is a slow elementwise loop.
        chosen = set(volumes)
        mine = labeled[np.fromiter((owner in chosen for owner in owners), dtype=bool, count=len(owners))]
        have = Counter(rows.cells(mine))
        missing = {cell: n - have[cell] for cell, n in full.items()}
        what = f"synthetic rows in {pool.path} (real fraction {f})"
        added = _rows_of(take(order, missing, what))
        volume_counts = {"kept": len(volumes), "total": len(strata)}
        conditions = {}
        if mine.size:
            conditions[REAL_ONLY] = _training_set(
                rows, mine, pool, np.zeros(0, np.int64), "substitution", REAL_ONLY, f, seed, volume_counts
            )
        conditions[REAL_SYNTHETIC] = _training_set(
            rows, mine, pool, added, "substitution", REAL_SYNTHETIC, f, seed, volume_counts
        )
        sets[f] = conditions
    return sets


def additive(
    real: str | os.PathLike[str],
    synthetic: str | os.PathLike[str],
    fractions: Iterable[float] = ADDITIVE_FRACTIONS,
    seed: int = 0,
) -> dict[float, TrainingSet]:
    """Training sets of the additive experiment: all real rows plus g times as many synthetic (paper 2.4.2, Fig. 8).

    Args:
        real: the real training patch file.
        synthetic: decoded synthetic patches (``label`` = sampled class).
        fractions: added synthetic data ``g`` in ``[0, 1]``, as a fraction of the real rows.
        seed: draws the synthetic rows.

    Returns:
        ``{g: set}`` in ascending order; per cell of ``N_c`` real rows the set adds
        ``kept_count(g, N_c)`` synthetic rows of the cell, nested in ``g``.

    Raises:
        ValueError: if the real file has no normal or abnormal rows, a fraction is outside
            ``[0, 1]``, or the synthetic file holds too few rows of a cell (named).
    """
    rows, pool = read_rows(real), read_rows(synthetic)
    labeled = _labeled(rows)
    full = Counter(rows.cells(labeled))
    order = _synthetic_order(pool, seed)
    volumes = len(set(rows.volumes[labeled].tolist()))
    volume_counts = {"kept": volumes, "total": volumes}
    sets = {}
    for g in sorted(float(value) for value in fractions):
        counts = {cell: kept_count(g, n) for cell, n in full.items()}
        added = _rows_of(take(order, counts, f"synthetic rows in {pool.path} (added fraction {g})"))
        sets[g] = _training_set(rows, labeled, pool, added, "additive", ADDITIVE, g, seed, volume_counts)
    return sets


def _labeled(rows: Rows) -> np.ndarray:
    labeled = rows.labeled()
    if labeled.size == 0:
        raise ValueError(f"{rows.path}: no normal or abnormal rows to train the downstream classifier on")
    return labeled


def _synthetic_order(pool: Rows, seed: int) -> dict[tuple[str, str], list[int]]:
    """Every cell's normal and abnormal synthetic rows in the seeded order of stream ``"synthetic"``."""
    labeled = pool.labeled()
    return cell_order(dict(zip(labeled.tolist(), pool.cells(labeled))), seed, "synthetic")


def _rows_of(chosen: Mapping[Any, list[int]]) -> np.ndarray:
    return np.sort(np.asarray([row for rows in chosen.values() for row in rows], dtype=np.int64))


def _training_set(
    rows: Rows,
    real: np.ndarray,
    pool: Rows,
    synthetic: np.ndarray,
    experiment: str,
    condition: str,
    fraction: float,
    seed: int,
    volumes: Mapping[str, int],
) -> TrainingSet:
    sources = []
    if real.size:
        sources.append(make_source(rows.path, "label", real))
    if synthetic.size:
        sources.append(make_source(pool.path, "label", synthetic))
    real_cells, synthetic_cells = Counter(rows.cells(real)), Counter(pool.cells(synthetic))
    cells = {
        cell_name(cell): {"real": int(real_cells[cell]), "synthetic": int(synthetic_cells[cell])}
        for cell in sorted(set(real_cells) | set(synthetic_cells))
    }
    summary = {
        "experiment": experiment,
        "condition": condition,
        "fraction": float(fraction),
        "seed": int(seed),
        "volumes": dict(volumes),
        "rows": {"real": int(real.size), "synthetic": int(synthetic.size), "total": int(real.size + synthetic.size)},
        "cells": cells,
    }
    return TrainingSet(sources, summary)
