"""Tests of the array transforms and their dictionary twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, MapTransform, Transform
from monai.utils import TransformBackends
from numpy_reference import crandn, np_fft2c, np_ifft2c

import monai_cmri.transforms as T
from monai_cmri.transforms import dictionary as D


def np_reconstruction_rss(kspace: np.ndarray, size: int = 320) -> np.ndarray:
    """fastMRI's reconstruction_rss of one slice: per-coil image, centre crop/pad to size, RSS."""
    image = np_ifft2c(kspace.astype(np.complex128))
    rows, cols = image.shape[-2:]
    top = (rows - size) // 2
    image = image[:, top : top + size]
    if cols < size:
        left = (size - cols) // 2
        image = np.pad(image, ((0, 0), (0, 0), (left, size - cols - left)))
    else:
        start = (cols - size) // 2
        image = image[:, :, start : start + size]
    return np.sqrt((np.abs(image) ** 2).sum(axis=0))


CHANNELS = np.stack([crandn((3, 5, 4)).real, crandn((3, 5, 4)).imag], axis=1)  # (3, 2, 5, 4)

# (array transform, its arguments, input, NumPy reference output)
CASES = [
    (T.IFFT2C, {}, crandn((2, 5, 6)), lambda x: np_ifft2c(x)),
    (T.FFT2C, {}, crandn((2, 5, 6)), lambda x: np_fft2c(x)),
    (T.CropOversampling, {"size": (4, 8)}, crandn((2, 8, 5)), lambda x: np.pad(x[:, 2:6], ((0, 0), (0, 0), (1, 2)))),
    (T.ResizeKSpace, {"size": 3}, crandn((2, 5, 6)), lambda x: x[:, 1:4, 2:5]),
    (T.RootSumOfSquares, {"dim": 0}, crandn((3, 5, 6)), lambda x: np.sqrt((np.abs(x) ** 2).sum(0))),
    (T.NormalizeMagnitude, {}, crandn((2, 5, 6)), lambda x: x / np.abs(x).max(axis=(-2, -1), keepdims=True)),
    (T.ComplexToChannels, {}, crandn((3, 5, 6)), lambda x: np.stack([x.real, x.imag], axis=1)),
    (T.ChannelsToComplex, {}, CHANNELS, lambda x: x[:, 0] + 1j * x[:, 1]),
    (T.Magnitude, {}, CHANNELS, lambda x: np.hypot(x[:, :1], x[:, 1:])),
    (T.Phase, {}, CHANNELS, lambda x: np.arctan2(x[:, 1:], x[:, :1])),
]


@pytest.mark.parametrize(("cls", "kwargs", "data", "reference"), CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("to_type", [np.asarray, torch.as_tensor])
def test_array_transform_matches_numpy(cls, kwargs, data, reference, to_type):
    transform = cls(**kwargs)
    assert isinstance(transform, Transform)
    assert set(transform.backend) == {TransformBackends.TORCH, TransformBackends.NUMPY}
    out = transform(to_type(data))
    assert type(out) is type(to_type(data))
    np.testing.assert_allclose(np.asarray(out), reference(data), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cls", "kwargs", "data", "reference"), CASES, ids=[c[0].__name__ for c in CASES])
def test_dictionary_twin(cls, kwargs, data, reference):
    twin = getattr(D, f"{cls.__name__}d")
    assert getattr(D, f"{cls.__name__}D") is twin and getattr(D, f"{cls.__name__}Dict") is twin
    assert getattr(T, f"{cls.__name__}d") is twin
    assert isinstance(twin(keys="a"), MapTransform)
    assert twin.backend == cls.backend
    other = np.arange(3)
    out = twin(keys=["a", "b"], **kwargs)({"a": data, "b": torch.as_tensor(data), "other": other})
    np.testing.assert_allclose(out["a"], reference(data), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["b"].numpy(), reference(data), rtol=1e-5, atol=1e-6)
    assert out["other"] is other
    with pytest.raises(KeyError):
        twin(keys=["a", "missing"], **kwargs)({"a": data})
    kept = twin(keys=["a", "missing"], allow_missing_keys=True, **kwargs)({"a": data})
    assert set(kept) == {"a"}


@pytest.mark.parametrize("width", [320, 264])
def test_ifft_crop_rss_chain_equals_fastmri_reconstruction(width):
    kspace = crandn((3, 640, width), seed=width)
    chain = Compose([T.IFFT2C(), T.CropOversampling(320), T.RootSumOfSquares(dim=0)])
    out = chain(kspace)
    assert out.shape == (320, 320)
    expected = np_reconstruction_rss(kspace)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6 * expected.max())
    functional = T.rss(T.crop_oversampling(T.ifft2c(torch.as_tensor(kspace))), dim=0)
    torch.testing.assert_close(functional, torch.as_tensor(out))


def test_dictionary_pipeline_to_model_input():
    image = crandn((6, 4)) * 7.0
    pipeline = Compose(
        [T.FFT2Cd("x"), T.IFFT2Cd("x"), T.NormalizeMagnituded("x"), T.ComplexToChannelsd("x"), T.Magnituded("x")]
    )
    out = pipeline({"x": torch.as_tensor(image)})["x"]
    assert out.shape == (1, 6, 4)
    torch.testing.assert_close(out[0], torch.as_tensor(np.abs(image) / np.abs(image).max()))


def test_package_exports_everything_public():
    for name in T.__all__:
        assert hasattr(T, name), name
    from monai_cmri.transforms import array, complex, fft

    public = {name for module in (array, complex, D, fft) for name in module.__all__}
    assert public <= set(T.__all__)
