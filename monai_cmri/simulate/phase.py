"""Image phase: field inhomogeneity, transceive phase and a global offset (SPEC 1.4).

The phase of the coil-combined image is ``phi = phi_0 + phi_tx(r) + 2 pi gamma dB0(r) tau``:

- ``phi_0``: a global offset, uniform in ``[-pi, pi)``;
- ``phi_tx``: the smooth transceive phase of the body coil, a random quadratic polynomial of
  position (stronger at 3 T, where the RF wavelength approaches the head size);
- ``dB0``: the field offset from the susceptibility difference between head and air
  (``-9.4 ppm``) and from paramagnetic hemosiderin rings at hemorrhagic lesions, by dipole
  convolution ``dB0 / B0 = IFFT[(1/3 - k_z^2 / |k|^2) FFT[chi]]``, then first-order shimmed;
  ``tau`` is 0.5 ms, the spin-echo off-centring of the readout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "GYROMAGNETIC_HZ_PER_T",
    "HEAD_AIR_CHI_PPM",
    "dipole_kernel",
    "field_shift_ppm",
    "shim",
    "sample_grid",
    "PhaseModel",
    "draw_phase_model",
]

#: Proton gyromagnetic ratio over 2 pi, Hz/T.
GYROMAGNETIC_HZ_PER_T = 42.577478e6
#: Susceptibility of tissue relative to air, ppm (water -9.05, air +0.36).
HEAD_AIR_CHI_PPM = -9.4


@functools.lru_cache(maxsize=4)
def dipole_kernel(shape: tuple[int, int, int], voxel_mm: float) -> np.ndarray:
    """k-space unit dipole ``1/3 - k_z^2 / |k|^2`` of a ``(z, y, x)`` grid, 0 at ``k = 0``.

    Args:
        shape: grid size ``(nz, ny, nx)``, z along the main field.
        voxel_mm: isotropic voxel size (sets only the frequency units, which cancel).

    Returns:
        ``shape`` float32 array in unshifted FFT order (cached: do not modify).
    """
    kz, ky, kx = np.meshgrid(*(np.fft.fftfreq(n, voxel_mm) for n in shape), indexing="ij")
    k2 = kx**2 + ky**2 + kz**2
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = 1.0 / 3.0 - kz**2 / k2
    kernel[0, 0, 0] = 0.0
    return kernel.astype(np.float32)


def field_shift_ppm(chi_ppm: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Relative field offset ``dB0 / B0`` (ppm) of a susceptibility map.

    The map is zero-padded to twice its size so that the periodic convolution of the FFT
    does not fold the field of one side of the head onto the other.

    Args:
        chi_ppm: ``(z, y, x)`` susceptibility relative to the surrounding air, ppm.
        voxel_mm: isotropic voxel size.

    Returns:
        ``(z, y, x)`` float32 field offset, ppm.
    """
    shape = tuple(2 * n for n in chi_ppm.shape)
    spectrum = torch.fft.rfftn(torch.from_numpy(chi_ppm.astype(np.float32)), s=shape)
    kernel = torch.from_numpy(dipole_kernel(shape, voxel_mm)[..., : shape[-1] // 2 + 1])
    field = torch.fft.irfftn(spectrum * kernel, s=shape)
    return field[: chi_ppm.shape[0], : chi_ppm.shape[1], : chi_ppm.shape[2]].numpy()


def shim(field: np.ndarray, points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Remove the constant and linear terms of a field over a mask (first-order shimming).

    Args:
        field: ``(...)`` field offset.
        points: ``(..., 3)`` positions of the field samples, mm.
        mask: ``(...)`` bool, where the shim is fitted (the head).

    Returns:
        the field minus its least-squares plane over ``mask``.
    """
    design = np.concatenate([np.ones(points.shape[:-1] + (1,), np.float32), points / 100.0], axis=-1)
    coef, *_ = np.linalg.lstsq(design[mask], field[mask], rcond=None)
    return (field - design @ coef).astype(np.float32)


def sample_grid(values: np.ndarray, lo_mm: np.ndarray, voxel_mm: float, points: np.ndarray) -> np.ndarray:
    """Trilinear samples of a ``(z, y, x)`` grid at scanner points; outside reads as the edge.

    Args:
        values: ``(z, y, x)`` float32 grid.
        lo_mm: ``(x, y, z)`` position of voxel ``(0, 0, 0)``, mm.
        voxel_mm: voxel size.
        points: ``(..., 3)`` positions, mm.

    Returns:
        ``(...)`` float32 samples.
    """
    size = np.array(values.shape[::-1], np.float32) - 1
    grid = ((points - lo_mm) / voxel_mm) * (2.0 / size) - 1.0
    grid = torch.from_numpy(grid.reshape(1, 1, 1, -1, 3).astype(np.float32))
    volume = torch.from_numpy(np.ascontiguousarray(values, np.float32))[None, None]
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(points.shape[:-1]).numpy()


@dataclass(frozen=True)
class PhaseModel:
    """The smooth, subject-independent part of the phase.

    Attributes:
        offset: global phase ``phi_0``, radians.
        coefficients: ``(10,)`` quadratic transceive-phase coefficients (radians) on the
            monomials ``1, x, y, z, x^2, y^2, z^2, xy, xz, yz`` of ``position / 100 mm``.
        tau_ms: time over which the field offset accrues phase.
    """

    offset: float
    coefficients: np.ndarray
    tau_ms: float = 0.5

    def transceive(self, points: np.ndarray) -> np.ndarray:
        """Transceive phase at scanner points ``(..., 3)`` mm, radians, float32."""
        x, y, z = np.moveaxis(points.astype(np.float32) / 100.0, -1, 0)
        terms = (np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
        return sum(c * t for c, t in zip(self.coefficients.astype(np.float32), terms))

    def phase(self, points: np.ndarray, field_ppm: np.ndarray, field_strength_t: float) -> np.ndarray:
        """Total image phase ``phi_0 + phi_tx + 2 pi gamma B0 dB0 tau``, radians, float32.

        Args:
            points: ``(..., 3)`` scanner positions, mm.
            field_ppm: ``(...)`` field offset ``dB0 / B0`` at the points, ppm.
            field_strength_t: main field ``B0``, tesla.
        """
        cycles = GYROMAGNETIC_HZ_PER_T * field_strength_t * field_ppm * 1e-6 * self.tau_ms * 1e-3
        return (self.offset + self.transceive(points) + 2 * np.pi * cycles).astype(np.float32)


def draw_phase_model(rng: np.random.Generator, field_strength_t: float) -> PhaseModel:
    """Draw a global phase and a transceive phase of about 0.5 (1.5 T) to 1 (3 T) radian
    variation across the head."""
    spread = 0.6 if field_strength_t >= 2.0 else 0.3
    coefficients = np.concatenate([[0.0], rng.normal(0, spread, 3), rng.normal(0, spread, 6)])
    return PhaseModel(float(rng.uniform(-np.pi, np.pi)), coefficients.astype(np.float32))
