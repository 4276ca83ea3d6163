"""Lesion geometry: mass effect, occupancy, masks and boxes in the flipped convention."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.simulate.anatomy import draw_subject
from monai_cmri.simulate.boxes import Annotation, box_from_mask, rows_of_box
from monai_cmri.simulate.geometry import SliceGeometry
from monai_cmri.simulate.lesions import Lesion, lesion_masks, mass_effect


def _lesion(kind: str, centre, radii) -> Lesion:
    radii = np.broadcast_to(np.asarray(radii, np.float32), (3,)).copy()
    return Lesion(kind, kind, np.asarray(centre, np.float32), radii, np.eye(3, dtype=np.float32))


def test_mass_effect_conserves_volume_radially():
    geometry = SliceGeometry(slices=3, readout=128, width=64)
    subject = draw_subject(np.random.default_rng(0), geometry)
    points = subject.map_grid(geometry.points())
    centre = points[1, 1, 32, 32]
    lesion = _lesion("mass", centre, 12.0)
    moved = mass_effect(points, [lesion], subject, geometry)
    r = np.linalg.norm(points - centre, axis=-1)
    r0 = np.linalg.norm(moved - centre, axis=-1)
    near = (r > lesion.push_mm) & (r < lesion.push_reach_mm - 1)
    assert near.sum() > 10
    np.testing.assert_allclose(r0[near] ** 3, r[near] ** 3 - lesion.push_mm**3, rtol=1e-3, atol=1e-2)
    # Direction is kept: tissue moves along the ray from the centre.
    cosine = np.einsum("...i,...i", moved[near] - centre, points[near] - centre) / (r0[near] * r[near])
    assert cosine.min() > 0.999
    far = r > lesion.push_reach_mm + 10
    np.testing.assert_array_equal(moved[far], points[far])


def test_ellipsoid_occupancy_and_radius():
    lesion = _lesion("wml", np.zeros(3), [6.0, 3.0, 3.0])
    points = np.array([[0, 0, 0], [5.9, 0, 0], [0, 2.0, 0], [0, 3.5, 0], [7, 0, 0]], np.float32)
    rho = lesion.radius(points)
    np.testing.assert_allclose(rho, [0, 5.9 / 6, 2 / 3, 3.5 / 3, 7 / 6], rtol=1e-6)
    occupancy = lesion.inside(rho)
    assert occupancy[0] == 1 and occupancy[2] == 1 and occupancy[-1] == 0
    assert 0 < occupancy[1] <= 1


def test_lesion_masks_threshold_at_half_peak():
    occupancy = np.zeros((3, 8, 8), np.float32)
    occupancy[0, 2:4, 2:4] = 1.0
    occupancy[0, 4, 4] = 0.4  # below half the peak
    occupancy[1, 5, 5] = 0.2  # never visible
    occupancy[2, 1, 1], occupancy[2, 1, 2] = 0.6, 0.35
    masks = lesion_masks(occupancy)
    assert masks[0].sum() == 4 and not masks[0, 4, 4]
    assert not masks[1].any()
    assert masks[2, 1, 1] and masks[2, 1, 2]


def test_box_uses_fastmri_plus_flipped_rows():
    mask = np.zeros((320, 320), bool)
    mask[200:210, 50:58] = True  # rows 200..209 on the unflipped image
    x, y, width, height = box_from_mask(mask, margin=2)
    assert (x, width) == (48, 12)
    assert (y, height) == (320 - 212, 14)
    rows = rows_of_box(y, height, 320)
    assert (rows.start, rows.stop) == (198, 212)


def test_box_is_clipped_to_the_image():
    mask = np.zeros((64, 64), bool)
    mask[0:3, 60:64] = True
    x, y, width, height = box_from_mask(mask, margin=3)
    assert x + width == 64 and y == 64 - 6 and y + height == 64
    with pytest.raises(ValueError, match="empty"):
        box_from_mask(np.zeros((8, 8), bool), 1)


def test_annotation_row_format():
    study = Annotation("file_brain_AXT1_200_2000001", 0, True, None, None, None, None, "Normal for age")
    box = Annotation("file_brain_AXT1_200_2000001", 3, False, 1, 2, 3, 4, "Mass")
    assert study.csv_row() == ["file_brain_AXT1_200_2000001", "0", "Yes", "", "", "", "", "Normal for age"]
    assert box.csv_row() == ["file_brain_AXT1_200_2000001", "3", "No", "1", "2", "3", "4", "Mass"]
