from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri

from monai_cmri.data.coils import combine_coils, direct_sensitivities
from monai_cmri.transforms import fft2c


def _object(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A smooth elliptical object with a smooth phase, and its support."""
    rows, cols = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    support = (rows / 0.8) ** 2 + (cols / 0.7) ** 2 < 1
    magnitude = support * (1.0 + 0.3 * np.cos(3 * rows))
    return (magnitude * np.exp(1j * (0.8 * rows + 0.5 * cols))).astype(np.complex64), support


def test_combine_coils_inverts_known_maps():
    x, support = _object((40, 36))
    maps = sigpy.mri.birdcage_maps((6, 40, 36)).astype(np.complex64)
    maps[:, ~support] = 0
    combined = combine_coils(maps * x, maps)
    np.testing.assert_allclose(combined, np.where(support, x, 0), atol=1e-5)


def test_combine_coils_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        combine_coils(np.zeros((4, 8, 8), np.complex64), np.zeros((3, 8, 8), np.complex64))


def test_direct_sensitivities_recover_phase_referenced_to_coil_0():
    x, support = _object((64, 64))
    maps = sigpy.mri.birdcage_maps((8, 64, 64)).astype(np.complex64)
    estimated = direct_sensitivities(fft2c(maps * x))
    assert estimated.shape == maps.shape and estimated.dtype == np.complex64
    # Coil 0 is real and non-negative by construction of the phase reference.
    assert np.all(np.abs(np.angle(estimated[0][support])) < 1e-4)
    combined = combine_coils(maps * x, estimated)
    # The combination keeps the object's phase up to the (smooth) phase of coil 0.
    expected = x * np.exp(1j * np.angle(maps[0]))
    inner = support & (np.abs(x) > 0)
    coherence = np.abs(np.sum(combined[inner] * np.conj(expected[inner]))) / np.sum(
        np.abs(combined[inner]) * np.abs(expected[inner])
    )
    assert coherence > 0.99
    correlation = np.corrcoef(np.abs(combined[inner]), np.abs(x[inner]))[0, 1]
    assert correlation > 0.9
