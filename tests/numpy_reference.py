"""NumPy references the tests compare the package against (SPEC 1.1 FFT convention)."""

from __future__ import annotations

import numpy as np

_AXES = (-2, -1)


def np_fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes: ``fftshift(fft2(ifftshift(x)))``."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_AXES), norm="ortho"), axes=_AXES)


def np_ifft2c(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D inverse FFT over the last two axes."""
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=_AXES), norm="ortho"), axes=_AXES)


def crandn(shape: tuple[int, ...], seed: int = 0, dtype: type = np.complex64) -> np.ndarray:
    """Circular complex Gaussian samples (real and imaginary parts standard normal), seeded."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
