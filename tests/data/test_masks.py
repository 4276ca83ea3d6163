"""Tests of the magnitude brain mask (SPEC 1.3): a head phantom with brain, skull gap and scalp."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.data.masks import brain_mask, otsu

SIZE = 320
BRAIN_RADIUS, SKULL_RADIUS, SCALP_RADIUS = 100, 112, 120


def head(seed: int = 0, bridge: bool = False, noise: float = 0.03) -> tuple[np.ndarray, ...]:
    """Magnitude of a head phantom, normalised to max 1, with the true brain and scalp masks.

    A bright disk (brain, with a dark ventricle) inside a thin bright ring (scalp) separated from it
    by a dark gap (skull), plus complex Gaussian noise; ``bridge`` joins brain and scalp with a
    4-pixel strip of tissue.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    radius = np.hypot(y, x)
    brain = radius < BRAIN_RADIUS
    scalp = (radius >= SKULL_RADIUS) & (radius < SCALP_RADIUS)
    image = np.where(brain, 0.8, 0.0)
    image[np.hypot(y + 10, x) < 15] = 0.15
    image[scalp] = 1.0
    if bridge:
        image[(np.abs(x) < 2) & (radius >= BRAIN_RADIUS - 1) & (radius < SKULL_RADIUS + 1)] = 0.9
    image = np.abs(image + noise * (rng.standard_normal(image.shape) + 1j * rng.standard_normal(image.shape)))
    return image / image.max(), brain, scalp


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_otsu_maximises_between_class_variance():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.7, 0.08, 1000)])
    level = otsu(values)

    def between(t: float) -> float:
        dark, bright = values[values < t], values[values >= t]
        return dark.size * bright.size * (dark.mean() - bright.mean()) ** 2 / values.size**2

    candidates = np.linspace(values.min(), values.max(), 257)[1:-1]
    best = max(between(t) for t in candidates)
    assert 0.3 < level < 0.6
    assert between(level) >= best * (1 - 1e-6)


def test_otsu_constant_and_bad_input():
    assert otsu(np.full(10, 0.5)) == 0.5
    with pytest.raises(ValueError, match="finite"):
        otsu(np.array([0.0, np.nan]))


@pytest.mark.parametrize("bridge", [False, True])
def test_mask_covers_brain_not_scalp(bridge):
    image, brain, scalp = head(bridge=bridge)
    mask = brain_mask(image)
    assert mask.dtype == bool and mask.shape == image.shape
    assert dice(mask, brain) > 0.95
    assert not np.any(mask & scalp)
    assert np.sum(mask & ~brain) < 0.005 * brain.sum()


def test_mask_fills_dark_ventricle():
    image, brain, _ = head()
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    ventricle = np.hypot(y + 10, x) < 15
    assert brain_mask(image)[ventricle].all()


def test_fraction_threshold_matches_otsu_on_phantom():
    image, brain, scalp = head(seed=1)
    mask = brain_mask(image, threshold=0.3)
    assert dice(mask, brain) > 0.95 and not np.any(mask & scalp)


def test_volume_is_masked_slice_by_slice_and_noise_gives_empty():
    rng = np.random.default_rng(5)
    first, brain, _ = head(seed=2)
    noise = np.abs(rng.standard_normal((SIZE, SIZE)) + 1j * rng.standard_normal((SIZE, SIZE)))
    volume = np.stack([first, noise / noise.max(), np.zeros((SIZE, SIZE))])
    mask = brain_mask(volume)
    assert mask.shape == volume.shape
    np.testing.assert_array_equal(mask[0], brain_mask(first))
    assert not mask[1].any() and not mask[2].any()


def test_bad_input():
    with pytest.raises(ValueError, match="real magnitude"):
        brain_mask(np.ones((8, 8), dtype=np.complex64))
    with pytest.raises(ValueError, match=r"\(S, H, W\)"):
        brain_mask(np.ones((2, 2, 8, 8)))
    with pytest.raises(ValueError, match="threshold"):
        brain_mask(np.ones((8, 8)), threshold=1.5)
