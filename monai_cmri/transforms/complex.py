"""Complex images and their two-channel (real, imag) form (SPEC 1.3).

The networks see a complex image as two real channels ``(real, imag)`` stacked on the axis just
before the image axes: a complex ``(..., H, W)`` becomes a real ``(..., 2, H, W)``. Complex dtypes
exist only at the I/O boundary (k-space files, coil combination). This module is the one place
that converts between the two forms; everything else imports these functions.

MONAI's ``monai.apps.reconstruction.complex_utils`` keeps real and imaginary parts on the *last*
axis ``(..., H, W, 2)``, the fastMRI layout. That layout does not fit channel-first networks, so
the conversions here put the pair on the channel axis instead.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config.type_definitions import NdarrayOrTensor
from monai.utils import convert_to_dst_type, convert_to_tensor

__all__ = [
    "complex_to_channels",
    "channels_to_complex",
    "magnitude",
    "phase",
    "normalize_magnitude",
]


def complex_to_channels(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Split a complex image into two real channels.

    Args:
        x: complex array or tensor ``(..., H, W)``, e.g. one slice ``(H, W)`` or a batch of
            patches ``(N, H, W)``.

    Returns:
        Real ``(..., 2, H, W)`` of the matching real dtype (complex64 -> float32), channel 0 the
        real part and channel 1 the imaginary part; same array type and device as ``x``.

    Raises:
        ValueError: if ``x`` is not complex or has fewer than 2 dimensions.
    """
    t = _tensor(x)
    if not t.is_complex():
        raise ValueError(f"complex_to_channels expects a complex (..., H, W) input, got dtype {t.dtype}")
    _check_image(t, "complex_to_channels", "(..., H, W)")
    out = torch.stack((t.real, t.imag), dim=-3)
    return _like(out, x)


def channels_to_complex(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Join two real channels ``(real, imag)`` into a complex image.

    Args:
        x: real array or tensor ``(..., 2, H, W)``.

    Returns:
        Complex ``(..., H, W)``, complex128 for float64 input and complex64 otherwise; same array
        type and device as ``x``.

    Raises:
        ValueError: if ``x`` is complex, or its third-last axis is not of size 2.
    """
    t = _channels(x, "channels_to_complex")
    out = torch.complex(t[..., 0, :, :], t[..., 1, :, :])
    return _like(out, x)


def magnitude(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Magnitude ``sqrt(real^2 + imag^2)`` of a two-channel image.

    Args:
        x: real array or tensor ``(..., 2, H, W)`` (real, imag).

    Returns:
        Real ``(..., 1, H, W)``: the channel axis is kept (size 1) so that the result stays
        channel-first for MONAI transforms and metrics.

    Raises:
        ValueError: if ``x`` is complex, or its third-last axis is not of size 2.
    """
    t = _channels(x, "magnitude")
    out = torch.hypot(t[..., 0:1, :, :], t[..., 1:2, :, :])
    return _like(out, x)


def phase(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Phase ``atan2(imag, real)`` in radians, in ``[-pi, pi]``, of a two-channel image.

    Args:
        x: real array or tensor ``(..., 2, H, W)`` (real, imag).

    Returns:
        Real ``(..., 1, H, W)`` in radians; 0 where the magnitude is 0.

    Raises:
        ValueError: if ``x`` is complex, or its third-last axis is not of size 2.
    """
    t = _channels(x, "phase")
    out = torch.atan2(t[..., 1:2, :, :], t[..., 0:1, :, :])
    return _like(out, x)


def normalize_magnitude(x: NdarrayOrTensor) -> NdarrayOrTensor:
    """Scale each complex slice so that its largest magnitude is 1 (SPEC 1.3, paper 2.1.3).

    The complex slice is divided by a positive real number, so the phase is untouched and the
    magnitude lands in ``[0, 1]``. A slice that is zero everywhere stays zero.

    Args:
        x: complex array or tensor ``(..., H, W)``; every leading index is one slice, the last two
            axes are the image.

    Returns:
        Complex ``(..., H, W)``, same dtype, array type and device as ``x``.

    Raises:
        ValueError: if ``x`` is not complex or has fewer than 2 dimensions.
    """
    t = _tensor(x)
    if not t.is_complex():
        raise ValueError(f"normalize_magnitude expects a complex (..., H, W) input, got dtype {t.dtype}")
    _check_image(t, "normalize_magnitude", "(..., H, W)")
    peak = t.abs().amax(dim=(-2, -1), keepdim=True)
    # An all-zero slice divides by 1 instead of 0, so it stays zero rather than NaN.
    out = t / torch.where(peak > 0, peak, torch.ones_like(peak))
    return _like(out, x)


def _tensor(x: NdarrayOrTensor) -> torch.Tensor:
    """A plain tensor view of ``x`` (no copy for a contiguous CPU array, no MetaTensor)."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ValueError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")
    return convert_to_tensor(x, track_meta=False)


def _like(out: torch.Tensor, like: NdarrayOrTensor) -> NdarrayOrTensor:
    """``out`` as the array type and device of ``like`` (MetaTensor metadata kept), own dtype."""
    return convert_to_dst_type(out, dst=like, dtype=out.dtype)[0]


def _check_image(t: torch.Tensor, name: str, expected: str) -> None:
    if t.ndim < 2:
        raise ValueError(f"{name} expects {expected}, got shape {tuple(t.shape)}")


def _channels(x: NdarrayOrTensor, name: str) -> torch.Tensor:
    t = _tensor(x)
    if t.is_complex():
        raise ValueError(f"{name} expects a real two-channel (..., 2, H, W) input, got dtype {t.dtype}")
    if t.ndim < 3 or t.shape[-3] != 2:
        raise ValueError(f"{name} expects a real two-channel (..., 2, H, W) input, got {tuple(t.shape)}")
    # Integer and half inputs are promoted: torch has no complex type for them.
    return t if t.dtype in (torch.float32, torch.float64) else t.float()
