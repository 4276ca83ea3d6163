"""The linear probability path of latent flow matching (paper 2.3, SPEC 2).

This module is the one place where the time convention is written down:

    x_t = (1 - t) * eps + t * x_1,    dx_t/dt = x_1 - eps,

with ``t = 0`` pure noise ``eps = x_0``, ``t = 1`` data ``x_1`` and ``t`` a float32 in [0, 1]
(the rectified-flow / conditional optimal-transport path of Lipman et al. 2023 and Liu et al.
2023). MONAI's ``RFlowScheduler`` runs time the other way; see
:func:`monai_cmri.flow.timesteps.to_monai_timesteps`.
"""

from __future__ import annotations

import torch

__all__ = ["broadcast_time", "interpolate", "target_velocity"]


def broadcast_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a per-sample time ``(B,)`` as ``(B, 1, ..., 1)`` so that it broadcasts over ``x``.

    Args:
        t: times, shape ``(B,)``, floating point, every value in [0, 1].
        x: the tensor to broadcast over, shape ``(B, C, H, W)`` (any rank >= 1).

    Returns:
        ``t`` reshaped to ``(B,) + (1,) * (x.ndim - 1)``, in ``x``'s dtype.

    Raises:
        ValueError: if ``t`` is not a floating 1-D tensor of length ``B`` with values in [0, 1].
    """
    if not torch.is_tensor(t) or t.ndim != 1 or not t.is_floating_point():
        raise ValueError(f"expected t to be a floating 1-D tensor of shape (B,), got {getattr(t, 'shape', t)!r}")
    if x.ndim < 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"expected t of shape ({x.shape[0] if x.ndim else '?'},) to match x {tuple(x.shape)}")
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"expected t in [0, 1], got values in [{t.min().item()}, {t.max().item()}]")
    return t.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


def _check_pair(x_0: torch.Tensor, x_1: torch.Tensor) -> None:
    if x_0.shape != x_1.shape:
        raise ValueError(
            f"expected noise x_0 and data x_1 of the same shape, got {tuple(x_0.shape)} and {tuple(x_1.shape)}"
        )
    if x_0.ndim < 2:
        raise ValueError(f"expected x_0 and x_1 of shape (B, C, ...), got {tuple(x_0.shape)}")


def interpolate(x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point ``x_t = (1 - t) * x_0 + t * x_1`` on the linear path (paper 2.3).

    Args:
        x_0: noise ``eps``, shape ``(B, C, H, W)``.
        x_1: data (latents), shape ``(B, C, H, W)``.
        t: times, shape ``(B,)``, in [0, 1]; 0 gives ``x_0``, 1 gives ``x_1``.

    Returns:
        ``x_t``, shape ``(B, C, H, W)``.

    Raises:
        ValueError: if the shapes disagree or ``t`` is outside [0, 1].
    """
    _check_pair(x_0, x_1)
    t_b = broadcast_time(t, x_1)
    return (1 - t_b) * x_0 + t_b * x_1


def target_velocity(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """Regression target ``dx_t/dt = x_1 - x_0`` of the linear path, the same for every ``t``.

    Args:
        x_0: noise ``eps``, shape ``(B, C, H, W)``.
        x_1: data (latents), shape ``(B, C, H, W)``.

    Returns:
        ``x_1 - x_0``, shape ``(B, C, H, W)``.

    Raises:
        ValueError: if the shapes disagree.
    """
    _check_pair(x_0, x_1)
    return x_1 - x_0
