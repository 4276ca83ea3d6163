"""An external test set from another site, with volume-level labels (paper 2.1.4, Table 2).

The paper tests its classifiers on 96 volumes from another clinical institution: T1-TSE and
T2-TIRM acquisitions, each volume labelled healthy or metastasis (biopsy-confirmed), with
in-plane matrices other than fastMRI's 320 x 320. This module simulates such a set so that the
external evaluation (preprocessing with ``preprocess --external --labels``, volume scores of
paper 2.4.2) runs end to end without the unpublished data.

What differs from the main dataset (:mod:`~monai_cmri.simulate.cohort`):

- sequences: the site's ``T1-TSE`` and ``T2-TIRM`` (about 1 in 6 volumes T1, as in Table 2),
  mapped onto the project's sequence names as :data:`EXTERNAL_SEQUENCES` says (T1-TSE is a
  T1-weighted spin echo, ``AXT1``; T2-TIRM is a dark-fluid inversion recovery, ``AXFLAIR``);
  the labels CSV carries the mapped name in its ``sequence`` column, the header's protocol name
  keeps the site's;
- scanners: two other Siemens models, :data:`EXTERNAL_SCANNERS` (sites 300 and 301; fastMRI's
  are 200-210). TIRM and TSE are Siemens protocol names, so the institution is a Siemens site.
  T1-TSE runs on the 1.5 T scanner only, because the simulator's 3 T T1 protocol is a
  T1-FLAIR (:func:`~monai_cmri.simulate.contrast.protocol`); T2-TIRM runs on the 3 T scanner
  60% of the time. The main dataset is half 1.5 T, half 3 T for every sequence;
- receive coils: a 32-channel head array (:data:`EXTERNAL_COILS`): four rings of loops, the top
  one on the dome over the vertex (:func:`~monai_cmri.simulate.coils.loop_array`), against
  8-20 channels in one to three rings in the main dataset;
- noise: a median head signal to noise of :data:`EXTERNAL_SNR` (15) per coil instead of 25:
  correlated receiver noise with the volume's own coil covariance is added to the k-space;
- matrix: square, drawn from :data:`EXTERNAL_MATRICES` (256, 320 or 384 over a 220 mm field of
  view), and stored without readout oversampling, as the external data the paper crops or
  zero-fills symmetrically in k-space to 320 x 320
  (:func:`monai_cmri.data.reader.combined_volume` with ``external=True``; with a 2x
  oversampled readout that crop would halve the row resolution only);
- subjects: the random streams are tagged, so no volume repeats a main-dataset subject of the
  same seed and index; file names ``ext_brain_{T1TSE|T2TIRM}_{site}_{id}.h5`` name no fastMRI
  sequence;
- labels: at the volume level only, no boxes. Abnormal volumes hold 1-3 metastases (the
  simulator's ``mass``: enhancing rim, necrotic core, edema); normal volumes hold no lesion.
  Classes alternate with the volume index (even: abnormal, odd: normal), so every set is
  balanced to one volume; the first four volumes are T2-TIRM, T2-TIRM, T1-TSE, T1-TSE, so four
  volumes already hold both classes of both sequences.

Volume ``i`` depends only on ``(seed, i)``. Files are written atomically and are identical
across runs with the same arguments.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
from tqdm.auto import tqdm

from monai_cmri.atomic import write_text
from monai_cmri.simulate.geometry import READOUT_FOV_MM
from monai_cmri.simulate.kspace import rss
from monai_cmri.simulate.lesions import ABNORMAL_FINDINGS
from monai_cmri.simulate.spec import VolumeSpec
from monai_cmri.simulate.volume import SNR, SimulatedVolume, simulate_volume
from monai_cmri.simulate.writer import write_volume

__all__ = [
    "EXTERNAL_SEQUENCES",
    "EXTERNAL_PROTOCOL_NAMES",
    "EXTERNAL_SCANNERS",
    "EXTERNAL_COILS",
    "EXTERNAL_MATRICES",
    "EXTERNAL_SNR",
    "EXTERNAL_SCHEDULE",
    "EXTERNAL_LABELS_CSV",
    "ExternalSpec",
    "ExternalVolume",
    "external_label",
    "plan_external_volume",
    "remove_oversampling",
    "external_volume",
    "write_external_volume",
    "write_external_labels",
    "simulate_external",
]

#: The external site's sequences (paper Table 2) and the project sequence each is read as.
EXTERNAL_SEQUENCES: dict[str, str] = {"T1-TSE": "AXT1", "T2-TIRM": "AXFLAIR"}

#: The protocol name written into the ISMRMRD header for each site sequence.
EXTERNAL_PROTOCOL_NAMES: dict[str, str] = {"T1-TSE": "t1_tse_tra", "T2-TIRM": "t2_tirm_tra_dark-fluid"}

#: ``site -> (systemVendor, systemModel, systemFieldStrength_T)`` of the external scanners.
EXTERNAL_SCANNERS: dict[int, tuple[str, str, float]] = {
    300: ("SIEMENS", "Sola", 1.494),
    301: ("SIEMENS", "Vida", 2.89362),
}

#: Receive channels of the site's head array (four rings of eight loops).
EXTERNAL_COILS: tuple[int, ...] = (32,)

#: Square in-plane matrices (pixels over a 220 mm field of view) drawn uniformly per volume.
EXTERNAL_MATRICES: tuple[int, ...] = (256, 320, 384)

#: Median head signal over the per-coil noise standard deviation at the external site.
EXTERNAL_SNR: float = 15.0

#: Site sequences of the first volumes (their classes alternate, as for all volumes).
EXTERNAL_SCHEDULE: tuple[str, ...] = ("T2-TIRM", "T2-TIRM", "T1-TSE", "T1-TSE")

#: Name of the labels CSV (``file,label,sequence``) written next to the volumes.
EXTERNAL_LABELS_CSV = "labels.csv"

# Share of T1-TSE volumes past the schedule: 16 of 96 in paper Table 2.
_T1_SHARE = 16 / 96
# Share of T2-TIRM volumes acquired on the 3 T scanner.
_HIGH_FIELD_SHARE = 0.6
# Number of metastases of an abnormal volume and their shares.
_METASTASES: dict[int, float] = {1: 0.5, 2: 0.3, 3: 0.2}
# Tag of the external random streams: the main dataset's are (seed, index, k), these are
# (_STREAM, seed, index, k), so the two share no stream (for seeds below 2**32, numpy's word size).
_STREAM = 0x657874


@dataclass(frozen=True)
class ExternalSpec:
    """What one external volume is: its file, site sequence, label and the simulated volume.

    Attributes:
        name: file stem ``ext_brain_{T1TSE|T2TIRM}_{site}_{id}``.
        protocol: the site's sequence, a key of :data:`EXTERNAL_SEQUENCES`.
        label: volume label, ``"normal"`` or ``"abnormal"``.
        volume: the simulated volume: project sequence, scanner, coils, slices, matrix
            ``readout = 2 * width`` (oversampling removed when written) and findings.
        vendor: ``systemVendor`` of the scanner.
        snr: median head signal over the per-coil noise standard deviation, at most
            :data:`~monai_cmri.simulate.volume.SNR`.

    Raises:
        ValueError: for an unknown protocol or label, a project sequence that is not the
            protocol's, a non-square matrix, lesions in a normal volume or none in an abnormal
            one, or an SNR outside ``(0, SNR]``.
    """

    name: str
    protocol: str
    label: str
    volume: VolumeSpec
    vendor: str = "SIEMENS"
    snr: float = EXTERNAL_SNR

    def __post_init__(self) -> None:
        where = f"external volume {self.name!r}"
        if self.protocol not in EXTERNAL_SEQUENCES:
            raise ValueError(f"{where}: protocol must be one of {sorted(EXTERNAL_SEQUENCES)}, got {self.protocol!r}")
        if self.volume.sequence != EXTERNAL_SEQUENCES[self.protocol]:
            raise ValueError(
                f"{where}: a {self.protocol} volume is simulated as {EXTERNAL_SEQUENCES[self.protocol]}, "
                f"got {self.volume.sequence}"
            )
        if self.label not in ("normal", "abnormal"):
            raise ValueError(f"{where}: label must be 'normal' or 'abnormal', got {self.label!r}")
        if self.volume.width != self.volume.readout // 2:
            raise ValueError(
                f"{where}: the matrix must be square (width = readout // 2), "
                f"got readout {self.volume.readout}, width {self.volume.width}"
            )
        lesions = any(f in ABNORMAL_FINDINGS for f in self.volume.findings)
        if self.label == "normal" and lesions:
            raise ValueError(f"{where}: a normal volume cannot have findings {list(self.volume.findings)}")
        if self.label == "abnormal" and not lesions:
            raise ValueError(f"{where}: an abnormal volume needs a lesion, got findings {list(self.volume.findings)}")
        if not 0 < self.snr <= SNR:
            raise ValueError(f"{where}: snr must be in (0, {SNR}] (the simulator's own noise), got {self.snr}")

    @property
    def sequence(self) -> str:
        """The project sequence the volume is read as (``AXT1`` or ``AXFLAIR``)."""
        return self.volume.sequence

    @property
    def matrix(self) -> int:
        """In-plane matrix ``N`` of the stored k-space ``(S, C, N, N)``."""
        return self.volume.width

    @property
    def site(self) -> int:
        """The site number in the file name."""
        return self.volume.site


@dataclass
class ExternalVolume:
    """A simulated external volume as it is written.

    Attributes:
        spec: what was simulated.
        volume: the simulation with its k-space ``(S, C, N, N)`` complex64 without readout
            oversampling and with the site's noise, its RSS ``(S, N, N)``, the site's header and
            the ground truth (lesions, masks, ``image`` on the same ``N x N`` grid).
    """

    spec: ExternalSpec
    volume: SimulatedVolume


def external_label(index: int) -> str:
    """The label of external volume ``index``: even indices abnormal, odd ones normal.

    Raises:
        ValueError: for a negative index.
    """
    if index < 0:
        raise ValueError(f"volume index must be >= 0, got {index}")
    return "abnormal" if index % 2 == 0 else "normal"


def _choice(rng: np.random.Generator, values: Sequence[int]) -> int:
    return int(values[int(rng.integers(len(values)))])


def plan_external_volume(
    index: int,
    seed: int,
    *,
    slices: int = 16,
    matrix: Sequence[int] | None = None,
    coils: Sequence[int] | None = None,
    snr: float = EXTERNAL_SNR,
) -> ExternalSpec:
    """The specification of volume ``index`` of the external set drawn with ``seed``.

    Args:
        index: position of the volume in the set, >= 0.
        seed: set seed.
        slices: slices per volume, >= 1.
        matrix: square in-plane matrices to choose from uniformly, each even and >= 16;
            None draws from :data:`EXTERNAL_MATRICES`. The field of view is 220 mm.
        coils: channel counts to choose from uniformly, each >= 1; None uses
            :data:`EXTERNAL_COILS`.
        snr: median head signal over the per-coil noise standard deviation, in
            ``(0, SNR]``.

    Returns:
        the volume's specification (label by :func:`external_label`).

    Raises:
        ValueError: for a negative index, ``slices < 1``, an empty ``matrix`` or ``coils``, a
            matrix that is odd or below 16, a channel count below 1, or an SNR out of range.
    """
    label = external_label(index)
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    matrices = EXTERNAL_MATRICES if matrix is None else tuple(matrix)
    if not matrices or any(m < 16 or m % 2 for m in matrices):
        raise ValueError(f"matrix must name sizes that are even and >= 16, got {list(matrices)}")
    channels = EXTERNAL_COILS if coils is None else tuple(coils)
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"coils must be counts >= 1, got {list(channels)}")
    rng = np.random.default_rng([_STREAM, seed, index, 0])
    if index < len(EXTERNAL_SCHEDULE):
        protocol = EXTERNAL_SCHEDULE[index]
    else:
        protocol = "T1-TSE" if rng.random() < _T1_SHARE else "T2-TIRM"
    high = protocol == "T2-TIRM" and rng.random() < _HIGH_FIELD_SHARE
    site = 301 if high else 300
    vendor, model, field_strength = EXTERNAL_SCANNERS[site]
    if label == "abnormal":
        counts = list(_METASTASES)
        weights = np.array([_METASTASES[k] for k in counts])
        findings = ("mass",) * counts[int(rng.choice(len(counts), p=weights / weights.sum()))]
    else:
        findings = ()
    size = _choice(rng, matrices)
    channel_count = _choice(rng, channels)
    offset = int(np.random.default_rng([_STREAM, seed]).integers(10000))
    number = f"{site}{(offset + index) % 10000:04d}"
    sequence = EXTERNAL_SEQUENCES[protocol]
    patient = hashlib.sha256(f"monai_cmri simulated external subject {seed} {index}".encode()).hexdigest()
    volume = VolumeSpec(
        name=f"file_brain_{sequence}_{site}_{number}",
        sequence=sequence,
        field_strength_t=field_strength,
        model=model,
        coils=channel_count,
        slices=slices,
        readout=2 * size,
        width=size,
        findings=findings,
        annotated=False,
        patient_id=patient,
    )
    name = f"ext_brain_{protocol.replace('-', '')}_{site}_{number}"
    return ExternalSpec(name=name, protocol=protocol, label=label, volume=volume, vendor=vendor, snr=snr)


def remove_oversampling(kspace: np.ndarray) -> np.ndarray:
    """k-space of the central half of a 2x oversampled readout (SPEC 1.1).

    Centred orthonormal inverse FFT along the readout, rows ``[H // 4, H // 4 + H // 2)`` kept,
    centred FFT back; the phase-encode axis is untouched, so its zero-filled lines stay exactly
    zero. The image of the result (:func:`monai_cmri.transforms.ifft2c`) is the centre crop of
    the input's image (:func:`monai_cmri.transforms.crop_oversampling`).

    Args:
        kspace: ``(..., H, W)`` complex k-space, ``H`` a multiple of 4.

    Returns:
        ``(..., H // 2, W)`` complex64.

    Raises:
        ValueError: when ``kspace`` has fewer than 2 axes or ``H`` is not a multiple of 4.
    """
    if kspace.ndim < 2 or kspace.shape[-2] % 4:
        raise ValueError(f"remove_oversampling: need (..., H, W) with H a multiple of 4, got {kspace.shape}")
    readout = kspace.shape[-2]
    half = readout // 2
    flat = kspace.reshape((-1, readout, kspace.shape[-1]))
    out = np.empty((len(flat), half, kspace.shape[-1]), np.complex64)
    for i, plane in enumerate(flat):  # one coil slice at a time bounds the temporaries
        image = scipy.fft.fftshift(scipy.fft.ifft(scipy.fft.ifftshift(plane, axes=0), axis=0, norm="ortho"), axes=0)
        crop = image[readout // 4 : readout // 4 + half]
        out[i] = scipy.fft.fftshift(scipy.fft.fft(scipy.fft.ifftshift(crop, axes=0), axis=0, norm="ortho"), axes=0)
    return out.reshape(kspace.shape[:-2] + (half, kspace.shape[-1]))


def _add_noise(kspace: np.ndarray, sigma: float, covariance: np.ndarray, rng: np.random.Generator) -> None:
    """Add complex Gaussian noise of standard deviation ``sigma``, correlated across coils by
    ``covariance`` as in :func:`~monai_cmri.simulate.kspace.encode`, to ``(S, C, H, W)`` k-space in
    place (every phase-encode line: external volumes acquire them all)."""
    mixing = (np.linalg.cholesky(covariance) * (sigma / np.sqrt(2.0))).astype(np.float32)
    coils = kspace.shape[1]
    for s in range(kspace.shape[0]):
        white = rng.standard_normal((coils, 2 * kspace[s, 0].size), dtype=np.float32)
        kspace[s] += (mixing @ white).view(np.complex64).reshape(kspace.shape[1:])


def external_volume(
    index: int,
    seed: int,
    *,
    slices: int = 16,
    matrix: Sequence[int] | None = None,
    coils: Sequence[int] | None = None,
    snr: float = EXTERNAL_SNR,
) -> ExternalVolume:
    """Volume ``index`` of the external set drawn with ``seed``, exactly as :func:`simulate_external`
    writes it.

    The volume is simulated like a main-dataset volume from its plan (stream ``(seed, index, 1)``
    of the external tag), then its readout oversampling is removed
    (:func:`remove_oversampling`) and correlated noise is added (stream ``(seed, index, 2)``)
    so that the noise standard deviation becomes ``SNR / snr`` times the simulator's own.

    Args:
        index: position of the volume in the set, >= 0.
        seed: set seed.
        slices: slices per volume.
        matrix: square matrices to choose from; None draws from :data:`EXTERNAL_MATRICES`.
        coils: channel counts to choose from; None uses :data:`EXTERNAL_COILS`.
        snr: median head signal over the per-coil noise standard deviation.

    Raises:
        ValueError: as :func:`plan_external_volume`.
    """
    spec = plan_external_volume(index, seed, slices=slices, matrix=matrix, coils=coils, snr=snr)
    simulated = simulate_volume(spec.volume, np.random.default_rng([_STREAM, seed, index, 1]))
    # The oversampled k-space is dropped before the site's noise is drawn: one copy in memory.
    simulated.kspace = kspace = remove_oversampling(simulated.kspace)
    # Independent noise adds in variance: sigma_site^2 = sigma^2 + extra^2, sigma_site = sigma SNR / snr.
    extra = simulated.noise_sigma * float(np.sqrt(max((SNR / spec.snr) ** 2 - 1.0, 0.0)))
    if extra > 0:
        _add_noise(kspace, extra, simulated.noise_covariance, np.random.default_rng([_STREAM, seed, index, 2]))
    fov = READOUT_FOV_MM / 2
    size = spec.matrix
    simulated.header = simulated.header.replace(
        encoded_matrix=(size, size, 1),
        encoded_fov_mm=(fov, fov, simulated.header.encoded_fov_mm[2]),
        recon_matrix=(size, size, 1),
        recon_fov_mm=(fov, fov, simulated.header.recon_fov_mm[2]),
        vendor=spec.vendor,
        protocol_name=EXTERNAL_PROTOCOL_NAMES[spec.protocol],
    )
    simulated.reconstruction_rss = rss(kspace, size=size)
    simulated.noise_sigma = float(np.hypot(simulated.noise_sigma, extra))
    return ExternalVolume(spec, simulated)


def write_external_volume(volume: ExternalVolume, out_dir: str | Path) -> Path:
    """Write one external volume as ``out_dir/{name}.h5`` in the fastMRI HDF5 layout.

    Datasets ``kspace`` (complex64 ``(S, C, N, N)``, no readout oversampling),
    ``reconstruction_rss`` (float32 ``(S, N, N)``), ``ismrmrd_header`` (XML bytes); attributes
    ``acquisition`` (the project sequence, so that every reader of the package opens the file),
    ``max``, ``norm``, ``patient_id``. Written under a temporary name and renamed.

    Args:
        volume: from :func:`external_volume`.
        out_dir: an existing directory.

    Returns:
        the path of the file.

    Raises:
        OSError: when the directory does not exist or the file cannot be written.
    """
    return write_volume(volume.volume, out_dir, name=volume.spec.name)


def write_external_labels(out_dir: str | Path, specs: Sequence[ExternalSpec]) -> Path:
    """Write the labels CSV ``file,label,sequence`` that ``preprocess --external --labels`` reads.

    One row per volume: the file name, ``normal`` or ``abnormal``, and the project sequence
    (:func:`monai_cmri.preprocess.read_external_labels`).

    Args:
        out_dir: an existing directory.
        specs: the volumes, in order.

    Returns:
        the path ``out_dir/labels.csv``.

    Raises:
        OSError: when the directory does not exist or the file cannot be written.
    """
    directory = Path(out_dir)
    if not directory.is_dir():
        raise OSError(f"{directory}: output directory does not exist")
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(("file", "label", "sequence"))
    writer.writerows((f"{spec.name}.h5", spec.label, spec.sequence) for spec in specs)
    path = directory / EXTERNAL_LABELS_CSV
    write_text(path, table.getvalue())
    return path


def simulate_external(
    out_dir: str | Path,
    volumes: int = 8,
    seed: int = 0,
    *,
    slices: int = 16,
    matrix: Sequence[int] | None = None,
    coils: Sequence[int] | None = None,
    snr: float = EXTERNAL_SNR,
    progress: bool = True,
) -> Path:
    """Simulate an external test set from another site with volume labels (paper 2.1.4).

    Writes ``out_dir/ext_brain_{T1TSE|T2TIRM}_{site}_{id}.h5`` per volume, then
    ``out_dir/labels.csv`` (``file,label,sequence``), one volume in memory at a time. The folder
    is ready for ``preprocess --data out_dir --external --labels out_dir/labels.csv``. A volume
    holds ``slices x coils x N x N x 8`` bytes: 270-600 MB at the defaults (16 slices, 32 coils,
    N = 256-384).

    Args:
        out_dir: output directory (created if missing).
        volumes: number of volumes, >= 1; classes alternate, abnormal first.
        seed: set seed; volume ``i`` depends only on ``(seed, i)``.
        slices: slices per volume.
        matrix: square matrices to choose from; None draws 256, 320 or 384.
        coils: channel counts to choose from; None uses 32.
        snr: median head signal over the per-coil noise standard deviation, in ``(0, 25]``.
        progress: show a progress bar over volumes.

    Returns:
        the path of the labels CSV.

    Raises:
        ValueError: for ``volumes < 1`` and as :func:`plan_external_volume`.
        OSError: when ``out_dir`` exists and is not a directory.
    """
    if volumes < 1:
        raise ValueError(f"volumes must be >= 1, got {volumes}")
    # Check every argument on the first plan before anything is written.
    plan_external_volume(0, seed, slices=slices, matrix=matrix, coils=coils, snr=snr)
    directory = Path(out_dir)
    if directory.exists() and not directory.is_dir():
        raise OSError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    specs = []
    for index in tqdm(range(volumes), desc="simulate external", unit="volume", disable=not progress):
        volume = external_volume(index, seed, slices=slices, matrix=matrix, coils=coils, snr=snr)
        write_external_volume(volume, directory)
        specs.append(volume.spec)
        del volume
    return write_external_labels(directory, specs)
