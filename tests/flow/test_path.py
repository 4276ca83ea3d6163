"""Tests of the linear flow-matching path against its defining formulas (paper 2.3)."""

from __future__ import annotations

import pytest
import torch

from monai_cmri.flow.path import broadcast_time, interpolate, target_velocity


def test_interpolate_matches_the_formula_per_sample():
    g = torch.Generator().manual_seed(0)
    x_0, x_1 = torch.randn(3, 2, 5, 7, generator=g), torch.randn(3, 2, 5, 7, generator=g)
    t = torch.tensor([0.0, 0.3, 1.0])
    x_t = interpolate(x_0, x_1, t)
    for b in range(3):
        expected = (1 - t[b]) * x_0[b] + t[b] * x_1[b]
        torch.testing.assert_close(x_t[b], expected)
    torch.testing.assert_close(x_t[0], x_0[0])  # t = 0 is noise
    torch.testing.assert_close(x_t[2], x_1[2])  # t = 1 is data


def test_target_is_the_time_derivative_of_the_path():
    g = torch.Generator().manual_seed(1)
    x_0 = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    x_1 = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    t, h = torch.tensor([0.2, 0.7], dtype=torch.float64), 1e-6
    finite_difference = (interpolate(x_0, x_1, t + h) - interpolate(x_0, x_1, t - h)) / (2 * h)
    torch.testing.assert_close(finite_difference, target_velocity(x_0, x_1))
    torch.testing.assert_close(target_velocity(x_0, x_1), x_1 - x_0)


def test_broadcast_time_shape_and_dtype():
    x = torch.zeros(4, 2, 3, 3, dtype=torch.float64)
    t_b = broadcast_time(torch.rand(4), x)
    assert t_b.shape == (4, 1, 1, 1) and t_b.dtype == torch.float64


@pytest.mark.parametrize(
    "t, match",
    [
        (torch.tensor([0.5, 0.5]), "to match"),
        (torch.tensor([[0.5, 0.5, 0.5]]), "1-D"),
        (torch.tensor([1, 0, 0]), "floating"),
        (torch.tensor([-0.1, 0.5, 0.5]), r"\[0, 1\]"),
        (torch.tensor([0.1, 0.5, 1.5]), r"\[0, 1\]"),
    ],
)
def test_bad_times_are_rejected(t, match):
    x = torch.zeros(3, 2, 4, 4)
    with pytest.raises(ValueError, match=match):
        interpolate(x, x, t)


def test_mismatched_noise_and_data_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        target_velocity(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, C"):
        target_velocity(torch.zeros(4), torch.zeros(4))
