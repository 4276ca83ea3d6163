"""Tests of the PyTorch ESPIRiT (SPEC 1.3, 6) against known maps, sigpy's EspiritCalib and NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy
import sigpy.mri
import torch
from numpy_reference import np_fft2c, np_ifft2c
from sigpy.mri.app import EspiritCalib

from monai_cmri.data import espirit as espirit_module
from monai_cmri.data.espirit import espirit, espirit_combine, espirit_maps


def _phantom(
    coils: int, shape: tuple[int, int], extent: tuple[float, float] = (0.6, 0.6), noise: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Birdcage-coil k-space of a Shepp-Logan object with a smooth phase.

    Returns:
        ``(kspace (C, H, W), maps (C, H, W), object (H, W))``, complex64; the object fills the
        central ``extent`` fraction of each axis, as a head does in an oversampled field of view.
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    h, w = int(height * extent[0]) // 2 * 2, int(width * extent[1]) // 2 * 2
    x = np.zeros(shape, np.complex64)
    top, left = height // 2 - h // 2, width // 2 - w // 2
    x[top : top + h, left : left + w] = sigpy.shepp_logan((h, w))
    rows, cols = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    x = x * np.exp(1j * (0.8 * cols + 0.5 * rows**2 + 0.3 + seed))
    maps = sigpy.mri.birdcage_maps((coils, height, width)).astype(np.complex64)
    k = np_fft2c(maps * x)
    sigma = noise * np.median(np.abs(k))
    k = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) / np.sqrt(2)
    return k.astype(np.complex64), maps, x.astype(np.complex64)


def _coherence(a: np.ndarray, b: np.ndarray) -> float:
    """Phase coherence ``|sum a conj(b)| / sum |a| |b|`` (SPEC 3): 1 for equal phase up to a constant."""
    return float(np.abs(np.sum(a * np.conj(b))) / np.sum(np.abs(a) * np.abs(b)))


def _nrmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_recovers_known_sensitivities():
    k, maps, x = _phantom(8, (64, 64), noise=0.002)
    estimated, eig = espirit(torch.from_numpy(k))
    assert isinstance(estimated, torch.Tensor) and estimated.dtype == torch.complex64 and estimated.shape == k.shape
    assert eig.dtype == torch.float32 and eig.shape == k.shape[1:]
    estimated = estimated.numpy()
    inside = (np.abs(x) > 0.1 * np.abs(x).max()) & (eig.numpy() > 0.95)
    assert inside.sum() > 0.9 * (np.abs(x) > 0.1 * np.abs(x).max()).sum()
    # Equal up to a per-pixel common phase: normalised inner product over coils.
    inner = np.abs(np.sum(estimated * np.conj(maps), axis=0))
    norms = np.linalg.norm(estimated, axis=0) * np.linalg.norm(maps, axis=0)
    assert np.min(inner[inside] / norms[inside]) > 0.99
    # Unit norm where kept, coil 0 real and non-negative, zero where cropped.
    np.testing.assert_allclose(np.linalg.norm(estimated, axis=0)[inside], 1.0, atol=1e-5)
    assert np.all(np.abs(estimated[0].imag) < 1e-6) and np.all(estimated[0].real >= 0)
    assert np.all(estimated[:, eig.numpy() <= 0.95] == 0)
    # The combination gives the object with the phase of coil 0 and the norm of the true maps.
    combined = espirit_combine(k)
    expected = x * np.linalg.norm(maps, axis=0) * np.exp(1j * np.angle(maps[0]))
    assert _coherence(combined[inside], expected[inside]) > 0.999
    assert _nrmse(combined[inside], expected[inside]) < 0.02


def test_covariance_matches_sigpy_sum_of_outer_products():
    """The band-limited G (SPEC 6a) equals sigpy's explicit sum over kernels, odd sizes included."""
    k, _, _ = _phantom(4, (33, 30), extent=(0.5, 0.7))
    calib, kernel, thresh = 12, 5, 0.02
    # sigpy's EspiritCalib.__init__, step by step.
    region = sigpy.resize(k, (4, calib, calib))
    mat = sigpy.array_to_blocks(region, [kernel] * 2, [1] * 2).reshape(4, -1, kernel**2)
    mat = mat.transpose(1, 0, 2).reshape(-1, 4 * kernel**2)
    _, s, vh = np.linalg.svd(mat, full_matrices=False)
    vh = vh[s > thresh * s.max()]
    expected = np.zeros((33, 30, 4, 4), np.complex128)
    for kern in vh.reshape(-1, 4, kernel, kernel):
        image = sigpy.ifft(sigpy.resize(kern, k.shape), axes=(-2, -1))
        expected += np.einsum("ihw,jhw->hwij", image, np.conj(image))
    expected *= 33 * 30 / kernel**2
    coef = espirit_module._spectrum(espirit_module._kernels(torch.from_numpy(k)[None], calib, kernel, thresh), kernel)
    e_h = espirit_module._dft(33, kernel - 1, coef.device)
    e_w = espirit_module._dft(30, kernel - 1, coef.device)
    g = torch.einsum("hd,bdeij,we->bhwij", e_h, coef, e_w)[0].numpy()
    np.testing.assert_allclose(g, expected, atol=2e-6 * np.abs(expected).max())


def test_chebyshev_matches_eigh_and_never_overestimates():
    rng = np.random.default_rng(3)
    n, coils = 500, 6
    q, _ = np.linalg.qr(rng.standard_normal((n, coils, coils)) + 1j * rng.standard_normal((n, coils, coils)))
    values = np.sort(rng.uniform(0.0, 0.85, (n, coils)), axis=1)
    values[:, -1] = rng.uniform(0.9, 1.1, n)  # gap ratio up to 0.85 / 0.9
    g = torch.from_numpy((q * values[:, None, :]) @ np.conj(q).transpose(0, 2, 1)).to(torch.complex64)
    diag = torch.diagonal(g, dim1=-2, dim2=-1).real.contiguous()
    spare = torch.empty(n * coils * coils // 2 + coils * coils, dtype=torch.complex64)
    vectors, lam = espirit_module._chebyshev(g.clone(), diag, spare, 32, 0.9, 1e-6)
    true_vals, true_vecs = torch.linalg.eigh(g.to(torch.complex128))
    lead = true_vecs[..., -1]
    overlap = torch.abs(torch.sum(vectors.conj() * lead, dim=-1))
    assert torch.all(overlap > 1 - 1e-5)
    assert torch.all(lam <= true_vals[:, -1] * (1 + 1e-6))
    torch.testing.assert_close(lam.double(), true_vals[:, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "coils, shape, params",
    [
        (8, (64, 48), {}),
        (6, (45, 39), {"calib": 20, "kernel": 5, "thresh": 0.05, "crop": 0.9}),
    ],
)
def test_maps_match_sigpy(coils, shape, params):
    k, _, _ = _phantom(coils, shape, extent=(0.55, 0.8), noise=0.02, seed=1)
    sigpy_args = {"calib": "calib_width", "kernel": "kernel_width", "thresh": "thresh", "crop": "crop"}
    app = EspiritCalib(k, show_pbar=False, output_eigenvalue=True, **{sigpy_args[n]: v for n, v in params.items()})
    reference, reference_eig = app.run()
    maps, eig = espirit(k, **params)
    assert isinstance(maps, np.ndarray) and maps.dtype == np.complex64 and eig.dtype == np.float32
    np.testing.assert_array_equal(maps != 0, reference != 0)
    np.testing.assert_allclose(maps, reference, atol=2e-5)
    np.testing.assert_allclose(eig, reference_eig.reshape(shape), atol=2e-5)


def test_combine_matches_sigpy_backend():
    k, _, x = _phantom(8, (64, 56), extent=(0.55, 0.85), noise=0.05, seed=2)
    ours = espirit_combine(torch.from_numpy(k), backend="torch").numpy()
    reference = espirit_combine(k, backend="sigpy")
    inside = np.abs(x) > 0.1 * np.abs(x).max()
    assert _coherence(ours[inside], reference[inside]) >= 0.999
    assert _nrmse(np.abs(ours[inside]), np.abs(reference[inside])) <= 0.01
    # The combination itself, against NumPy: sum conj(S) img / sum |S|^2.
    maps = espirit_maps(k)
    numerator = np.sum(np.conj(maps) * np_ifft2c(k), axis=0)
    denominator = np.sum(np.abs(maps) ** 2, axis=0)
    expected = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0)
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max())


def test_batched_equals_per_slice():
    slices = np.stack([_phantom(6, (48, 40), extent=(0.6, 0.8), noise=0.02, seed=s)[0] for s in range(4)])
    batch = torch.from_numpy(slices.reshape(2, 2, 6, 48, 40))
    # A small block evaluates G a few rows at a time: the result must not depend on it.
    maps, eig = espirit(batch, block=3 * 40 * 36)
    for i in range(2):
        for j in range(2):
            single_maps, single_eig = espirit(batch[i, j])
            torch.testing.assert_close(maps[i, j], single_maps, atol=1e-5, rtol=0)
            torch.testing.assert_close(eig[i, j], single_eig, atol=1e-5, rtol=0)
    image = espirit_combine(batch)
    assert image.shape == (2, 2, 48, 40)
    torch.testing.assert_close(image[1, 0], espirit_combine(batch[1, 0]), atol=1e-5, rtol=0)


def test_remove_oversampling_gives_the_central_rows():
    # A 2x oversampled readout: the object fills about half of the rows.
    k, _, x = _phantom(8, (96, 48), extent=(0.45, 0.8), noise=0.01, seed=4)
    full = espirit_combine(k)[24:72]
    half = espirit_combine(k, remove_oversampling=True)
    assert half.shape == (48, 48) and half.dtype == np.complex64
    inside = np.abs(x[24:72]) > 0.1 * np.abs(x).max()
    assert _coherence(half[inside], full[inside]) > 0.999
    assert _nrmse(half[inside], full[inside]) < 0.02


def test_zero_kspace_gives_zero_maps():
    maps, eig = espirit(torch.zeros(4, 32, 32, dtype=torch.complex64))
    assert torch.all(maps == 0) and torch.all(eig == 0)


@pytest.mark.parametrize(
    "kspace, kwargs, message",
    [
        (np.zeros((32, 32), np.complex64), {}, "shape"),
        (np.zeros((4, 32, 32), np.float32), {}, "complex"),
        (np.zeros((4, 20, 32), np.complex64), {}, "calibration"),
        (np.zeros((4, 32, 32), np.complex64), {"kernel": 30, "calib": 24}, "kernel"),
        (np.zeros((4, 32, 32), np.complex64), {"thresh": 1.5}, "thresh"),
        (np.zeros((4, 32, 32), np.complex64), {"iters": 0}, "iters"),
        ([[1j]], {}, "numpy array or a torch tensor"),
    ],
)
def test_bad_input_raises(kspace, kwargs, message):
    with pytest.raises(ValueError, match=message):
        espirit_maps(kspace, **kwargs)


def test_nan_raises():
    k = np.zeros((4, 32, 32), np.complex64)
    k[1, 3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        espirit_maps(k)
    with pytest.raises(ValueError, match="NaN"):
        espirit_combine(torch.from_numpy(k))


def test_remove_oversampling_too_small_raises():
    with pytest.raises(ValueError, match="oversampling"):
        espirit_combine(np.zeros((4, 40, 32), np.complex64), remove_oversampling=True)


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="backend"):
        espirit_combine(np.zeros((4, 32, 32), np.complex64), backend="bart")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    k = torch.from_numpy(_phantom(8, (64, 48), extent=(0.55, 0.8), noise=0.02)[0])
    maps = espirit_maps(k.cuda())
    assert maps.is_cuda
    torch.testing.assert_close(maps.cpu(), espirit_maps(k), atol=1e-4, rtol=0)
