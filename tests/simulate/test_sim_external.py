"""The simulated external test set (paper 2.1.4): labels CSV, site, noise, lesions, preprocessing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from monai_cmri import commands
from monai_cmri.data.dataset import PatchDataset, read_parameters
from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.data.header import IsmrmrdHeader
from monai_cmri.preprocess import preprocess_external, read_external_labels
from monai_cmri.simulate import (
    EXTERNAL_LABELS_CSV,
    EXTERNAL_SEQUENCES,
    SCANNERS,
    ExternalSpec,
    dataset_volume,
    external_volume,
    plan_external_volume,
    plan_volume,
    simulate_external,
)
from monai_cmri.simulate.cohort import COIL_MIX
from monai_cmri.simulate.external import (
    EXTERNAL_COILS,
    EXTERNAL_MATRICES,
    EXTERNAL_PROTOCOL_NAMES,
    EXTERNAL_SCANNERS,
    remove_oversampling,
)

#: Tiny external set: 3 slices, 4 coils, 48 or 64 square matrices (zero-filled to 320 later).
SEED = 3
TINY_EXTERNAL = dict(slices=3, matrix=[48, 64], coils=[4])


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.fixture(scope="module")
def external_set(tmp_path_factory) -> tuple[Path, Path]:
    """Four tiny external volumes and their labels CSV."""
    out = tmp_path_factory.mktemp("external") / "site"
    labels = simulate_external(out, volumes=4, seed=SEED, progress=False, **TINY_EXTERNAL)
    return out, labels


def test_labels_csv_names_every_file_with_its_class(external_set):
    out, labels_csv = external_set
    assert labels_csv == out / EXTERNAL_LABELS_CSV
    table = read_external_labels(labels_csv)
    files = sorted(out.glob("*.h5"))
    assert set(table) == {path.stem for path in files} and len(files) == 4
    for index in range(4):
        spec = plan_external_volume(index, SEED, **TINY_EXTERNAL)
        assert table[spec.name] == (spec.label, spec.sequence)
        assert spec.label == ("abnormal" if index % 2 == 0 else "normal")
        assert spec.sequence == EXTERNAL_SEQUENCES[spec.protocol]
    # Four volumes hold both classes of both sequences.
    assert sorted(table.values()) == [
        ("abnormal", "AXFLAIR"), ("abnormal", "AXT1"), ("normal", "AXFLAIR"), ("normal", "AXT1")
    ]
    assert labels_csv.read_text().splitlines()[0] == "file,label,sequence"


def test_files_hold_square_kspace_without_oversampling_and_the_site_header(external_set):
    out, labels_csv = external_set
    table = read_external_labels(labels_csv)
    for path in sorted(out.glob("*.h5")):
        with h5py.File(path, "r") as f:
            kspace, recon = f["kspace"][()], f["reconstruction_rss"][()]
            header = IsmrmrdHeader.from_xml(f["ismrmrd_header"][()], str(path))
            attrs = dict(f.attrs)
        slices, coils, rows, cols = kspace.shape
        assert (slices, coils) == (3, 4) and rows == cols and rows in (48, 64)
        assert header.encoded_matrix == header.recon_matrix == (rows, cols, 1)
        assert header.encoded_fov_mm[:2] == header.recon_fov_mm[:2] == (220.0, 220.0)
        assert header.receiver_channels == 4
        protocol = "T1-TSE" if "_T1TSE_" in path.name else "T2-TIRM"
        assert header.protocol_name == EXTERNAL_PROTOCOL_NAMES[protocol]
        site = int(path.stem.split("_")[3])
        vendor, model, field = EXTERNAL_SCANNERS[site]
        assert (header.vendor, header.model, header.field_strength_t) == (vendor, model, field)
        if protocol == "T1-TSE":  # a spin echo: the simulator's 3 T T1 would be a T1-FLAIR
            assert header.field_strength_t < 2 and header.ti_ms is None
        # No oversampling left: the stored RSS is the RSS of the whole image of the k-space.
        expected = np.sqrt((np.abs(_ifft2c(kspace.astype(np.complex128))) ** 2).sum(1))
        np.testing.assert_allclose(recon, expected, rtol=1e-5, atol=1e-6 * expected.max())
        assert attrs["acquisition"] == table[path.stem][1]
        with FastMRIFile(path) as volume:
            assert volume.sequence == table[path.stem][1]


def test_remove_oversampling_keeps_the_central_half_of_the_image():
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((2, 3, 44, 10)) + 1j * rng.standard_normal((2, 3, 44, 10))).astype(np.complex64)
    kspace[..., :2] = 0  # zero-filled phase-encode lines
    out = remove_oversampling(kspace)
    assert out.shape == (2, 3, 22, 10) and out.dtype == np.complex64
    np.testing.assert_allclose(_ifft2c(out), _ifft2c(kspace.astype(np.complex128))[..., 11:33, :], atol=1e-5)
    assert not out[..., :2].any()
    with pytest.raises(ValueError, match=r"\(2, 42, 10\)"):
        remove_oversampling(np.zeros((2, 42, 10), np.complex64))


def test_classes_are_balanced_and_the_plan_is_deterministic():
    for seed in (0, 7):
        specs = [plan_external_volume(i, seed) for i in range(120)]
        assert specs == [plan_external_volume(i, seed) for i in range(120)]
        labels = [spec.label for spec in specs]
        for n in (4, 5, 31, 120):
            assert abs(labels[:n].count("abnormal") - labels[:n].count("normal")) <= 1
        assert all(spec.label == "abnormal" for spec in specs[::2])
        t1 = [spec for spec in specs if spec.protocol == "T1-TSE"]
        assert 8 <= len(t1) <= 35  # about 1 in 6, as in paper Table 2
        assert all(spec.volume.field_strength_t < 2 for spec in t1)
        assert {spec.volume.field_strength_t for spec in specs} == {1.494, 2.89362}
        assert {spec.matrix for spec in specs} == set(EXTERNAL_MATRICES)
        assert {spec.volume.coils for spec in specs} == set(EXTERNAL_COILS)
        assert len({spec.name for spec in specs}) == 120
    other = [plan_external_volume(i, 8) for i in range(10)]
    assert [s.volume.patient_id for s in other] != [plan_external_volume(i, 7).volume.patient_id for i in range(10)]


def test_external_site_differs_from_the_main_dataset():
    models = {model for model, _ in SCANNERS.values()}
    for index in range(30):
        main, external = plan_volume(index, 0), plan_external_volume(index, 0)
        assert external.site not in SCANNERS and external.volume.model not in models
        assert external.volume.coils > max(COIL_MIX)
        assert external.volume.patient_id != main.patient_id
        assert external.volume.sequence in ("AXT1", "AXFLAIR")
    # Same index, seed and grid: another subject (pose, deformation, lesions) and another noise draw.
    main = dataset_volume(1, 0, slices=3, width=64, readout=128, coils=[4])
    external = external_volume(1, 0, slices=3, matrix=[64], coils=[4])
    assert main.fractions.shape == external.volume.fractions.shape
    difference = np.abs(main.fractions - external.volume.fractions).mean()
    assert difference > 0.05 * np.abs(main.fractions).mean()
    assert external.volume.kspace.shape == (3, 4, 64, 64) != main.kspace.shape


def test_site_noise_is_added_with_the_coil_covariance():
    quiet = external_volume(0, 1, slices=2, matrix=[48], coils=[4], snr=25.0)
    noisy = external_volume(0, 1, slices=2, matrix=[48], coils=[4], snr=12.5)
    # The same simulation: the difference is the added noise alone.
    np.testing.assert_array_equal(quiet.volume.image, noisy.volume.image)
    assert noisy.volume.noise_sigma == pytest.approx(2 * quiet.volume.noise_sigma)
    added = (noisy.volume.kspace - quiet.volume.kspace).astype(np.complex128)
    extra2 = 3 * quiet.volume.noise_sigma**2  # (25 / 12.5)^2 - 1
    samples = added.transpose(1, 0, 2, 3).reshape(4, -1)
    covariance = (samples @ samples.conj().T).real / samples.shape[1]
    np.testing.assert_allclose(covariance, extra2 * quiet.volume.noise_covariance, atol=0.06 * extra2)


def test_abnormal_volumes_hold_metastases_and_normal_ones_none(external_set):
    out, labels_csv = external_set
    for spec in (plan_external_volume(i, 2) for i in range(40)):
        if spec.label == "abnormal":
            assert spec.volume.findings in (("mass",), ("mass",) * 2, ("mass",) * 3)
        else:
            assert spec.volume.findings == ()
    for index in (0, 1):
        volume = external_volume(index, SEED, **TINY_EXTERNAL)
        # Exactly what simulate_external wrote.
        with h5py.File(out / f"{volume.spec.name}.h5", "r") as f:
            np.testing.assert_array_equal(f["kspace"][()], volume.volume.kspace)
        simulated = volume.volume
        if volume.spec.label == "abnormal":
            assert len(simulated.lesions) == len(volume.spec.volume.findings) >= 1
            assert {lesion.kind for lesion in simulated.lesions} == {"mass"}
            assert any(mask.any() for mask in simulated.masks)
        else:
            assert simulated.lesions == [] and simulated.masks == []
    normal = plan_external_volume(1, SEED)
    with pytest.raises(ValueError, match=r"normal volume cannot have findings \['mass'\]"):
        ExternalSpec(normal.name, normal.protocol, "normal", replace(normal.volume, findings=("mass",)))


def test_preprocess_external_cuts_the_tiny_set_with_volume_labels(external_set, tmp_path):
    data, labels_csv = external_set
    table = read_external_labels(labels_csv)
    summary = preprocess_external(data, tmp_path / "out", labels_csv, inferior=1 / 3, progress=False)
    assert sorted(summary.done) == sorted(table) and not summary.failed
    assert summary.patches == {name: 2 * 4 for name in table}
    patches = PatchDataset(tmp_path / "out" / "external.h5", in_memory=True)
    # 3 slices, the lowest third dropped: 2 slices x 4 centre patches per volume.
    assert len(patches) == 4 * 2 * 4
    items = [patches[i] for i in range(len(patches))]
    assert {(item["row"], item["col"]) for item in items} == {(75, 75), (75, 150), (150, 75), (150, 150)}
    assert {item["slice"] for item in items} == {1, 2}
    for item in items:
        assert (item["label_name"], item["sequence_name"]) == table[item["file"]]
        image = item["image"].numpy()
        assert image.shape == (2, 96, 96) and np.isfinite(image).all()
        assert np.hypot(image[0], image[1]).max() <= 1.0 + 1e-5
    # Per-volume files record the volume label and sequence they were cut with.
    for name, (label, sequence) in table.items():
        parameters = read_parameters(tmp_path / "out" / "volumes" / f"{name}.h5")
        assert (parameters["volume"], parameters["volume_class"], parameters["sequence"]) == (name, label, sequence)
        assert parameters["external"] is True and parameters["slices"] == [1, 2]


def test_simulate_command_writes_an_external_set(tmp_path):
    out = tmp_path / "ext"
    commands.simulate(str(out), volumes=2, slices=2, external=True, matrix=48, coils=2, quiet=True)
    table = read_external_labels(out / EXTERNAL_LABELS_CSV)
    assert set(table) == {p.stem for p in out.glob("*.h5")}
    assert [label for label, _ in table.values()] == ["abnormal", "normal"]
    with pytest.raises(commands.UsageError, match="--matrix applies only with --external"):
        commands.simulate(str(out), matrix=48, quiet=True)
    with pytest.raises(commands.UsageError, match="--width and --readout do not apply with --external"):
        commands.simulate(str(out), width=64, external=True, quiet=True)
    with pytest.raises(commands.UsageError, match=r"--matrix sizes must be even.*\[47\]"):
        commands.simulate(str(out), external=True, matrix=47, quiet=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(index=-1), "index must be >= 0, got -1"),
        (dict(slices=0), "slices must be >= 1, got 0"),
        (dict(matrix=[63]), r"matrix must name sizes that are even and >= 16, got \[63\]"),
        (dict(matrix=[]), r"matrix must name sizes that are even and >= 16, got \[\]"),
        (dict(coils=[0]), r"coils must be counts >= 1, got \[0\]"),
        (dict(coils=[]), r"coils must be counts >= 1, got \[\]"),
        (dict(snr=30.0), r"snr must be in \(0, 25.0\].*got 30.0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    arguments = dict(index=0, seed=0) | kwargs
    with pytest.raises(ValueError, match=message):
        plan_external_volume(arguments.pop("index"), arguments.pop("seed"), **arguments)
    if "index" not in kwargs:
        with pytest.raises(ValueError, match=message):
            simulate_external("/nonexistent/never-created", volumes=1, progress=False, **kwargs)
    assert not Path("/nonexistent/never-created").exists()
