"""Augmentation of two-channel (real, imag) patches for the downstream classifier (paper 2.4.2).

The paper's pipeline: "random horizontal and vertical flips, uniformly sampled 90-degree rotations,
random scaling (zoom factor uniformly drawn from [1.0, 1.2] with center-cropping to preserve spatial
dimensions), and intensity scaling". :func:`classifier_augmentation` builds it from MONAI
transforms, each checked to act on a complex image written as channels (real, imag):

* ``RandFlip`` and ``RandRotate90`` (MONAI, used as they are) move pixels and apply the same
  permutation to every channel, so they commute with the complex conversion.
* :class:`RandComplexZoom` is MONAI's ``RandZoom`` with the paper's settings pinned: one isotropic
  factor in ``[1.0, 1.2]``, bilinear interpolation and a centre crop back to the input size.
  ``torch.nn.functional.interpolate`` uses the same weights in every channel and is linear, so
  zooming (real, imag) equals zooming the complex value; a factor ``>= 1`` never pads.
* :class:`RandComplexScaleIntensity` is MONAI's ``RandScaleIntensity`` with one positive real
  factor for all channels: the magnitude is multiplied by it and the phase is untouched. Not
  ``channel_wise`` (two factors would rotate the phase), and not ``ScaleIntensity`` with
  ``minv``/``maxv`` or ``NormalizeIntensity``, whose shifts change the phase.

The random transforms accept numpy arrays and tensors and, like MONAI's, return tensors
(``MetaTensor`` when meta tracking is on) of dtype float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import DtypeLike
from monai.transforms import (
    Compose,
    RandFlip,
    RandFlipd,
    RandRotate90,
    RandRotate90d,
    RandScaleIntensity,
    RandScaleIntensityd,
    RandZoom,
    RandZoomd,
)

__all__ = [
    "RandComplexZoom",
    "RandComplexScaleIntensity",
    "RandComplexZoomd",
    "RandComplexZoomD",
    "RandComplexZoomDict",
    "RandComplexScaleIntensityd",
    "RandComplexScaleIntensityD",
    "RandComplexScaleIntensityDict",
    "classifier_augmentation",
]


def _zoom_range(min_zoom: float, max_zoom: float) -> tuple[float, float]:
    if not 1.0 <= min_zoom <= max_zoom:
        raise ValueError(
            f"zoom factors must satisfy 1.0 <= min_zoom <= max_zoom (a centre crop, never padding), "
            f"got [{min_zoom}, {max_zoom}]."
        )
    return float(min_zoom), float(max_zoom)


def _scale_range(scale: Sequence[float]) -> tuple[float, float]:
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be a range (a, b) of positive factors with a <= b, got {scale}.")
    return float(scale[0]), float(scale[1])


class RandComplexZoom(RandZoom):
    """Random isotropic zoom by a factor in ``[min_zoom, max_zoom]``, centre-cropped to the input size.

    MONAI's ``RandZoom`` (invertible, lazy-capable, seeded by ``set_random_state``) with
    ``mode="bilinear"``, ``align_corners=False``, ``keep_size=True`` and one factor for both axes,
    the paper's "random scaling" (2.4.2). Every channel is interpolated with the same weights, so a
    complex patch as (real, imag) is zoomed as one complex image. The output size is
    ``floor(H * z)`` before the centre crop back to ``(H, W)``, as in MONAI.

    Args:
        prob: probability of zooming; otherwise the patch is returned unchanged (as float32).
        min_zoom: smallest factor, at least 1.0 so that the patch is cropped, never padded.
        max_zoom: largest factor.

    Raises:
        ValueError: unless ``1.0 <= min_zoom <= max_zoom``.
    """

    backend = RandZoom.backend

    def __init__(self, prob: float = 0.5, min_zoom: float = 1.0, max_zoom: float = 1.2) -> None:
        min_zoom, max_zoom = _zoom_range(min_zoom, max_zoom)
        super().__init__(
            prob=prob, min_zoom=min_zoom, max_zoom=max_zoom, mode="bilinear", align_corners=False, keep_size=True
        )

    @property
    def zoom_factor(self) -> float:
        """The factor of the last draw, 1.0 when the last draw skipped the zoom."""
        return float(self._zoom[0]) if self._do_transform else 1.0


class RandComplexScaleIntensity(RandScaleIntensity):
    """Multiply every channel by one random positive real factor drawn uniformly from ``scale``.

    MONAI's ``RandScaleIntensity`` (``v * (1 + f)``) with ``f`` in ``[a - 1, b - 1]`` and
    ``channel_wise=False``: the paper's "intensity scaling" (2.4.2). One real factor for real and
    imaginary parts scales the magnitude and keeps the phase.

    Args:
        scale: range ``(a, b)`` of the multiplicative factor, ``0 < a <= b``. The paper gives no
            range; ``(0.9, 1.1)`` is a mild gain on magnitudes normalised to at most 1.
        prob: probability of scaling; otherwise the patch is returned unchanged.
        dtype: output dtype, float32 by default; ``None`` keeps the input's.

    Raises:
        ValueError: if ``scale`` is not two positive numbers in increasing order.
    """

    backend = RandScaleIntensity.backend

    def __init__(
        self, scale: Sequence[float] = (0.9, 1.1), prob: float = 0.5, dtype: DtypeLike = np.float32
    ) -> None:
        low, high = _scale_range(scale)
        super().__init__(factors=(low - 1.0, high - 1.0), prob=prob, channel_wise=False, dtype=dtype)

    @property
    def scale_factor(self) -> float:
        """The multiplier of the last draw, 1.0 when the last draw skipped the scaling."""
        return 1.0 + float(self.factor) if self._do_transform else 1.0


class RandComplexZoomd(RandZoomd):
    """Dictionary-based wrapper of :class:`RandComplexZoom`.

    All keys share one draw (one zoom factor), as in MONAI's ``RandZoomd``, whose machinery
    (inversion, lazy resampling, ``set_random_state``) this keeps; ``self.rand_zoom`` is a
    :class:`RandComplexZoom`.

    Args:
        keys: keys of the items to zoom, each ``(C, H, W)``. See also: ``monai.transforms.MapTransform``.
        prob: probability of zooming (one draw for all keys).
        min_zoom: smallest factor, at least 1.0.
        max_zoom: largest factor.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = RandComplexZoom.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        min_zoom: float = 1.0,
        max_zoom: float = 1.2,
        allow_missing_keys: bool = False,
    ) -> None:
        min_zoom, max_zoom = _zoom_range(min_zoom, max_zoom)
        super().__init__(
            keys,
            prob=prob,
            min_zoom=min_zoom,
            max_zoom=max_zoom,
            mode="bilinear",
            align_corners=False,
            keep_size=True,
            allow_missing_keys=allow_missing_keys,
        )
        self.rand_zoom = RandComplexZoom(prob=1.0, min_zoom=min_zoom, max_zoom=max_zoom)


class RandComplexScaleIntensityd(RandScaleIntensityd):
    """Dictionary-based wrapper of :class:`RandComplexScaleIntensity`.

    All keys share one draw (one factor), as in MONAI's ``RandScaleIntensityd``; ``self.scaler``
    is a :class:`RandComplexScaleIntensity`.

    Args:
        keys: keys of the items to scale. See also: ``monai.transforms.MapTransform``.
        scale: range ``(a, b)`` of the multiplicative factor, ``0 < a <= b``.
        prob: probability of scaling (one draw for all keys).
        dtype: output dtype, float32 by default; ``None`` keeps the input's.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = RandComplexScaleIntensity.backend

    def __init__(
        self,
        keys: KeysCollection,
        scale: Sequence[float] = (0.9, 1.1),
        prob: float = 0.5,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        low, high = _scale_range(scale)
        super().__init__(
            keys,
            factors=(low - 1.0, high - 1.0),
            prob=prob,
            channel_wise=False,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )
        self.scaler = RandComplexScaleIntensity(scale=(low, high), prob=1.0, dtype=dtype)


RandComplexZoomD = RandComplexZoomDict = RandComplexZoomd
RandComplexScaleIntensityD = RandComplexScaleIntensityDict = RandComplexScaleIntensityd


def classifier_augmentation(
    keys: KeysCollection | None = ("image",),
    prob: float = 0.5,
    zoom: Sequence[float] = (1.0, 1.2),
    scale: Sequence[float] = (0.9, 1.1),
    rotate_prob: float = 0.75,
) -> Compose:
    """The downstream classifier's augmentation of ``(2, H, W)`` patches (paper 2.4.2).

    In order: a vertical flip (``spatial_axis=0``) and a horizontal flip (``spatial_axis=1``), each
    with probability ``prob``; a rotation by ``k * 90`` degrees; a zoom by a factor drawn uniformly
    from ``zoom`` with a centre crop; an intensity scaling by a factor drawn uniformly from
    ``scale``, each with probability ``prob``. MONAI's ``RandRotate90`` rotates by ``k`` in
    ``{1, 2, 3}`` with probability ``rotate_prob``, so the default ``0.75`` makes ``k`` uniform on
    ``{0, 1, 2, 3}``, the paper's "uniformly sampled 90-degree rotations".

    Args:
        keys: keys of the patches in a dictionary sample (dictionary transforms, one draw for all
            keys); ``None`` builds the array transforms for a bare ``(2, H, W)`` patch.
        prob: probability of each flip, of the zoom and of the intensity scaling.
        zoom: range ``(min_zoom, max_zoom)`` of the zoom factor, ``1.0 <= min_zoom``.
        scale: range ``(a, b)`` of the intensity factor, ``0 < a <= b``.
        rotate_prob: probability of a non-zero rotation.

    Returns:
        A ``Compose``; ``set_random_state(seed)`` on it makes the draws reproducible.

    Raises:
        ValueError: if ``zoom`` or ``scale`` is not a valid range.
    """
    if len(zoom) != 2:
        raise ValueError(f"zoom must be a range (min_zoom, max_zoom), got {zoom}.")
    min_zoom, max_zoom = _zoom_range(zoom[0], zoom[1])
    scale = _scale_range(scale)
    if keys is None:
        return Compose(
            [
                RandFlip(prob=prob, spatial_axis=0),
                RandFlip(prob=prob, spatial_axis=1),
                RandRotate90(prob=rotate_prob, max_k=3, spatial_axes=(0, 1)),
                RandComplexZoom(prob=prob, min_zoom=min_zoom, max_zoom=max_zoom),
                RandComplexScaleIntensity(scale=scale, prob=prob),
            ]
        )
    return Compose(
        [
            RandFlipd(keys, prob=prob, spatial_axis=0),
            RandFlipd(keys, prob=prob, spatial_axis=1),
            RandRotate90d(keys, prob=rotate_prob, max_k=3, spatial_axes=(0, 1)),
            RandComplexZoomd(keys, prob=prob, min_zoom=min_zoom, max_zoom=max_zoom),
            RandComplexScaleIntensityd(keys, scale=scale, prob=prob),
        ]
    )
