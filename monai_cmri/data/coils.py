"""Coil combination that keeps the phase (SPEC 1.3, paper 2.1.2).

The combination ``x = sum_c conj(S_c) img_c / sum_c |S_c|^2`` is shared by every sensitivity
estimate. :func:`direct_sensitivities` is the quick estimate from the fully sampled k-space centre
("direct calibration": low-resolution coil images divided by their root sum of squares), used
for previews and figures where ESPIRiT's eigen-decomposition would cost tens of seconds per slice.
Its phase is referenced to coil 0 like ESPIRiT's, so the two give the same phase up to the
smoothness of the estimate.
"""

from __future__ import annotations

import numpy as np

__all__ = ["combine_coils", "direct_sensitivities"]


def combine_coils(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Sensitivity-weighted coil combination, ``sum_c conj(S_c) img_c / sum_c |S_c|^2``.

    MONAI's ``sensitivity_map_reduce`` computes the numerator only; the normalisation matters
    here because estimated maps are not unit-norm everywhere (ESPIRiT crops them to zero
    outside the object).

    Args:
        images: coil images, complex ``(..., C, H, W)``.
        maps: sensitivities of the same shape.

    Returns:
        The combined complex image ``(..., H, W)``, 0 where ``sum_c |S_c|^2`` is 0.
    """
    if images.shape != maps.shape or images.ndim < 3:
        raise ValueError(f"expected images and maps of the same shape (..., C, H, W), got {images.shape} and {maps.shape}")
    numerator = np.sum(np.conj(maps) * images, axis=-3)
    denominator = np.sum(np.abs(maps) ** 2, axis=-3)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def direct_sensitivities(kspace: np.ndarray, calib: int = 24, threshold: float = 0.05) -> np.ndarray:
    """Coil sensitivities from the k-space centre, phase referenced to coil 0.

    The central ``calib x calib`` k-space block, tapered by a Hann window to avoid ringing, gives
    low-resolution coil images ``l_c``; the maps are ``l_c exp(-i angle(l_0)) / sqrt(sum |l_c|^2)``,
    set to 0 where the low-resolution RSS is below ``threshold`` times its maximum (background).

    Args:
        kspace: centred k-space, complex ``(C, H, W)``.
        calib: width of the calibration region (ESPIRiT's default, 24).
        threshold: background cut, relative to the maximum low-resolution RSS.

    Returns:
        Complex maps ``(C, H, W)``.
    """
    if kspace.ndim != 3:
        raise ValueError(f"expected k-space of shape (C, H, W), got {kspace.shape}")
    from monai_cmri.transforms import ifft2c

    _, height, width = kspace.shape
    window = np.zeros((height, width), dtype=np.float32)
    rows = slice(height // 2 - calib // 2, height // 2 - calib // 2 + calib)
    cols = slice(width // 2 - calib // 2, width // 2 - calib // 2 + calib)
    hann = np.hanning(calib + 2)[1:-1].astype(np.float32)
    window[rows, cols] = np.outer(hann, hann)
    low = np.asarray(ifft2c(kspace * window))
    rss = np.sqrt(np.sum(np.abs(low) ** 2, axis=0))
    reference = np.exp(-1j * np.angle(low[0]))
    maps = np.zeros_like(low)
    np.divide(low * reference, rss, out=maps, where=rss > threshold * rss.max())
    return maps.astype(np.complex64)
