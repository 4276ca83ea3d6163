"""Classifier-free guidance as a velocity field for the solvers (paper 2.3, SPEC 2).

``v = v_null + w (v_cond - v_null)`` (Ho and Salimans 2022), with the conditional and the null
branch evaluated in one batched pass: the batch is doubled, ``[cond; null]``, and split after the
network. With a guidance interval ``[t_lo, t_hi]`` (Kynkaanniemi et al. 2024) guidance applies
only there; elsewhere the velocity is the conditional one alone and only the conditional half is
run.

NFE counting (recorded with every sampling run, STYLE 10): :attr:`ClassifierFreeGuidance.nfe`
counts network evaluations per sample, so a guided call (cond + null in one batched pass) adds 2
and a conditional-only call adds 1. A solver's own count (calls to the velocity) is therefore
``nfe`` when guidance is off everywhere and ``nfe / 2`` when it is on everywhere.
"""

from __future__ import annotations

from typing import Callable, Mapping, Union

import torch

__all__ = ["Condition", "ClassifierFreeGuidance"]

Condition = Union[torch.Tensor, Mapping[str, torch.Tensor]]
"""A batch of conditions, ``(B, ...)``: one tensor, or named tensors (e.g. sequence and class)."""


def _concat(a: Condition, b: Condition) -> Condition:
    if isinstance(a, Mapping):
        return {key: torch.cat([a[key], b[key]]) for key in a}
    return torch.cat([a, b])


def _batch_size(cond: Condition) -> int:
    return next(iter(cond.values())).shape[0] if isinstance(cond, Mapping) else cond.shape[0]


class ClassifierFreeGuidance:
    """Turn a conditional model ``model(x, t, cond)`` into a guided velocity ``v(x, t)``.

    Args:
        model: network predicting the velocity, ``(B, C, H, W), (B,), cond -> (B, C, H, W)``, with
            ``t`` in our convention (:mod:`monai_cmri.flow.path`); EMA weights at inference.
        cond: the conditions, ``(B, ...)`` (or a mapping of such tensors).
        null_cond: the null (dropped) conditions, same structure and shapes as ``cond``. In stage 2
            only the class is nulled, so the sequence entry equals the conditional one.
        guidance_scale: ``w``; 1 is the conditional model, 0 the unconditional one.
        interval: ``(t_lo, t_hi)`` with ``0 <= t_lo <= t_hi <= 1``: guide only for ``t`` in this
            closed interval; ``None`` guides everywhere.

    Raises:
        ValueError: if ``cond`` and ``null_cond`` differ in structure or shape, or the interval is invalid.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor, torch.Tensor, Condition], torch.Tensor],
        cond: Condition,
        null_cond: Condition,
        guidance_scale: float,
        interval: tuple[float, float] | None = None,
    ) -> None:
        if isinstance(cond, Mapping) != isinstance(null_cond, Mapping):
            raise ValueError("expected cond and null_cond to be both tensors or both mappings")
        if isinstance(cond, Mapping) and set(cond) != set(null_cond):
            raise ValueError(f"expected null_cond keys {sorted(cond)}, got {sorted(null_cond)}")
        pairs = [(cond[k], null_cond[k]) for k in cond] if isinstance(cond, Mapping) else [(cond, null_cond)]
        for c, n in pairs:
            if c.shape != n.shape:
                raise ValueError(f"expected null_cond of shape {tuple(c.shape)}, got {tuple(n.shape)}")
        if interval is not None and not 0 <= interval[0] <= interval[1] <= 1:
            raise ValueError(f"expected a guidance interval 0 <= t_lo <= t_hi <= 1, got {interval}")
        self.model = model
        self.cond = cond
        self.null_cond = null_cond
        self.guidance_scale = float(guidance_scale)
        self.interval = interval
        self.nfe = 0

    def reset(self) -> None:
        """Set the network evaluation count to zero before a new sampling run."""
        self.nfe = 0

    def guided(self, t: torch.Tensor) -> torch.Tensor:
        """Which samples are guided at time ``t`` ``(B,)``: a bool tensor ``(B,)``."""
        if self.interval is None:
            return torch.ones_like(t, dtype=torch.bool)
        return (t >= self.interval[0]) & (t <= self.interval[1])

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Guided velocity at ``x`` ``(B, C, H, W)`` and ``t`` ``(B,)``; returns ``(B, C, H, W)``.

        Raises:
            ValueError: if the batch of ``x`` or ``t`` differs from that of the conditions.
        """
        batch = _batch_size(self.cond)
        if x.shape[0] != batch or t.shape != (batch,):
            raise ValueError(
                f"expected x of batch {batch} and t of shape ({batch},), got {tuple(x.shape)} and {tuple(t.shape)}"
            )
        guided = self.guided(t)
        if not bool(guided.any()):
            self.nfe += 1
            return self.model(x, t, self.cond)
        v_cond, v_null = self.model(torch.cat([x, x]), torch.cat([t, t]), _concat(self.cond, self.null_cond)).chunk(2)
        self.nfe += 2
        v = v_null + self.guidance_scale * (v_cond - v_null)
        # Samples whose time lies outside the interval keep the conditional velocity.
        return torch.where(guided.reshape((-1,) + (1,) * (x.ndim - 1)), v, v_cond)
