"""Dictionary twins of :mod:`monai_cmri.transforms.array` (MONAI ``Foo`` / ``Food`` pattern).

Each ``Food`` holds an instance of the array transform ``Foo`` and applies it to ``data[key]`` for
every key in ``keys``; ``FooD`` and ``FooDict`` are aliases.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform

from monai_cmri.transforms.array import (
    IFFT2C,
    FFT2C,
    CropOversampling,
    ResizeKSpace,
    RootSumOfSquares,
    NormalizeMagnitude,
    ComplexToChannels,
    ChannelsToComplex,
    Magnitude,
    Phase,
)

__all__ = [
    "IFFT2Cd",
    "IFFT2CD",
    "IFFT2CDict",
    "FFT2Cd",
    "FFT2CD",
    "FFT2CDict",
    "CropOversamplingd",
    "CropOversamplingD",
    "CropOversamplingDict",
    "ResizeKSpaced",
    "ResizeKSpaceD",
    "ResizeKSpaceDict",
    "RootSumOfSquaresd",
    "RootSumOfSquaresD",
    "RootSumOfSquaresDict",
    "NormalizeMagnituded",
    "NormalizeMagnitudeD",
    "NormalizeMagnitudeDict",
    "ComplexToChannelsd",
    "ComplexToChannelsD",
    "ComplexToChannelsDict",
    "ChannelsToComplexd",
    "ChannelsToComplexD",
    "ChannelsToComplexDict",
    "Magnituded",
    "MagnitudeD",
    "MagnitudeDict",
    "Phased",
    "PhaseD",
    "PhaseDict",
]


class IFFT2Cd(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.IFFT2C`.

    Maps complex k-space ``(..., H, W)`` -> complex image ``(..., H, W)``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = IFFT2C.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ifft = IFFT2C()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.ifft(d[key])
        return d


class FFT2Cd(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.FFT2C`.

    Maps complex image ``(..., H, W)`` -> complex k-space ``(..., H, W)``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = FFT2C.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.fft = FFT2C()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.fft(d[key])
        return d


class CropOversamplingd(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.CropOversampling`.

    Maps image ``(..., H, W)`` -> ``(..., rows, cols)``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        size: target ``(rows, cols)`` in pixels, or one int for both.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = CropOversampling.backend

    def __init__(
        self,
        keys: KeysCollection,
        size: int | Sequence[int] = 320,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.cropper = CropOversampling(size=size)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key])
        return d


class ResizeKSpaced(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.ResizeKSpace`.

    Maps k-space ``(..., H, W)`` -> ``(..., H', W')``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        size: target ``(H', W')`` in samples, or one int for both.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = ResizeKSpace.backend

    def __init__(
        self,
        keys: KeysCollection,
        size: int | Sequence[int] = (320, 320),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = ResizeKSpace(size=size)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resizer(d[key])
        return d


class RootSumOfSquaresd(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.RootSumOfSquares`.

    Maps coil images -> real RSS image.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        dim: the coil axis.
        keepdim: keep the coil axis with size 1.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = RootSumOfSquares.backend

    def __init__(
        self,
        keys: KeysCollection,
        dim: int = 0,
        keepdim: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.combiner = RootSumOfSquares(dim=dim, keepdim=keepdim)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.combiner(d[key])
        return d


class NormalizeMagnituded(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.NormalizeMagnitude`.

    Maps complex ``(..., H, W)``, each slice divided by its largest magnitude.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = NormalizeMagnitude.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeMagnitude()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


class ComplexToChannelsd(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.ComplexToChannels`.

    Maps complex ``(..., H, W)`` -> real ``(..., 2, H, W)``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = ComplexToChannels.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ComplexToChannels()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class ChannelsToComplexd(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.ChannelsToComplex`.

    Maps real ``(..., 2, H, W)`` -> complex ``(..., H, W)``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = ChannelsToComplex.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ChannelsToComplex()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class Magnituded(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.Magnitude`.

    Maps real ``(..., 2, H, W)`` -> magnitude ``(..., 1, H, W)``.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = Magnitude.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = Magnitude()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class Phased(MapTransform):
    """Dictionary-based wrapper of :class:`monai_cmri.transforms.array.Phase`.

    Maps real ``(..., 2, H, W)`` -> phase ``(..., 1, H, W)`` in radians.

    Args:
        keys: keys of the items to transform. See also: ``monai.transforms.MapTransform``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = Phase.backend

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = Phase()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


IFFT2CD = IFFT2CDict = IFFT2Cd
FFT2CD = FFT2CDict = FFT2Cd
CropOversamplingD = CropOversamplingDict = CropOversamplingd
ResizeKSpaceD = ResizeKSpaceDict = ResizeKSpaced
RootSumOfSquaresD = RootSumOfSquaresDict = RootSumOfSquaresd
NormalizeMagnitudeD = NormalizeMagnitudeDict = NormalizeMagnituded
ComplexToChannelsD = ComplexToChannelsDict = ComplexToChannelsd
ChannelsToComplexD = ChannelsToComplexDict = ChannelsToComplexd
MagnitudeD = MagnitudeDict = Magnituded
PhaseD = PhaseDict = Phased
