"""Fixed-grid ODE solvers that carry noise at ``t = 0`` to data at ``t = 1`` (paper 2.3, SPEC 2).

Sampling integrates ``dx/dt = v(x, t)`` on an explicit, increasing time grid
``0 <= t_0 < t_1 < ... < t_n <= 1`` (:func:`time_grid` gives the uniform one). The paper uses
Heun; Euler and midpoint are options. ``v(x, t)`` takes ``x`` of shape ``(B, C, H, W)`` and ``t``
of shape ``(B,)`` in the grid's dtype (float32 from :func:`time_grid`).

Each solver returns the final state and its NFE, the number of calls to ``v`` (one call is one
batched evaluation of the velocity for every sample). For ``n`` intervals:

* Euler: ``n`` (first order, global error ``O(1/n)``);
* midpoint: ``2n`` (second order, ``O(1/n^2)``);
* Heun: ``2n`` -- the full two-stage trapezoidal step on every interval, the last one included.
  EDM (Karras et al. 2022, Alg. 1) drops the correction on the final step because its velocity is
  singular at ``sigma = 0``; the flow velocity at ``t = 1`` is finite, so we keep it and stay
  second order.

A guided velocity (:class:`monai_cmri.flow.guidance.ClassifierFreeGuidance`) may spend more than
one network evaluation per call; it counts those itself.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["VelocityField", "time_grid", "euler", "midpoint", "heun"]

VelocityField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``v(x, t) -> dx/dt`` with ``x`` ``(B, C, H, W)`` and ``t`` ``(B,)``."""


def time_grid(
    steps: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Uniform grid ``t_k = k / steps``, ``k = 0..steps``.

    Args:
        steps: number of intervals ``n >= 1``.
        dtype: floating dtype of the grid (float32 for sampling; float64 for convergence tests).
        device: device of the grid.

    Returns:
        times, shape ``(steps + 1,)``, from 0 to 1 inclusive.

    Raises:
        ValueError: if ``steps`` is not a positive integer.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected a positive integer number of steps, got {steps!r}")
    return torch.linspace(0.0, 1.0, steps + 1, dtype=dtype, device=device)


def _check_grid(times: torch.Tensor) -> None:
    if not torch.is_tensor(times) or times.ndim != 1 or times.numel() < 2 or not times.is_floating_point():
        raise ValueError(
            f"expected a floating 1-D time grid with at least 2 points, got {getattr(times, 'shape', times)!r}"
        )
    if not bool((times[1:] > times[:-1]).all()):
        raise ValueError("expected a strictly increasing time grid")
    if times[0] < 0 or times[-1] > 1:
        raise ValueError(f"expected a time grid inside [0, 1], got [{times[0].item()}, {times[-1].item()}]")


def _batch_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.expand(x.shape[0])


def euler(velocity: VelocityField, x_0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Explicit Euler, ``x_{k+1} = x_k + h_k v(x_k, t_k)``.

    Exact for a velocity constant in time (the straight paths a perfect rectified flow learns).

    Args:
        velocity: ``v(x, t)``, ``x`` ``(B, C, H, W)``, ``t`` ``(B,)``.
        x_0: starting state at ``times[0]`` (noise), shape ``(B, C, H, W)``.
        times: increasing grid, shape ``(n + 1,)``, inside [0, 1].

    Returns:
        ``(x, nfe)``: the state at ``times[-1]``, shape ``(B, C, H, W)``, and ``nfe = n``.

    Raises:
        ValueError: if the grid is not 1-D, strictly increasing and inside [0, 1].
    """
    return _integrate(_euler_step, 1, velocity, x_0, times)


def midpoint(velocity: VelocityField, x_0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Explicit midpoint, ``x_{k+1} = x_k + h v(x_k + h/2 v(x_k, t_k), t_k + h/2)``.

    Exact for a velocity affine in time.

    Args:
        velocity: ``v(x, t)``, ``x`` ``(B, C, H, W)``, ``t`` ``(B,)``.
        x_0: starting state at ``times[0]`` (noise), shape ``(B, C, H, W)``.
        times: increasing grid, shape ``(n + 1,)``, inside [0, 1].

    Returns:
        ``(x, nfe)``: the state at ``times[-1]``, shape ``(B, C, H, W)``, and ``nfe = 2n``.

    Raises:
        ValueError: if the grid is not 1-D, strictly increasing and inside [0, 1].
    """
    return _integrate(_midpoint_step, 2, velocity, x_0, times)


def heun(velocity: VelocityField, x_0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Heun (explicit trapezoidal), the paper's sampler (paper 2.3; Karras et al. 2022, Alg. 1).

    ``x' = x_k + h v(x_k, t_k)``, then ``x_{k+1} = x_k + h/2 (v(x_k, t_k) + v(x', t_{k+1}))``, on every
    interval including the last. Exact for a velocity affine in time.

    Args:
        velocity: ``v(x, t)``, ``x`` ``(B, C, H, W)``, ``t`` ``(B,)``.
        x_0: starting state at ``times[0]`` (noise), shape ``(B, C, H, W)``.
        times: increasing grid, shape ``(n + 1,)``, inside [0, 1].

    Returns:
        ``(x, nfe)``: the state at ``times[-1]``, shape ``(B, C, H, W)``, and ``nfe = 2n``.

    Raises:
        ValueError: if the grid is not 1-D, strictly increasing and inside [0, 1].
    """
    return _integrate(_heun_step, 2, velocity, x_0, times)


def _integrate(
    step: Callable[[VelocityField, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    calls: int,
    velocity: VelocityField,
    x_0: torch.Tensor,
    times: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """Apply a one-step rule on every interval of the grid; ``calls`` evaluations of ``v`` per step."""
    _check_grid(times)
    x = x_0
    for t, t_next in zip(times[:-1], times[1:]):
        x = step(velocity, x, t, t_next)
    return x, calls * (times.numel() - 1)


def _euler_step(velocity: VelocityField, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    return x + (t_next - t) * velocity(x, _batch_time(t, x))


def _midpoint_step(velocity: VelocityField, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    h = t_next - t
    x_half = x + 0.5 * h * velocity(x, _batch_time(t, x))
    return x + h * velocity(x_half, _batch_time(t + 0.5 * h, x))


def _heun_step(velocity: VelocityField, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    h = t_next - t
    d = velocity(x, _batch_time(t, x))
    d_next = velocity(x + h * d, _batch_time(t_next, x))
    return x + 0.5 * h * (d + d_next)
