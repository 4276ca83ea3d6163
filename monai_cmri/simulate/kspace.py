"""Acquisition: coil images to oversampled, noisy, zero-filled k-space, and back (SPEC 1.1).

fastMRI's convention is ``image = fftshift(ifft2(ifftshift(kspace), norm="ortho"))`` over the
last two axes; the forward model is its exact inverse. The object fills the central half of
the 2x oversampled readout, so the rows outside it are zero before the transform and the
readout FFT runs on a zero-padded column; the transforms are separable, which lets each run
along one axis at a time on only the rows or columns that carry data.

Noise is complex Gaussian, correlated across coils through the Cholesky factor of the noise
covariance, and added on the acquired phase-encode lines only; the lines outside them are
exactly zero, as in the fastMRI files (``kspace_encoding_step_1`` limits).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch

__all__ = ["encoding_limits", "fft_lines", "encode", "rss"]


def encoding_limits(width: int, lines: int) -> tuple[int, int, int]:
    """ISMRMRD ``kspace_encoding_step_1`` ``(minimum, maximum, center)`` for ``lines`` of ``width``.

    Acquired lines are ``[width // 2 - center, width // 2 - center + maximum + 1)`` of the
    stored k-space (the fastMRI padding rule), symmetric about the k-space centre here.
    """
    if not 2 <= lines <= width or (width - lines) % 2:
        raise ValueError(f"need 2 <= lines <= width and width - lines even, got {lines} of {width}")
    return 0, lines - 1, lines // 2


def fft_lines(width: int, lines: int) -> slice:
    """Columns of the stored k-space that hold acquired lines."""
    _, maximum, center = encoding_limits(width, lines)
    start = width // 2 - center
    return slice(start, start + maximum + 1)


def _alternating(n: int) -> np.ndarray:
    """``(-1)^j`` for ``j < n``, float32."""
    return (1 - 2 * (np.arange(n) % 2)).astype(np.float32)


def _workers() -> int:
    return max(1, torch.get_num_threads())


def encode(
    image: np.ndarray,
    maps: np.ndarray,
    readout: int,
    lines: int,
    noise_sigma: float,
    noise_covariance: np.ndarray,
    generator: torch.Generator,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """k-space of one slice: ``fftshift(fft2(ifftshift(S_c x), norm="ortho"))`` plus noise.

    For even ``n``, ``fftshift(fft(ifftshift(x))) = (-1)^(n/2) s * fft(s * x)`` with
    ``s_j = (-1)^j``, so the shifts become sign flips folded into the image and into one output
    factor. Placing the object at row ``readout // 4`` of the zero-padded readout multiplies the
    transform by ``(-i)^k``, folded into the same factor, so the FFT zero-pads at the end
    (``s=(readout, W)``) without building the padded image.

    Args:
        image: ``(rows, W)`` complex64 coil-combined object, ``rows = readout // 2``; it lands
            in rows ``[readout // 4, readout // 4 + rows)`` of the full field of view.
        maps: ``(C, rows, W)`` complex64 coil sensitivities.
        readout: oversampled readout length, a multiple of 4.
        lines: acquired phase-encode lines (centred); the others are zero.
        noise_sigma: complex standard deviation ``sqrt(E|n|^2)`` of the noise of a coil with
            unit variance in ``noise_covariance``.
        noise_covariance: ``(C, C)`` real receiver noise covariance.
        generator: draws the noise (``torch.randn``, the fastest normal sampler here).
        out: optional ``(C, readout, W)`` complex64 array to write into.

    Returns:
        ``(C, readout, W)`` complex64 k-space (``out`` when given).
    """
    coils, rows, width = maps.shape
    if image.shape != (rows, width) or rows != readout // 2 or readout % 4 or width % 2:
        raise ValueError(
            f"need image (rows, W) and maps (C, rows, W) with rows = readout // 2, readout a multiple "
            f"of 4 and W even; got image {image.shape}, maps {maps.shape}, readout {readout}"
        )
    keep = fft_lines(width, lines)
    signs_in = np.outer(_alternating(rows), _alternating(width)) * (-1) ** (readout // 4)
    spectrum = scipy.fft.fft2(
        maps * (image * signs_in), s=(readout, width), norm="ortho", workers=_workers(), overwrite_x=True
    )
    quarter = np.array([1, 1j, -1, -1j], np.complex64)[np.arange(readout) % 4]
    row_factor = quarter * (-1) ** (readout // 2 + readout // 4)
    column_factor = _alternating(width)[keep] * (-1) ** (width // 2)
    if out is None:
        out = np.empty((coils, readout, width), np.complex64)
    out[:, :, : keep.start] = 0
    out[:, :, keep.stop :] = 0
    acquired = out[:, :, keep]
    np.multiply(spectrum[:, :, keep], row_factor[:, None] * column_factor[None], out=acquired)

    # Real Cholesky factor: mixing the real and imaginary parts alike keeps the noise circular.
    mixing = np.linalg.cholesky(noise_covariance) * (noise_sigma / np.sqrt(2.0))
    white = torch.randn((coils, 2 * readout * acquired.shape[-1]), generator=generator)
    noise = torch.from_numpy(mixing.astype(np.float32)) @ white
    acquired += noise.numpy().view(np.complex64).reshape(acquired.shape)
    return out


def rss(kspace: np.ndarray, size: int | None = None) -> np.ndarray:
    """Root-sum-of-squares image of multi-coil k-space, cropped and padded like fastMRI.

    ``|fftshift(ifft(ifftshift(k)))_j| = |ifft(k)_(j + n/2 mod n)|``: the shifts only move the
    magnitude by half the length, so they become a row index and a column roll of the
    real-valued result. Slices are transformed one at a time to bound memory.

    Args:
        kspace: ``(..., C, readout, W)`` complex64, ``readout`` and ``W`` even.
        size: output ``size x size``; defaults to ``readout // 2``. Rows are the centre crop of
            the readout, columns are zero-padded with ``(size - W) // 2`` on the left.

    Returns:
        ``(..., size, size)`` float32.
    """
    coils, readout, width = kspace.shape[-3:]
    size = readout // 2 if size is None else size
    if width > size or size > readout or readout % 2 or width % 2:
        raise ValueError(f"need even readout and W with W <= size <= readout; got {kspace.shape[-2:]}, size {size}")
    start = (readout - size) // 2
    rows = (np.arange(start, start + size) + readout // 2) % readout
    left = (size - width) // 2
    flat = kspace.reshape(-1, coils, readout, width)
    out = np.zeros((len(flat), size, size), np.float32)
    for i, coil_kspace in enumerate(flat):
        image = scipy.fft.ifft2(coil_kspace, norm="ortho", workers=_workers())
        power = (image.real**2 + image.imag**2).sum(0)
        out[i, :, left : left + width] = np.roll(np.sqrt(power[rows]), width // 2, axis=-1)
    return out.reshape(kspace.shape[:-3] + (size, size))
