from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage, LoadImaged

from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.data.masks import brain_mask
from monai_cmri.data.nifti import export_nifti
from monai_cmri.data.reader import EspiritReader
from monai_cmri.preprocess import combined_volume


@pytest.fixture(scope="module")
def path(fastmri_dir):
    return sorted(fastmri_dir.glob("file_brain_AXT2_*.h5"))[0]


def test_load_image_returns_the_combined_complex_volume(path):
    image = LoadImage(reader=EspiritReader(), dtype=np.complex64, image_only=True)(path)
    assert image.shape == (3, 320, 320) and image.dtype.is_complex
    assert image.meta["sequence"] == "AXT2"
    assert image.meta["acquisition"] == "AXT2"
    assert image.meta["header_receiver_channels"] == 4
    with FastMRIFile(path) as volume:
        rss = np.stack([volume.reconstruction_rss(i) for i in range(volume.num_slices)])
    magnitude = np.abs(image.numpy())
    # ESPIRiT maps are unit-norm over coils inside the object, so the combined magnitude equals
    # the root sum of squares there, up to noise.
    inside = brain_mask(rss / rss.max())
    ratio = magnitude[inside] / rss[inside]
    assert abs(np.median(ratio) - 1.0) < 0.02
    # The phase is kept: not constant over the brain.
    assert np.std(np.angle(image.numpy()[inside])) > 0.05


def test_dictionary_loading_and_same_as_library_call(path):
    data = LoadImaged(keys="image", reader=EspiritReader(), dtype=None, image_only=False)({"image": str(path)})
    volume, _ = combined_volume(path)
    # combined_volume also normalises each slice's magnitude to [0, 1].
    loaded = data["image"].numpy()
    scale = np.abs(loaded).reshape(3, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(loaded / scale, volume, atol=1e-5)


def test_nifti_export_round_trip(path, tmp_path):
    magnitude_path, phase_path = export_nifti(path, tmp_path / "volume")
    volume, _ = combined_volume(path)
    magnitude, phase = nib.load(magnitude_path), nib.load(phase_path)
    assert magnitude.shape == (320, 320, 3)
    np.testing.assert_allclose(magnitude.get_fdata().transpose(2, 1, 0), np.abs(volume), atol=1e-6)
    np.testing.assert_allclose(phase.get_fdata().transpose(2, 1, 0), np.angle(volume), atol=1e-6)
    spacing = magnitude.header.get_zooms()
    assert spacing[0] == pytest.approx(220 / 320) and spacing[2] > 0
    assert not list(tmp_path.glob("*tmp*"))
