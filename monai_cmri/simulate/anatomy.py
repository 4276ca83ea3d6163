"""Brain and head anatomy of a simulated subject (SPEC 1.4).

The brain comes from the MNI152 2009 templates shipped inside nilearn's wheel (T1, grey- and
white-matter probability maps, brain mask at 1 mm; nothing is downloaded). Cerebrospinal fluid
is what the mask holds beyond grey and white matter (ventricles, sulci); the T1 template
refines the grey/white split where its intensity departs from the probabilities. The skull
and scalp are procedural: shells at a signed distance from the smoothed brain surface and
its envelope, with thicknesses drawn per subject and varying around the head (subarachnoid
CSF, dura, inner table, diploic marrow, outer table, galea and temporalis, fat, skin).

Each subject gets a random pose (rotation, anisotropic scale, translation) and a smooth random
deformation, so no two volumes share the exact anatomy. Atlas coordinates are MNI millimetres.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from monai_cmri.simulate.geometry import SliceGeometry

__all__ = ["ANATOMY_TISSUES", "Atlas", "HeadLayers", "Subject", "load_atlas", "draw_subject", "head_fractions"]

#: Tissues produced by :func:`head_fractions`, in order (a prefix of ``contrast.TISSUES``).
ANATOMY_TISSUES: tuple[str, ...] = ("csf", "gm", "wm", "dura", "bone", "fat", "muscle")

# Atlas box in MNI mm: the brain's bounding box ([-72, 72] x [-107, 73] x [-72, 82]) plus
# room for ~28 mm of skull and scalp. Odd sizes let a 2 mm grid upsample exactly.
_BOX_LO = np.array([-100.0, -136.0, -100.0], np.float32)
_BOX_SHAPE = (201, 239, 211)
# MNI mm of voxel (0, 0, 0) of nilearn's 1 mm templates.
_TEMPLATE_ORIGIN = np.array([-98.0, -134.0, -72.0])
# Ventricles: CSF deeper than this below the brain surface (sulcal CSF is shallower).
_VENTRICLE_DEPTH_MM = 12.0
# Radius of the closing that turns the brain mask into the inner surface of the skull.
_CLOSING_MM = 12.0
_PLANAR_CROSS = np.zeros((3, 3, 3), bool)
_PLANAR_CROSS[:, :, 1] = ndimage.generate_binary_structure(2, 1)
# Middle of the head in MNI mm: the pose centres it in the field of view, and the skull's
# thickness pattern is laid out around it.
_HEAD_CENTRE_MM = np.array([0.0, -17.0, 15.0], np.float32)


@dataclass(frozen=True)
class Atlas:
    """The MNI152 head atlas sampled by every subject.

    Attributes:
        volume: ``(1, 6, Z, Y, X)`` float32 channels: grey matter, white matter, brain
            fraction, signed distance to the (smoothed) brain surface and signed distance to
            the brain's envelope (the inner skull surface), both in mm and negative inside,
            and the T1 residual (see :func:`load_atlas`).
        lo_mm: MNI coordinates ``(x, y, z)`` of voxel ``(0, 0, 0)``; voxels are 1 mm.
        candidates: named ``(n, 3)`` float32 MNI point sets where lesions may be centred:
            ``"deep_wm"`` white matter >= 15 mm below the surface, ``"periventricular"`` white
            matter 2-9 mm from a ventricle, ``"parenchyma"`` brain >= 6 mm deep, ``"cortex"``
            grey matter 2-8 mm deep, ``"deep_grey"`` grey matter >= 25 mm deep.
        depth: for each candidate set, ``(n,)`` depth below the brain surface in mm.
    """

    volume: torch.Tensor
    lo_mm: np.ndarray
    candidates: dict[str, np.ndarray]
    depth: dict[str, np.ndarray]

    def sample(self, points: np.ndarray) -> np.ndarray:
        """Trilinear samples of the six channels at MNI points.

        Args:
            points: ``(..., 3)`` MNI coordinates in mm; outside the box reads as air.

        Returns:
            ``(6, ...)`` float32: grey matter, white matter, brain fraction, distance to the
            brain surface, distance to the envelope, T1 residual.
        """
        shape = points.shape[:-1]
        # A 5D grid that keeps the points' own layout reads the volume far more coherently
        # (rows of neighbouring points) than one flat list of points.
        dims = (1,) * max(0, 3 - len(shape)) + shape
        dims = (int(np.prod(dims[:-2])),) + dims[-2:]
        grid = _normalized(points.reshape(1, *dims, 3), self.lo_mm, self.volume.shape[2:])
        out = F.grid_sample(self.volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.reshape(out.shape[1], *shape).numpy()


def _normalized(points: np.ndarray, lo_mm: np.ndarray, zyx_shape: tuple[int, ...]) -> torch.Tensor:
    """MNI mm ``(..., x/y/z)`` to ``grid_sample`` coordinates of a ``(Z, Y, X)`` 1 mm volume."""
    scale = torch.from_numpy(2.0 / (np.array(zyx_shape[::-1], np.float32) - 1))
    shift = torch.from_numpy(-np.asarray(lo_mm, np.float32)) * scale - 1.0
    grid = torch.from_numpy(np.ascontiguousarray(points, np.float32)).clone()
    return grid.mul_(scale).add_(shift)


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Load the MNI152 templates from nilearn's package data and build the atlas (cached).

    Takes a few seconds once per process: the signed distance to the brain surface, which the
    skull and scalp shells follow, is computed at 2 mm and brought to 1 mm by trilinear
    interpolation (it is smooth, and the exact distance transform at 1 mm costs 8x more).
    """
    from nilearn import datasets

    images = (
        datasets.load_mni152_template(resolution=1),
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_wm_template(resolution=1),
        datasets.load_mni152_brain_mask(resolution=1),
    )
    t1, gm, wm, mask = (_in_box(np.asarray(image.dataobj, np.float32)) for image in images)
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    brain = np.maximum(mask > 0.5, np.clip(gm + wm, 0, 1)).astype(np.float32)
    residual = _t1_residual(t1, gm, wm, brain)

    smooth = ndimage.gaussian_filter(brain, 1.5)[::2, ::2, ::2] > 0.5
    distance = _upsample(_signed_distance(smooth), brain.shape)
    # The skull follows the brain's envelope: an axial closing bridges the gaps at the skull
    # base (temporal lobes, brainstem, cerebellum), which become bone instead of rings of
    # scalp around each lobe. Axial planes only: a 3D ball cannot fill the grooves that open
    # downwards between the lobes.
    planar = (2.0, 2.0, 1e6)
    dilated = ndimage.distance_transform_edt(~smooth, sampling=planar) <= _CLOSING_MM
    closed = ndimage.distance_transform_edt(dilated, sampling=planar) > _CLOSING_MM
    closed = ndimage.binary_fill_holes(closed, structure=_PLANAR_CROSS)
    envelope = _upsample(_signed_distance(closed | smooth), brain.shape)

    csf = np.clip(brain - gm - wm, 0, 1)
    ventricles = (csf > 0.6) & (distance < -_VENTRICLE_DEPTH_MM)
    ventricles = ndimage.binary_opening(ventricles, iterations=1)
    to_ventricle = _upsample(
        ndimage.distance_transform_edt(~ventricles[::2, ::2, ::2]).astype(np.float32) * 2.0, brain.shape
    )
    depth = -distance
    rules = {
        "deep_wm": (wm > 0.85) & (depth >= 15),
        "periventricular": (wm > 0.7) & (to_ventricle >= 2) & (to_ventricle <= 9),
        "parenchyma": (gm + wm > 0.95) & (depth >= 6),
        "cortex": (gm > 0.6) & (depth >= 2) & (depth <= 8),
        "deep_grey": (gm > 0.5) & (depth >= 25),
    }
    candidates, depths = {}, {}
    for name, rule in rules.items():
        # Every second voxel keeps the sets small; lesions are millimetres apart anyway.
        index = np.argwhere(rule[::2, ::2, ::2]) * 2
        candidates[name] = (index + _BOX_LO).astype(np.float32)
        depths[name] = depth[tuple(index.T)].astype(np.float32)

    volume = np.stack([gm, wm, brain, distance, envelope, residual]).transpose(0, 3, 2, 1)
    return Atlas(torch.from_numpy(np.ascontiguousarray(volume))[None], _BOX_LO.copy(), candidates, depths)


def _t1_residual(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """What the T1 template shows beyond its three tissue classes, in units of white minus grey.

    The template intensity inside the brain is fitted as ``a gm + b wm + c csf`` by least
    squares; the residual over ``b - a`` says how much more white-matter-like (myelin-rich:
    internal capsule, optic radiations) or grey-matter-like (iron-rich deep nuclei) a voxel is
    than its probabilities, and :func:`head_fractions` moves that share between the two.
    """
    inside = brain > 0.5
    csf = np.clip(brain - gm - wm, 0, 1)
    design = np.stack([gm[inside], wm[inside], csf[inside]], axis=1)
    coef, *_ = np.linalg.lstsq(design, t1[inside], rcond=None)
    out = np.zeros_like(t1)
    out[inside] = (t1[inside] - design @ coef) / (coef[1] - coef[0])
    return np.clip(out, -0.5, 0.5)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) to the surface of a mask on a 2 mm grid."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return ((outside - inside) * 2.0).astype(np.float32)


def _in_box(template: np.ndarray) -> np.ndarray:
    """Copy a 1 mm MNI template into the atlas box (zeros where the template is absent)."""
    out = np.zeros(_BOX_SHAPE, np.float32)
    start = (_TEMPLATE_ORIGIN - _BOX_LO).astype(int)
    src, dst = [], []
    for axis in range(3):
        lo = max(start[axis], 0)
        hi = min(start[axis] + template.shape[axis], _BOX_SHAPE[axis])
        dst.append(slice(lo, hi))
        src.append(slice(lo - start[axis], hi - start[axis]))
    out[tuple(dst)] = template[tuple(src)]
    return out


def _upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear 2x upsampling of a grid sampled on every second voxel of ``shape``."""
    tensor = torch.from_numpy(np.ascontiguousarray(coarse))[None, None]
    return F.interpolate(tensor, size=shape, mode="trilinear", align_corners=True)[0, 0].numpy()


@dataclass(frozen=True)
class HeadLayers:
    """Thicknesses (mm) of the shells between the brain surface and the air, inside out.

    ``csf`` is measured from the smoothed brain surface; CSF also fills every gap of the
    brain mask (ventricles, sulci) through the atlas. The skull and the scalp fat thicken and
    thin smoothly around the head (``1 + sum_k a_k (u . v_k)`` for the direction ``u`` from the
    head centre), and the temporalis muscle thickens the galea above the ears.

    Attributes:
        skull_waves: ``(vx, vy, vz, a)`` unit direction and amplitude of each skull-thickness
            variation.
        scalp_waves: the same for the subcutaneous fat.
        temporalis_mm: extra soft tissue over the temples.
    """

    csf: float = 2.5
    dura: float = 0.8
    inner_table: float = 1.6
    diploe: float = 2.5
    outer_table: float = 1.6
    galea: float = 1.5
    fat: float = 4.0
    skin: float = 2.0
    skull_waves: tuple[tuple[float, float, float, float], ...] = ()
    scalp_waves: tuple[tuple[float, float, float, float], ...] = ()
    temporalis_mm: float = 0.0

    def boundaries(self, points: np.ndarray | None = None) -> list[tuple[str, np.ndarray | float]]:
        """``(tissue, outer distance mm)`` for each shell, inside out.

        Args:
            points: ``(..., 3)`` atlas positions where the shells are wanted; None gives the
                mean thicknesses (scalars).
        """
        skull, scalp, temporalis = 1.0, 1.0, 0.0
        if points is not None:
            offset = points - _HEAD_CENTRE_MM
            u = offset / np.maximum(np.linalg.norm(offset, axis=-1, keepdims=True), 1e-6)
            skull, scalp = (_waves(u, waves) for waves in (self.skull_waves, self.scalp_waves))
            x, y, z = np.moveaxis(u, -1, 0)
            temples = np.clip((np.abs(x) - 0.55) / 0.3, 0, 1) * np.clip((0.45 - z) / 0.3, 0, 1)
            temporalis = self.temporalis_mm * temples * np.clip((y + 0.6) / 0.4, 0, 1)
        table = 0.8 + 0.2 * skull
        shells = (
            ("csf", self.csf),
            ("dura", self.dura),
            ("bone", self.inner_table * table),
            ("fat", self.diploe * skull),
            ("bone", self.outer_table * table),
            ("muscle", self.galea + temporalis),
            ("fat", self.fat * scalp),
            ("muscle", self.skin),
        )
        edges, total = [], 0.0
        for tissue, thickness in shells:
            total = total + thickness
            edges.append((tissue, total))
        return edges

    def total(self, points: np.ndarray | None = None) -> np.ndarray | float:
        """Distance from the brain surface to the air, mm (at ``points`` or on average)."""
        return self.boundaries(points)[-1][1]


def _waves(u: np.ndarray, waves: tuple[tuple[float, float, float, float], ...]) -> np.ndarray:
    """Smooth thickness factor ``clip(1 + sum_k a_k (u . v_k), 0.5, 1.6)`` over directions."""
    factor = np.ones(u.shape[:-1], np.float32)
    for vx, vy, vz, amplitude in waves:
        factor += np.float32(amplitude) * (u[..., 0] * vx + u[..., 1] * vy + u[..., 2] * vz)
    return np.clip(factor, 0.5, 1.6)


@dataclass(frozen=True)
class Subject:
    """Pose and shape of one simulated head.

    The scanner-to-atlas map is ``atlas = A^-1 (scanner - t) + w`` with ``A = R diag(scale)``
    and ``w`` a smooth displacement sampled from ``warp`` at the affine image of the point.

    Attributes:
        rotation: ``(3, 3)`` rotation of the head in the scanner.
        scale: ``(3,)`` head size relative to MNI along the atlas axes.
        translation: ``(3,)`` scanner position of the MNI origin, mm.
        warp: ``(1, 3, n, n, n)`` displacement in mm on a grid spanning the atlas box.
        layers: skull and scalp shell thicknesses.
    """

    rotation: np.ndarray
    scale: np.ndarray
    translation: np.ndarray
    warp: torch.Tensor
    layers: HeadLayers

    def affine_to_atlas(self, points: np.ndarray) -> np.ndarray:
        """The affine part of the scanner-to-atlas map, ``(..., 3)`` mm to mm."""
        return ((points - self.translation) @ self.rotation) / self.scale

    def displacement(self, atlas_points: np.ndarray) -> np.ndarray:
        """Smooth deformation ``w`` at affine-mapped points, ``(..., 3)`` mm."""
        shape = atlas_points.shape
        # The warp's nodes span the atlas box, so box-normalized coordinates address them.
        grid = _normalized(atlas_points.reshape(1, 1, 1, -1, 3), _BOX_LO, _BOX_SHAPE[::-1])
        out = F.grid_sample(self.warp, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.reshape(3, -1).T.reshape(shape).numpy()

    def to_atlas(self, points: np.ndarray) -> np.ndarray:
        """Scanner mm to atlas (MNI) mm, ``(..., 3)``."""
        affine = self.affine_to_atlas(points)
        return affine + self.displacement(affine)

    def to_scanner(self, atlas_points: np.ndarray, iterations: int = 4) -> np.ndarray:
        """Atlas mm to scanner mm, inverting the deformation by fixed-point iteration.

        The deformation is smooth and a few millimetres at most, so ``u = q - w(u)`` contracts
        fast; four steps leave errors far below a pixel.
        """
        affine = atlas_points.copy()
        for _ in range(iterations):
            affine = atlas_points - self.displacement(affine)
        return (affine * self.scale) @ self.rotation.T + self.translation

    def map_grid(self, points: np.ndarray, spacing_mm: float = 5.5) -> np.ndarray:
        """:meth:`to_atlas` for a regular ``(S, J, rows, cols, 3)`` grid, computed cheaply.

        The map is smooth on the scale of centimetres, so it is evaluated on a uniform grid of
        about ``spacing_mm`` that shares the first and last row and column, and interpolated
        bilinearly in the plane (exact for the affine part).
        """
        s, j, rows, cols, _ = points.shape
        pixel = float(np.linalg.norm(points[0, 0, 0, -1] - points[0, 0, 0, 0])) / max(cols - 1, 1)
        n_r = min(rows, max(2, int(np.ceil((rows - 1) * pixel / spacing_mm)) + 1))
        n_c = min(cols, max(2, int(np.ceil((cols - 1) * pixel / spacing_mm)) + 1))
        corners = points[:, :, [0, -1]][:, :, :, [0, -1]]  # (S, J, 2, 2, 3)
        u = np.linspace(0, 1, n_r, dtype=np.float32)[:, None, None]
        v = np.linspace(0, 1, n_c, dtype=np.float32)[None, :, None]
        top = corners[:, :, 0, 0, None, None] * (1 - v) + corners[:, :, 0, 1, None, None] * v
        bottom = corners[:, :, 1, 0, None, None] * (1 - v) + corners[:, :, 1, 1, None, None] * v
        coarse = (top * (1 - u) + bottom * u).astype(np.float32)
        mapped = torch.from_numpy(np.ascontiguousarray(self.to_atlas(coarse).astype(np.float32)))
        mapped = mapped.reshape(s * j, n_r, n_c, 3).permute(0, 3, 1, 2)
        full = F.interpolate(mapped, size=(rows, cols), mode="bilinear", align_corners=True)
        return full.permute(0, 2, 3, 1).reshape(s, j, rows, cols, 3).numpy()


def draw_subject(rng: np.random.Generator, geometry: SliceGeometry, warp_mm: float = 2.0) -> Subject:
    """Draw a head pose, size, deformation and skull/scalp thicknesses.

    The slab is placed so that its middle lies ~18 mm above the MNI origin (bottom slices at
    the temporal lobes and cerebellum, top slices at the vertex for 16 slices of 7.5 mm); the
    head is centred in the field of view within a few millimetres.

    Args:
        rng: random generator of this volume.
        geometry: the acquisition grid (slab position and extent).
        warp_mm: root-mean-square amplitude of the smooth deformation.
    """
    angles = np.deg2rad(rng.normal(0.0, [4.0, 2.0, 3.0]).clip(-10, 10))  # pitch, roll, yaw
    rotation = _rotation(*angles)
    scale = np.clip(rng.normal(1.0, 0.04), 0.92, 1.06) * np.clip(rng.normal(1.0, 0.02, 3), 0.96, 1.04)
    half = geometry.spacing_mm * (geometry.slices - 1) / 2
    lo, hi = -40.0 + half, 75.0 - half
    centre_z = float(np.clip(rng.normal(18.0, 8.0), lo, hi)) if lo <= hi else 17.0
    centre_mni = np.array([_HEAD_CENTRE_MM[0], _HEAD_CENTRE_MM[1], centre_z])
    shift = np.array([*rng.normal(0.0, 3.0, 2).clip(-8, 8), 0.0])
    target = shift + np.array([0.0, 0.0, geometry.centre_z_mm])
    translation = target - rotation @ (scale * centre_mni)

    n = 12
    noise = ndimage.gaussian_filter(rng.standard_normal((3, n, n, n)), sigma=(0, 1.2, 1.2, 1.2), mode="nearest")
    noise *= warp_mm / max(float(noise.std()), 1e-6)
    # warp is stored (1, 3, z, y, x) with channels (dx, dy, dz) for grid_sample.
    warp = torch.from_numpy(noise.astype(np.float32))[None]
    layers = HeadLayers(
        csf=rng.uniform(1.5, 4.0),
        dura=rng.uniform(0.6, 1.0),
        inner_table=rng.uniform(1.2, 2.0),
        diploe=rng.uniform(1.5, 4.0),
        outer_table=rng.uniform(1.2, 2.0),
        galea=rng.uniform(1.0, 2.0),
        fat=rng.uniform(2.0, 5.0),
        skin=rng.uniform(1.5, 2.5),
        skull_waves=_draw_waves(rng, 0.3),
        scalp_waves=_draw_waves(rng, 0.3),
        temporalis_mm=rng.uniform(3.0, 8.0),
    )
    return Subject(rotation, scale.astype(np.float32), translation.astype(np.float32), warp, layers)


def _draw_waves(rng: np.random.Generator, amplitude: float) -> tuple[tuple[float, float, float, float], ...]:
    """Three random directions with amplitudes in ``[0, amplitude)`` for :func:`_waves`."""
    directions = rng.standard_normal((3, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return tuple((*map(float, v), float(a)) for v, a in zip(directions, rng.uniform(0, amplitude, 3)))


def _rotation(pitch: float, roll: float, yaw: float) -> np.ndarray:
    """Rotation about x (nodding), then y (tilt towards a shoulder), then z (turning)."""
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(roll), np.sin(roll)
    cz, sz = np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def head_fractions(
    samples: np.ndarray,
    layers: HeadLayers,
    points: np.ndarray | None = None,
    edge_mm: float = 0.7,
    sharpness: float = 2.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Tissue fractions from atlas samples and the head shells.

    Inside the brain mask the template gives grey and white matter (sharpened, then adjusted by
    the T1 residual) and CSF is the rest. Outside
    it, CSF and then dura follow the brain surface; beyond them the skull and scalp shells
    (bone, marrow, bone, galea, fat, skin) follow the envelope, and whatever lies inside the
    envelope but beyond the dura (the skull base between the lobes) is bone. Shell edges are
    linear partial-volume ramps ``edge_mm`` wide.

    Args:
        samples: ``(6, ...)`` output of :meth:`Atlas.sample`.
        layers: the subject's shell thicknesses.
        points: ``(..., 3)`` atlas positions of the samples, for the thickness variations;
            None uses the mean thicknesses.
        edge_mm: width of the partial-volume ramp between shells.
        sharpness: exponent applied to the CSF/grey/white probabilities inside the brain
            before renormalising (1 keeps the template's partial volumes).
        out: optional zeroed float32 array ``(K, ...)`` with ``K >= len(ANATOMY_TISSUES)`` to
            fill (its first channels), so that callers can reserve channels for lesions.

    Returns:
        ``(len(ANATOMY_TISSUES), ...)`` float32 fractions summing to <= 1 (the rest is air),
        or ``out``.
    """
    gm, wm, brain, surface, envelope, residual = samples
    if out is None:
        out = np.zeros((len(ANATOMY_TISSUES),) + gm.shape, np.float32)
    index = {name: i for i, name in enumerate(ANATOMY_TISSUES)}

    def within(distance: np.ndarray, edge: np.ndarray | float) -> np.ndarray:
        return np.clip((edge - distance) / edge_mm + 0.5, 0, 1)

    # The templates average 152 brains, which blurs the cortex; raising the probabilities to a
    # power and renormalising gives one subject's sharper tissue boundaries.
    csf_in = np.clip(brain - gm - wm, 0, None)
    weights = np.stack([csf_in, gm, wm]) ** sharpness
    weights *= brain / np.maximum(weights.sum(0), 1e-12)
    # The T1 residual trades grey for white matter where the template is brighter than its
    # probabilities predict, and back where it is darker.
    to_white = np.where(residual > 0, residual * weights[1], residual * weights[2])
    weights[1] -= to_white
    weights[2] += to_white
    out[index["csf"]], out[index["gm"]], out[index["wm"]] = weights

    # Shells only where something lies outside the brain and within reach of the thickest
    # head: a small part of the grid, so the rest of the work runs on that subset.
    reach = layers.total() * 1.6 + layers.temporalis_mm + edge_mm
    shell = np.flatnonzero(((brain < 1) & (np.minimum(surface, envelope) < reach)).ravel())
    flat = out.reshape(len(out), -1)
    outside = 1.0 - brain.ravel()[shell]
    surface, envelope = surface.ravel()[shell], envelope.ravel()[shell]
    csf = within(surface, layers.csf)
    meninges = within(surface, layers.csf + layers.dura)
    flat[index["csf"], shell] += outside * csf
    flat[index["dura"], shell] += outside * (meninges - csf)
    rest = outside * (1.0 - meninges)
    inner = np.zeros_like(envelope)
    where = None if points is None else points.reshape(-1, 3)[shell]
    for tissue, edge in layers.boundaries(where)[2:]:
        inside = within(envelope, edge)
        flat[index[tissue], shell] += rest * (inside - inner)
        inner = inside
    return out
