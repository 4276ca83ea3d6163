"""Tests of the substitution, additive and real-vs-synthetic training sets (paper 2.4.1, 2.4.2)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from experiment_files import real_table, synthetic_rows, write_rows

from monai_cmri.experiments.composition import (
    ADDITIVE,
    REAL_ONLY,
    REAL_SYNTHETIC,
    SUBSTITUTION_FRACTIONS,
    additive,
    substitution,
    volume_strata,
)
from monai_cmri.experiments.fractions import kept_count
from monai_cmri.experiments.real_vs_synthetic import real_vs_synthetic
from monai_cmri.experiments.rows import read_rows
from monai_cmri.experiments.sources import make_source


def selected(training_set, path) -> np.ndarray:
    """Rows of ``path`` in a training set's sources (empty if none)."""
    rows = [source["indices"] for source in training_set.sources if source["path"] == str(path)]
    assert len(rows) <= 1
    return np.asarray(rows[0] if rows else [], dtype=np.int64)


def test_volume_strata_use_the_volume_class(real_file):
    rows = read_rows(real_file)
    strata = volume_strata(rows)
    assert len(strata) == 24 and not any("AXT2" in name for name in strata)
    # Abnormal volumes hold normal patches too; they stay in the abnormal stratum.
    assert strata["file_brain_AXFLAIR_ab_0"] == ("AXFLAIR", "abnormal")
    assert Counter(strata.values()) == {("AXFLAIR", "abnormal"): 5, ("AXFLAIR", "normal"): 7,
                                        ("AXT1", "abnormal"): 5, ("AXT1", "normal"): 7}


def test_substitution_is_volume_level_and_nested(real_file, synthetic_file):
    rows = read_rows(real_file)
    labeled = rows.labeled()
    sets = substitution(real_file, synthetic_file, seed=2)
    assert list(sets) == list(SUBSTITUTION_FRACTIONS)
    assert set(sets[0.0]) == {REAL_SYNTHETIC} and selected(sets[0.0][REAL_SYNTHETIC], real_file).size == 0
    previous = set()
    for f in SUBSTITUTION_FRACTIONS[1:]:
        real = selected(sets[f][REAL_ONLY], real_file)
        assert np.array_equal(real, selected(sets[f][REAL_SYNTHETIC], real_file))
        assert all(source["target"] == "label" for source in sets[f][REAL_ONLY].sources)
        kept = set(rows.volumes[real].tolist())
        # Every labeled row of a kept volume is in, every row of another volume out.
        assert np.array_equal(real, labeled[np.isin(rows.volumes[labeled], list(kept))])
        assert kept >= previous
        previous = kept
        assert sets[f][REAL_ONLY].summary["volumes"]["kept"] == len(kept)
    assert np.array_equal(selected(sets[1.0][REAL_ONLY], real_file), labeled)


def test_substitution_keeps_size_and_composition(real_file, synthetic_file):
    rows, pool = read_rows(real_file), read_rows(synthetic_file)
    full = Counter(rows.cells(rows.labeled()))
    sets = substitution(real_file, synthetic_file, seed=0)
    previous = None
    for f in sorted(sets, reverse=True):
        mixed = sets[f][REAL_SYNTHETIC]
        real, fake = selected(mixed, real_file), selected(mixed, synthetic_file)
        assert Counter(rows.cells(real)) + Counter(pool.cells(fake)) == full
        assert mixed.summary["rows"]["total"] == sum(full.values())
        assert {cell: sum(v.values()) for cell, v in mixed.summary["cells"].items()} == {
            f"{s}/{c}": n for (s, c), n in full.items()
        }
        # The synthetic part grows as the real fraction shrinks, and never loses a row.
        if previous is not None:
            assert set(previous.tolist()) <= set(fake.tolist())
        previous = fake
    assert selected(sets[1.0][REAL_SYNTHETIC], synthetic_file).size == 0


def test_substitution_names_the_cell_the_pool_cannot_fill(tmp_path, real_file):
    _, sequences, labels = real_table()
    counts = Counter((s, c) for s, c in zip(sequences, labels) if c != "unlabeled")
    counts[("AXT1", "abnormal")] = 2
    small = write_rows(tmp_path / "small.h5", *synthetic_rows(counts, extra=0))
    with pytest.raises(ValueError, match=r"cell AXT1/abnormal: \d+ synthetic rows in .*small.h5 \(real fraction 0.0\)"):
        substitution(real_file, small)


def test_additive_sets_are_nested_and_matched(real_file, synthetic_file):
    rows, pool = read_rows(real_file), read_rows(synthetic_file)
    full = Counter(rows.cells(rows.labeled()))
    sets = additive(real_file, synthetic_file, seed=4)
    previous: set[int] = set()
    for g, training_set in sets.items():
        assert np.array_equal(selected(training_set, real_file), rows.labeled())
        fake = selected(training_set, synthetic_file)
        assert Counter(pool.cells(fake)) == {cell: kept_count(g, n) for cell, n in full.items() if kept_count(g, n)}
        assert abs(fake.size - g * sum(full.values())) <= len(full) / 2
        assert set(fake.tolist()) >= previous
        previous = set(fake.tolist())
        assert training_set.summary["condition"] == ADDITIVE and training_set.summary["fraction"] == g
    assert len(previous) == sum(full.values())
    # The synthetic draws depend on the seed.
    assert not np.array_equal(selected(additive(real_file, synthetic_file, [0.5], seed=5)[0.5], synthetic_file),
                              selected(sets[0.5], synthetic_file))


def test_real_vs_synthetic_splits_synthetic_like_the_real_data(tmp_path):
    real = {split: write_rows(tmp_path / f"{split}.h5", *real_table(seed=i, prefix=split), latent=True)
            for i, split in enumerate(("train", "val", "test"))}
    counts = Counter()
    for path in real.values():
        counts.update(read_rows(path).sequences.tolist())
    cells = Counter({(s, "unlabeled"): 4 * n for s, n in counts.items()})
    pool_path = write_rows(tmp_path / "pool.h5", *synthetic_rows(cells, extra=0), latent=True)
    pool = read_rows(pool_path)
    splits = real_vs_synthetic(real, pool_path, seed=1)
    assert list(splits) == ["AXFLAIR", "AXT1", "AXT2"]
    for name, split in splits.items():
        n = {key: int(np.sum(read_rows(path).sequences == name)) for key, path in real.items()}
        drawn = []
        for sources, key in [(split.train, "train"), (split.val, "val")] + [(test, "test") for test in split.tests]:
            real_source, fake_source = sources
            assert real_source["target"] == 0 and fake_source["target"] == 1
            assert real_source["path"] == str(real[key]) and len(real_source["indices"]) == n[key]
            assert len(fake_source["indices"]) == n[key]
            assert set(pool.sequences[fake_source["indices"]].tolist()) == {name}
            drawn += fake_source["indices"]
        assert len(split.tests) == 4 and len(set(drawn)) == len(drawn)
        assert all(test[0] == split.tests[0][0] for test in split.tests)
        assert split.summary["synthetic"] == {"train": n["train"], "val": n["val"], "test": n["test"], "test_sets": 4}
    with pytest.raises(ValueError, match="sequence AXFLAIR needs"):
        real_vs_synthetic(real, pool_path, test_sets=20)


def test_real_vs_synthetic_leaves_out_a_sequence_missing_from_a_split(tmp_path):
    tables = {split: real_table(seed=i, prefix=split) for i, split in enumerate(("train", "val", "test"))}
    # No AXT1 in the validation split (a small cohort): no classifier of that sequence could validate.
    volumes, sequences, labels = tables["val"]
    keep = [i for i, sequence in enumerate(sequences) if sequence != "AXT1"]
    tables["val"] = tuple([column[i] for i in keep] for column in (volumes, sequences, labels))
    real = {split: write_rows(tmp_path / f"{split}.h5", *table, latent=True) for split, table in tables.items()}
    cells = Counter({(s, "unlabeled"): 200 for s in ("AXFLAIR", "AXT1", "AXT2")})
    pool_path = write_rows(tmp_path / "pool.h5", *synthetic_rows(cells, extra=0), latent=True)
    assert list(real_vs_synthetic(real, pool_path, test_sets=1)) == ["AXFLAIR", "AXT2"]
    only_axt1 = {split: write_rows(tmp_path / f"axt1_{split}.h5", *[[column[i] for i in range(len(table[1]))
                                                                    if table[1][i] == "AXT1"] for column in table],
                                   latent=True)
                 for split, table in {**tables, "val": tables["train"]}.items()}
    only_axt1["val"] = real["val"]  # no AXT1 rows: nothing left
    with pytest.raises(ValueError, match="no sequence has real rows in train, val and test"):
        real_vs_synthetic(only_axt1, pool_path, test_sets=1)


def test_make_source_is_plain_and_checked():
    assert make_source("x.h5", "label", np.array([3, 1])) == {
        "path": "x.h5", "target": "label", "indices": [1, 3], "sequences": None}
    assert make_source("x.h5", 1, sequences=["ax t1"])["sequences"] == ["AXT1"]
    for target in (2, True, "class"):
        with pytest.raises(ValueError, match="target"):
            make_source("x.h5", target)
    with pytest.raises(ValueError, match="distinct"):
        make_source("x.h5", 0, [1, 1])


def test_real_vs_synthetic_takes_test_sets_from_their_own_files(tmp_path):
    real = {split: write_rows(tmp_path / f"{split}.h5", *real_table(seed=i, prefix=split), latent=True)
            for i, split in enumerate(("train", "val", "test"))}
    counts = Counter()
    for path in real.values():
        counts.update(read_rows(path).sequences.tolist())
    cells = Counter({(s, "unlabeled"): n for s, n in counts.items()})
    pool = write_rows(tmp_path / "pool.h5", *synthetic_rows(cells, extra=0), latent=True)
    tests = [write_rows(tmp_path / f"test{k}.h5", *synthetic_rows(cells, extra=k), latent=True) for k in range(2)]
    splits = real_vs_synthetic(real, pool, synthetic_tests=tests, sequences=["AXT1"])
    assert list(splits) == ["AXT1"]
    n_test = int(np.sum(read_rows(real["test"]).sequences == "AXT1"))
    for k, test in enumerate(splits["AXT1"].tests):
        assert test[1]["path"] == str(tests[k]) and len(test[1]["indices"]) == n_test
        assert set(read_rows(tests[k]).sequences[test[1]["indices"]].tolist()) == {"AXT1"}
    short = write_rows(tmp_path / "short.h5", ["synthetic"], ["AXT1"], ["unlabeled"], latent=True)
    with pytest.raises(ValueError, match=r"short.h5: sequence AXT1 needs \d+ synthetic test rows, only 1"):
        real_vs_synthetic(real, pool, synthetic_tests=[short], sequences=["AXT1"])
