"""Tests of the volume-level splits (SPEC 1.3, paper 2.1.3)."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest

from monai_cmri.data.sequences import SEQUENCES, sequence_from_name
from monai_cmri.data.splits import (
    FRACTIONS,
    SPLITS,
    read_splits,
    split_counts,
    split_sizes,
    split_volumes,
    write_splits,
)


def fake_volumes(n: int, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    classes = rng.choice(["abnormal", "normal", "unlabeled", "excluded"], size=n, p=[0.2, 0.3, 0.4, 0.1])
    sequences = rng.choice(SEQUENCES, size=n)
    pairs = enumerate(zip(sequences, classes))
    return {f"file_brain_{s}_{200 + i % 7}_{i:07d}": str(c) for i, (s, c) in pairs}


def test_split_sizes_rounding_rule():
    labeled, unlabeled = FRACTIONS["normal"], FRACTIONS["unlabeled"]
    assert [split_sizes(n, labeled) for n in (0, 1, 2, 3, 4, 10, 33, 1000)] == [
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 0),
        (1, 1, 1),
        (2, 1, 1),
        (6, 2, 2),
        (23, 5, 5),
        (700, 150, 150),
    ]
    assert [split_sizes(n, unlabeled) for n in (2, 3, 10, 100, 1000)] == [
        (2, 0, 0),
        (1, 1, 1),
        (8, 1, 1),
        (94, 3, 3),
        (950, 25, 25),
    ]
    assert split_sizes(5, (0.9, 0.0, 0.1)) == (4, 0, 1)
    assert split_sizes(3, (0.2, 0.4, 0.4)) == (1, 1, 1)
    with pytest.raises(ValueError, match="summing to 1"):
        split_sizes(10, (0.5, 0.2, 0.2))


def cells_of(classes: dict[str, str]) -> dict[tuple[str, str], list[str]]:
    """Non-excluded names per (class, sequence) cell."""
    cells: dict[tuple[str, str], list[str]] = {}
    for name, volume_class in classes.items():
        if volume_class != "excluded":
            cells.setdefault((volume_class, sequence_from_name(name) or ""), []).append(name)
    return cells


def test_every_cell_is_split_with_its_own_sizes():
    classes = fake_volumes(1000)
    splits = split_volumes(classes, seed=0)
    assert set(splits) == {name for name, c in classes.items() if c != "excluded"}
    cells = cells_of(classes)
    assert len(cells) == 15
    for (volume_class, _), names in cells.items():
        counts = Counter(splits[name] for name in names)
        assert tuple(counts[split] for split in SPLITS) == split_sizes(len(names), FRACTIONS[volume_class])
        assert all(counts[split] >= 1 for split in SPLITS)
    # Per class, the fractions hold up to each cell's rounding (at most one volume per cell).
    for volume_class, row in split_counts(splits, classes).items():
        n = sum(row.values())
        for split, fraction in zip(SPLITS, FRACTIONS[volume_class]):
            assert abs(row[split] - fraction * n) <= len(SEQUENCES)


def test_small_cells_each_reach_every_split_from_three_volumes():
    classes = {}
    for count, sequence in enumerate(SEQUENCES[:4]):
        classes |= {f"file_brain_{sequence}_1_{count}{i:02d}": "normal" for i in range(count + 1)}
    classes |= {f"subject_{i}": "normal" for i in range(3)}
    splits = split_volumes(classes, seed=4)
    for (_, sequence), names in cells_of(classes).items():
        taken = sorted(splits[name] for name in names)
        if len(names) < 3:
            assert taken == ["train"] * len(names), sequence
        else:
            assert set(taken) == set(SPLITS), sequence
    # Names without a sequence form a cell of their own: 3 of them split 1/1/1.
    assert sorted(splits[f"subject_{i}"] for i in range(3)) == ["test", "train", "val"]


@pytest.mark.parametrize(
    "volume_class, n, expected",
    [("normal", 100, (70, 15, 15)), ("abnormal", 40, (28, 6, 6)), ("unlabeled", 1000, (950, 25, 25))],
)
def test_large_cells_keep_the_paper_fractions(volume_class, n, expected):
    classes = {f"file_brain_AXT1POST_209_{i:07d}": volume_class for i in range(n)}
    counts = Counter(split_volumes(classes, seed=7).values())
    assert tuple(counts[split] for split in SPLITS) == expected


def test_reproducible_and_order_independent():
    classes = fake_volumes(300, seed=1)
    first = split_volumes(classes, seed=42)
    items = list(classes.items())
    random.Random(0).shuffle(items)
    assert split_volumes(dict(items), seed=42) == first
    other = split_volumes(classes, seed=43)
    assert set(other) == set(first) and other != first


@pytest.mark.parametrize("cell", [("unlabeled", "AXT2"), ("abnormal", "AXT1"), ("normal", "AXFLAIR")])
def test_adding_volumes_to_one_cell_moves_no_other_cell(cell):
    volume_class, sequence = cell
    classes = fake_volumes(200, seed=2)
    more = dict(classes, **{f"file_brain_{sequence}_300_{i:07d}": volume_class for i in range(50)})
    before, after = split_volumes(classes, 5), split_volumes(more, 5)
    others = [name for name in before if (classes[name], name.split("_")[2]) != cell]
    assert others and all(after[name] == before[name] for name in others)
    # The grown cell itself is redrawn, with the sizes of its new count.
    grown = [name for name in after if (more[name], name.split("_")[2]) == cell]
    counts = Counter(after[name] for name in grown)
    assert tuple(counts[split] for split in SPLITS) == split_sizes(len(grown), FRACTIONS[volume_class])


@pytest.mark.parametrize(
    "n, expected", [(0, {}), (1, {"train": 1}), (2, {"train": 2}), (3, {"train": 1, "val": 1, "test": 1})]
)
def test_tiny_cells(n, expected):
    classes = {f"file_brain_AXT1_1_{i}": "abnormal" for i in range(n)}
    classes["file_brain_AXT1_1_99"] = "excluded"
    splits = split_volumes(classes, seed=0)
    assert dict(Counter(splits.values())) == expected and "file_brain_AXT1_1_99" not in splits


def test_a_class_of_small_cells_trains_only():
    # Six abnormal volumes, two per sequence: the class is large enough for 4/1/1, but no cell is.
    classes = {f"file_brain_{s}_1_{i}{s}": "abnormal" for s in SEQUENCES[:3] for i in range(2)}
    assert set(split_volumes(classes, seed=0).values()) == {"train"}


def test_unknown_class():
    with pytest.raises(ValueError, match="file_brain_AXT1_1_1: class 'odd'"):
        split_volumes({"file_brain_AXT1_1_1": "odd"}, seed=0)


def test_write_read_round_trip(tmp_path):
    classes = fake_volumes(40)
    splits = split_volumes(classes, seed=3)
    path = tmp_path / "splits.json"
    write_splits(path, splits, seed=3)
    assert read_splits(path) == splits
    content = json.loads(path.read_text())
    assert content["seed"] == 3 and sum(content["counts"].values()) == len(splits)
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_splits(bad)
    bad.write_text(json.dumps({"volumes": {"a": "holdout"}}))
    with pytest.raises(ValueError, match="bad.json.*holdout"):
        read_splits(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="bad.json.*volumes"):
        read_splits(bad)
    with pytest.raises(OSError):
        read_splits(tmp_path / "missing.json")
