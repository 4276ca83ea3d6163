"""Volume-level train/val/test splits (SPEC 1.3, paper 2.1.3).

All patches of a volume share its split, so the split is drawn over volumes: 70/15/15 for the
labeled classes (abnormal, normal) and 95/2.5/2.5 for unlabeled volumes. Excluded volumes are
never patched and get no split.

Volumes are stratified by class x sequence: each (class, sequence) cell, the sequence read from
the volume name (names without one form a cell of their own per class), is split on its own with
its class's fractions, so every sequence of a class reaches val and test as soon as it has 3
volumes, and the class as a whole keeps the paper's fractions up to the rounding of each cell.

Rounding rule, per cell of ``n`` volumes with fractions ``(train, val, test)``:

* ``n_val = round(val * n)`` and ``n_test = round(test * n)``, halves rounded up;
* if ``n >= 3``, each with a positive fraction is at least 1 (so a cell of 3 volumes splits
  1/1/1 and 10 unlabeled ones 8/1/1: every cell can be validated and tested), and the larger of
  the two, test on a tie, is cut back until at least one volume is left for training;
* if ``n < 3``, every volume trains;
* ``n_train`` is the rest.

Which volumes of a cell go where is a seeded shuffle of its names in sorted order. The random
stream of a cell depends only on the seed, the class and the sequence, so a split is reproduced
from the seed whatever the input order, and adding volumes to one cell (unlabeled AXT2 volumes,
say) moves no volume of any other cell.

Why not scikit-learn: ``train_test_split(stratify=...)`` needs at least two volumes per stratum,
rounds the test part up and the train part down with no floor per stratum, so it cannot give the
small-cell guarantee above; ``GroupShuffleSplit`` groups patches by volume, but the units here are
already volumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from monai_cmri.atomic import write_text
from monai_cmri.data.sequences import sequence_from_name

__all__ = [
    "SPLITS",
    "FRACTIONS",
    "split_sizes",
    "split_volumes",
    "split_counts",
    "write_splits",
    "read_splits",
]

#: Split names, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Default ``(train, val, test)`` fractions per volume class (paper 2.1.3).
FRACTIONS: dict[str, tuple[float, float, float]] = {
    "abnormal": (0.70, 0.15, 0.15),
    "normal": (0.70, 0.15, 0.15),
    "unlabeled": (0.95, 0.025, 0.025),
}
# Volumes of a cell from which val and test each get at least one.
_FLOOR_FROM = 3


def split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """``(n_train, n_val, n_test)`` for a cell of ``n`` volumes (rounding rule of the module docstring).

    Args:
        n: volumes in the cell (one class, one sequence).
        fractions: ``(train, val, test)``, non-negative, summing to 1.

    Raises:
        ValueError: for a negative ``n`` or invalid fractions.
    """
    _check_fractions(fractions, "split_sizes")
    if n < 0:
        raise ValueError(f"split_sizes needs a non-negative count, got {n}")
    if n < _FLOOR_FROM:
        return n, 0, 0
    val, test = (max(int(fraction > 0), int(np.floor(fraction * n + 0.5))) for fraction in fractions[1:])
    while val + test > n - 1:
        if test >= val:
            test -= 1
        else:
            val -= 1
    return n - val - test, val, test


def split_volumes(
    classes: Mapping[str, str], seed: int, fractions: Mapping[str, tuple[float, float, float]] | None = None
) -> dict[str, str]:
    """Assign every patched volume to train, val or test (paper 2.1.3), per (class, sequence) cell.

    Args:
        classes: ``{volume name: class}`` with classes "abnormal", "normal", "unlabeled" or
            "excluded" (:meth:`monai_cmri.data.annotations.Annotations.volume_classes`); the
            sequence is read from the name (``file_brain_{SEQUENCE}_...``), names without one form
            a cell of their own per class.
        seed: non-negative integer; the same seed and volumes give the same split.
        fractions: ``{class: (train, val, test)}``; default :data:`FRACTIONS`.

    Returns:
        ``{volume name: split}`` for every volume that is not excluded, in sorted name order.

    Raises:
        ValueError: for an unknown class or invalid fractions.
    """
    fractions = dict(FRACTIONS if fractions is None else fractions)
    cells: dict[tuple[str, str], list[str]] = {}
    for name in sorted(classes):
        volume_class = classes[name]
        if volume_class == "excluded":
            continue
        if volume_class not in fractions:
            raise ValueError(
                f"{name}: class {volume_class!r} has no split fractions; expected one of "
                f"{', '.join(fractions)} or excluded"
            )
        cells.setdefault((volume_class, sequence_from_name(name) or ""), []).append(name)
    for volume_class, values in sorted(fractions.items()):
        _check_fractions(values, volume_class)
    splits: dict[str, str] = {}
    for (volume_class, sequence), names in sorted(cells.items()):
        _, n_val, n_test = split_sizes(len(names), fractions[volume_class])
        ranks = _cell_rng(seed, volume_class, sequence).permutation(len(names))
        for name, rank in zip(names, ranks):
            splits[name] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return dict(sorted(splits.items()))


def split_counts(splits: Mapping[str, str], classes: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Volumes per class and split: ``{class: {split: count}}`` for the classes present in ``splits``."""
    table: dict[str, dict[str, int]] = {}
    for name, split in splits.items():
        row = table.setdefault(classes[name], dict.fromkeys(SPLITS, 0))
        row[split] += 1
    return table


def write_splits(
    path: str | os.PathLike[str],
    splits: Mapping[str, str],
    seed: int | None = None,
    fractions: Mapping[str, tuple[float, float, float]] | None = None,
) -> None:
    """Write a split as JSON, under a temporary name renamed into place.

    The file holds ``{"seed", "fractions", "counts": {split: volumes}, "volumes": {name: split}}``;
    seed and fractions are recorded so the split can be redrawn and checked.

    Raises:
        ValueError: for a split name not in :data:`SPLITS`.
    """
    path = Path(path)
    _check_splits(splits, str(path))
    fractions = FRACTIONS if fractions is None else fractions
    content = {
        "seed": seed,
        "fractions": {key: list(value) for key, value in fractions.items()},
        "counts": {split: sum(1 for value in splits.values() if value == split) for split in SPLITS},
        "volumes": dict(sorted(splits.items())),
    }
    write_text(path, json.dumps(content, indent=1) + "\n")


def read_splits(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{volume name: split}`` from a file written by :func:`write_splits`.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it is not JSON, has no ``volumes`` object, or names an unknown split.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a JSON split file: {error}") from None
    volumes = content.get("volumes") if isinstance(content, dict) else None
    if not isinstance(volumes, dict):
        raise ValueError(f"{path}: no 'volumes' object mapping volume names to splits")
    _check_splits(volumes, str(path))
    return dict(volumes)


def _cell_rng(seed: int, volume_class: str, sequence: str) -> np.random.Generator:
    """The random stream of one (class, sequence) cell, keyed by both names (0 separates them)."""
    return np.random.default_rng([seed, *map(ord, volume_class), 0, *map(ord, sequence)])


def _check_fractions(fractions: tuple[float, float, float], where: str) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"{where}: fractions (train, val, test) must be 3 non-negative numbers summing to 1, "
            f"got {tuple(fractions)}"
        )


def _check_splits(splits: Mapping[str, str], where: str) -> None:
    unknown = sorted({str(split) for split in splits.values()} - set(SPLITS))
    if unknown:
        raise ValueError(f"{where}: unknown split(s) {unknown}; expected one of {', '.join(SPLITS)}")
