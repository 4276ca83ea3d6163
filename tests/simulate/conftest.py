"""Shared simulated data for the simulator tests: tiny shapes, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_helpers import TINY, small_volume

from monai_cmri.simulate import SimulatedVolume, simulate_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Twenty tiny volumes (the whole schedule: every sequence and class) written to disk."""
    out = tmp_path_factory.mktemp("sim") / "dataset"
    simulate_dataset(out, volumes=20, seed=0, progress=False, **TINY)
    return out


@pytest.fixture(scope="session")
def contrast_volumes() -> dict[tuple[str, float], SimulatedVolume]:
    """One small normal volume per (sequence kind, field strength), same subject."""
    return {
        (sequence, field): small_volume(sequence, field)
        for sequence in ("AXT1", "AXT2", "AXFLAIR")
        for field in (1.494, 2.8936)
    }
