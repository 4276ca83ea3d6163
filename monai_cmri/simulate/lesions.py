"""Lesions defined in 3D atlas space, so they stay consistent across slices (SPEC 1.4).

Kinds and what they do to the tissue fractions:

- ``mass`` (radius 11-16 mm): replaces all tissue inside an irregular sphere with enhancing
  tumour, an optional necrotic core and an optional hemosiderin rim (hemorrhage); pushes the
  surrounding brain outwards (mass effect, volume-conserving ``r0^3 = r^3 - R^3``) and turns
  nearby white matter into vasogenic edema (so the edema follows the white matter);
- ``wml``: periventricular or deep white-matter lesion, an ellipsoid of 3-6 mm radius;
- ``cyst``: CSF-like ellipsoid in the parenchyma (4-10 mm), also the perivascular space of a
  ``normal_variant`` (2.5-4 mm, deep grey matter);
- ``cavity``: cortical tissue loss filled with CSF and lined by gliosis (encephalomalacia,
  resection cavity of a post-treatment change).

Parenchymal kinds replace grey and white matter only, never ventricles or sulcal CSF.
A lesion is centred on a slice so that it shows in the volume; its annotation box on each
slice is the tight box around the pixels where it occupies at least half its peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monai_cmri.simulate.anatomy import Atlas, Subject
from monai_cmri.simulate.contrast import TISSUES
from monai_cmri.simulate.geometry import SliceGeometry

__all__ = [
    "FINDING_LABELS",
    "ABNORMAL_FINDINGS",
    "Lesion",
    "draw_lesions",
    "mass_effect",
    "apply_lesions",
    "lesion_masks",
]

#: fastMRI+ label of each finding the simulator can place (the real spellings).
FINDING_LABELS: dict[str, str] = {
    "mass": "Mass",
    "wml": "Nonspecific white matter lesion",
    "cyst": "Likely cysts",
    "encephalomalacia": "Encephalomalacia",
    "normal_variant": "Normal variant",
    "posttreatment": "Posttreatment change",
    "artifact": "Possible artifact",
}

#: Findings that make a volume abnormal under the paper's rule (SPEC 1.2).
ABNORMAL_FINDINGS: tuple[str, ...] = ("mass", "wml", "cyst", "encephalomalacia")

_T = {name: i for i, name in enumerate(TISSUES)}
_EDGE_MM = 0.7


@dataclass(frozen=True)
class Lesion:
    """One lesion in atlas (MNI) millimetres.

    Attributes:
        kind: ``"mass"``, ``"wml"``, ``"cyst"`` or ``"cavity"``.
        label: its fastMRI+ label.
        centre: ``(3,)`` atlas position, mm.
        radii: ``(3,)`` ellipsoid semi-axes, mm.
        axes: ``(3, 3)`` rotation whose columns are the ellipsoid axes.
        ripple: ``(K, 4)`` irregularity: unit wave vector and phase per row.
        roughness: relative amplitude of the irregularity.
        core: necrotic core radius relative to the mass (0: solid); cavity: CSF core.
        hemorrhagic: mass with a hemosiderin rim and a susceptibility ring.
        chi_ppm: susceptibility of the hemosiderin rim relative to tissue, ppm.
        edema_mm: reach of the edema beyond a mass.
    """

    kind: str
    label: str
    centre: np.ndarray
    radii: np.ndarray
    axes: np.ndarray
    ripple: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    roughness: float = 0.0
    core: float = 0.0
    hemorrhagic: bool = False
    chi_ppm: float = 0.0
    edema_mm: float = 0.0

    @property
    def size_mm(self) -> float:
        """Mean radius."""
        return float(np.mean(self.radii))

    @property
    def reach_mm(self) -> float:
        """Distance from the centre beyond which the lesion's tissue (and edema) ends."""
        return float(np.max(self.radii)) * (1 + self.roughness) + 2 * _EDGE_MM + self.edema_mm

    @property
    def push_mm(self) -> float:
        """Radius of the volume a mass inserts into the brain (0 for other kinds)."""
        return 0.75 * self.size_mm if self.kind == "mass" else 0.0

    @property
    def push_reach_mm(self) -> float:
        """Distance beyond which the mass effect shifts tissue by less than 0.3 mm."""
        return float(np.sqrt(self.push_mm**3 / (3 * 0.3))) if self.push_mm else 0.0

    def radius(self, points: np.ndarray) -> np.ndarray:
        """Normalised radius (1 on the irregular surface) at atlas points ``(..., 3)``."""
        local = (points - self.centre) @ self.axes
        norm = np.linalg.norm(local, axis=-1)
        rho = np.linalg.norm(local / self.radii, axis=-1)
        if len(self.ripple):
            unit = local / np.maximum(norm, 1e-6)[..., None]
            wave = np.sin(2.0 * unit @ self.ripple[:, :3].T + self.ripple[:, 3]).mean(-1)
            rho = rho / (1 + self.roughness * wave)
        return rho.astype(np.float32)

    def inside(self, rho: np.ndarray, level: float = 1.0) -> np.ndarray:
        """Partial-volume occupancy of the surface ``rho = level`` (1 inside, 0 outside)."""
        return np.clip((level - rho) * self.size_mm / _EDGE_MM + 0.5, 0, 1).astype(np.float32)

    def hemosiderin(self, points: np.ndarray) -> np.ndarray:
        """Occupancy of the hemosiderin rim at atlas points (zero unless hemorrhagic)."""
        if not self.hemorrhagic:
            return np.zeros(points.shape[:-1], np.float32)
        rho = self.radius(points)
        return self.inside(rho) - self.inside(rho, 0.88)


def draw_lesions(
    findings: tuple[str, ...],
    rng: np.random.Generator,
    atlas: Atlas,
    subject: Subject,
    geometry: SliceGeometry,
) -> list[Lesion]:
    """Place the lesions of a volume's findings, each centred on one of its slices.

    Counts: one mass; 3-8 white-matter lesions; 1-2 cysts; one cavity for encephalomalacia
    and for a post-treatment change; one perivascular space for a normal variant. Lesions
    smaller than 1.5 pixels are enlarged so they show at coarse test resolutions.

    Args:
        findings: keys of :data:`FINDING_LABELS` (``"artifact"`` is not a lesion, ignored).
        rng: random generator of this volume.
        atlas: the head atlas (candidate centres).
        subject: pose of the head (to find candidates on the slices).
        geometry: the acquisition grid.

    Raises:
        ValueError: for an unknown finding.
    """
    unknown = set(findings) - set(FINDING_LABELS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}; expected some of {sorted(FINDING_LABELS)}")
    floor = 1.5 * geometry.pixel_mm
    lesions: list[Lesion] = []
    mapped: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for finding in findings:
        label = FINDING_LABELS[finding]
        if finding == "mass":
            radius = rng.uniform(11.0, 16.0)
            centre = _centre(rng, atlas, subject, geometry, "deep_wm", radius + 6.0, lesions, mapped)
            lesions.append(
                _shape(
                    rng, "mass", label, centre, radius, 1.15, 0.12,
                    core=rng.uniform(0.45, 0.7) if rng.random() < 0.7 else 0.0,
                    hemorrhagic=bool(rng.random() < 0.35),
                    chi_ppm=rng.uniform(1.5, 3.0),
                    edema_mm=rng.uniform(8.0, 25.0),
                )
            )
        elif finding == "wml":
            for _ in range(int(rng.integers(3, 9))):
                region = "periventricular" if rng.random() < 0.7 else "deep_wm"
                radius = max(rng.uniform(3.0, 6.0), floor)
                centre = _centre(rng, atlas, subject, geometry, region, 0.0, lesions, mapped)
                lesions.append(_shape(rng, "wml", label, centre, radius, 1.6, 0.1))
        elif finding == "cyst":
            for _ in range(int(rng.integers(1, 3))):
                radius = max(rng.uniform(4.0, 10.0), floor)
                centre = _centre(rng, atlas, subject, geometry, "parenchyma", radius + 3.0, lesions, mapped)
                lesions.append(_shape(rng, "cyst", label, centre, radius, 1.3, 0.03))
        elif finding == "normal_variant":
            radius = max(rng.uniform(2.5, 4.0), floor)
            centre = _centre(rng, atlas, subject, geometry, "deep_grey", 0.0, lesions, mapped)
            lesions.append(_shape(rng, "cyst", label, centre, radius, 1.2, 0.03))
        elif finding in ("encephalomalacia", "posttreatment"):
            radius = rng.uniform(8.0, 14.0) if finding == "encephalomalacia" else rng.uniform(10.0, 18.0)
            centre = _centre(rng, atlas, subject, geometry, "cortex", 0.0, lesions, mapped)
            lesions.append(_shape(rng, "cavity", label, centre, radius, 1.4, 0.2, core=0.75))
    return lesions


def _shape(
    rng: np.random.Generator,
    kind: str,
    label: str,
    centre: np.ndarray,
    radius: float,
    elongation: float,
    roughness: float,
    **extra,
) -> Lesion:
    """An ellipsoid of mean radius ``radius`` with random axes, aspect up to ``elongation``."""
    aspect = rng.uniform(1.0, elongation, 3)
    radii = radius * aspect / np.cbrt(aspect.prod())
    axes, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    waves = rng.standard_normal((6, 3))
    ripple = np.concatenate(
        [waves / np.linalg.norm(waves, axis=1, keepdims=True) * rng.uniform(1.0, 2.5, (6, 1)),
         rng.uniform(0, 2 * np.pi, (6, 1))],
        axis=1,
    )
    return Lesion(
        kind, label, centre.astype(np.float32), radii.astype(np.float32), axes.astype(np.float32),
        ripple.astype(np.float32), roughness, **extra,
    )


def _centre(
    rng: np.random.Generator,
    atlas: Atlas,
    subject: Subject,
    geometry: SliceGeometry,
    region: str,
    min_depth_mm: float,
    placed: list[Lesion],
    mapped: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> np.ndarray:
    """A candidate atlas point of ``region`` that lands within 1 mm of a slice centre.

    Candidates deep enough (``min_depth_mm``) and at least 15 mm outside any mass already placed
    are mapped to the scanner; those on a slice and inside the field of view are eligible.
    If none is (a very thin slab), the closest to a slice centre is taken. ``mapped`` caches
    each region's candidates near the slab with their scanner positions.
    """
    if region not in mapped:
        points, depth = atlas.candidates[region], atlas.depth[region]
        # The affine part alone places a point within a few mm: keep those near a slice, then
        # map them exactly through the deformation too.
        z = ((points * subject.scale) @ subject.rotation.T + subject.translation)[:, 2]
        near = np.abs(z[:, None] - geometry.slice_mm()[None]).min(1) <= 10.0
        if not near.any():
            near = np.ones(len(points), bool)
        mapped[region] = (points[near], depth[near], subject.to_scanner(points[near]))
    points, depth, scanner = mapped[region]
    keep = depth >= min_depth_mm
    if not keep.any():
        keep = depth >= np.quantile(depth, 0.9)
    for lesion in placed:
        if lesion.kind == "mass":
            keep &= np.linalg.norm(points - lesion.centre, axis=1) > lesion.size_mm + 15.0
    if not keep.any():
        keep = np.ones(len(points), bool)
    points, scanner = points[keep], scanner[keep]
    offset = np.abs(scanner[:, 2:3] - geometry.slice_mm()[None]).min(1)
    half_x = geometry.width * geometry.pixel_mm / 2 - 15.0
    half_y = geometry.rows * geometry.pixel_mm / 2 - 15.0
    in_view = (np.abs(scanner[:, 0]) < half_x) & (np.abs(scanner[:, 1]) < half_y)
    eligible = np.flatnonzero((offset <= 1.0) & in_view)
    if len(eligible) == 0:
        eligible = np.flatnonzero(offset <= offset[in_view].min() + 1.0) if in_view.any() else np.argsort(offset)[:1]
    choice = points[rng.choice(eligible)]
    return choice + rng.uniform(-1.0, 1.0, 3).astype(np.float32)


def mass_effect(
    points: np.ndarray, lesions: list[Lesion], subject: Subject, geometry: SliceGeometry
) -> np.ndarray:
    """Atlas points at which to read the normal anatomy, displaced by the masses.

    Tissue that sat at distance ``r0`` from a mass centre appears at ``r`` with
    ``r^3 = r0^3 + R^3`` (a volume of radius ``R``, 0.75 of the mass radius, is inserted and
    the rest infiltrates), so the anatomy read at ``r`` comes from ``r0 = cbrt(r^3 - R^3)``.
    The shift decays as ``R^3 / 3 r^2`` and is cut where it falls below 0.3 mm.

    Args:
        points: ``(S, J, rows, W, 3)`` atlas coordinates of the sample points, mm.
        lesions: the volume's lesions (only masses act).
        subject: the head pose (locates each mass on the grid).
        geometry: the acquisition grid.

    Returns:
        displaced copy of ``points``.
    """
    out = points.copy()
    for lesion in lesions:
        box = _grid_box(lesion.centre, lesion.push_reach_mm, subject, geometry) if lesion.push_mm else None
        if box is None:
            continue
        offset = out[box] - lesion.centre
        r = np.maximum(np.linalg.norm(offset, axis=-1, keepdims=True), 1e-6)
        r0 = np.cbrt(np.maximum(r**3 - lesion.push_mm**3, 0.0))
        out[box] = np.where(r < lesion.push_reach_mm, lesion.centre + offset * (r0 / r), out[box])
    return out


def apply_lesions(
    fractions: np.ndarray,
    points: np.ndarray,
    lesions: list[Lesion],
    subject: Subject,
    geometry: SliceGeometry,
) -> list[np.ndarray]:
    """Put the lesions into tissue fractions, in place, and report each one's occupancy.

    Args:
        fractions: ``(len(TISSUES), S, J, rows, W)`` fractions of the sub-slice points.
        points: ``(S, J, rows, W, 3)`` atlas coordinates of those points (before mass effect).
        lesions: from :func:`draw_lesions`.
        subject: the head pose (locates each lesion's bounding box on the grid).
        geometry: the acquisition grid.

    Returns:
        one ``(S, rows, W)`` float32 slice-averaged occupancy per lesion, in ``lesions`` order.
    """
    # Masses first: they replace everything, the parenchymal kinds then act on what is left.
    order = sorted(range(len(lesions)), key=lambda i: lesions[i].kind != "mass")
    result: dict[int, np.ndarray] = {}
    for i in order:
        lesion = lesions[i]
        box = _grid_box(lesion.centre, lesion.reach_mm, subject, geometry)
        full = np.zeros((geometry.slices, geometry.rows, geometry.width), np.float32)
        if box is not None:
            # Basic slicing gives a view: _apply edits the fractions in place.
            taken = _apply(lesion, fractions[(slice(None),) + box], points[box])
            full[box[0], box[2], box[3]] = taken.mean(1)
        result[i] = full
    return [result[i] for i in range(len(lesions))]


def _grid_box(
    centre: np.ndarray, reach_mm: float, subject: Subject, geometry: SliceGeometry
) -> tuple[slice, ...] | None:
    """Index box ``(slices, sub-slices, rows, cols)`` of the grid within ``reach_mm`` (atlas mm)
    of an atlas point, or None when the box misses the grid."""
    middle = subject.to_scanner(centre[None])[0]
    reach = reach_mm * float(np.max(subject.scale)) + 6.0  # 6 mm covers the deformation
    boxes = []
    for axis, mm in ((2, geometry.slice_mm()), (1, geometry.row_mm()), (0, geometry.column_mm())):
        pad = geometry.thickness_mm / 2 if axis == 2 else 0.0
        hit = np.flatnonzero(np.abs(mm - middle[axis]) <= reach + pad)
        if len(hit) == 0:
            return None
        boxes.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return boxes[0], slice(None), boxes[1], boxes[2]


def _apply(lesion: Lesion, fractions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Modify ``(K, ...)`` fractions at ``(..., 3)`` points in place; return the occupancy."""
    rho = lesion.radius(points)
    if lesion.kind == "mass":
        mass = lesion.inside(rho)
        necrosis = lesion.inside(rho, lesion.core) if lesion.core > 0 else np.zeros_like(mass)
        hemosiderin = lesion.hemosiderin(points)
        # Edema: a ragged shell of white matter around the mass, fading with distance.
        distance = (rho - 1.0) * lesion.size_mm
        edema = np.clip(1.3 * (1.0 - distance / lesion.edema_mm), 0, 1) * (1.0 - mass)
        moved = fractions[_T["wm"]] * edema
        fractions[_T["wm"]] -= moved
        fractions[_T["edema"]] += moved
        fractions *= 1.0 - mass
        fractions[_T["necrosis"]] += necrosis
        fractions[_T["hemosiderin"]] += hemosiderin
        fractions[_T["tumor"]] += mass - necrosis - hemosiderin
        return mass
    shape = lesion.inside(rho)
    parenchyma = fractions[_T["gm"]] + fractions[_T["wm"]] + fractions[_T["edema"]]
    taken = shape * parenchyma
    for tissue in ("gm", "wm", "edema"):
        fractions[_T[tissue]] *= 1.0 - shape
    if lesion.kind == "wml":
        fractions[_T["wml"]] += taken
    elif lesion.kind == "cyst":
        fractions[_T["cyst"]] += taken
    else:
        core = lesion.inside(rho, lesion.core) * parenchyma
        fractions[_T["cyst"]] += core
        fractions[_T["wml"]] += taken - core
    return taken


def lesion_masks(occupancy: np.ndarray, visible: float = 0.3) -> np.ndarray:
    """Ground-truth mask of one lesion per slice.

    A lesion shows on a slice where its slice-averaged occupancy peaks at ``visible`` or more;
    its mask there is where the occupancy is at least half that peak.

    Args:
        occupancy: ``(S, rows, W)`` from :func:`apply_lesions`.
        visible: least peak occupancy for the lesion to count as visible on a slice.

    Returns:
        ``(S, rows, W)`` bool.
    """
    peak = occupancy.reshape(len(occupancy), -1).max(1)
    level = np.where(peak >= visible, 0.5 * peak, np.inf)
    return occupancy >= level[:, None, None]
