"""Tests of the centred FFTs, the oversampling crop, k-space resizing and RSS against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.apps.reconstruction.mri_utils import root_sum_of_squares
from monai.data import MetaTensor
from numpy_reference import crandn, np_fft2c, np_ifft2c

from monai_cmri.transforms.fft import crop_oversampling, fft2c, ifft2c, resize_kspace, rss

SHAPES = [(5, 7), (4, 6), (3, 8, 5), (2, 3, 9, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_ifft2c_fft2c_match_numpy(shape, to_type):
    x = crandn(shape, dtype=np.complex128)
    for ours, ref in ((ifft2c, np_ifft2c), (fft2c, np_fft2c)):
        out = ours(to_type(x))
        assert type(out) is type(to_type(x))
        assert out.shape == x.shape
        np.testing.assert_allclose(np.asarray(out), ref(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_and_parseval_complex64(shape):
    k = crandn(shape)
    image = ifft2c(k)
    assert image.dtype == np.complex64
    np.testing.assert_allclose(fft2c(image), k, atol=1e-5)
    np.testing.assert_allclose(ifft2c(fft2c(k)), k, atol=1e-5)
    norms_k = np.linalg.norm(k.reshape(*shape[:-2], -1), axis=-1)
    norms_x = np.linalg.norm(image.reshape(*shape[:-2], -1), axis=-1)
    np.testing.assert_allclose(norms_x, norms_k, rtol=1e-5)


@pytest.mark.parametrize("shape", [(5, 7), (4, 6)])
def test_zero_frequency_at_centre(shape):
    image = np.full(shape, 2.0 + 1.0j, dtype=np.complex64)
    k = fft2c(image)
    expected = np.zeros(shape, np.complex64)
    expected[shape[0] // 2, shape[1] // 2] = (2.0 + 1.0j) * np.sqrt(shape[0] * shape[1])
    np.testing.assert_allclose(k, expected, atol=1e-5)


def test_real_input_is_promoted():
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    out = ifft2c(x)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, np_ifft2c(x), atol=1e-6)
    assert ifft2c(torch.zeros(3, 3, dtype=torch.float64)).dtype == torch.complex128


def test_fft_keeps_metatensor_metadata():
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    k = MetaTensor(torch.as_tensor(crandn((2, 6, 4))), affine=affine, meta={"filename_or_obj": "x.h5"})
    out = ifft2c(k)
    assert isinstance(out, MetaTensor)
    assert out.meta["filename_or_obj"] == "x.h5"
    torch.testing.assert_close(out.affine, affine)


@pytest.mark.parametrize("call", [ifft2c, fft2c])
def test_fft_rejects_bad_shapes(call):
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        call(np.ones(8, np.complex64))
    with pytest.raises(ValueError, match=r"H, W > 0"):
        call(torch.ones(3, 0, 4, dtype=torch.complex64))


# ----------------------------------------------------------------------------- crop_oversampling


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_crop_oversampling_fastmri_rows(to_type):
    image = crandn((2, 640, 320))
    out = crop_oversampling(to_type(image))
    assert type(out) is type(to_type(image))
    assert tuple(out.shape) == (2, 320, 320)
    np.testing.assert_array_equal(np.asarray(out), image[:, 160:480, :])


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
@pytest.mark.parametrize(("width", "left"), [(7, 1), (6, 2), (10, 0)])
def test_crop_oversampling_pads_narrow_width(to_type, width, left):
    image = crandn((3, 21, width))
    out = np.asarray(crop_oversampling(to_type(image), size=10))
    assert out.shape == (3, 10, 10)
    # rows: (21 - 10) // 2 = 5 -> rows 5:15; columns: left pad (10 - W) // 2
    np.testing.assert_array_equal(out[:, :, left : left + width], image[:, 5:15, :])
    assert not out[:, :, :left].any() and not out[:, :, left + width :].any()


@pytest.mark.parametrize(("width", "start"), [(13, 1), (14, 2), (11, 0)])
def test_crop_oversampling_crops_wide_width(width, start):
    image = crandn((20, width))
    out = crop_oversampling(image, size=(10, 10))
    np.testing.assert_array_equal(out, image[5:15, start : start + 10])


def test_crop_oversampling_one_pixel_short_is_padded_right():
    image = crandn((12, 9))
    out = crop_oversampling(image, size=(10, 10))
    np.testing.assert_array_equal(out[:, :9], image[1:11])
    assert not out[:, 9].any()


def test_crop_oversampling_rejects_bad_input():
    with pytest.raises(ValueError, match="size"):
        crop_oversampling(np.ones((4, 4)), size=0)
    with pytest.raises(ValueError, match="size"):
        crop_oversampling(np.ones((4, 4)), size=(2, 2, 2))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        crop_oversampling(np.ones(4))


# ----------------------------------------------------------------------------- resize_kspace


@pytest.mark.parametrize(("shape", "size"), [((6, 5), (12, 10)), ((7, 4), (9, 11)), ((5, 5), (8, 6)), ((4, 7), (4, 7))])
@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_resize_kspace_zero_fill_then_crop_is_identity(shape, size, to_type):
    k = crandn((2, *shape))
    big = resize_kspace(to_type(k), size)
    assert tuple(big.shape) == (2, *size)
    # The centre sample n // 2 lands at m // 2 and nothing else is lost.
    np.testing.assert_array_equal(np.asarray(big)[:, size[0] // 2, size[1] // 2], k[:, shape[0] // 2, shape[1] // 2])
    assert np.isclose(np.linalg.norm(np.asarray(big)), np.linalg.norm(k))
    back = resize_kspace(big, shape)
    np.testing.assert_array_equal(np.asarray(back), k)


@pytest.mark.parametrize("shape", [(6, 4), (5, 7)])
def test_zero_filled_kspace_interpolates_the_image(shape):
    k = crandn(shape)
    size = (2 * shape[0], 2 * shape[1])
    small, big = ifft2c(k), ifft2c(resize_kspace(k, size))
    # Same low frequencies: the big image carries exactly the original k-space.
    np.testing.assert_allclose(resize_kspace(fft2c(big), shape), k, atol=1e-5)
    # Sinc interpolation: every other pixel (centre to centre) is the original image,
    # scaled by sqrt(n / m) per axis by the orthonormal FFT.
    rows = size[0] // 2 + 2 * (np.arange(shape[0]) - shape[0] // 2)
    cols = size[1] // 2 + 2 * (np.arange(shape[1]) - shape[1] // 2)
    np.testing.assert_allclose(big[np.ix_(rows, cols)] * 2.0, small, atol=1e-5)


def test_resize_kspace_crop_keeps_central_frequencies():
    k = crandn((3, 9, 8))
    out = resize_kspace(k, 4)
    # centre 9 // 2 = 4 -> 2 and 8 // 2 = 4 -> 2: rows 2:6, columns 2:6
    np.testing.assert_array_equal(out, k[:, 2:6, 2:6])


# ----------------------------------------------------------------------------- rss


@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_rss_matches_numpy(to_type):
    coils = crandn((2, 4, 5, 6))
    expected = np.sqrt((np.abs(coils) ** 2).sum(axis=1))
    out = rss(to_type(coils), dim=1)
    assert type(out) is type(to_type(coils))
    assert out.dtype in (np.float32, torch.float32)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
    kept = rss(to_type(coils), dim=1, keepdim=True)
    assert tuple(kept.shape) == (2, 1, 5, 6)


def test_rss_of_magnitudes_agrees_with_monai():
    magnitudes = np.abs(crandn((4, 5, 6)))
    np.testing.assert_allclose(
        rss(torch.as_tensor(magnitudes)), root_sum_of_squares(torch.as_tensor(magnitudes), 0), rtol=1e-6
    )
    np.testing.assert_allclose(rss(crandn((4, 5, 6), seed=3)), rss(np.abs(crandn((4, 5, 6), seed=3))), rtol=1e-6)


def test_rss_rejects_bad_dim():
    with pytest.raises(ValueError, match="dim 3"):
        rss(np.ones((2, 4, 4)), dim=3)


def test_fft_is_differentiable():
    x = torch.randn(2, 5, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(fft2c(torch.view_as_complex(t))), (x,))
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(ifft2c(torch.view_as_complex(t))), (x,))


def test_crop_and_pad_keep_metatensor_metadata():
    image = MetaTensor(torch.as_tensor(crandn((2, 12, 7))), meta={"filename_or_obj": "x.h5"})
    for size in (10, (6, 6)):
        out = crop_oversampling(image, size)
        assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "x.h5"
