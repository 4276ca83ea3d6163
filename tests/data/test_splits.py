"""Tests of the volume-level splits (SPEC 1.3, paper 2.1.3)."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest

from monai_cmri.data.sequences import SEQUENCES
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


def test_thousand_volumes_fractions_and_strata():
    classes = fake_volumes(1000)
    splits = split_volumes(classes, seed=0)
    assert set(splits) == {name for name, c in classes.items() if c != "excluded"}
    assert set(splits.values()) == set(SPLITS)
    table = split_counts(splits, classes)
    for volume_class, row in table.items():
        n = sum(row.values())
        expected = split_sizes(n, FRACTIONS[volume_class])
        assert all(abs(row[split] - size) <= 1 for split, size in zip(SPLITS, expected))
        assert abs(row["train"] - FRACTIONS[volume_class][0] * n) <= 1
        # Per sequence, the held-out share is the floor or ceiling of its quota.
        per_sequence = Counter(name.split("_")[2] for name in splits if classes[name] == volume_class)
        held = Counter(
            name.split("_")[2] for name, s in splits.items() if classes[name] == volume_class and s != "train"
        )
        for sequence, count in per_sequence.items():
            quota = (row["val"] + row["test"]) * count / n
            assert np.floor(quota) <= held[sequence] <= np.ceil(quota)


def test_reproducible_and_order_independent():
    classes = fake_volumes(300, seed=1)
    first = split_volumes(classes, seed=42)
    items = list(classes.items())
    random.Random(0).shuffle(items)
    assert split_volumes(dict(items), seed=42) == first
    other = split_volumes(classes, seed=43)
    assert set(other) == set(first) and other != first


def test_adding_unlabeled_volumes_keeps_labeled_splits():
    classes = fake_volumes(200, seed=2)
    more = dict(classes, **{f"file_brain_AXT2_300_{i:07d}": "unlabeled" for i in range(50)})
    before, after = split_volumes(classes, 5), split_volumes(more, 5)
    assert all(after[name] == split for name, split in before.items() if classes[name] != "unlabeled")


@pytest.mark.parametrize(
    "n, expected", [(0, {}), (1, {"train": 1}), (2, {"train": 2}), (3, {"train": 1, "val": 1, "test": 1})]
)
def test_tiny_classes(n, expected):
    classes = {f"file_brain_{SEQUENCES[i % 5]}_1_{i}": "abnormal" for i in range(n)}
    classes["file_brain_AXT1_1_99"] = "excluded"
    splits = split_volumes(classes, seed=0)
    assert dict(Counter(splits.values())) == expected and "file_brain_AXT1_1_99" not in splits


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
