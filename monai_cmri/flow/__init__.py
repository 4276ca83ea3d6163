"""Latent flow matching (paper 2.3): the linear path, training times, ODE solvers and guidance.

The time convention (``t = 0`` noise, ``t = 1`` data, velocity ``x_1 - eps``) lives in
:mod:`monai_cmri.flow.path`; everything else here follows it.
"""

from __future__ import annotations

from monai_cmri.flow.guidance import ClassifierFreeGuidance, Condition
from monai_cmri.flow.path import broadcast_time, interpolate, target_velocity
from monai_cmri.flow.solvers import VelocityField, euler, heun, midpoint, time_grid
from monai_cmri.flow.timesteps import from_monai_timesteps, sample_logit_normal, sample_uniform, to_monai_timesteps

__all__ = [
    "ClassifierFreeGuidance",
    "Condition",
    "VelocityField",
    "broadcast_time",
    "euler",
    "from_monai_timesteps",
    "heun",
    "interpolate",
    "midpoint",
    "sample_logit_normal",
    "sample_uniform",
    "target_velocity",
    "time_grid",
    "to_monai_timesteps",
]
