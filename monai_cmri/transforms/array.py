"""Array transforms for k-space and complex images (SPEC 1.1, 1.3).

Each class wraps one function of :mod:`monai_cmri.transforms.fft` or
:mod:`monai_cmri.transforms.complex` as a MONAI ``Transform``; the dictionary twins are in
:mod:`monai_cmri.transforms.dictionary`. All accept numpy arrays and torch tensors (including
``MetaTensor``) and return the input's array type on the input's device. The k-space pipeline of
fastMRI reads::

    Compose([IFFT2C(), CropOversampling(320), RootSumOfSquares(dim=0)])  # (coils, 640, W) -> (320, 320)

and the model input of a coil-combined slice::

    Compose([NormalizeMagnitude(), ComplexToChannels()])  # complex (H, W) -> real (2, H, W)
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends

from monai_cmri.transforms.complex import (
    channels_to_complex,
    complex_to_channels,
    magnitude,
    normalize_magnitude,
    phase,
)
from monai_cmri.transforms.fft import crop_oversampling, fft2c, ifft2c, resize_kspace, rss

__all__ = [
    "IFFT2C",
    "FFT2C",
    "CropOversampling",
    "ResizeKSpace",
    "RootSumOfSquares",
    "NormalizeMagnitude",
    "ComplexToChannels",
    "ChannelsToComplex",
    "Magnitude",
    "Phase",
]

_BOTH = [TransformBackends.TORCH, TransformBackends.NUMPY]


class IFFT2C(Transform):
    """Centred orthonormal 2D inverse FFT over the last two axes: k-space -> complex image.

    See :func:`monai_cmri.transforms.fft.ifft2c`. Input complex ``(..., H, W)``, output complex
    ``(..., H, W)``.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (complex k-space ``(..., H, W)``)."""
        return ifft2c(img)


class FFT2C(Transform):
    """Centred orthonormal 2D FFT over the last two axes: complex image -> k-space.

    See :func:`monai_cmri.transforms.fft.fft2c`. Input complex ``(..., H, W)``, output complex
    ``(..., H, W)``.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (complex image ``(..., H, W)``)."""
        return fft2c(img)


class CropOversampling(Transform):
    """Centre crop (or zero-pad) an image to ``size`` to remove the 2x readout oversampling.

    See :func:`monai_cmri.transforms.fft.crop_oversampling` for the exact crop and pad rule.

    Args:
        size: target ``(rows, cols)`` in pixels, or one int for both; 320 for fastMRI brain.
    """

    backend = _BOTH

    def __init__(self, size: int | Sequence[int] = 320) -> None:
        self.size = size

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (image ``(..., H, W)``, complex or real)."""
        return crop_oversampling(img, self.size)


class ResizeKSpace(Transform):
    """Symmetric zero-fill or crop of k-space around its centre to a target matrix size.

    See :func:`monai_cmri.transforms.fft.resize_kspace`; used to bring external data to 320x320.

    Args:
        size: target ``(H', W')`` in samples, or one int for both.
    """

    backend = _BOTH

    def __init__(self, size: int | Sequence[int] = (320, 320)) -> None:
        self.size = size

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (complex k-space ``(..., H, W)``)."""
        return resize_kspace(img, self.size)


class RootSumOfSquares(Transform):
    """Root sum of squares over the coil axis, ``sqrt(sum_c |x_c|^2)``.

    See :func:`monai_cmri.transforms.fft.rss`.

    Args:
        dim: the coil axis (0 for ``(coils, H, W)``).
        keepdim: keep the coil axis with size 1 (channel-first output).
    """

    backend = _BOTH

    def __init__(self, dim: int = 0, keepdim: bool = False) -> None:
        self.dim = dim
        self.keepdim = keepdim

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (coil images, complex or real)."""
        return rss(img, dim=self.dim, keepdim=self.keepdim)


class NormalizeMagnitude(Transform):
    """Divide each complex slice by its largest magnitude: magnitude in ``[0, 1]``, phase unchanged.

    See :func:`monai_cmri.transforms.complex.normalize_magnitude` (SPEC 1.3). Input and output
    complex ``(..., H, W)``; every leading index is normalised on its own.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (complex ``(..., H, W)``)."""
        return normalize_magnitude(img)


class ComplexToChannels(Transform):
    """Complex ``(..., H, W)`` -> real ``(..., 2, H, W)`` with channels (real, imag).

    See :func:`monai_cmri.transforms.complex.complex_to_channels`.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (complex ``(..., H, W)``)."""
        return complex_to_channels(img)


class ChannelsToComplex(Transform):
    """Real ``(..., 2, H, W)`` with channels (real, imag) -> complex ``(..., H, W)``.

    See :func:`monai_cmri.transforms.complex.channels_to_complex`.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (real ``(..., 2, H, W)``)."""
        return channels_to_complex(img)


class Magnitude(Transform):
    """Magnitude of a two-channel image: real ``(..., 2, H, W)`` -> ``(..., 1, H, W)``.

    See :func:`monai_cmri.transforms.complex.magnitude`.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (real ``(..., 2, H, W)``)."""
        return magnitude(img)


class Phase(Transform):
    """Phase in radians of a two-channel image: real ``(..., 2, H, W)`` -> ``(..., 1, H, W)``.

    See :func:`monai_cmri.transforms.complex.phase`.
    """

    backend = _BOTH

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Apply the transform to ``img`` (real ``(..., 2, H, W)``)."""
        return phase(img)
