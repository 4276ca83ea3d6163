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


def _patch_file(path, labels):
    from monai_cmri.data.dataset import write_patches

    n = len(labels)
    rows, cols = np.mgrid[0:96, 0:96]
    patch = np.stack([np.cos(cols / 15.0), np.sin(cols / 15.0)]).astype(np.float32) * (rows / 95.0)
    columns = {
        "file": [f"file_brain_AXT1_200_{i}" for i in range(n)], "slice": [0] * n, "row": [0] * n, "col": [0] * n,
        "sequence": ["AXT1"] * n, "label": list(labels), "overlap": [0.0] * n,
    }
    write_patches(path, np.repeat(patch[None], n, axis=0), columns)
    return path


def test_render_patches_one_pair_of_rows_per_class(tmp_path):
    import pytest

    from monai_cmri.figures import render_patches

    both = render_patches(_patch_file(tmp_path / "both.h5", ["normal", "abnormal"] * 3), tmp_path / "both.png")
    one = render_patches(_patch_file(tmp_path / "one.h5", ["normal"] * 3), tmp_path / "one.png")
    assert matplotlib.image.imread(both).shape[0] > 1.8 * matplotlib.image.imread(one).shape[0]
    with pytest.raises(ValueError, match="no patch of class"):
        render_patches(_patch_file(tmp_path / "none.h5", ["unlabeled"] * 2), tmp_path / "none.png")
