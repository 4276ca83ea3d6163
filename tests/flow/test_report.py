"""Tests of the flow evaluation files: sample sheets (paper Figures 4, 5) and latent statistics."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from monai_cmri.data.dataset import PatchWriter
from monai_cmri.flow.report import (
    STATISTICS_COLUMNS,
    class_sheet,
    latent_statistics,
    sample_sheet,
    statistics_table,
    write_statistics,
)
from monai_cmri.latents import LatentWriter

SIZE = 16
SHAPE = (2, 6, 5)


def columns(sequences, labels) -> dict[str, object]:
    n = len(sequences)
    return {
        "file": [f"file_brain_{s}_0_{i}" for i, s in enumerate(sequences)],
        "slice": np.arange(n),
        "row": np.zeros(n, int),
        "col": np.zeros(n, int),
        "sequence": list(sequences),
        "label": list(labels),
        "overlap": np.zeros(n),
    }


def patches(n: int, seed: int = 0) -> np.ndarray:
    """Random complex patches, magnitude in [0, 1], as ``(n, 2, SIZE, SIZE)`` (real, imag)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 1, (n, SIZE, SIZE)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (n, SIZE, SIZE)))
    return np.stack([z.real, z.imag], axis=1).astype(np.float32)


def patch_file(path, sequences, labels=None, seed=0):
    labels = labels if labels is not None else ["normal"] * len(sequences)
    with PatchWriter(path, size=SIZE) as writer:
        writer.append(patches(len(sequences), seed), columns(sequences, labels))
    return path


def latent_file(path, latents, sequences):
    with LatentWriter(path, latents.shape[1:]) as writer:
        writer.append(latents, columns(sequences, ["unlabeled"] * len(sequences)))
    return path


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture
def real_latents(tmp_path):
    rng = np.random.default_rng(1)
    sequences = ["AXT2"] * 9 + ["AXFLAIR"] * 7 + ["AXT1"] * 4
    rng.shuffle(sequences)
    # Channel 1 has a large mean beside a small spread: the case a running sum of squares gets wrong.
    latents = rng.normal(0.0, 1.0, (len(sequences), *SHAPE)) * np.array([1.0, 0.01])[:, None, None]
    latents[:, 1] += 30.0
    latents = latents.astype(np.float32)
    return latent_file(tmp_path / "real.h5", latents, sequences), latents, np.array(sequences)


def reference(latents, sequences, name, channel):
    x = latents[sequences == name][:, channel].astype(np.float64)
    return x.mean(), x.std()


def test_statistics_match_numpy_for_a_known_scaling(tmp_path, real_latents):
    path, latents, sequences = real_latents
    fake = (latents.astype(np.float64) * 1.05 + 0.02).astype(np.float32)
    synthetic = latent_file(tmp_path / "fake.h5", fake, sequences)
    rows = latent_statistics(path, synthetic)
    assert [(r["sequence"], r["channel"]) for r in rows] == [
        (s, c) for s in ("AXFLAIR", "AXT1", "AXT2") for c in range(2)
    ]
    for row in rows:
        mean_r, std_r = reference(latents, sequences, row["sequence"], row["channel"])
        mean_s, std_s = reference(fake, sequences, row["sequence"], row["channel"])
        assert row["n_real"] == row["n_synthetic"] == int((sequences == row["sequence"]).sum())
        assert row["mean_real"] == pytest.approx(mean_r, rel=1e-9, abs=1e-12)
        assert row["std_real"] == pytest.approx(std_r, rel=1e-7)
        assert row["mean_synthetic"] == pytest.approx(mean_s, rel=1e-9, abs=1e-12)
        assert row["std_synthetic"] == pytest.approx(std_s, rel=1e-7)
        assert row["std_error"] == pytest.approx(0.05, abs=2e-4 if row["channel"] == 0 else 2e-2)
        assert row["mean_offset"] == pytest.approx(abs(0.05 * mean_r + 0.02) / std_r, rel=1e-3)
        assert row["within_10_percent"] == (row["mean_offset"] <= 0.1 and row["std_error"] <= 0.1)
        # the standard error of the offset from the spread of the per-latent means
        per_latent = [x[sequences == row["sequence"]][:, row["channel"]].astype(np.float64).mean(axis=(1, 2))
                      for x in (latents, fake)]
        se = np.sqrt(sum(m.var(ddof=1) / len(m) for m in per_latent)) / std_r
        assert row["mean_offset_se"] == pytest.approx(se, rel=1e-6)
    # channel 0: mean near 0, offset small; channel 1: mean 30 shifted by 1.52 against a std of 0.01.
    assert all(r["within_10_percent"] for r in rows if r["channel"] == 0)
    assert not any(r["within_10_percent"] for r in rows if r["channel"] == 1)


def test_identical_files_agree_and_chunking_does_not_matter(tmp_path, real_latents):
    path, latents, sequences = real_latents
    whole = latent_statistics(path, path, chunk=len(sequences))
    for chunk in (1, 3, 7):
        chunked = latent_statistics(path, path, chunk=chunk)
        for a, b in zip(whole, chunked, strict=True):
            assert a.keys() == b.keys() == set(STATISTICS_COLUMNS)
            for key in STATISTICS_COLUMNS:
                assert a[key] == (b[key] if isinstance(b[key], str) else pytest.approx(b[key], rel=1e-12, abs=1e-12))
    assert all(r["mean_offset"] == 0 and r["std_error"] == 0 and r["within_10_percent"] for r in whole)


def test_sequences_missing_from_one_file_are_skipped(tmp_path, real_latents):
    path, latents, sequences = real_latents
    keep = sequences != "AXT1"
    other = np.where(sequences[keep] == "AXFLAIR", "AXT1PRE", sequences[keep])
    synthetic = latent_file(tmp_path / "fake.h5", latents[keep], other)
    rows = latent_statistics(path, synthetic)
    assert {r["sequence"] for r in rows} == {"AXT2"}
    disjoint = latent_file(tmp_path / "none.h5", latents[:2], ["AXT1POST"] * 2)
    with pytest.raises(ValueError, match="no sequence in common"):
        latent_statistics(path, disjoint)


def test_statistics_name_a_missing_or_empty_file(tmp_path, real_latents):
    path = real_latents[0]
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        latent_statistics(path, tmp_path / "absent.h5")
    empty = latent_file(tmp_path / "empty.h5", np.zeros((0, *SHAPE), np.float32), [])
    with pytest.raises(ValueError, match="empty.h5: no latents"):
        latent_statistics(empty, path)


def test_table_and_files(tmp_path, real_latents):
    path, latents, sequences = real_latents
    rows = latent_statistics(path, path)
    table = statistics_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| Sequence | Channel | n real | n synthetic |") and "Within 10%" in lines[0]
    assert len(lines) == 2 + len(rows) and all(line.count("|") == 13 for line in lines)
    assert lines[2].startswith("| AXFLAIR | 0 | 7 | 7 |") and lines[2].endswith("| yes |")
    markdown, table_csv = write_statistics(rows, tmp_path / "out" / "latent_statistics")
    assert markdown.name == "latent_statistics.md" and markdown.read_text() == table
    with open(table_csv, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == STATISTICS_COLUMNS and len(read) == len(rows)
    assert float(read[1]["mean_real"]) == rows[1]["mean_real"]  # full precision
    with pytest.raises(ValueError, match="lacks"):
        statistics_table([{"sequence": "AXT1"}])


def test_sample_sheet_grows_one_cell_per_patch_and_two_rows_per_sequence(tmp_path):
    real = patch_file(tmp_path / "real.h5", ["AXT1"] * 5 + ["AXFLAIR"] * 3)
    one = patch_file(tmp_path / "one.h5", ["AXT1"] * 4)
    two = patch_file(tmp_path / "two.h5", ["AXT1"] * 4 + ["AXT2"] * 2)  # AXT2: no real patches
    three = patch_file(tmp_path / "three.h5", ["AXT1"] * 4 + ["AXT2"] * 2 + ["AXFLAIR"])
    w1, h1 = png_size(sample_sheet(one, real, tmp_path / "s1.png", per_sequence=1))
    w2, h2 = png_size(sample_sheet(two, real, tmp_path / "s2.png", per_sequence=1))
    w3, h3 = png_size(sample_sheet(three, real, tmp_path / "s3.png", per_sequence=1))
    w4, h4 = png_size(sample_sheet(one, real, tmp_path / "s4.png", per_sequence=2))
    row_pair = h2 - h1
    assert w1 == w2 == w3 and h4 == h1
    assert abs((h3 - h2) - row_pair) <= 1 and row_pair > 0
    # one more patch per side adds two columns; a sequence adds two rows of the same square cells.
    assert abs((w4 - w1) - row_pair) <= 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_sample_sheet_is_reproducible_and_depends_on_the_seed(tmp_path):
    real = patch_file(tmp_path / "real.h5", ["AXT1"] * 8, seed=1)
    fake = patch_file(tmp_path / "fake.h5", ["AXT1"] * 8, seed=2)
    a = sample_sheet(fake, real, tmp_path / "a.png", per_sequence=2, seed=0, title="t").read_bytes()
    b = sample_sheet(fake, real, tmp_path / "b.png", per_sequence=2, seed=0, title="t").read_bytes()
    c = sample_sheet(fake, real, tmp_path / "c.png", per_sequence=2, seed=1, title="t").read_bytes()
    assert a == b and a != c


def test_sheets_name_a_missing_or_empty_file(tmp_path):
    real = patch_file(tmp_path / "real.h5", ["AXT1"] * 2)
    with PatchWriter(tmp_path / "empty.h5", size=SIZE) as writer:
        writer.append(np.zeros((0, 2, SIZE, SIZE), np.float32), columns([], []))
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        sample_sheet(tmp_path / "absent.h5", real, tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty.h5: no patches"):
        sample_sheet(real, tmp_path / "empty.h5", tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty.h5: no patches"):
        class_sheet(tmp_path / "empty.h5", tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        class_sheet(real, tmp_path / "x.png", real=tmp_path / "absent.h5")
    assert not (tmp_path / "x.png").exists()


def test_class_sheet_shows_every_sequence(tmp_path):
    labeled = ["AXT1", "AXT1", "AXFLAIR", "AXFLAIR", "AXT1"]
    labels = ["normal", "abnormal", "abnormal", "unlabeled", "unlabeled"]
    only_labeled = patch_file(tmp_path / "labeled.h5", labeled, labels)
    # AXT2 has only unlabeled samples: a third column block ("unknown") and one more row pair.
    mixed = patch_file(tmp_path / "mixed.h5", labeled + ["AXT2"] * 3, labels + ["unlabeled"] * 3)
    w1, h1 = png_size(class_sheet(only_labeled, tmp_path / "c1.png", per_cell=2))
    w2, h2 = png_size(class_sheet(mixed, tmp_path / "c2.png", per_cell=2))
    row_pair = (h2 - h1)
    assert row_pair > 0
    # 2 blocks of 2 columns + 1 gap -> 3 blocks of 2 columns + 2 gaps: 2 cells and a gap wider.
    assert w2 - w1 > row_pair
    w3, h3 = png_size(class_sheet(mixed, tmp_path / "c3.png", per_cell=2, real=only_labeled))
    assert w3 == w2 and abs((h3 - h2) - 3 * row_pair) <= 1  # a real row pair per sequence
