"""Training time sampling and the adapter to MONAI's ``RFlowScheduler`` time axis (paper 2.3, SPEC 2).

The paper draws ``t ~ U(0, 1)``. Logit-normal sampling, ``t = sigmoid(m + s * n)`` with
``n ~ N(0, 1)`` (Esser et al. 2024, SD3, eq. 19; MAISI), spends more training on the middle of
the path and is offered as an option. Both return times in our convention
(:mod:`monai_cmri.flow.path`: ``t = 0`` noise, ``t = 1`` data).

MONAI 1.6 ``monai.networks.schedulers.RFlowScheduler`` counts time ``T`` in [0,
``num_train_timesteps``] the other way round: ``add_noise`` forms
``(1 - T / N) * x_1 + (T / N) * eps``, so ``T = N`` is pure noise and ``T = 0`` is data, and
``set_timesteps`` / ``step`` walk ``T`` downwards while adding ``v * (T - T_next) / N`` with
``v = x_1 - eps`` -- the same velocity as ours. Hence ``T = (1 - t) * N`` and the velocity needs
no change of sign; only the time axis is flipped and scaled.
"""

from __future__ import annotations

import torch

__all__ = ["sample_uniform", "sample_logit_normal", "to_monai_timesteps", "from_monai_timesteps"]


def _check_batch(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"expected a positive integer batch_size, got {batch_size!r}")


def sample_uniform(
    batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Draw training times ``t ~ U[0, 1)`` (paper 2.3).

    Args:
        batch_size: number of times ``B``.
        generator: random generator for reproducible draws; ``None`` uses the global one.
        device: device of the result; defaults to the generator's device (CPU without one).

    Returns:
        float32 times, shape ``(B,)``, in [0, 1).
    """
    _check_batch(batch_size)
    device = device if device is not None else (generator.device if generator is not None else None)
    return torch.rand(batch_size, generator=generator, device=device, dtype=torch.float32)


def sample_logit_normal(
    batch_size: int,
    location: float = 0.0,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw training times ``t = sigmoid(location + scale * n)``, ``n ~ N(0, 1)`` (SD3 eq. 19).

    The median of ``t`` is ``sigmoid(location)``; a positive location favours the data end.

    Args:
        batch_size: number of times ``B``.
        location: mean ``m`` of ``logit(t)``.
        scale: standard deviation ``s > 0`` of ``logit(t)``.
        generator: random generator for reproducible draws; ``None`` uses the global one.
        device: device of the result; defaults to the generator's device (CPU without one).

    Returns:
        float32 times, shape ``(B,)``, in the open interval (0, 1) up to float32 rounding.

    Raises:
        ValueError: if ``scale`` is not positive or ``batch_size`` is not a positive integer.
    """
    _check_batch(batch_size)
    if not scale > 0:
        raise ValueError(f"expected a positive logit-normal scale, got {scale}")
    device = device if device is not None else (generator.device if generator is not None else None)
    n = torch.randn(batch_size, generator=generator, device=device, dtype=torch.float32)
    return torch.sigmoid(location + scale * n)


def to_monai_timesteps(t: torch.Tensor, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Map our time ``t`` (0 noise, 1 data) to ``RFlowScheduler``'s ``T = (1 - t) * N`` (N noise, 0 data).

    Use it wherever a MONAI component expects scheduler timesteps, e.g. the sinusoidal time
    embedding of ``DiffusionModelUNet`` (SPEC 2) or ``RFlowScheduler.add_noise``.

    Args:
        t: times, shape ``(B,)``, floating point, in [0, 1].
        num_train_timesteps: ``N``, the scheduler's ``num_train_timesteps``.

    Returns:
        float32 ``T``, shape ``(B,)``, in [0, N]; not rounded to integers.

    Raises:
        ValueError: if ``t`` is not a floating tensor in [0, 1] or ``N`` is not positive.
    """
    if num_train_timesteps < 1:
        raise ValueError(f"expected a positive num_train_timesteps, got {num_train_timesteps}")
    if not torch.is_tensor(t) or not t.is_floating_point():
        raise ValueError(f"expected t to be a floating tensor, got {type(t).__name__}")
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"expected t in [0, 1], got values in [{t.min().item()}, {t.max().item()}]")
    return (1 - t.float()) * num_train_timesteps


def from_monai_timesteps(timesteps: torch.Tensor, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Inverse of :func:`to_monai_timesteps`: ``t = 1 - T / N``.

    Args:
        timesteps: ``RFlowScheduler`` timesteps ``T``, shape ``(B,)``, integer or float, in [0, N].
        num_train_timesteps: ``N``, the scheduler's ``num_train_timesteps``.

    Returns:
        float32 ``t``, shape ``(B,)``, in [0, 1] (0 noise, 1 data).

    Raises:
        ValueError: if ``T`` is outside [0, N] or ``N`` is not positive.
    """
    if num_train_timesteps < 1:
        raise ValueError(f"expected a positive num_train_timesteps, got {num_train_timesteps}")
    if not torch.is_tensor(timesteps):
        raise ValueError(f"expected timesteps to be a tensor, got {type(timesteps).__name__}")
    if timesteps.numel() and (timesteps.min() < 0 or timesteps.max() > num_train_timesteps):
        raise ValueError(
            f"expected timesteps in [0, {num_train_timesteps}], "
            f"got [{timesteps.min().item()}, {timesteps.max().item()}]"
        )
    return 1 - timesteps.float() / num_train_timesteps
