"""Centred 2D Fourier transforms, readout-oversampling crop, k-space resizing, RSS (SPEC 1.1, 1.3).

Conventions (fastMRI): the image of a k-space ``k`` is the centred orthonormal inverse FFT over
the last two axes, ``fftshift(ifft2(ifftshift(k), norm="ortho"))``; the k-space centre (zero
frequency) sits at index ``n // 2`` of an axis of length ``n``.

MONAI's ``monai.networks.blocks.fft_utils_t.ifftn_centered_t`` / ``fftn_centered_t`` implement
exactly this convention (ifftshift, orthonormal FFT, fftshift) on real tensors with (real, imag) on
the last axis, so :func:`ifft2c` and :func:`fft2c` call them through ``torch.view_as_real`` and
return complex again: the I/O boundary of this project is complex-typed (complex64 k-space in,
complex64 images out), not MONAI's real-pair layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config.type_definitions import NdarrayOrTensor
from monai.networks.blocks.fft_utils_t import fftn_centered_t, ifftn_centered_t

from monai_cmri.transforms.complex import _like, _tensor

__all__ = ["ifft2c", "fft2c", "crop_oversampling", "resize_kspace", "rss"]


def ifft2c(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Centred orthonormal 2D inverse FFT over the last two axes (k-space -> image).

    Equal to ``fftshift(ifft2(ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))``:
    unitary, so the l2 norm of every slice is preserved (Parseval).

    Args:
        x: complex k-space ``(..., H, W)``, e.g. ``(coils, H, W)`` or ``(slices, coils, H, W)``.
            A real input is treated as complex with zero imaginary part.

    Returns:
        Complex image ``(..., H, W)`` (complex64 for complex64 or float32 input, complex128 for
        double precision); same array type and device as ``x``.

    Raises:
        ValueError: if ``x`` has fewer than 2 dimensions or an empty image axis.
    """
    t = _complex(x, "ifft2c")
    out = torch.view_as_complex(ifftn_centered_t(torch.view_as_real(t), spatial_dims=2, is_complex=True))
    return _like(out, x)


def fft2c(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Centred orthonormal 2D FFT over the last two axes (image -> k-space), inverse of :func:`ifft2c`.

    Args:
        x: complex image ``(..., H, W)``; a real input is treated as complex.

    Returns:
        Complex k-space ``(..., H, W)`` with the zero frequency at ``(H // 2, W // 2)``; same array
        type and device as ``x``.

    Raises:
        ValueError: if ``x`` has fewer than 2 dimensions or an empty image axis.
    """
    t = _complex(x, "fft2c")
    out = torch.view_as_complex(fftn_centered_t(torch.view_as_real(t), spatial_dims=2, is_complex=True))
    return _like(out, x)


def crop_oversampling(image: NdarrayOrTensor, size: int | Sequence[int] = 320) -> NdarrayOrTensor:
    """Remove the 2x readout oversampling: centre crop or zero-pad the image to ``size`` (SPEC 1.1).

    Per image axis of length ``n`` and target ``m``: if ``n > m`` keep ``[(n - m) // 2, (n - m) // 2 + m)``
    (rows 160:480 for a 640-row readout), if ``n < m`` zero-pad with ``(m - n) // 2`` before and the
    rest after (narrow fastMRI FLAIR volumes, W < 320). The simulator pads its reference
    reconstructions with the same rule, so images from both agree pixel for pixel.

    Args:
        image: image ``(..., H, W)`` with H the readout; complex or real (e.g. an RSS image).
        size: target ``(rows, cols)`` in pixels, or one int for both; 320 for fastMRI brain.

    Returns:
        ``(..., rows, cols)``, same dtype, array type and device as ``image``. A pure crop is a view
        of ``image``.

    Raises:
        ValueError: if ``image`` has fewer than 2 dimensions or ``size`` is not positive.
    """
    rows, cols = _size(size, "crop_oversampling")
    shape = _image_shape(image, "crop_oversampling")
    offsets = [(m - n) // 2 if m > n else -((n - m) // 2) for n, m in zip(shape, (rows, cols))]
    return _place(image, (rows, cols), offsets)


def resize_kspace(k: NdarrayOrTensor, size: int | Sequence[int] = (320, 320)) -> NdarrayOrTensor:
    """Symmetric zero-fill or crop of k-space around its centre (SPEC 1.3, external data).

    The centre index ``n // 2`` of each axis moves to ``m // 2``: k-space sample ``i`` lands at
    ``i + m // 2 - n // 2``, samples outside ``[0, m)`` are dropped, new samples are zero. Zero-filling
    therefore interpolates the image (sinc interpolation, same low frequencies) and cropping lowers
    the resolution; zero-filling and cropping back returns the input exactly. Note that the rule
    differs from :func:`crop_oversampling` on odd length differences: here the frequency origin
    must stay at ``n // 2``.

    Args:
        k: complex k-space ``(..., H, W)`` in the centred layout of :func:`fft2c`.
        size: target ``(H', W')`` in samples, or one int for both.

    Returns:
        k-space ``(..., H', W')``, same dtype, array type and device as ``k``.

    Raises:
        ValueError: if ``k`` has fewer than 2 dimensions or ``size`` is not positive.
    """
    target = _size(size, "resize_kspace")
    offsets = [m // 2 - n // 2 for n, m in zip(_image_shape(k, "resize_kspace"), target)]
    return _place(k, target, offsets)


def rss(x: NdarrayOrTensor, dim: int = 0, keepdim: bool = False) -> NdarrayOrTensor:
    """Root sum of squares ``sqrt(sum_c |x_c|^2)`` over the coil axis (fastMRI ``reconstruction_rss``).

    MONAI's ``monai.apps.reconstruction.mri_utils.root_sum_of_squares`` squares its input, which is
    only right for real data (``(a + ib)^2`` is not ``|a + ib|^2``); this version takes the modulus,
    so it works on complex coil images directly.

    Args:
        x: coil images, complex or real, e.g. ``(coils, H, W)`` with ``dim=0`` or
            ``(slices, coils, H, W)`` with ``dim=1``.
        dim: the coil axis.
        keepdim: keep the coil axis with size 1 (channel-first output).

    Returns:
        Real magnitude image with the coil axis removed (or of size 1), float32 for complex64 input;
        same array type and device as ``x``.

    Raises:
        ValueError: if ``dim`` is not an axis of ``x``.
    """
    t = _tensor(x)
    if not -t.ndim <= dim < t.ndim:
        raise ValueError(f"rss: dim {dim} is out of range for an input of shape {tuple(t.shape)}")
    if not (t.is_complex() or t.is_floating_point()):
        t = t.float()
    out = torch.linalg.vector_norm(t, ord=2, dim=dim, keepdim=keepdim)
    return _like(out, x)


def _complex(x: NdarrayOrTensor, name: str) -> torch.Tensor:
    t = _tensor(x)
    if t.ndim < 2 or t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"{name} expects a complex (..., H, W) input with H, W > 0, got {tuple(t.shape)}")
    if t.is_complex():
        return t
    return t.to(torch.complex128 if t.dtype == torch.float64 else torch.complex64)


def _size(size: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or any(int(m) != m or m < 1 for m in pair):
        raise ValueError(f"{name}: size must be a positive int or a pair of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def _image_shape(x: NdarrayOrTensor, name: str) -> tuple[int, int]:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} expects (..., H, W), got shape {tuple(x.shape)}")
    return int(x.shape[-2]), int(x.shape[-1])


def _place(x: NdarrayOrTensor, size: tuple[int, int], offsets: Sequence[int]) -> NdarrayOrTensor:
    """Copy ``x`` into a zero ``(..., *size)`` array with input index ``i`` at ``i + offset`` per axis."""
    src, dst = [], []
    for n, m, o in zip(x.shape[-2:], size, offsets):
        src.append(slice(max(0, -o), min(n, m - o)))
        dst.append(slice(max(0, o), min(m, n + o)))
    if all(o <= 0 and n + o >= m for n, m, o in zip(x.shape[-2:], size, offsets)):
        # The output lies inside the input: a view, no zeros needed.
        return x[(..., *src)]
    native = x if isinstance(x, np.ndarray) else _tensor(x)
    shape = (*x.shape[:-2], *size)
    if isinstance(native, np.ndarray):
        out = np.zeros(shape, dtype=native.dtype)
    else:
        out = torch.zeros(shape, dtype=native.dtype, device=native.device)
    out[(..., *dst)] = native[(..., *src)]
    return out if isinstance(x, np.ndarray) else _like(out, x)
