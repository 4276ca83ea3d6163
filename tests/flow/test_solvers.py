"""Tests of the ODE solvers against analytic flows: exactness, convergence order and NFE (paper 2.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_cmri.flow.solvers import euler, heun, midpoint, time_grid

SOLVERS = {"euler": (euler, 1, 1), "midpoint": (midpoint, 2, 2), "heun": (heun, 2, 2)}  # (solver, order, NFE per step)


def test_time_grid_is_uniform_from_zero_to_one():
    grid = time_grid(4)
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    with pytest.raises(ValueError, match="positive integer"):
        time_grid(0)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_constant_velocity_is_integrated_exactly_with_exact_nfe(name):
    solver, _, per_step = SOLVERS[name]
    x_0 = torch.randn(2, 2, 3, 5, generator=torch.Generator().manual_seed(0))
    a = torch.randn(1, 2, 3, 5, generator=torch.Generator().manual_seed(1))
    x_1, nfe = solver(lambda x, t: a.expand_as(x), x_0, time_grid(7))
    torch.testing.assert_close(x_1, x_0 + a)
    assert nfe == 7 * per_step


@pytest.mark.parametrize("name", ["midpoint", "heun"])
@pytest.mark.parametrize(
    "times", [time_grid(3, torch.float64), torch.tensor([0.0, 0.1, 0.45, 0.5, 1.0], dtype=torch.float64)]
)
def test_second_order_solvers_are_exact_for_velocity_affine_in_time(name, times):
    a, b = 0.7, -1.9  # v = a + b t  =>  x(1) = x(0) + a + b / 2
    x_0 = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x_1, _ = SOLVERS[name][0](lambda x, t: torch.full_like(x, a) + b * t[:, None, None, None], x_0, times)
    torch.testing.assert_close(x_1, x_0 + a + b / 2, rtol=0, atol=1e-12)


def test_euler_error_for_velocity_affine_in_time_is_the_left_riemann_sum_defect():
    # sum_k h (a + b t_k) = a + b (1 - h) / 2, so Euler falls short by exactly b h / 2.
    a, b, n = 0.3, 2.0, 5
    x_0 = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    x_1, _ = euler(lambda x, t: torch.full_like(x, a) + b * t[:, None, None, None], x_0, time_grid(n, torch.float64))
    torch.testing.assert_close(x_1, torch.full_like(x_0, a + b / 2 - b / (2 * n)), rtol=0, atol=1e-12)


def _curved_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # dx/dt = -2 t x  =>  x(1) = x(0) exp(-1)
    return -2 * t[:, None, None, None] * x


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_convergence_order_on_a_curved_analytic_flow(name):
    solver, order, per_step = SOLVERS[name]
    x_0 = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = x_0 * math.exp(-1.0)
    steps = [16, 32, 64, 128, 256]
    errors = []
    for n in steps:
        x_1, nfe = solver(_curved_velocity, x_0, time_grid(n, torch.float64))
        assert nfe == per_step * n
        errors.append((x_1 - exact).abs().max().item())
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope + order) < 0.05, (name, slope, errors)


def test_float32_grid_passes_float32_times_of_batch_shape():
    seen = []

    def velocity(x, t):
        seen.append((t.shape, t.dtype))
        return torch.zeros_like(x)

    heun(velocity, torch.zeros(3, 2, 4, 4), time_grid(2))
    assert seen == [((3,), torch.float32)] * 4


@pytest.mark.parametrize(
    "times, match",
    [
        (torch.tensor([0.0]), "at least 2"),
        (torch.tensor([0.0, 0.5, 0.5, 1.0]), "increasing"),
        (torch.tensor([0.0, 0.5, 1.2]), r"\[0, 1\]"),
        (torch.tensor([0, 1]), "floating"),
    ],
)
def test_bad_grids_are_rejected(times, match):
    with pytest.raises(ValueError, match=match):
        heun(lambda x, t: x, torch.zeros(1, 2, 2, 2), times)
