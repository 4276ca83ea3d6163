"""Smooth complex test images shared by the VAE tests (not simulated brains: fast and analytic)."""

from __future__ import annotations

import numpy as np


def complex_blobs(n: int, size: int, seed: int = 0, ramp: str = "x") -> np.ndarray:
    """``n`` Gaussian magnitude blobs with a random global phase and a linear phase ramp.

    Args:
        n: number of images.
        size: side of the square images, pixels.
        seed: random seed of the blob widths, offsets and phases.
        ramp: axis of the phase ramp, ``"x"`` (columns) or ``"y"`` (rows).

    Returns:
        float32 ``(n, 2, size, size)`` (real, imag), magnitude in ``[0, 1]``.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    axis = {"x": x, "y": y}[ramp]
    out = []
    for _ in range(n):
        mag = np.exp(-((y - rng.uniform(-0.1, 0.1)) ** 2 + x**2) / (2 * rng.uniform(0.2, 0.3) ** 2))
        z = mag * np.exp(1j * (rng.uniform(-np.pi, np.pi) + rng.uniform(-2, 2) * axis))
        out.append(np.stack([z.real, z.imag]))
    return np.asarray(out, dtype=np.float32)
