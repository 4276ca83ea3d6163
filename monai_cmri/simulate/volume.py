"""One simulated fastMRI brain volume, from anatomy to k-space (SPEC 1.4).

Order of the simulation: pose the MNI head on the slice grid, place the lesions, read the
tissue fractions (through the masses' displacement), average them over the slice profile,
turn them into signed signal with the sequence's equation, add the phase (global offset,
transceive phase, field offset of the head and of hemorrhages), draw flow ghosts if the
volume has an artifact, weight by loop-coil sensitivities, and encode: 2x oversampled
readout, correlated noise, zero-filled phase-encode edges. The stored RSS image is computed
from the stored complex64 k-space itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from monai_cmri.data.header import EncodingLimit, IsmrmrdHeader
from monai_cmri.simulate.anatomy import Subject, draw_subject, head_fractions, load_atlas
from monai_cmri.simulate.artifacts import apply_flow_ghost, draw_flow_ghost
from monai_cmri.simulate.boxes import Annotation, box_from_mask
from monai_cmri.simulate.coils import CoilArray, loop_array, noise_covariance, sensitivities
from monai_cmri.simulate.contrast import TISSUES, Protocol, protocol, tissue_signals
from monai_cmri.simulate.geometry import READOUT_FOV_MM, SliceGeometry
from monai_cmri.simulate.kspace import encode, encoding_limits, rss
from monai_cmri.simulate.lesions import (
    FINDING_LABELS,
    Lesion,
    apply_lesions,
    draw_lesions,
    lesion_masks,
    mass_effect,
)
from monai_cmri.simulate.phase import (
    GYROMAGNETIC_HZ_PER_T,
    HEAD_AIR_CHI_PPM,
    draw_phase_model,
    field_shift_ppm,
    sample_grid,
    shim,
)
from monai_cmri.simulate.spec import VolumeSpec

__all__ = ["SNR", "SimulatedVolume", "simulate_volume"]

#: Median head signal over the per-coil noise standard deviation (SPEC 1.4: sigma ~ 1/25).
SNR = 25.0

_PROTOCOL_NAMES = {
    "AXFLAIR": "AX FLAIR",
    "AXT1": "AX T1",
    "AXT1POST": "AX T1 POST",
    "AXT1PRE": "AX T1 PRE",
    "AXT2": "AX T2",
}


@dataclass
class SimulatedVolume:
    """A simulated volume with the ground truth that produced it.

    Image-domain arrays are on the ``N x N`` reconstruction grid of ``reconstruction_rss``
    (``N = readout // 2``; narrow volumes zero-padded with ``(N - W) // 2`` columns on the left).

    Attributes:
        spec: what was simulated.
        header: the ISMRMRD header written to the file.
        kspace: ``(S, C, readout, W)`` complex64.
        reconstruction_rss: ``(S, N, N)`` float32, RSS of the stored ``kspace``.
        image: ``(S, N, N)`` complex64 noise-free coil-combined object (signed signal x phase),
            in the units of ``kspace``.
        sensitivities: ``(S, C, N, N)`` complex64 coil sensitivities (zero outside the width).
        fractions: ``(S, len(TISSUES), N, N)`` float32 tissue fractions (slice-averaged).
        phase: ``(S, N, N)`` float32 image phase (global, transceive, field) in radians, so
            that ``image * exp(-1j * phase)`` is the real, signed tissue signal (flow ghosts
            excepted).
        field_ppm: ``(S, N, N)`` float32 field offset ``dB0 / B0`` after shimming, ppm.
        lesions: the 3D lesions, atlas coordinates.
        masks: ``(S, N, N)`` bool ground-truth mask per finding instance (lesions in order,
            then the flow ghosts of an artifact), empty on slices where it is not visible.
        mask_labels: fastMRI+ label of each mask.
        annotations: the ``brain.csv`` rows of the volume (empty when not annotated).
        noise_sigma: complex noise standard deviation per coil (before coil correlation).
        noise_covariance: ``(C, C)`` receiver noise covariance.
    """

    spec: VolumeSpec
    header: IsmrmrdHeader
    kspace: np.ndarray
    reconstruction_rss: np.ndarray
    image: np.ndarray
    sensitivities: np.ndarray
    fractions: np.ndarray
    phase: np.ndarray
    field_ppm: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    mask_labels: list[str] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    noise_sigma: float = 0.0
    noise_covariance: np.ndarray | None = None

    @property
    def attrs(self) -> dict[str, object]:
        """The HDF5 attributes: ``acquisition``, ``max``, ``norm``, ``patient_id``."""
        return {
            "acquisition": self.spec.sequence,
            "max": float(self.reconstruction_rss.max()),
            "norm": float(np.linalg.norm(self.reconstruction_rss.astype(np.float64))),
            "patient_id": self.spec.patient_id,
        }


def simulate_volume(spec: VolumeSpec, rng: np.random.Generator) -> SimulatedVolume:
    """Simulate one volume.

    Args:
        spec: sequence, scanner, matrix, coils and findings.
        rng: the volume's random generator (anatomy, lesions, phase, coils, noise, scale).

    Returns:
        the k-space, its RSS, the header and the ground truth.
    """
    geometry = SliceGeometry(spec.slices, spec.readout, spec.width)
    atlas = load_atlas()
    subject = draw_subject(rng, geometry)
    points = geometry.points()
    atlas_points = subject.map_grid(points)
    lesions = draw_lesions(spec.findings, rng, atlas, subject, geometry)

    samples = atlas.sample(mass_effect(atlas_points, lesions, subject, geometry))
    fractions = np.zeros((len(TISSUES),) + samples.shape[1:], np.float32)
    head_fractions(samples, subject.layers, atlas_points, out=fractions)
    del samples
    occupancy = apply_lesions(fractions, atlas_points, lesions, subject, geometry)
    fractions = fractions.mean(2)  # the box slice profile: (K, S, rows, W)
    del atlas_points

    acquisition = protocol(spec.sequence, spec.field_strength_t)
    signal = np.tensordot(tissue_signals(acquisition, spec.field_strength_t).astype(np.float32), fractions, 1)
    signal *= _texture(rng, signal.shape, geometry.pixel_mm)
    centre = geometry.points(subslices=False)[:, 0]
    field_ppm = _field_map(subject, lesions, geometry, centre)
    phase = draw_phase_model(rng, spec.field_strength_t).phase(centre, field_ppm, spec.field_strength_t)
    image = (signal * np.exp(1j * phase)).astype(np.complex64)

    masks = [lesion_masks(o) for o in occupancy]
    labels = [lesion.label for lesion in lesions]
    if "artifact" in spec.findings:
        brain = fractions[[TISSUES.index(t) for t in ("csf", "gm", "wm")]].sum(0)
        ghost = draw_flow_ghost(rng, brain, geometry.pixel_mm)
        masks.append(apply_flow_ghost(image, ghost))
        labels.append(FINDING_LABELS["artifact"])

    array = loop_array(spec.coils, rng)
    maps = _smooth_sensitivities(array, centre)
    covariance = noise_covariance(array, rng)
    # fastMRI-like value scale: the noise-free RSS peaks at 1.5e-4 .. 6e-4.
    head = fractions.sum(0) > 0.5
    clean = np.abs(image) * np.sqrt((maps.real**2 + maps.imag**2).sum(1))
    gain = np.exp(rng.uniform(np.log(1.5e-4), np.log(6e-4))) / max(float(clean.max()), 1e-12)
    image *= np.float32(gain)
    sigma = float(np.median(clean[head]) * gain / SNR) if head.any() else float(gain * 1e-3)

    kspace = np.empty((spec.slices, spec.coils, spec.readout, spec.width), np.complex64)
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    for s in range(spec.slices):
        encode(image[s], maps[s], spec.readout, spec.lines, sigma, covariance, generator, out=kspace[s])
    recon = rss(kspace)

    def pad(x: np.ndarray) -> np.ndarray:
        return _pad(x, geometry)

    volume = SimulatedVolume(
        spec=spec,
        header=_header(spec, geometry, acquisition),
        kspace=kspace,
        reconstruction_rss=recon,
        image=pad(image),
        sensitivities=pad(maps),
        fractions=pad(np.ascontiguousarray(fractions.transpose(1, 0, 2, 3))),
        phase=pad(phase),
        field_ppm=pad(field_ppm),
        lesions=lesions,
        masks=[pad(m) for m in masks],
        mask_labels=labels,
        noise_sigma=sigma,
        noise_covariance=covariance,
    )
    volume.annotations = _annotations(volume, geometry)
    return volume


def _texture(rng: np.random.Generator, shape: tuple[int, ...], pixel_mm: float, amount: float = 0.03) -> np.ndarray:
    """Multiplicative tissue texture ``1 + amount * n``: unit-variance noise smoothed to ~1 mm.

    The template anatomy is an average of many brains and lacks the fine structure (vessels,
    perivascular spaces, myelination) that makes real tissue grainy at the pixel scale.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma = max(1.0 / pixel_mm, 0.5)
    smooth = ndimage.gaussian_filter(noise, sigma=(0, sigma, sigma), mode="nearest")
    smooth /= max(float(smooth.std()), 1e-6)
    return 1.0 + amount * smooth


def _pad(x: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """Zero-pad the last axis from ``W`` to ``rows`` columns, ``(rows - W) // 2`` on the left."""
    if geometry.width == geometry.rows:
        return x
    out = np.zeros(x.shape[:-1] + (geometry.rows,), x.dtype)
    out[..., geometry.pad_left : geometry.pad_left + geometry.width] = x
    return out


def _field_map(subject: Subject, lesions: list[Lesion], geometry: SliceGeometry, centre: np.ndarray) -> np.ndarray:
    """Shimmed field offset ``dB0 / B0`` (ppm) at the slice centres ``(S, rows, W)``.

    The head/air susceptibility step is convolved with the dipole kernel on a 4 mm grid
    covering the head; each hemorrhagic mass adds the field of its hemosiderin rim
    (``Lesion.chi_ppm``) computed on a local 1.5 mm grid.
    """
    atlas = load_atlas()
    voxel = 4.0
    n = 64
    axis = (np.arange(n) - n / 2) * voxel
    lo = np.array([axis[0], axis[0], axis[0] + geometry.centre_z_mm], np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis + geometry.centre_z_mm, indexing="ij"), -1).astype(np.float32)
    grid = np.ascontiguousarray(grid.transpose(2, 1, 0, 3))  # (z, y, x, 3)
    atlas_grid = subject.to_atlas(grid)
    envelope = atlas.sample(atlas_grid)[4]
    head = np.clip((subject.layers.total(atlas_grid) - envelope) / voxel + 0.5, 0, 1)
    field = field_shift_ppm(HEAD_AIR_CHI_PPM * head, voxel)
    field = shim(field, grid, head > 0.5)
    out = sample_grid(field, lo, voxel, centre)
    for lesion in lesions:
        if lesion.hemorrhagic:
            out += _ring_field(lesion, subject, centre)
    return out


def _ring_field(lesion: Lesion, subject: Subject, centre: np.ndarray) -> np.ndarray:
    """Field (ppm) of a hemorrhagic mass's hemosiderin rim at the slice-centre points."""
    voxel = 1.5
    middle = subject.to_scanner(lesion.centre[None])[0]
    half = 1.3 * float(np.max(lesion.radii)) + 20.0  # the rim's dipole field is < 5% beyond
    n = int(np.ceil(2 * half / voxel)) | 1
    axis = (np.arange(n) - n // 2) * voxel
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).astype(np.float32) + middle
    grid = np.ascontiguousarray(grid.transpose(2, 1, 0, 3))
    chi = lesion.chi_ppm * lesion.hemosiderin(subject.to_atlas(grid))
    field = field_shift_ppm(chi, voxel)
    lo = (middle - (n // 2) * voxel).astype(np.float32)
    inside = np.all(np.abs(centre - middle) <= (n // 2) * voxel, axis=-1)
    out = np.zeros(centre.shape[:-1], np.float32)
    out[inside] = sample_grid(field, lo, voxel, centre[inside])
    return out


def _smooth_sensitivities(array: CoilArray, centre: np.ndarray, spacing_mm: float = 8.0) -> np.ndarray:
    """Coil maps ``(S, C, rows, W)`` from Biot-Savart on a grid of about ``spacing_mm``,
    brought to full resolution by separable cubic interpolation (the fields vary over
    centimetres; the exact sum at every 0.7 mm pixel costs over 100 times more)."""
    slices, rows, width, _ = centre.shape
    pixel = float(centre[0, 0, 1, 0] - centre[0, 0, 0, 0]) if width > 1 else 1.0
    n_r = min(rows, max(4, int(np.ceil((rows - 1) * pixel / spacing_mm)) + 1))
    n_c = min(width, max(4, int(np.ceil((width - 1) * pixel / spacing_mm)) + 1))
    coarse = np.empty((slices, n_r, n_c, 3), np.float32)
    coarse[..., 0] = np.linspace(centre[0, 0, 0, 0], centre[0, 0, -1, 0], n_c)[None, None, :]
    coarse[..., 1] = np.linspace(centre[0, 0, 0, 1], centre[0, -1, 0, 1], n_r)[None, :, None]
    coarse[..., 2] = centre[:, :1, :1, 2]
    maps = torch.from_numpy(np.ascontiguousarray(sensitivities(array, coarse).transpose(1, 0, 2, 3)))
    along_rows = torch.from_numpy(_cubic_matrix(rows, n_r)).to(torch.complex64)
    along_cols = torch.from_numpy(_cubic_matrix(width, n_c).T.copy()).to(torch.complex64)
    return (along_rows @ maps @ along_cols).numpy()


def _cubic_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` Keys cubic-convolution interpolation (a = -0.5) between grids that
    share their first and last points (edge samples repeated beyond the ends)."""
    t = np.linspace(0, n_in - 1, n_out)
    base = np.floor(t).astype(int)
    out = np.zeros((n_out, n_in), np.float32)
    for k in range(-1, 3):
        d = np.abs(t - (base + k))
        w = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1, np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
        np.add.at(out, (np.arange(n_out), np.clip(base + k, 0, n_in - 1)), w)
    return out


def _header(spec: VolumeSpec, geometry: SliceGeometry, acquisition: Protocol) -> IsmrmrdHeader:
    """The ISMRMRD header of the volume (SPEC 1.1)."""
    pixel = geometry.pixel_mm
    thickness = geometry.thickness_mm
    return IsmrmrdHeader(
        encoded_matrix=(spec.readout, spec.width, 1),
        encoded_fov_mm=(READOUT_FOV_MM, round(spec.width * pixel, 4), thickness),
        recon_matrix=(geometry.rows, spec.width, 1),
        recon_fov_mm=(round(geometry.rows * pixel, 4), round(spec.width * pixel, 4), thickness),
        kspace_encoding_step_1=EncodingLimit(*encoding_limits(spec.width, spec.lines)),
        slice_limit=EncodingLimit(0, spec.slices - 1, 0),
        tr_ms=acquisition.tr_ms,
        te_ms=acquisition.te_ms,
        ti_ms=acquisition.ti_ms,
        flip_angle_deg=acquisition.flip_angle_deg,
        sequence_type=acquisition.sequence_type,
        field_strength_t=spec.field_strength_t,
        vendor="SIEMENS",
        model=spec.model,
        receiver_channels=spec.coils,
        protocol_name=_PROTOCOL_NAMES[spec.sequence],
        h1_resonance_frequency_hz=int(round(GYROMAGNETIC_HZ_PER_T * spec.field_strength_t)),
    )


def _annotations(volume: SimulatedVolume, geometry: SliceGeometry) -> list[Annotation]:
    """fastMRI+ rows: one box per finding instance per slice where it shows, plus
    "Normal for age" for normal volumes; nothing for volumes that are not annotated."""
    spec = volume.spec
    if not spec.annotated:
        return []
    rows = []
    if spec.volume_class == "normal":
        rows.append(Annotation(spec.name, 0, True, None, None, None, None, "Normal for age"))
    margin = max(1, int(round(1.5 / geometry.pixel_mm)))
    boxes = []
    for mask, label in zip(volume.masks, volume.mask_labels):
        for s in range(spec.slices):
            if mask[s].any():
                boxes.append(Annotation(spec.name, s, False, *box_from_mask(mask[s], margin), label))
    rows.extend(sorted(boxes, key=lambda a: a.slice))
    return rows
