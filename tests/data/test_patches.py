"""Tests of the patch rules (SPEC 1.3, paper 2.1.3-2.1.4): brain, overlap, counts, grid."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.data.annotations import Annotations, Box
from monai_cmri.data.patches import (
    MAX_PATCHES,
    MIN_BRAIN,
    MIN_OVERLAP,
    MIN_PATCHES,
    PATCH_SIZE,
    PatchRecord,
    box_overlap,
    box_patches,
    brain_fraction,
    centre_grid,
    cut_patches,
    external_slices,
    grid_positions,
    plan_grid,
    plan_patches,
    volume_boxes,
    volume_patches,
)

SIZE = 320


def disk_mask(slices: int = 8, radius: float = 110.0) -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    return np.broadcast_to(np.hypot(y, x) < radius, (slices, SIZE, SIZE)).copy()


BOXES = {
    2: [Box(140, 172, 150, 182, "mass"), Box(100, 110, 100, 110, "possible artifact")],
    5: [Box(150, 160, 150, 160, "nonspecific white matter lesion")],
    6: [Box(90, 130, 190, 240, "normal variant")],
}


def brain_of(mask: np.ndarray, record: PatchRecord) -> float:
    rows, cols = slice(record.row, record.row + PATCH_SIZE), slice(record.col, record.col + PATCH_SIZE)
    return mask[record.slice, rows, cols].mean()


def overlap_of(box: Box, record: PatchRecord) -> int:
    """Pixels of ``box`` inside the patch, counted on a pixel grid."""
    canvas = np.zeros((SIZE, SIZE), dtype=bool)
    canvas[box.row0 : box.row1, box.col0 : box.col1] = True
    return int(canvas[record.row : record.row + PATCH_SIZE, record.col : record.col + PATCH_SIZE].sum())


def test_brain_fraction_matches_window_means():
    rng = np.random.default_rng(0)
    mask = rng.random((2, 13, 11)) < 0.6
    fraction = brain_fraction(mask, 5)
    assert fraction.shape == (2, 9, 7)
    expected = np.zeros((2, 9, 7))
    for s, r, c in np.ndindex(expected.shape):
        expected[s, r, c] = mask[s, r : r + 5, c : c + 5].mean()
    np.testing.assert_allclose(fraction, expected)


@pytest.mark.parametrize("box", [Box(3, 7, 2, 9, "m"), Box(0, 13, 0, 2, "m"), Box(10, 13, 8, 11, "m")])
def test_box_overlap_matches_pixel_count(box):
    fraction = box_overlap(box, (13, 11), 5)
    canvas = np.zeros((13, 11))
    canvas[box.row0 : box.row1, box.col0 : box.col1] = 1
    expected = np.array([[canvas[r : r + 5, c : c + 5].sum() for c in range(7)] for r in range(9)]) / box.area
    np.testing.assert_allclose(fraction, expected)


def test_count_rules():
    assert [box_patches(area) for area in (1, 100, 128, 256, 1024, 48 * 48, 10**6)] == [1, 1, 1, 1, 4, 9, 20]
    assert volume_patches(0) == MIN_PATCHES and volume_patches(8) == 16 and volume_patches(100) == MAX_PATCHES


def test_abnormal_volume_rules():
    mask = disk_mask()
    plan = plan_patches(mask, "abnormal", np.random.default_rng(1), boxes=BOXES)
    assert MIN_PATCHES <= len(plan) <= MAX_PATCHES and plan.shortfall == 0 and not plan.notes
    abnormal = [r for r in plan.records if r.label == "abnormal"]
    normal = [r for r in plan.records if r.label == "normal"]
    assert len(abnormal) == box_patches(32 * 32) + box_patches(100)
    assert len(normal) == MIN_PATCHES - len(abnormal)
    for record in abnormal:
        box = BOXES[record.slice][record.box]
        assert box.label in ("mass", "nonspecific white matter lesion")
        assert overlap_of(box, record) >= MIN_OVERLAP * box.area
        assert record.overlap == pytest.approx(overlap_of(box, record) / box.area)
    for record in normal:
        assert record.box == -1 and record.overlap == 0.0
        assert all(overlap_of(box, record) == 0 for box in BOXES.get(record.slice, []))
    for record in plan.records:
        assert brain_of(mask, record) >= MIN_BRAIN and record.brain == pytest.approx(brain_of(mask, record))
    positions = [(r.slice, r.row, r.col) for r in plan.records]
    assert len(set(positions)) == len(positions)


def test_abnormal_shifts_vary():
    mask = disk_mask()
    boxes = {3: [Box(150, 166, 150, 166, "mass")]}
    plans = [plan_patches(mask, "abnormal", np.random.default_rng(seed), boxes=boxes) for seed in range(10)]
    rows = {r.row for plan in plans for r in plan.records if r.label == "abnormal"}
    assert len(rows) >= 5


def test_count_grows_with_box_area():
    mask = disk_mask()
    counts = []
    for side in (8, 24, 40, 56, 72):
        boxes = {4: [Box(160 - side // 2, 160 + side // 2, 160 - side // 2, 160 + side // 2, "mass")]}
        plan = plan_patches(mask, "abnormal", np.random.default_rng(0), boxes=boxes)
        counts.append(sum(r.label == "abnormal" for r in plan.records))
        assert MIN_PATCHES <= len(plan) <= MAX_PATCHES
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert counts == [box_patches(side * side) for side in (8, 24, 40, 56, 72)]


def test_many_boxes_are_capped_in_proportion():
    mask = disk_mask(slices=12)
    boxes = {s: [Box(150, 190, 140, 180, "mass")] for s in range(12)}  # 12 x 6 patches asked
    plan = plan_patches(mask, "abnormal", np.random.default_rng(0), boxes=boxes)
    per_box = np.bincount([r.slice for r in plan.records if r.label == "abnormal"], minlength=12)
    assert per_box.sum() == 30 and per_box.min() >= 2 and per_box.max() <= 3
    assert len(plan) == MAX_PATCHES


@pytest.mark.parametrize("volume_class", ["normal", "unlabeled"])
def test_normal_and_unlabeled_over_brain_slices(volume_class):
    mask = disk_mask(slices=10)
    mask[[0, 9]] = False  # no brain: no patch there
    mask[1, :, :110] = False  # a smaller brain: fewer valid positions
    plan = plan_patches(mask, volume_class, np.random.default_rng(2))
    assert len(plan) == volume_patches(8) == 16 and plan.shortfall == 0
    assert {r.label for r in plan.records} == {volume_class} and all(r.box == -1 for r in plan.records)
    assert {r.slice for r in plan.records} <= set(range(1, 9))
    assert all(brain_of(mask, r) >= MIN_BRAIN for r in plan.records)
    positions = [(r.slice, r.row, r.col) for r in plan.records]
    assert len(set(positions)) == len(positions)


def test_positions_are_uniform_over_valid_ones():
    mask = np.zeros((2, 100, 100), dtype=bool)
    mask[0, :, :] = True  # 5 x 5 valid positions of 96 x 96
    mask[1, :98, :98] = True  # 3 x 3
    counts = np.zeros((2, 5, 5))
    for seed in range(400):
        for r in plan_patches(mask, "unlabeled", np.random.default_rng(seed), min_brain=1.0).records:
            counts[r.slice, r.row, r.col] += 1
    assert counts[1, 3:, :].sum() == 0 and counts[1, :, 3:].sum() == 0
    # 10 of 34 positions per plan: each is drawn with probability 10 / 34.
    drawn = np.concatenate([counts[0].ravel(), counts[1, :3, :3].ravel()]) / 400
    np.testing.assert_allclose(drawn, 10 / 34, atol=0.08)


def test_determinism_per_seed():
    mask = disk_mask()
    first = plan_patches(mask, "abnormal", np.random.default_rng(7), boxes=BOXES)
    again = plan_patches(mask, "abnormal", np.random.default_rng(7), boxes=BOXES)
    other = plan_patches(mask, "abnormal", np.random.default_rng(8), boxes=BOXES)
    assert first == again and first.records != other.records


def test_small_brain_returns_fewer_and_says_so():
    tiny = plan_patches(disk_mask(radius=40), "normal", np.random.default_rng(0))
    assert len(tiny) == 0 and tiny.requested == MIN_PATCHES and tiny.shortfall == MIN_PATCHES
    assert "brain too small" in tiny.notes[0]
    mask = np.zeros((2, SIZE, SIZE), dtype=bool)
    mask[0, 100:198, 100:198] = True  # 3 x 3 valid positions at 100% brain, 81 at 80%
    few = plan_patches(mask, "unlabeled", np.random.default_rng(0), min_brain=1.0)
    assert len(few) == 9 and few.shortfall == 1 and few.notes


def test_box_outside_brain_is_reported():
    boxes = {1: [Box(0, 20, 0, 20, "extra-axial mass")]}
    plan = plan_patches(disk_mask(), "abnormal", np.random.default_rng(0), boxes=boxes, source="vol")
    assert not any(r.label == "abnormal" for r in plan.records) and len(plan) == MIN_PATCHES
    assert plan.shortfall == box_patches(400) and "vol: slice 1 box 0" in plan.notes[0]


def test_bad_input():
    with pytest.raises(ValueError, match="vol: excluded"):
        plan_patches(disk_mask(), "excluded", np.random.default_rng(0), source="vol")
    with pytest.raises(ValueError, match="boolean"):
        plan_patches(disk_mask().astype(float), "normal", np.random.default_rng(0))
    with pytest.raises(ValueError, match="slice 9"):
        plan_patches(disk_mask(), "abnormal", np.random.default_rng(0), boxes={9: [Box(0, 5, 0, 5, "mass")]})


def test_cut_patches_are_real_and_imaginary_parts():
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((3, SIZE, SIZE)) + 1j * rng.standard_normal((3, SIZE, SIZE))
    records = [PatchRecord(0, 0, 0, "normal"), PatchRecord(2, 224, 17, "abnormal")]
    patches = cut_patches(volume, records)
    assert patches.shape == (2, 2, PATCH_SIZE, PATCH_SIZE) and patches.dtype == np.float32
    expected = volume[2, 224:320, 17:113]
    np.testing.assert_allclose(patches[1, 0], expected.real, rtol=1e-6)
    np.testing.assert_allclose(patches[1, 1], expected.imag, rtol=1e-6)
    assert cut_patches(volume, []).shape == (0, 2, PATCH_SIZE, PATCH_SIZE)
    with pytest.raises(ValueError, match="outside"):
        cut_patches(volume, [PatchRecord(0, 225, 0, "normal")])
    with pytest.raises(ValueError, match="complex"):
        cut_patches(volume.real, records)


def test_external_grid():
    assert grid_positions() == (0, 75, 150, 224)
    assert grid_positions(320, 96, 75, 3) == (0, 75, 150)
    assert centre_grid() == [(75, 75), (75, 150), (150, 75), (150, 150)]
    assert centre_grid(keep=4) == [(r, c) for r in (0, 75, 150, 224) for c in (0, 75, 150, 224)]
    assert external_slices(16) == range(4, 16)
    assert external_slices(16, inferior_first=False) == range(0, 12)
    assert external_slices(20, inferior=0.2, superior=0.1) == range(4, 18)
    plan = plan_grid(external_slices(16), "abnormal")
    assert len(plan) == 48 and {(r.row, r.col) for r in plan.records} == set(centre_grid())
    assert {r.slice for r in plan.records} == set(range(4, 16))
    assert {r.label for r in plan.records} == {"abnormal"}
    with pytest.raises(ValueError, match="parity"):
        centre_grid(keep=3)


def test_volume_boxes_from_annotations(tmp_path):
    path = tmp_path / "brain.csv"
    path.write_text(
        "file,slice,study_level,x,y,width,height,label\n"
        "file_brain_AXT1_1_1,3,No,100,200,10,20,Mass\n"
        "file_brain_AXT1_1_1,3,No,0,0,30,5,Possible artifact\n"
        "file_brain_AXT1_1_1,5,No,5,6,7,8,Nonspecific lesion\n"
    )
    boxes = volume_boxes(Annotations.from_csv(path), "file_brain_AXT1_1_1.h5")
    assert sorted(boxes) == [3, 5] and len(boxes[3]) == 2
    assert boxes[3][0] == Box(100, 120, 100, 110, "mass")
