"""MONAI's ``LoadImage`` picks ``EspiritReader`` by name and by suffix after ``import monai_cmri``."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.apps.reconstruction.fastmri_reader import FastMRIReader
from monai.transforms import LoadImage, LoadImaged
from monai.transforms.io.array import SUPPORTED_READERS
from PIL import Image

import monai_cmri  # noqa: F401  (registers EspiritReader with LoadImage)
from monai_cmri.data.dataset import write_patches
from monai_cmri.data.reader import EspiritReader
from monai_cmri.data.registration import READER_NAME, espirit_reader, install, register_espirit_reader
from monai_cmri.simulate import dataset_volume, write_volume

#: A tiny fastMRI-format volume: 2 slices, 4 coils, readout 128 (2x oversampled 64).
TINY = dict(slices=2, width=64, readout=128, coils=[4])


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return write_volume(dataset_volume(2, 0, **TINY), tmp_path_factory.mktemp("fastmri"))


@pytest.fixture(scope="module")
def direct(path):
    """``(image, meta)`` from ``EspiritReader`` itself, without ``LoadImage``."""
    reader = EspiritReader()
    return reader.get_data(reader.read(path))


def _same_volume(image, direct):
    assert image.dtype == torch.complex64 and image.shape == (2, 64, 64)
    np.testing.assert_array_equal(image.numpy(), direct[0])
    assert np.abs(image.numpy().imag).max() > 0.1 * np.abs(image.numpy()).max()


def test_registered_after_monai_readers():
    assert SUPPORTED_READERS[READER_NAME] is EspiritReader
    assert list(SUPPORTED_READERS)[-1] == READER_NAME  # tried first by LoadImage()
    assert {"itkreader", "numpyreader", "pilreader", "nibabelreader"} <= set(SUPPORTED_READERS)
    install()  # again: nothing changes
    register_espirit_reader()  # the factory does not replace the class
    assert SUPPORTED_READERS[READER_NAME] is EspiritReader


def test_an_entry_of_someone_else_is_kept():
    table = {READER_NAME: dict}
    register_espirit_reader(table, reader=EspiritReader)
    assert table[READER_NAME] is dict
    table = {}
    register_espirit_reader(table)
    assert table[READER_NAME] is espirit_reader
    reader = espirit_reader(size=32, batch=2)
    assert isinstance(reader, EspiritReader) and (reader.size, reader.batch) == (32, 2)


def test_verify_suffix():
    reader = EspiritReader()
    assert reader.verify_suffix("file_brain_AXT2_200_2000019.h5") and reader.verify_suffix("x.HDF5")
    assert reader.verify_suffix(["a.h5", "dir.v2/b.hdf5"])
    for name in ("x.nii.gz", "x.png", "x.npy", "x.h5py", "x.h5.part", ["a.h5", "b.png"]):
        assert not reader.verify_suffix(name), name


def test_load_image_by_name(path, direct):
    image = LoadImage(reader="EspiritReader", dtype=None, image_only=True)(path)
    _same_volume(image, direct)
    assert image.meta["sequence"] == direct[1]["sequence"]
    assert image.meta["filename_or_obj"] == str(path)
    np.testing.assert_array_equal(image.meta["spatial_shape"], (2, 64, 64))


def test_load_image_by_name_with_reader_arguments(path, direct):
    image = LoadImage(reader="EspiritReader", dtype=np.complex64, image_only=True, batch=1)(path)
    assert image.dtype == torch.complex64 and image.shape == (2, 64, 64)
    # slice by slice instead of both at once: equal up to float32 rounding
    np.testing.assert_allclose(image.numpy(), direct[0], rtol=0, atol=1e-5 * np.abs(direct[0]).max())


def test_load_imaged_by_name(path, direct):
    data = LoadImaged(keys="image", reader="EspiritReader", dtype=None)({"image": str(path), "label": 1})
    _same_volume(data["image"], direct)
    assert data["image"].meta["acquisition"] == direct[1]["acquisition"] and data["label"] == 1


def test_load_image_by_suffix(path, direct):
    image = LoadImage(dtype=None, image_only=True)(path)
    _same_volume(image, direct)


def test_other_formats_still_go_to_monai_readers(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "x.nii.gz")
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(tmp_path / "x.png")
    np.save(tmp_path / "x.npy", array)
    load = LoadImage(image_only=True)
    np.testing.assert_array_equal(load(tmp_path / "x.nii.gz").numpy(), array)
    np.testing.assert_array_equal(load(tmp_path / "x.npy").numpy(), array)
    assert load(tmp_path / "x.png").shape == (4, 3)  # PILReader: (width, height)


def test_default_float32_drops_the_imaginary_part(path, direct):
    with pytest.warns(Warning):  # numpy's ComplexWarning: "discards the imaginary part"
        image = LoadImage(reader="EspiritReader", image_only=True)(path)
    assert image.dtype == torch.float32
    np.testing.assert_array_equal(image.numpy(), direct[0].real)


def test_monai_fastmri_reader_instance_workaround(path):
    kspace = LoadImage(reader=FastMRIReader(), dtype=None, image_only=True)(path)
    with EspiritReader().read(path) as volume:
        expected = np.stack([volume.kspace(i) for i in range(volume.num_slices)])
    assert kspace.dtype == torch.complex64 and kspace.shape == (2, 4, 128, 64)
    np.testing.assert_array_equal(kspace.numpy(), expected)
    assert np.abs(kspace.numpy().imag).max() > 0
    with pytest.raises(ValueError):  # MONAI 1.6.1: FastMRIReader is in no reader table
        LoadImage(reader="FastMRIReader")


def test_a_patch_file_is_refused_naming_it(tmp_path, caplog):
    patches = tmp_path / "patches_train.h5"
    columns = dict(
        file=["file_brain_AXT2_200_2000019"], slice=[0], row=[0], col=[0], sequence=["AXT2"],
        label=["normal"], overlap=[0.0],
    )
    write_patches(patches, np.zeros((1, 2, 8, 8), np.float32), columns)
    with pytest.raises(ValueError, match="no 'kspace' dataset") as info:
        LoadImage(dtype=None)(patches)
    assert str(info.value).startswith(str(patches))
    assert "EspiritReader reads fastMRI multi-coil k-space files" in str(info.value)
    # A named reader that fails makes LoadImage try its other readers (MONAI's rule for any
    # reader): PIL then takes the HDF5 file and fails. EspiritReader's message is in the log.
    with caplog.at_level(logging.DEBUG, logger="LoadImage"), pytest.raises((OSError, RuntimeError)):
        LoadImage(reader="EspiritReader", dtype=None)(patches)
    assert f"{patches}: no 'kspace' dataset" in caplog.text


def test_import_monai_cmri_first_registers_on_monai_import():
    code = textwrap.dedent(
        """
        import sys
        import monai_cmri
        assert "monai" not in sys.modules  # the command line stays fast
        from monai.transforms import LoadImage
        import monai.transforms.io.array as array
        assert type(array.__loader__).__module__ != "monai_cmri.data.registration"
        reader = LoadImage(reader="EspiritReader").readers[-1]
        assert type(reader).__name__ == "EspiritReader", reader
        assert type(LoadImage().readers[-1]).__name__ == "EspiritReader"
        assert not any(type(f).__module__.startswith("monai_cmri") for f in sys.meta_path)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
