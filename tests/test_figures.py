from __future__ import annotations

import matplotlib
import matplotlib.image
import numpy as np

from monai_cmri.data.annotations import Box
from monai_cmri.figures import pick_slices, render_slices


def test_render_slices_draws_boxes_and_cyclic_phase(tmp_path):
    rows, cols = np.mgrid[0:64, 0:64]
    image = np.exp(1j * (cols / 63 * 2 * np.pi - np.pi)) * (rows + 1) / 64
    volume = np.stack([image, image]).astype(np.complex64)
    out = render_slices(volume, tmp_path / "figure.png", [0, 1], {1: [Box(10, 30, 20, 40, "mass")]}, "test")
    pixels = matplotlib.image.imread(out)[..., :3]
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.35) & (pixels[..., 2] < 0.35)
    assert red.sum() > 50  # the abnormal box, on magnitude and phase
    # A cyclic colormap starts and ends on the same colour: -pi and +pi look alike.
    twilight = matplotlib.colormaps["twilight"]
    np.testing.assert_allclose(twilight(0.0), twilight(1.0), atol=0.05)
    assert not list(tmp_path.glob("*.tmp"))


def test_pick_slices_are_distinct_and_inside():
    for count in (1, 3, 6, 16, 30):
        picked = pick_slices(count)
        assert len(set(picked)) == len(picked) and all(0 <= i < count for i in picked)
        assert len(picked) == min(count, 6)
