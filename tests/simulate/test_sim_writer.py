"""Files on disk: fastMRI layout, header, MONAI reader, fastMRI+ CSVs, determinism, arguments."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from monai.apps.reconstruction.fastmri_reader import FastMRIReader
from sim_helpers import TINY

from monai_cmri.data.header import IsmrmrdHeader
from monai_cmri.data.sequences import sequence_from_name
from monai_cmri.simulate import (
    ABNORMAL_FINDINGS,
    CSV_HEADER,
    FINDING_LABELS,
    dataset_volume,
    rows_of_box,
    simulate_dataset,
)
from monai_cmri.simulate.kspace import fft_lines

_TIMING = {  # sequence -> field -> (TR, TE, TI)
    "AXT1": {1.494: (500, 10, None), 2.8936: (2000, 10, 850)},
    "AXT2": {1.494: (5000, 100, None), 2.8936: (5000, 100, None)},
    "AXFLAIR": {1.494: (9000, 86, 2500), 2.8936: (9000, 90, 2500)},
}


def _h5(dataset: Path) -> list[Path]:
    return sorted(dataset.glob("*.h5"))


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def test_stored_rss_equals_rss_of_stored_kspace(tiny_dataset):
    for path in _h5(tiny_dataset):
        with h5py.File(path, "r") as f:
            kspace, recon = f["kspace"][()], f["reconstruction_rss"][()]
            attrs = dict(f.attrs)
        slices, coils, readout, width = kspace.shape
        assert kspace.dtype == np.complex64 and recon.dtype == np.float32
        size = readout // 2
        images = _ifft2c(kspace.astype(np.complex128))[..., readout // 4 : readout // 4 + size, :]
        expected = np.zeros((slices, size, size))
        left = (size - width) // 2
        expected[..., left : left + width] = np.sqrt((np.abs(images) ** 2).sum(1))
        np.testing.assert_allclose(recon, expected, rtol=1e-5, atol=1e-6 * expected.max())
        assert attrs["max"] == pytest.approx(recon.max())
        assert attrs["norm"] == pytest.approx(np.linalg.norm(recon.astype(np.float64)), rel=1e-6)
        assert attrs["acquisition"] == sequence_from_name(path)
        assert len(attrs["patient_id"]) == 64 and int(attrs["patient_id"], 16) >= 0
        # The object sits in the central half of the readout: the margins hold only noise.
        margin = np.abs(_ifft2c(kspace[:, :, :, :]))[:, :, : readout // 8]
        assert np.sqrt((margin**2).sum(1)).mean() < 0.2 * recon.mean()


def test_header_round_trips_the_requested_values(tiny_dataset):
    for path in _h5(tiny_dataset):
        with h5py.File(path, "r") as f:
            header = IsmrmrdHeader.from_xml(f["ismrmrd_header"][()], str(path))
            kspace = f["kspace"][()]
        slices, coils, readout, width = kspace.shape
        pixel = 440.0 / readout
        assert header.encoded_matrix == (readout, width, 1)
        assert header.recon_matrix == (readout // 2, width, 1)
        assert header.encoded_fov_mm[0] == 440.0
        assert header.encoded_fov_mm[1] == pytest.approx(width * pixel, abs=1e-3)
        assert header.recon_fov_mm[0] == pytest.approx(220.0) and header.recon_fov_mm[2] == 5.0
        assert header.receiver_channels == coils == 4
        assert header.vendor == "SIEMENS"
        assert header.field_strength_t in (1.494, 2.8936)
        assert (header.field_strength_t < 2) == (header.model in ("Aera", "Avanto"))
        assert header.h1_resonance_frequency_hz == round(42.577478e6 * header.field_strength_t)
        assert header.slice_limit.maximum == slices - 1
        sequence = sequence_from_name(path)
        kind = "AXT1" if sequence.startswith("AXT1") else sequence
        assert (header.tr_ms, header.te_ms, header.ti_ms) == _TIMING[kind][header.field_strength_t]
        # Phase-encode lines outside the encoding limits are exactly zero (fastMRI padding rule).
        limits = header.kspace_encoding_step_1
        start = width // 2 - limits.center
        acquired = np.zeros(width, bool)
        acquired[start : start + limits.maximum + 1] = True
        assert fft_lines(width, limits.maximum + 1) == slice(start, start + limits.maximum + 1)
        assert np.all(kspace[..., ~acquired] == 0) and np.all(np.abs(kspace[..., acquired]).sum((0, 1, 2)) > 0)


def test_monai_fastmri_reader_reads_a_simulated_file(tiny_dataset):
    path = _h5(tiny_dataset)[0]
    reader = FastMRIReader()  # (its verify_suffix rejects every ".h5" in MONAI 1.6: "..h5" is compared)
    data, meta = reader.get_data(reader.read(str(path)))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(data, f["kspace"][()])
        assert meta["acquisition"] == f.attrs["acquisition"]
    assert meta["filename"] == path.name
    assert meta["reconstruction_rss"].shape == (3, 64, 64)
    assert meta["mask"].shape == data.shape and not meta["mask"].any()  # no mask stored: fully sampled
    assert meta["max"] == pytest.approx(meta["reconstruction_rss"].max())


def test_annotation_csvs_follow_fastmri_plus(tiny_dataset):
    with open(tiny_dataset / "brain.csv", newline="") as f:
        rows = list(csv.reader(f))
    listing = (tiny_dataset / "brain_file_list.csv").read_text().splitlines()
    assert tuple(rows[0]) == CSV_HEADER
    stems = {p.stem for p in _h5(tiny_dataset)}
    files = {r[0] for r in rows[1:]}
    assert files == set(listing) and set(listing) <= stems
    for stem in stems - set(listing):  # unlabeled volumes are in neither file
        assert sequence_from_name(stem + ".h5") in ("AXT2", "AXT1PRE", "AXT1POST")
    assert not any(sequence_from_name(n + ".h5") in ("AXT2", "AXT1PRE") for n in listing)
    labels = set(FINDING_LABELS.values()) | {"Normal for age"}
    for name, slice_, study, x, y, width, height, label in rows[1:]:
        assert label in labels
        if study == "Yes":
            assert (x, y, width, height) == ("", "", "", "") and label == "Normal for age"
            continue
        assert study == "No" and 0 <= int(slice_) < 3
        x, y, width, height = map(int, (x, y, width, height))
        assert width > 0 and height > 0 and 0 <= x and x + width <= 64 and 0 <= y and y + height <= 64
        rows_ = rows_of_box(y, height, 64)
        assert 0 <= rows_.start < rows_.stop <= 64
    # Each annotated sequence has normal and abnormal volumes.
    classes: dict[str, set[str]] = {}
    abnormal = {FINDING_LABELS[f] for f in ABNORMAL_FINDINGS}
    for name in listing:
        own = {r[7] for r in rows[1:] if r[0] == name}
        kind = "normal" if "Normal for age" in own else ("abnormal" if own & abnormal else "excluded")
        classes.setdefault(sequence_from_name(name + ".h5"), set()).add(kind)
    for sequence in ("AXFLAIR", "AXT1", "AXT1POST"):
        assert {"normal", "abnormal"} <= classes[sequence]
    assert any("excluded" in c for c in classes.values())


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_and_volumes_depend_only_on_seed_and_index(tmp_path):
    a = simulate_dataset(tmp_path / "a", volumes=3, seed=7, progress=False, **TINY)
    simulate_dataset(tmp_path / "b", volumes=3, seed=7, progress=False, **TINY)
    simulate_dataset(tmp_path / "c", volumes=2, seed=7, progress=False, **TINY)
    simulate_dataset(tmp_path / "d", volumes=3, seed=8, progress=False, **TINY)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first == second and len(first) == 5 and not list((tmp_path / "a").glob("*.tmp"))
    prefix = _digests(tmp_path / "c")
    for path in a[:2]:
        assert prefix[path.name] == first[path.name]
    other = _digests(tmp_path / "d")
    assert not set(other.items()) & {(k, v) for k, v in first.items() if k.endswith(".h5")}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(volumes=0), "volumes"),
        (dict(slices=0), "slices"),
        (dict(width=64, readout=100), "readout"),
        (dict(width=63, readout=126), "width"),
        (dict(coils=[]), "coils"),
        (dict(coils=[0, 4]), "coils"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, match):
    args = dict(volumes=1, slices=1, width=64, readout=128, coils=[2], progress=False) | kwargs
    with pytest.raises(ValueError, match=match):
        simulate_dataset(tmp_path / "x", **args)


def test_output_path_that_is_a_file_raises(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(OSError, match="not a directory"):
        simulate_dataset(target, volumes=1, slices=1, width=64, readout=128, coils=[2], progress=False)


def test_dataset_volume_is_the_written_volume(tiny_dataset):
    volume = dataset_volume(2, 0, **TINY)
    with h5py.File(tiny_dataset / f"{volume.spec.name}.h5", "r") as f:
        np.testing.assert_array_equal(f["kspace"][()], volume.kspace)
