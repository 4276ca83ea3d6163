"""Tests of the fastMRI file reader on small HDF5 files written by a fixture."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from monai_cmri.data.fastmri import FastMRIFile, read_header, validate_file
from monai_cmri.data.header import EncodingLimit, IsmrmrdHeader

SLICES, COILS, ROWS, COLS = 3, 4, 16, 12

HEADER = IsmrmrdHeader(
    encoded_matrix=(ROWS, COLS, 1),
    encoded_fov_mm=(440.0, 220.0, 7.5),
    recon_matrix=(ROWS // 2, COLS, 1),
    recon_fov_mm=(220.0, 220.0, 5.0),
    kspace_encoding_step_1=EncodingLimit(1, COLS - 2, COLS // 2),
    slice_limit=EncodingLimit(0, SLICES - 1, SLICES // 2),
    tr_ms=9000.0,
    te_ms=86.0,
    ti_ms=2500.0,
    flip_angle_deg=150.0,
    sequence_type="TurboSpinEcho",
    field_strength_t=1.494,
    vendor="SIEMENS",
    model="Aera",
    receiver_channels=COILS,
    protocol_name="AX FLAIR_FBB",
    h1_resonance_frequency_hz=63_613_000,
)


def random_kspace(shape: tuple[int, ...] = (SLICES, COILS, ROWS, COLS), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def write_fastmri(
    path: Path,
    kspace: np.ndarray | None = None,
    *,
    header: bytes | np.ndarray | None = None,
    acquisition: str | None = "AXFLAIR",
    rss: np.ndarray | None = None,
    omit: tuple[str, ...] = (),
) -> Path:
    """Write a fastMRI-format file; ``omit`` drops datasets ("kspace", "ismrmrd_header")."""
    kspace = random_kspace() if kspace is None else kspace
    with h5py.File(path, "w") as f:
        if "kspace" not in omit:
            f.create_dataset("kspace", data=kspace)
        if "ismrmrd_header" not in omit:
            f.create_dataset("ismrmrd_header", data=HEADER.to_xml() if header is None else header)
        if rss is not None:
            f.create_dataset("reconstruction_rss", data=rss)
        if acquisition is not None:
            f.attrs["acquisition"] = acquisition
        f.attrs["max"] = np.float64(0.5)
        f.attrs["norm"] = np.float64(2.25)
        f.attrs["patient_id"] = "a1b2c3"
    return path


@pytest.fixture
def fastmri_file(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    kspace = random_kspace()
    rss = np.random.default_rng(1).random((SLICES, ROWS // 2, COLS)).astype(np.float32)
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_200_6002425.h5", kspace, rss=rss)
    return path, kspace, rss


def test_reads_structure_and_slices(fastmri_file):
    path, kspace, rss = fastmri_file
    with FastMRIFile(path) as f:
        assert f.path == path
        assert f.shape == (SLICES, COILS, ROWS, COLS)
        assert (f.num_slices, f.num_coils, len(f)) == (SLICES, COILS, SLICES)
        assert f.sequence == "AXFLAIR"
        assert f.attrs == {"acquisition": "AXFLAIR", "max": 0.5, "norm": 2.25, "patient_id": "a1b2c3"}
        assert type(f.attrs["max"]) is float and type(f.attrs["patient_id"]) is str
        for index in range(SLICES):
            data = f.kspace(index)
            assert data.dtype == np.complex64 and data.shape == (COILS, ROWS, COLS)
            np.testing.assert_array_equal(data, kspace[index])
            np.testing.assert_array_equal(f.reconstruction_rss(index), rss[index])
    with pytest.raises(ValueError, match="closed"):
        f.kspace(0)


def test_header_round_trip(fastmri_file):
    path, _, _ = fastmri_file
    assert read_header(path) == HEADER
    with FastMRIFile(path) as f:
        assert f.header == HEADER
        assert f.header.kspace_encoding_step_1 == EncodingLimit(1, COLS - 2, COLS // 2)
        assert (f.header.tr_ms, f.header.te_ms, f.header.ti_ms) == (9000.0, 86.0, 2500.0)


def test_header_stored_as_uint8_array(tmp_path):
    raw = np.frombuffer(HEADER.to_xml(), dtype=np.uint8)
    path = write_fastmri(tmp_path / "file_brain_AXT2_1_2.h5", header=raw)
    assert read_header(path) == HEADER


def test_explicit_close_and_missing_reconstruction(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXT2_209_2090296.h5", acquisition="AXT2")
    f = FastMRIFile(path)
    assert not f.has_reconstruction
    assert f.reconstruction_rss(0) is None
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.kspace(0)


@pytest.mark.parametrize(
    ("name", "acquisition", "expected", "note"),
    [
        ("anything.h5", "axt1post", "AXT1POST", None),
        ("anything.h5", "AX T1 PRE", "AXT1PRE", None),
        ("file_brain_AXT2_200_1.h5", None, "AXT2", None),
        ("file_brain_AXT1POST_201_2.h5", "SAGT1", "AXT1POST", "'SAGT1', not a known sequence"),
        ("file_brain_AXT2_201_3.h5", "AXT3", "AXT2", "'AXT3', not a known sequence"),
        ("file_brain_AXT1_201_3.h5", "AXT2", "AXT2", "the file name says AXT1"),
    ],
)
def test_sequence_from_attribute_then_name(tmp_path, name, acquisition, expected, note):
    path = write_fastmri(tmp_path / name, acquisition=acquisition)
    if note is None:
        with FastMRIFile(path) as f:
            assert f.sequence == expected and f.notes == []
    else:
        # A disagreement between the attribute and the name is warned about and recorded.
        with pytest.warns(UserWarning, match=note), FastMRIFile(path) as f:
            assert f.sequence == expected
            assert len(f.notes) == 1 and note in f.notes[0] and str(path) in f.notes[0]


def test_slice_reads_stay_one_slice(tmp_path):
    kspace = random_kspace((8, COILS, 64, 32))
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", kspace)
    slice_bytes = kspace[0].nbytes
    with FastMRIFile(path) as f:
        tracemalloc.start()
        try:
            data = f.kspace(5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    np.testing.assert_array_equal(data, kspace[5])
    assert peak < 2 * slice_bytes < kspace.nbytes / 2
    tracemalloc.start()
    try:
        validate_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * slice_bytes


def test_validate_accepts_a_good_file(fastmri_file):
    path, _, _ = fastmri_file
    assert validate_file(path) is None


# ----------------------------------------------------------------------------- errors


def assert_names_file(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(err.value)
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, message


def test_missing_file(tmp_path):
    path = tmp_path / "file_brain_AXFLAIR_1_1.h5"
    with pytest.raises(FileNotFoundError) as err:
        FastMRIFile(path)
    assert_names_file(err, path, "no such file")


def test_not_hdf5(tmp_path):
    path = tmp_path / "file_brain_AXFLAIR_1_1.h5"
    path.write_text("this is not an HDF5 file\n")
    for call in (FastMRIFile, read_header, validate_file):
        with pytest.raises(OSError) as err:
            call(path)
        assert_names_file(err, path, "not an HDF5 file")


def test_truncated_hdf5(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError) as err:
        validate_file(path)
    assert_names_file(err, path, "truncated")


def test_no_kspace(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", omit=("kspace",))
    with pytest.raises(ValueError) as err:
        FastMRIFile(path)
    assert_names_file(err, path, "no 'kspace' dataset")


def test_kspace_wrong_rank(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", random_kspace((COILS, ROWS, COLS)))
    with pytest.raises(ValueError) as err:
        FastMRIFile(path)
    assert_names_file(err, path, "4-D", str((COILS, ROWS, COLS)))


def test_kspace_real_valued(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", random_kspace().real.copy())
    with pytest.raises(ValueError) as err:
        validate_file(path)
    assert_names_file(err, path, "complex", "float32")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(tmp_path, bad):
    kspace = random_kspace()
    kspace[2, 1, 3, 4] = bad
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", kspace)
    with FastMRIFile(path) as f:
        f.kspace(0)
        f.kspace(1)
        with pytest.raises(ValueError) as err:
            f.kspace(2)
        assert_names_file(err, path, "slice 2", "NaN or Inf")
    with FastMRIFile(path, check_finite=False) as f:
        assert not np.isfinite(f.kspace(2)).all()
    with pytest.raises(ValueError) as err:
        validate_file(path)
    assert_names_file(err, path, "slice 2")


def test_non_finite_reconstruction(tmp_path):
    rss = np.ones((SLICES, ROWS // 2, COLS), np.float32)
    rss[1, 0, 0] = np.nan
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", rss=rss)
    with pytest.raises(ValueError) as err:
        validate_file(path)
    assert_names_file(err, path, "reconstruction_rss slice 1")


def test_reconstruction_wrong_shape(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", rss=np.ones((SLICES + 1, 8, 8), np.float32))
    with FastMRIFile(path) as f, pytest.raises(ValueError) as err:
        f.reconstruction_rss(0)
    assert_names_file(err, path, "reconstruction_rss", str(SLICES))


def test_unknown_sequence(tmp_path):
    path = write_fastmri(tmp_path / "brain_scan_0001.h5", acquisition="CORPD_FBK")
    with pytest.raises(ValueError) as err:
        FastMRIFile(path)
    assert_names_file(err, path, "unknown sequence", "CORPD_FBK")


def test_missing_header(tmp_path):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", omit=("ismrmrd_header",))
    for call in (FastMRIFile, read_header):
        with pytest.raises(ValueError) as err:
            call(path)
        assert_names_file(err, path, "ismrmrd_header")


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b"<ismrmrdHeader><unclosed>", ("not valid XML",)),
        (HEADER.to_xml().replace(b"<TR>9000</TR>", b""), ("sequenceParameters/TR",)),
        (HEADER.to_xml().replace(b"<TE>86</TE>", b"<TE>long</TE>"), ("malformed",)),
    ],
)
def test_bad_header(tmp_path, header, words):
    path = write_fastmri(tmp_path / "file_brain_AXFLAIR_1_1.h5", header=header)
    with pytest.raises(ValueError) as err:
        FastMRIFile(path)
    assert_names_file(err, path, *words)


@pytest.mark.parametrize("index", [SLICES, -1, 100])
def test_slice_index_out_of_range(fastmri_file, index):
    path, _, _ = fastmri_file
    with FastMRIFile(path) as f:
        for read in (f.kspace, f.reconstruction_rss):
            with pytest.raises(IndexError) as err:
                read(index)
            assert_names_file(err, path, str(index), f"[0, {SLICES})")


def test_slice_index_not_integer(fastmri_file):
    path, _, _ = fastmri_file
    with FastMRIFile(path) as f, pytest.raises(IndexError) as err:
        f.kspace(1.0)
    assert_names_file(err, path, "integer")
