"""Tests of the complex <-> two-channel conversions and the slice-wise magnitude normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy_reference import crandn

from monai_cmri.transforms.complex import (
    channels_to_complex,
    complex_to_channels,
    magnitude,
    normalize_magnitude,
    phase,
)


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
@pytest.mark.parametrize(("shape", "expected"), [((5, 7), (2, 5, 7)), ((3, 4, 6), (3, 2, 4, 6))])
def test_complex_to_channels_layout(to_type, shape, expected):
    x = crandn(shape)
    out = complex_to_channels(to_type(x))
    assert type(out) is type(to_type(x))
    assert tuple(out.shape) == expected
    assert out.dtype in (np.float32, torch.float32)
    np.testing.assert_array_equal(np.asarray(out)[..., 0, :, :], x.real)
    np.testing.assert_array_equal(np.asarray(out)[..., 1, :, :], x.imag)


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_channels_round_trip(to_type, dtype):
    x = crandn((2, 3, 5, 4), dtype=dtype)
    back = channels_to_complex(complex_to_channels(to_type(x)))
    assert back.dtype in (dtype, torch.complex64 if dtype == np.complex64 else torch.complex128)
    np.testing.assert_array_equal(np.asarray(back), x)


def test_channels_to_complex_promotes_integers():
    out = channels_to_complex(np.array([[[1, 2]], [[3, -4]]], dtype=np.int16))
    assert out.dtype == np.complex64
    np.testing.assert_array_equal(out, [[1 + 3j, 2 - 4j]])


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_magnitude_and_phase_match_numpy(to_type):
    x = crandn((3, 6, 5))
    x[0, 0, 0] = 0
    channels = complex_to_channels(to_type(x))
    mag, ang = magnitude(channels), phase(channels)
    assert tuple(mag.shape) == tuple(ang.shape) == (3, 1, 6, 5)
    np.testing.assert_allclose(np.asarray(mag)[:, 0], np.abs(x), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ang)[:, 0], np.angle(x), atol=1e-6)
    assert np.asarray(ang)[0, 0, 0, 0] == 0.0


def test_conversions_reject_bad_input():
    with pytest.raises(ValueError, match="complex"):
        complex_to_channels(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        complex_to_channels(np.ones(4, np.complex64))
    for call in (channels_to_complex, magnitude, phase):
        with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
            call(np.ones((3, 4, 4), np.float32))
        with pytest.raises(ValueError, match=r"\(2, 4\)"):
            call(torch.ones(2, 4))
        with pytest.raises(ValueError, match="complex64"):
            call(np.ones((2, 4, 4), np.complex64))
    with pytest.raises(ValueError, match="numpy array or a torch tensor"):
        complex_to_channels([[1j]])


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_normalize_magnitude_per_slice(to_type):
    x = crandn((2, 3, 6, 5))
    x[1, 0] *= 1000.0
    x[0, 2] = 0
    out = normalize_magnitude(to_type(x))
    assert type(out) is type(to_type(x))
    out = np.asarray(out)
    assert out.dtype == np.complex64
    peaks = np.abs(out).max(axis=(-2, -1))
    np.testing.assert_allclose(np.delete(peaks.reshape(-1), 2), 1.0, rtol=1e-6)
    assert peaks[0, 2] == 0 and np.isfinite(out).all()
    # Each slice is scaled by its own positive factor: phase untouched, ratios kept.
    np.testing.assert_allclose(np.angle(out[0, 0]), np.angle(x[0, 0]), atol=1e-6)
    np.testing.assert_allclose(out[1, 0], x[1, 0] / np.abs(x[1, 0]).max(), rtol=1e-6)
    np.testing.assert_allclose(out[1, 1], x[1, 1] / np.abs(x[1, 1]).max(), rtol=1e-6)


def test_normalize_magnitude_rejects_real_input():
    with pytest.raises(ValueError, match="complex"):
        normalize_magnitude(np.ones((4, 4)))
