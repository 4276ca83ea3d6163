"""Nested, stratified fractions of a training set (paper 2.4.2, "constructed hierarchically").

"First, a subset containing 10% of the training data is sampled. Each larger fraction is then
formed by adding new samples to the previous subset [...]. The same procedure is used for the
synthetic data." Fractions of the real data are drawn over **volumes** (all patches of a volume are
in or out together); fractions of synthetic data over **rows**.

How: the units (volumes, or rows) are grouped into cells (class x sequence); each cell is put in a
seeded random order once, and a fraction ``f`` keeps the first ``k(f, n)`` units of every cell of
``n`` units. ``k`` never decreases with ``f``, so every fraction contains every smaller one, and
the composition of each fraction follows the cells' sizes as closely as integer counts allow:

* ``k(f, n) = floor(f * n + 1/2)`` (halves rounded up), within half a unit of ``f * n`` per cell;
* with ``at_least_one`` (the default for volumes), a non-empty cell keeps at least one unit at
  every ``f > 0``, so no class or sequence vanishes from a small fraction of a small data set;
* ``k(0, n) = 0`` and ``k(1, n) = n``.

Rounding each cell on its own (rather than apportioning a rounded total, e.g. by largest
remainders) is what keeps the fractions nested: an apportionment of a growing total can take a
unit away from a cell (the Alabama paradox). The total kept is therefore ``f * N`` only up to half
a unit per cell.

The order of a cell depends on the seed, a stream name and the cell only (not on other cells or on
the order of the input), like the volume splits of :mod:`monai_cmri.data.splits`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "FRACTIONS",
    "kept_count",
    "cell_name",
    "cell_order",
    "take",
    "nested_volumes",
    "nested_rows",
]

#: The paper's fractions: 10% to 100% in steps of 10%.
FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))


def kept_count(fraction: float, n: int, at_least_one: bool = False) -> int:
    """Units kept of a cell of ``n`` at ``fraction`` (module docstring rule), non-decreasing in ``fraction``.

    Raises:
        ValueError: for a fraction outside ``[0, 1]`` or a negative ``n``.
    """
    _check_fraction(fraction)
    if n < 0:
        raise ValueError(f"kept_count needs a non-negative count, got {n}")
    # The 1e-9 guard makes 0.3 * 5 (1.4999999999999998 in binary) round like the 1.5 it means.
    k = min(n, int(math.floor(fraction * n + 0.5 + 1e-9)))
    if at_least_one and fraction > 0 and n > 0:
        k = max(k, 1)
    return k


def cell_name(cell: Hashable) -> str:
    """A cell as text, ``"abnormal/AXFLAIR"`` for ``("abnormal", "AXFLAIR")``: the key of summaries and streams."""
    if isinstance(cell, tuple):
        return "/".join(str(part) for part in cell)
    return str(cell)


def cell_order(cells: Mapping[Hashable, Hashable], seed: int, stream: str) -> dict[Hashable, list]:
    """Every cell's units in a seeded random order.

    Args:
        cells: ``{unit: cell}``, e.g. ``{volume name: (class, sequence)}`` or ``{row: (label, sequence)}``.
        seed: non-negative integer.
        stream: names the use (``"volumes"``, ``"synthetic"``), so that two uses of one seed draw
            independent orders.

    Returns:
        ``{cell: [unit, ...]}``, cells in sorted name order; a unit's place depends only on the
        seed, the stream, its cell and the cell's members, not on the order of ``cells``.

    Raises:
        ValueError: for a negative or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"cell_order: seed must be a non-negative integer, got {seed!r}")
    members: dict[Hashable, list] = {}
    for unit in sorted(cells, key=_sort_key):
        members.setdefault(cells[unit], []).append(unit)
    ordered = {}
    for cell in sorted(members, key=cell_name):
        units = members[cell]
        rng = np.random.default_rng([int(seed), *map(ord, stream), 0, *map(ord, cell_name(cell))])
        ordered[cell] = [units[i] for i in rng.permutation(len(units))]
    return ordered


def take(
    order: Mapping[Hashable, Sequence], counts: Mapping[Hashable, int], what: str = "units"
) -> dict[Hashable, list]:
    """The first ``counts[cell]`` units of each cell's order.

    Args:
        order: ``{cell: units}`` from :func:`cell_order`.
        counts: ``{cell: count}``; cells not in ``counts`` are skipped.
        what: what the units are, for the error message (e.g. ``"synthetic rows in file.h5"``).

    Returns:
        ``{cell: units}`` for the cells of ``counts``.

    Raises:
        ValueError: naming the cell, when it holds fewer units than asked for.
    """
    chosen = {}
    for cell, count in counts.items():
        available = order.get(cell, [])
        if count > len(available):
            raise ValueError(f"cell {cell_name(cell)}: {count} {what} needed, only {len(available)} available")
        chosen[cell] = list(available[:count])
    return chosen


def nested_volumes(
    strata: Mapping[str, Hashable],
    fractions: Iterable[float] = FRACTIONS,
    seed: int = 0,
    at_least_one: bool = True,
) -> dict[float, list[str]]:
    """Nested volume-level fractions of a real training set, stratified by class x sequence (paper 2.4.2).

    Args:
        strata: ``{volume name: stratum}``, the stratum e.g. ``(volume class, sequence)``.
        fractions: fractions in ``[0, 1]``.
        seed: non-negative integer; the same seed and volumes give the same fractions.
        at_least_one: keep at least one volume of every stratum at every fraction above 0.

    Returns:
        ``{fraction: sorted volume names}`` in ascending fraction order; each list contains every
        list of a smaller fraction.

    Raises:
        ValueError: for a fraction outside ``[0, 1]``, a repeated fraction or an invalid seed.
    """
    fractions = _check_fractions(fractions)
    order = cell_order(strata, seed, "volumes")
    return {
        f: sorted(name for units in order.values() for name in units[: kept_count(f, len(units), at_least_one)])
        for f in fractions
    }


def nested_rows(
    cells: Sequence[Hashable] | np.ndarray,
    fractions: Iterable[float] = FRACTIONS,
    seed: int = 0,
    at_least_one: bool = False,
) -> dict[float, np.ndarray]:
    """Nested row-level fractions, per cell (the synthetic data of paper 2.4.2).

    Args:
        cells: the cell of every row, e.g. ``(label, sequence)`` tuples; length ``N``.
        fractions: fractions in ``[0, 1]``.
        seed: non-negative integer.
        at_least_one: keep at least one row of every cell at every fraction above 0.

    Returns:
        ``{fraction: ascending int64 row indices}`` in ascending fraction order, nested.

    Raises:
        ValueError: for a fraction outside ``[0, 1]``, a repeated fraction or an invalid seed.
    """
    fractions = _check_fractions(fractions)
    order = cell_order(dict(enumerate(_hashable(cells))), seed, "synthetic")
    nested = {}
    for f in fractions:
        rows = [row for units in order.values() for row in units[: kept_count(f, len(units), at_least_one)]]
        nested[f] = np.sort(np.asarray(rows, dtype=np.int64))
    return nested


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fractions must lie in [0, 1], got {fraction}")


def _check_fractions(fractions: Iterable[float]) -> list[float]:
    values = [float(f) for f in fractions]
    for f in values:
        _check_fraction(f)
    if len(set(values)) != len(values):
        raise ValueError(f"fractions must be distinct, got {values}")
    return sorted(values)


def _hashable(cells: Sequence[Hashable] | np.ndarray) -> list[Hashable]:
    """Rows' cells as hashable values (the rows of a 2D array become tuples)."""
    if isinstance(cells, np.ndarray):
        return [tuple(row) for row in cells.tolist()] if cells.ndim == 2 else cells.tolist()
    return list(cells)


def _sort_key(unit: Hashable) -> tuple[int, str, int]:
    """Integers in numeric order, everything else by its text."""
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        return (0, "", int(unit))
    return (1, str(unit), 0)
