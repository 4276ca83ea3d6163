"""Tests of the nested, stratified fractions (paper 2.4.2, "constructed hierarchically")."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.experiments.fractions import FRACTIONS, cell_order, kept_count, nested_rows, nested_volumes, take


def strata(seed: int = 0) -> dict[str, tuple[str, str]]:
    """47 volumes in 5 (sequence, class) cells of 1 to 17 volumes."""
    sizes = {("AXFLAIR", "abnormal"): 17, ("AXFLAIR", "normal"): 13, ("AXT1", "abnormal"): 9,
             ("AXT1", "normal"): 7, ("AXT1POST", "normal"): 1}
    return {f"file_brain_{s}_{c}_{k}": (s, c) for (s, c), n in sizes.items() for k in range(n)}


def test_kept_count_rounds_halves_up_and_never_decreases():
    assert FRACTIONS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert [kept_count(f, 5) for f in FRACTIONS] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [kept_count(f, 3) for f in FRACTIONS] == [0, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert [kept_count(f, 3, at_least_one=True) for f in FRACTIONS] == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert kept_count(0.0, 7, at_least_one=True) == 0 and kept_count(1.0, 7) == 7
    grid = np.linspace(0, 1, 101)
    for n in range(0, 40):
        counts = [kept_count(f, n) for f in grid]
        assert counts == sorted(counts) and counts[-1] == n
        assert all(abs(k - f * n) <= 0.5 + 1e-9 for k, f in zip(counts, grid))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        kept_count(1.1, 4)


def test_nested_volumes_are_nested_and_keep_each_stratum_in_proportion():
    volumes = strata()
    nested = nested_volumes(volumes, FRACTIONS, seed=3)
    assert list(nested) == list(FRACTIONS)
    sizes = {cell: sum(1 for c in volumes.values() if c == cell) for cell in set(volumes.values())}
    previous: set[str] = set()
    for f, kept in nested.items():
        assert set(kept) >= previous and len(kept) == len(set(kept))
        previous = set(kept)
        for cell, n in sizes.items():
            assert sum(1 for name in kept if volumes[name] == cell) == kept_count(f, n, at_least_one=True)
    assert sorted(nested[1.0]) == sorted(volumes)
    # The one-volume stratum is present at every fraction, as at_least_one promises.
    assert all("file_brain_AXT1POST_normal_0" in kept for kept in nested.values())


def test_fractions_are_reproducible_by_seed_and_independent_of_input_order():
    volumes = strata()
    shuffled = dict(sorted(volumes.items(), key=lambda item: hash(item[0]) % 97))
    assert nested_volumes(volumes, seed=5) == nested_volumes(shuffled, seed=5)
    assert nested_volumes(volumes, seed=5)[0.3] != nested_volumes(volumes, seed=6)[0.3]
    # Adding a stratum leaves the draws of the others unchanged.
    more = {**volumes, **{f"file_brain_AXT2_normal_{k}": ("AXT2", "normal") for k in range(4)}}
    for f, kept in nested_volumes(more, seed=5).items():
        assert [name for name in kept if "AXT2" not in name] == nested_volumes(volumes, seed=5)[f]


def test_nested_rows_per_cell():
    rng = np.random.default_rng(0)
    cells = [("AXFLAIR", "normal"), ("AXFLAIR", "abnormal"), ("AXT1", "normal")]
    row_cells = [cells[i] for i in rng.integers(0, 3, 61)]
    nested = nested_rows(row_cells, FRACTIONS, seed=1)
    previous = np.zeros(0, np.int64)
    for f, rows in nested.items():
        assert np.all(np.diff(rows) > 0) and set(previous.tolist()) <= set(rows.tolist())
        previous = rows
        for cell in cells:
            n = row_cells.count(cell)
            assert sum(1 for r in rows if row_cells[r] == cell) == kept_count(f, n)
    assert np.array_equal(nested_rows(np.array(row_cells), FRACTIONS, seed=1)[0.4], nested[0.4])
    assert not np.array_equal(nested_rows(row_cells, seed=2)[0.5], nested[0.5])


def test_take_names_the_short_cell():
    order = cell_order({0: "a", 1: "a", 2: "b"}, seed=0, stream="test")
    assert sorted(take(order, {"a": 2})["a"]) == [0, 1]
    with pytest.raises(ValueError, match="cell b: 2 rows needed, only 1 available"):
        take(order, {"b": 2}, "rows")
    with pytest.raises(ValueError, match="seed"):
        cell_order({0: "a"}, seed=-1, stream="test")
    assert nested_volumes({"v": "a"}, [0.0, 0.5]) == {0.0: [], 0.5: ["v"]}
