"""Encoding and RSS against the NumPy fastMRI formulas on odd shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cmri.simulate.kspace import encode, encoding_limits, fft_lines, rss


def _fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("readout,width,lines", [(64, 32, 32), (64, 26, 20), (128, 62, 50), (40, 18, 18)])
def test_encode_matches_numpy_fastmri_transform(readout, width, lines):
    rng = np.random.default_rng(1)
    rows, coils = readout // 2, 3
    image, maps = _complex(rng, (rows, width)), _complex(rng, (coils, rows, width))
    k = encode(image, maps, readout, lines, 0.0, np.eye(coils), torch.Generator().manual_seed(0))
    padded = np.zeros((coils, readout, width), np.complex128)
    padded[:, readout // 4 : readout // 4 + rows] = maps * image
    expected = _fft2c(padded)
    acquired = fft_lines(width, lines)
    outside = np.ones(width, bool)
    outside[acquired] = False
    assert k.dtype == np.complex64 and k.shape == (coils, readout, width)
    np.testing.assert_allclose(k[:, :, acquired], expected[:, :, acquired], atol=1e-5 * np.abs(expected).max())
    assert np.all(k[:, :, outside] == 0)


def test_encoding_limits_follow_fastmri_padding_rule():
    # fastMRI: acquired lines start at W // 2 - center and span maximum + 1 lines.
    minimum, maximum, center = encoding_limits(264, 198)
    assert (minimum, maximum, center) == (0, 197, 99)
    assert fft_lines(264, 198) == slice(264 // 2 - 99, 264 // 2 - 99 + 198)
    with pytest.raises(ValueError):
        encoding_limits(64, 63)


@pytest.mark.parametrize("readout,width", [(64, 32), (64, 22), (96, 40)])
def test_rss_matches_numpy(readout, width):
    rng = np.random.default_rng(2)
    k = _complex(rng, (2, 3, readout, width))
    size = readout // 2
    images = _ifft2c(k.astype(np.complex128))[..., readout // 4 : readout // 4 + size, :]
    expected = np.zeros((2, size, size))
    left = (size - width) // 2
    expected[..., left : left + width] = np.sqrt((np.abs(images) ** 2).sum(-3))
    got = rss(k)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_noise_has_the_requested_covariance():
    rng = np.random.default_rng(3)
    coils, readout, width = 4, 64, 32
    a = rng.standard_normal((coils, coils))
    covariance = a @ a.T + coils * np.eye(coils)
    covariance /= np.diag(covariance).mean()
    zero = np.zeros((readout // 2, width), np.complex64)
    maps = np.zeros((coils, readout // 2, width), np.complex64)
    generator = torch.Generator().manual_seed(0)
    noise = np.concatenate(
        [encode(zero, maps, readout, width, 2.0, covariance, generator).reshape(coils, -1) for _ in range(20)], axis=1
    )
    empirical = noise @ noise.conj().T / noise.shape[1]
    np.testing.assert_allclose(empirical.real, 4.0 * covariance, atol=0.05 * 4.0)
    assert np.abs(empirical.imag).max() < 0.05 * 4.0
    # Circular: real and imaginary parts are uncorrelated with equal variance.
    assert abs(np.mean(noise.real**2) - np.mean(noise.imag**2)) < 0.05 * 2.0


def test_encode_rejects_bad_shapes():
    maps = np.zeros((2, 16, 16), np.complex64)
    with pytest.raises(ValueError, match="readout"):
        encode(np.zeros((16, 16), np.complex64), maps, 30, 16, 0.0, np.eye(2), torch.Generator())
    with pytest.raises(ValueError):
        encode(np.zeros((16, 8), np.complex64), maps, 32, 16, 0.0, np.eye(2), torch.Generator())
