"""Receive coil array: loop-coil sensitivities and correlated receiver noise (SPEC 1.4).

Each element is a circular current loop on an elliptic cylinder around the head, in one to
three staggered rings (the layout of 8-20 channel head coils). Its complex sensitivity is the
transverse quasi-static field of the loop by Biot-Savart, ``S = B_x - i B_y`` (reciprocity),
so every coil sees the cortex near it far brighter than the centre of the head and the
root-sum-of-squares of the array is about twice as bright at the cortex as in the middle.

sigpy's ``mri.birdcage_maps`` gives uniform-RSS maps that suit unit tests of coil
combination but not the intensity shading of a real array, hence this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CoilArray", "loop_array", "sensitivities", "noise_covariance"]


@dataclass(frozen=True)
class CoilArray:
    """Geometry of a receive array in scanner coordinates (mm).

    Attributes:
        centres: ``(C, 3)`` loop centres.
        normals: ``(C, 3)`` unit loop normals (pointing into the head).
        radii: ``(C,)`` loop radii.
    """

    centres: np.ndarray
    normals: np.ndarray
    radii: np.ndarray

    @property
    def coils(self) -> int:
        """Number of elements ``C``."""
        return len(self.radii)


def loop_array(coils: int, rng: np.random.Generator) -> CoilArray:
    """Loops on an elliptic cylinder (112 x 132 mm semi-axes, left-right x anterior-posterior).

    ``coils`` elements are spread over ``ceil(coils / 8)`` rings 40 mm apart in ``z``, each
    ring rotated by half an element against the previous one; the top ring sits on a narrower
    part of the former (the dome over the vertex). Positions and sizes jitter per volume.

    Args:
        coils: number of elements, >= 1.
        rng: random generator of this volume.

    Raises:
        ValueError: when ``coils < 1``.
    """
    if coils < 1:
        raise ValueError(f"coils must be >= 1, got {coils}")
    rings = math.ceil(coils / 8)
    counts = [coils // rings + (1 if k < coils % rings else 0) for k in range(rings)]
    semi = np.array([112.0, 132.0]) * rng.uniform(0.97, 1.05)
    base_z = rng.uniform(-10.0, 10.0)
    centres, normals, radii = [], [], []
    for ring, count in enumerate(counts):
        z = base_z + 40.0 * (ring - (rings - 1) / 2)
        shrink = 0.85 if rings > 2 and ring == rings - 1 else 1.0
        offset = rng.uniform(0, 2 * np.pi) + ring * np.pi / count
        for k in range(count):
            angle = offset + 2 * np.pi * k / count
            x, y = semi[0] * shrink * np.cos(angle), semi[1] * shrink * np.sin(angle)
            # Inward normal of the ellipse at this angle.
            normal = -np.array([np.cos(angle) / semi[0], np.sin(angle) / semi[1], 0.0])
            if shrink < 1:
                normal[2] = -0.6 * np.linalg.norm(normal)  # the dome tilts the top loops down
            centres.append([x, y, z])
            normals.append(normal / np.linalg.norm(normal))
            perimeter = 2 * np.pi * np.sqrt((semi**2).mean()) * shrink
            radii.append(np.clip(0.55 * perimeter / count, 30.0, 70.0) * rng.uniform(0.9, 1.1))
    return CoilArray(np.array(centres, np.float32), np.array(normals, np.float32), np.array(radii, np.float32))


def sensitivities(array: CoilArray, points: np.ndarray, segments: int = 24) -> np.ndarray:
    """Complex receive sensitivities of every loop at points, by Biot-Savart.

    Each loop is a polygon of ``segments`` straight pieces carrying unit current; the field of
    a piece at ``P`` is ``dl x (P - m) / |P - m|^3`` (midpoint rule; the constant ``mu0/4pi``
    drops out in the normalisation). Maps are scaled so that the array's root-sum-of-squares is
    1 at the centre of the array.

    Args:
        array: the coil geometry.
        points: ``(..., 3)`` scanner coordinates in mm.
        segments: polygon pieces per loop.

    Returns:
        ``(C, ...)`` complex64 sensitivities.
    """
    flat = points.reshape(-1, 3).astype(np.float32)
    centre = array.centres.mean(0, keepdims=True)
    flat = np.concatenate([flat, centre.astype(np.float32)])
    angles = 2 * np.pi * (np.arange(segments) + 0.5) / segments
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    out = np.empty((array.coils, len(flat)), np.complex64)
    for c in range(array.coils):
        u, v = _plane_basis(array.normals[c])
        rim = (array.centres[c] + array.radii[c] * (cos * u + sin * v)).astype(np.float32)
        tangent = ((-sin * u + cos * v) * (2 * np.pi * array.radii[c] / segments)).astype(np.float32)
        r = flat[None] - rim[:, None]  # (segments, points, 3)
        weight = np.einsum("spi,spi->sp", r, r) ** -1.5
        # Only B_x and B_y matter: (dl x r)_x = dl_y r_z - dl_z r_y, (dl x r)_y = dl_z r_x - dl_x r_z.
        bx = np.einsum("sp,sp->p", weight, tangent[:, 1:2] * r[..., 2] - tangent[:, 2:3] * r[..., 1])
        by = np.einsum("sp,sp->p", weight, tangent[:, 2:3] * r[..., 0] - tangent[:, 0:1] * r[..., 2])
        out[c] = bx - 1j * by
    out /= np.sqrt((np.abs(out[:, -1]) ** 2).sum())
    return out[:, :-1].reshape((array.coils,) + points.shape[:-1])


def _plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane orthogonal to ``normal``."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def noise_covariance(array: CoilArray, rng: np.random.Generator, length_mm: float = 80.0) -> np.ndarray:
    """Receiver noise covariance: mutual coupling falls off with the distance between loops.

    ``Psi = D ((1 - a) I + a exp(-d_ij / L)) D`` with ``a`` in [0.2, 0.4] and per-channel
    noise levels ``D`` in [0.85, 1.2]; the exponential kernel keeps ``Psi`` positive definite.

    Args:
        array: the coil geometry.
        rng: random generator of this volume.
        length_mm: coupling length ``L``.

    Returns:
        ``(C, C)`` real symmetric positive definite matrix with unit mean diagonal.
    """
    distance = np.linalg.norm(array.centres[:, None] - array.centres[None], axis=-1)
    mix = rng.uniform(0.2, 0.4)
    correlation = (1 - mix) * np.eye(array.coils) + mix * np.exp(-distance / length_mm)
    level = rng.uniform(0.85, 1.2, array.coils)
    psi = level[:, None] * correlation * level[None]
    return psi / np.diag(psi).mean()
