"""Small simulated volumes for the simulator tests (imported by the tests and their conftest)."""

from __future__ import annotations

import numpy as np

from monai_cmri.simulate import SimulatedVolume, VolumeSpec, simulate_volume

#: Tiny dataset: 3 slices, 4 coils, 128 x 64 k-space (3.4 mm pixels).
TINY = dict(slices=3, width=64, readout=128, coils=[4])


def small_volume(
    sequence: str, field_strength_t: float, findings: tuple[str, ...] = (), seed: int = 0, **kw
) -> SimulatedVolume:
    """A 2-slice volume at 1.7 mm pixels (readout 256, width 128), 4 coils."""
    spec = VolumeSpec(
        name=f"file_brain_{sequence}_200_2000001",
        sequence=sequence,
        field_strength_t=field_strength_t,
        model="Aera" if field_strength_t < 2 else "Skyra",
        coils=kw.pop("coils", 4),
        slices=kw.pop("slices", 2),
        readout=kw.pop("readout", 256),
        width=kw.pop("width", 128),
        findings=findings,
        annotated=True,
        patient_id="0",
        **kw,
    )
    return simulate_volume(spec, np.random.default_rng(seed))
