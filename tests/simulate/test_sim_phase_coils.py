"""Dipole field against the analytic sphere; transceive phase; coil maps and noise covariance."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.simulate.coils import loop_array, noise_covariance, sensitivities
from monai_cmri.simulate.phase import PhaseModel, dipole_kernel, field_shift_ppm, sample_grid, shim


def test_dipole_kernel_values():
    kernel = dipole_kernel((8, 8, 8), 1.0)
    assert kernel[0, 0, 0] == 0
    assert kernel[1, 0, 0] == pytest.approx(1 / 3 - 1)  # k along B0
    assert kernel[0, 1, 0] == pytest.approx(1 / 3)  # k across B0


def test_field_of_a_sphere_matches_the_analytic_dipole():
    n, voxel, radius, chi = 64, 1.0, 8.0, 1.0
    axis = (np.arange(n) - n // 2) * voxel
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    sphere = (np.sqrt(x**2 + y**2 + z**2) <= radius).astype(np.float32) * chi
    field = field_shift_ppm(sphere, voxel)
    c = n // 2
    # Inside: uniform and zero with the Lorentz-sphere kernel. Outside: (a/r)^3 dipole,
    # +2/3 along B0 and -1/3 across it.
    assert abs(field[c, c, c]) < 0.03
    for r in (12, 16):
        expected = chi * (radius / r) ** 3
        assert field[c + r, c, c] == pytest.approx(2 / 3 * expected, rel=0.1)
        assert field[c, c + r, c] == pytest.approx(-1 / 3 * expected, rel=0.1)


def test_shim_removes_linear_terms_and_sample_grid_interpolates():
    axis = np.arange(6, dtype=np.float32) * 2.0
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    points = np.stack([x, y, z], -1)
    linear = (0.3 + 0.02 * x - 0.01 * z).astype(np.float32)
    assert np.abs(shim(linear, points, np.ones(linear.shape, bool))).max() < 1e-5
    query = np.array([[1.0, 3.0, 5.0], [9.0, 0.5, 2.0]], np.float32)
    expected = 0.3 + 0.02 * query[:, 0] - 0.01 * query[:, 2]
    np.testing.assert_allclose(sample_grid(linear, np.zeros(3, np.float32), 2.0, query), expected, atol=1e-5)


def test_phase_model_adds_offset_transceive_and_field():
    model = PhaseModel(0.5, np.array([0, 1.0, 0, 0, 0, 0, 0, 0, 0, 0], np.float32), tau_ms=0.5)
    points = np.array([[100.0, 0, 0], [0, 0, 0]], np.float32)
    phase = model.phase(points, np.array([0.0, 1.0], np.float32), 3.0)
    assert phase[0] == pytest.approx(1.5)
    assert phase[1] == pytest.approx(0.5 + 2 * np.pi * 42.577478e6 * 3.0 * 1e-6 * 0.5e-3, rel=1e-5)


def test_loop_sensitivity_is_brighter_near_its_loop_and_rss_is_shaded():
    rng = np.random.default_rng(0)
    array = loop_array(16, rng)
    assert array.coils == 16 and np.allclose(np.linalg.norm(array.normals, axis=1), 1)
    theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = np.stack([70 * np.cos(theta), 85 * np.sin(theta), np.zeros_like(theta)], -1).astype(np.float32)
    maps = sensitivities(array, np.concatenate([ring, np.zeros((1, 3), np.float32)]))
    rss = np.sqrt((np.abs(maps) ** 2).sum(0))
    assert 1.5 < rss[:-1].mean() / rss[-1] < 4.0  # cortex-like ring vs centre, about 2x
    nearest = np.argmin(np.linalg.norm(ring[:, None, :2] - array.centres[None, :, :2], axis=-1), axis=0)
    for c in range(array.coils):
        assert np.abs(maps[c, nearest[c]]) > 3 * np.abs(maps[c, -1])
    assert np.ptp(np.angle(maps[:, :-1] * np.conj(maps[:, -1:])), axis=1).max() > 1.0  # complex, not real maps


def test_noise_covariance_is_positive_definite_and_correlated():
    rng = np.random.default_rng(1)
    for coils in (4, 8, 12, 20):
        psi = noise_covariance(loop_array(coils, rng), rng)
        assert psi.shape == (coils, coils) and np.allclose(psi, psi.T)
        assert np.linalg.eigvalsh(psi).min() > 0
        assert np.diag(psi).mean() == pytest.approx(1.0)
        if coils >= 8:  # neighbouring loops (< 100 mm apart) couple noticeably
            assert psi[~np.eye(coils, dtype=bool)].max() > 0.1
