"""Tests of the classifier augmentation of (real, imag) patches (paper 2.4.2) against NumPy on complex arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from monai.transforms import RandFlip, RandRotate90
from monai.utils import TransformBackends, convert_to_numpy
from numpy_reference import crandn

import monai_cmri.transforms as T
from monai_cmri.transforms import augment as A
from monai_cmri.transforms.complex import complex_to_channels


def as_complex(x) -> np.ndarray:
    """(2, H, W) transform output (numpy, tensor or MetaTensor) -> complex128 (H, W)."""
    x = convert_to_numpy(x).astype(np.float64)
    assert x.ndim == 3 and x.shape[0] == 2
    return x[0] + 1j * x[1]


def np_zoom_crop(z: np.ndarray, factor: float) -> np.ndarray:
    """Bilinear zoom of a complex (H, W) array by ``factor`` (align_corners=False, output
    ``floor(n * factor)``, so the sampling step is ``n / floor(n * factor)``) and centre crop to (H, W)."""

    def weights(n: int) -> np.ndarray:
        m = int(math.floor(n * factor))
        src = np.maximum((np.arange(m) + 0.5) * (n / m) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        w = np.zeros((m, n))
        w[np.arange(m), i0] += 1.0 - (src - i0)
        w[np.arange(m), i1] += src - i0
        start = m // 2 - n // 2
        return w[start : start + n]

    return weights(z.shape[0]) @ z @ weights(z.shape[1]).T


def d4_orbit(z: np.ndarray) -> list[np.ndarray]:
    """All flips and 90-degree rotations of a square array."""
    return [np.rot90(f, k) for f in (z, np.flip(z, 0)) for k in range(4)]


@pytest.fixture
def z() -> np.ndarray:
    image = crandn((10, 12), seed=1).astype(np.complex128)
    image[2, 3] = image[7, 0] = 0.0
    return image


def test_intensity_scaling_keeps_phase_and_scales_magnitude_by_the_drawn_factor(z):
    x = complex_to_channels(z).astype(np.float32)
    factors = []
    for seed in range(6):
        t = T.RandComplexScaleIntensity(scale=(0.5, 2.0), prob=1.0)
        t.set_random_state(seed)
        w = as_complex(t(x))
        f = t.scale_factor
        factors.append(f)
        assert 0.5 <= f <= 2.0
        nonzero = np.abs(z) > 0
        np.testing.assert_allclose(np.angle(w[nonzero]), np.angle(z[nonzero]), atol=1e-5)
        np.testing.assert_allclose(np.abs(w), f * np.abs(z), rtol=1e-5, atol=1e-6)
        assert (w[~nonzero] == 0).all()
    assert len(set(factors)) == len(factors)


def test_intensity_scaling_not_drawn_is_the_identity_with_factor_one(z):
    x = complex_to_channels(z).astype(np.float32)
    t = T.RandComplexScaleIntensity(scale=(0.5, 2.0), prob=0.0)
    np.testing.assert_array_equal(convert_to_numpy(t(x)), x)
    assert t.scale_factor == 1.0


@pytest.mark.parametrize("axis", [0, 1])
def test_flips_commute_with_the_complex_conversion(z, axis):
    x = complex_to_channels(z)
    np.testing.assert_allclose(as_complex(RandFlip(prob=1.0, spatial_axis=axis)(x)), np.flip(z, axis), atol=1e-6)


def test_rot90_commutes_with_the_complex_conversion(z):
    x = complex_to_channels(z)
    seen = set()
    for seed in range(12):
        t = RandRotate90(prob=1.0, max_k=3, spatial_axes=(0, 1))
        t.set_random_state(seed)
        w = as_complex(t(x))
        ks = [k for k in range(1, 4) if w.shape == np.rot90(z, k).shape and np.allclose(w, np.rot90(z, k), atol=1e-6)]
        assert len(ks) == 1
        seen.add(ks[0])
    assert seen == {1, 2, 3}


def test_pipeline_rotation_is_uniform_over_four_quarter_turns():
    z = crandn((6, 6), seed=2).astype(np.complex128)
    x = complex_to_channels(z)
    pipeline = T.classifier_augmentation(keys=None, prob=0.0)  # rotations only
    pipeline.set_random_state(0)
    counts = np.zeros(4, dtype=int)
    for _ in range(400):
        w = as_complex(pipeline(x))
        counts[[k for k in range(4) if np.allclose(w, np.rot90(z, k), atol=1e-6)]] += 1
    assert counts.sum() == 400
    assert (np.abs(counts - 100) < 40).all(), counts  # 4 standard deviations of a binomial(400, 1/4)


def test_full_pipeline_without_zoom_or_scaling_gives_flips_and_rotations_of_the_complex_patch():
    z = crandn((8, 8), seed=3).astype(np.complex128)
    x = complex_to_channels(z)
    pipeline = T.classifier_augmentation(keys=None, prob=0.5, zoom=(1.0, 1.0), scale=(1.0, 1.0))
    pipeline.set_random_state(4)
    orbit = d4_orbit(z)
    hits = set()
    for _ in range(60):
        w = as_complex(pipeline(x))
        matches = [i for i, o in enumerate(orbit) if np.allclose(w, o, atol=1e-6)]
        assert matches
        hits.add(matches[0])
    assert len(hits) == 8


def test_zoom_keeps_size_draws_factors_in_range_and_matches_numpy_complex_zoom(z):
    x = complex_to_channels(z)
    factors = []
    for seed in range(8):
        t = T.RandComplexZoom(prob=1.0)
        t.set_random_state(seed)
        out = t(x)
        assert tuple(out.shape) == (2, 10, 12)
        f = t.zoom_factor
        assert 1.0 <= f <= 1.2
        factors.append(f)
        np.testing.assert_allclose(as_complex(out), np_zoom_crop(z, f), atol=1e-5)
    assert len(set(factors)) == len(factors)


def test_zoom_by_one_is_the_identity(z):
    x = complex_to_channels(z).astype(np.float32)
    t = T.RandComplexZoom(prob=1.0, min_zoom=1.0, max_zoom=1.0)
    np.testing.assert_allclose(convert_to_numpy(t(x)), x, atol=1e-6)
    assert t.zoom_factor == 1.0


def test_zoom_of_the_complex_patch_is_zoom_of_real_and_imag_separately(z):
    x = complex_to_channels(z).astype(np.float32)
    outputs = []
    for part in (x, x[:1], x[1:]):
        t = T.RandComplexZoom(prob=1.0, min_zoom=1.05, max_zoom=1.2)
        t.set_random_state(5)
        outputs.append(convert_to_numpy(t(part)))
    both, real, imag = outputs
    np.testing.assert_allclose(both[0:1], real, atol=1e-6)
    np.testing.assert_allclose(both[1:2], imag, atol=1e-6)
    # and a global phase rotation, which mixes the channels, commutes with the zoom
    rotated = complex_to_channels(z * np.exp(0.7j)).astype(np.float32)
    t = T.RandComplexZoom(prob=1.0, min_zoom=1.05, max_zoom=1.2)
    t.set_random_state(5)
    np.testing.assert_allclose(as_complex(t(rotated)), as_complex(both) * np.exp(0.7j), atol=1e-5)


def test_same_seed_same_output_and_another_seed_another(z):
    x = complex_to_channels(z).astype(np.float32)

    def run(seed: int, keys):
        pipeline = T.classifier_augmentation(keys=keys, prob=0.5)
        pipeline.set_random_state(seed)
        if keys is None:
            return [convert_to_numpy(pipeline(x)) for _ in range(3)]
        return [convert_to_numpy(pipeline({"image": x})["image"]) for _ in range(3)]

    for keys in (None, ("image",)):
        first, again, other = run(11, keys), run(11, keys), run(12, keys)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
        assert any(a.shape != c.shape or not np.allclose(a, c) for a, c in zip(first, other))


def test_dictionary_versions_transform_only_their_keys_with_one_draw(z):
    x = complex_to_channels(z).astype(np.float32)
    meta = {"volume": "file_brain_AXT2_0.h5", "slice": 3}
    data = {"image": x, "twin": x.copy(), "other": x.copy(), "label": 1, "sequence": "AXT2", "meta": meta}
    pipeline = T.classifier_augmentation(
        keys=("image", "twin"), prob=1.0, zoom=(1.1, 1.2), scale=(1.5, 2.0), rotate_prob=0.0
    )
    pipeline.set_random_state(0)
    out = pipeline(data)
    # both flips, then one zoom and one scaling for both keys
    f_zoom = pipeline.transforms[3].rand_zoom.zoom_factor
    f_scale = pipeline.transforms[4].scaler.scale_factor
    assert 1.1 <= f_zoom <= 1.2 and 1.5 <= f_scale <= 2.0
    expected = f_scale * np_zoom_crop(np.flip(z, (0, 1)), f_zoom)
    np.testing.assert_allclose(as_complex(out["image"]), expected, rtol=1e-5, atol=1e-5)
    assert out["other"] is data["other"] and np.array_equal(out["other"], x)
    assert out["label"] == 1 and out["sequence"] == "AXT2" and out["meta"] is meta
    assert meta == {"volume": "file_brain_AXT2_0.h5", "slice": 3}
    np.testing.assert_array_equal(convert_to_numpy(out["image"]), convert_to_numpy(out["twin"]))


def test_dictionary_twins_apply_the_array_transform_to_each_key(z):
    x = complex_to_channels(z).astype(np.float32)
    zoom = T.RandComplexZoomd(keys="image", prob=1.0)
    zoom.set_random_state(2)
    out = zoom({"image": x, "label": 0})
    assert isinstance(zoom.rand_zoom, T.RandComplexZoom) and out["label"] == 0
    np.testing.assert_allclose(as_complex(out["image"]), np_zoom_crop(z, zoom.rand_zoom.zoom_factor), atol=1e-5)

    scale = T.RandComplexScaleIntensityd(keys=["image"], scale=(0.5, 0.8), prob=1.0)
    scale.set_random_state(2)
    out = scale({"image": x, "label": 0})
    f = scale.scaler.scale_factor
    assert isinstance(scale.scaler, T.RandComplexScaleIntensity) and 0.5 <= f <= 0.8
    np.testing.assert_allclose(as_complex(out["image"]), f * z, rtol=1e-5, atol=1e-6)


def test_aliases_backends_and_bad_ranges():
    assert T.RandComplexZoomD is T.RandComplexZoomDict is T.RandComplexZoomd
    assert T.RandComplexScaleIntensityD is T.RandComplexScaleIntensityDict is T.RandComplexScaleIntensityd
    assert TransformBackends.TORCH in T.RandComplexZoom.backend
    assert TransformBackends.TORCH in T.RandComplexScaleIntensity.backend
    assert set(A.__all__) <= set(T.__all__)
    with pytest.raises(ValueError, match="min_zoom"):
        T.RandComplexZoom(min_zoom=0.9)
    with pytest.raises(ValueError, match="min_zoom"):
        T.RandComplexZoomd(keys="image", min_zoom=1.2, max_zoom=1.1)
    with pytest.raises(ValueError, match="positive"):
        T.RandComplexScaleIntensity(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        T.RandComplexScaleIntensityd(keys="image", scale=(1.2, 0.8))
    with pytest.raises(ValueError):
        T.classifier_augmentation(zoom=(1.0, 1.1, 1.2))
