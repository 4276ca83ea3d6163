"""Magnitude-based brain mask of coil-combined slices (SPEC 1.3, paper 2.1.3).

Patches are kept only where at least 80% of their pixels are brain, so every slice needs a brain
mask. The paper computes it from the magnitude alone; this module does the same, slice by slice:

1. smooth the magnitude with a small Gaussian;
2. split tissue from air: Otsu's threshold of the log magnitude (air noise and tissue differ by an
   order of magnitude, so their modes separate on a log scale while bright scalp fat cannot pull
   the threshold up into the brain), or a given fraction of the robust maximum;
3. the head is the largest component of the tissue with its holes filled (the scalp ring and
   all it encloses); ``depth`` is each pixel's distance to the outside of the head;
4. a marker-controlled watershed on the gradient magnitude splits the head between an outer
   marker (the ``scalp`` outermost pixels: skin and fat) and an inner marker (the deepest part of
   the head, inside the brain): the two fronts meet on the strongest edge between them, the brain
   surface against the dark skull and CSF, even where a thin skull lets scalp and brain touch;
5. the brain is the inner region's tissue at least ``margin`` pixels deep (scalp plus skull are
   about 12-20 mm thick, so this drops the scalp and hardly ever cuts brain), with holes filled
   (dark ventricles are brain) and eroded by ``erosion`` pixels; components under a tenth of the
   largest are dropped (the fissure splits the hemispheres near the vertex, so both are kept).

The defaults are in pixels of the fastMRI 320 x 320 reconstruction (about 0.69 mm). On 128 slices
of 8 simulated 16-slice volumes (:mod:`monai_cmri.simulate`, all five sequences) the Dice against
the true brain has a median of 0.95 and a 10th percentile of 0.81. It is least sure at the vertex,
where the obliquely cut skull is a wide grey band that can stay in the mask, and at the skull
base; the patch rules (:mod:`monai_cmri.data.patches`) draw few patches there.

Why our own: MONAI has no brain-extraction transform for 2D complex MRI; its ``ForegroundMask``
thresholds without separating the brain from the scalp and needs scikit-image for Otsu, which is
not a dependency of this package. Smoothing, labelling, distance and watershed are
:mod:`scipy.ndimage`; Otsu's threshold is the few lines of :func:`otsu`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["otsu", "brain_mask"]

# Robust maximum of a slice: a few very bright pixels (vessels, fat) should not set the scale.
_ROBUST_PERCENTILE = 99.0
# Pixels below this fraction of the robust maximum (zero-filled columns) stay out of the histogram.
_FLOOR = 1e-3
# Grey levels of the watershed elevation (scipy's watershed takes integer images).
_LEVELS = 4096
# Brain components kept beside the largest, as a fraction of its area: the interhemispheric
# fissure splits the hemispheres near the vertex, and temporal lobes and cerebellum part low down.
_MAJOR = 0.1
_CROSS = ndimage.generate_binary_structure(2, 1)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the value that maximises the between-class variance of a histogram.

    Args:
        values: real array of any shape; NaNs are not allowed.
        bins: number of histogram bins between the minimum and maximum of ``values``.

    Returns:
        The threshold, in the units of ``values``: the upper edge of the last bin of the dark
        class. For a constant array, that constant.

    Raises:
        ValueError: for an empty, complex or non-finite input.
    """
    values = np.asarray(values)
    if values.size == 0 or np.iscomplexobj(values) or not np.all(np.isfinite(values)):
        raise ValueError(f"otsu expects a non-empty, real, finite array, got {values.dtype} {values.shape}")
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_dark = np.cumsum(counts)[:-1]
    weight_bright = counts.sum() - weight_dark
    sum_dark = np.cumsum(counts * centres)[:-1]
    mean_dark = sum_dark / np.maximum(weight_dark, 1)
    mean_bright = (np.dot(counts, centres) - sum_dark) / np.maximum(weight_bright, 1)
    between = weight_dark * weight_bright * (mean_dark - mean_bright) ** 2
    return float(edges[1 + int(np.argmax(between))])


def brain_mask(
    magnitude: np.ndarray,
    *,
    sigma: float = 1.0,
    threshold: float | None = None,
    scalp: int = 10,
    margin: int = 18,
    core: int = 40,
    erosion: int = 2,
    min_area: int = 400,
    min_contrast: float = 3.0,
) -> np.ndarray:
    """Brain mask of each slice from its magnitude (SPEC 1.3, paper 2.1.3; steps in the module docstring).

    Args:
        magnitude: real ``(H, W)`` slice or ``(S, H, W)`` volume, any positive scale (slice-wise
            normalised to ``[0, 1]`` in the pipeline). Each slice is masked on its own.
        sigma: standard deviation of the Gaussian smoothing and of the gradient, pixels.
        threshold: None for Otsu's threshold of the log magnitude; else the tissue threshold as a
            fraction in ``(0, 1)`` of the slice's robust maximum (99th percentile, smoothed).
        scalp: head pixels less deep than this seed the outside (skin and scalp fat), pixels.
        margin: least depth of a brain pixel, pixels (18 px is about 12 mm at 0.69 mm).
        core: pixels at least this deep, or at least 0.6 of the deepest, seed the brain.
        erosion: final erosion, pixels, that drops the partial-volume rim at the brain surface.
        min_area: a brain smaller than this many pixels is none: the slice's mask is empty.
        min_contrast: the mean smoothed magnitude of tissue must be at least this many times that
            of air, else the slice holds no tissue and its mask is empty (Otsu splits pure noise
            too, at a ratio near 1.5; tissue over air is well above 5).

    Returns:
        Boolean mask of the shape of ``magnitude``, True inside the brain.

    Raises:
        ValueError: if ``magnitude`` is complex, not 2D or 3D, not finite, or an argument is out
            of range.
    """
    magnitude = np.asarray(magnitude)
    if np.iscomplexobj(magnitude):
        raise ValueError(f"brain_mask expects a real magnitude, got {magnitude.dtype}; pass np.abs(image)")
    if magnitude.ndim not in (2, 3):
        raise ValueError(f"brain_mask expects (H, W) or (S, H, W), got shape {magnitude.shape}")
    if not np.all(np.isfinite(magnitude)):
        raise ValueError("brain_mask expects a finite magnitude, got NaN or infinity")
    if min(sigma, scalp, margin, core, erosion) < 0 or min_area < 1 or min_contrast < 1:
        raise ValueError(
            f"brain_mask needs sigma, scalp, margin, core, erosion >= 0, min_area >= 1, min_contrast >= 1; "
            f"got {sigma}, {scalp}, {margin}, {core}, {erosion}, {min_area}, {min_contrast}"
        )
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"brain_mask threshold must be a fraction in (0, 1) or None, got {threshold}")
    slices = magnitude.reshape(-1, *magnitude.shape[-2:]).astype(np.float64, copy=False)
    options = (sigma, threshold, scalp, margin, core, erosion, min_area, min_contrast)
    mask = np.stack([_slice_mask(image, *options) for image in slices])
    return mask.reshape(magnitude.shape)


def _slice_mask(
    image: np.ndarray,
    sigma: float,
    threshold: float | None,
    scalp: int,
    margin: int,
    core: int,
    erosion: int,
    min_area: int,
    min_contrast: float,
) -> np.ndarray:
    empty = np.zeros(image.shape, dtype=bool)
    smooth = ndimage.gaussian_filter(image, sigma) if sigma > 0 else image
    peak = float(np.percentile(smooth, _ROBUST_PERCENTILE))
    if peak <= 0:
        return empty
    if threshold is None:
        level = float(np.exp(otsu(np.log(smooth[smooth > _FLOOR * peak]))))
    else:
        level = threshold * peak
    tissue = smooth > level
    if not tissue.any():
        return empty
    if not tissue.all() and smooth[tissue].mean() < min_contrast * smooth[~tissue].mean():
        return empty
    # Filling before choosing the component joins a scalp ring and the brain it encloses.
    head = _largest(ndimage.binary_fill_holes(tissue))
    # Padding makes the image border count as outside, for heads cut by the field of view.
    depth = ndimage.distance_transform_edt(np.pad(head, 1))[1:-1, 1:-1]
    markers = np.zeros(image.shape, dtype=np.int16)
    markers[depth < max(scalp, 1)] = 1
    markers[depth >= min(core, 0.6 * depth.max())] = 2
    edges = ndimage.gaussian_gradient_magnitude(image, sigma) if sigma > 0 else _gradient(image)
    scale = float(np.percentile(edges[head], 99.5)) or 1.0
    elevation = np.round(np.clip(edges / scale, 0, 1) * (_LEVELS - 1)).astype(np.uint16)
    inside = ndimage.watershed_ift(elevation, markers, structure=_CROSS) == 2
    brain = ndimage.binary_fill_holes(_major(inside & tissue & (depth >= margin)))
    if erosion:
        brain = _major(ndimage.binary_erosion(brain, _CROSS, iterations=erosion))
    return brain if brain.sum() >= min_area else empty


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (all False if there is none)."""
    return _major(mask, 1.0)


def _major(mask: np.ndarray, fraction: float = _MAJOR) -> np.ndarray:
    """The 4-connected components of ``mask`` of at least ``fraction`` of the largest one's area."""
    labels, count = ndimage.label(mask, _CROSS)
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (sizes >= fraction * sizes.max())[labels] & (labels > 0)


def _gradient(image: np.ndarray) -> np.ndarray:
    return np.hypot(ndimage.sobel(image, 0), ndimage.sobel(image, 1))
