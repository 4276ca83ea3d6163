"""Composition of a simulated dataset: which volumes, in what proportions (SPEC 1.2, 1.4).

Sequences follow the fastMRI brain mix (AXT2 ~50%, AXT1POST ~30%, AXT1PRE ~8%, AXFLAIR ~7%,
AXT1 ~5%); sites, and so field strengths, are drawn evenly (about half 1.5 T, half 3 T). Only
AXFLAIR, AXT1 and some AXT1POST volumes are annotated, as in fastMRI+; AXT1PRE and AXT2 never
are (but may still hold lesions, like real unlabeled data).

A small demo dataset drawn with these proportions would often lack a class, so the first 27
volumes follow a fixed schedule: every sequence appears within the first five, from twelve
volumes on each annotated sequence has both normal and abnormal volumes, and from
:data:`DEMO_VOLUMES` (27) on every cell of the volume-level split (AXFLAIR, AXT1 and AXT1POST
normal and abnormal, AXT2 and AXT1PRE unlabeled) has at least 3 volumes, so that the split
(stratified per class and sequence, :mod:`monai_cmri.data.splits`) puts every sequence, and
normal and abnormal volumes of every annotated sequence, in train, val and test. Volume ``i``
depends only on ``(seed, i)``, so any subset can be regenerated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from monai_cmri.simulate.spec import SCANNERS, VolumeSpec

__all__ = ["SEQUENCE_MIX", "COIL_MIX", "SCHEDULE", "DEMO_VOLUMES", "plan_volume"]

#: Share of each sequence among volumes past the schedule.
SEQUENCE_MIX: dict[str, float] = {"AXT2": 0.50, "AXT1POST": 0.30, "AXT1PRE": 0.08, "AXFLAIR": 0.07, "AXT1": 0.05}

#: Receive-channel counts and their shares when no choice is given (mostly 16 and 20).
COIL_MIX: dict[int, float] = {8: 0.1, 12: 0.1, 16: 0.45, 20: 0.35}

#: ``(sequence, class, findings)`` of the first volumes; ``findings=None`` draws them.
SCHEDULE: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("AXFLAIR", "abnormal", ("wml",)),
    ("AXT1POST", "abnormal", ("mass",)),
    ("AXT2", "unlabeled", None),
    ("AXT1", "abnormal", ("cyst",)),
    ("AXT1PRE", "unlabeled", None),
    ("AXFLAIR", "normal", None),
    ("AXT1", "normal", None),
    ("AXT1POST", "normal", None),
    ("AXT2", "unlabeled", None),
    ("AXFLAIR", "abnormal", ("mass", "wml")),
    ("AXT1POST", "abnormal", ("mass",)),
    ("AXT1", "abnormal", ("encephalomalacia",)),
    ("AXT2", "unlabeled", None),
    ("AXFLAIR", "excluded", ("artifact",)),
    ("AXT1POST", "abnormal", ("mass", "posttreatment")),
    ("AXT1", "normal", ("normal_variant",)),
    ("AXFLAIR", "normal", None),
    ("AXT1POST", "excluded", ("posttreatment",)),
    ("AXT2", "unlabeled", None),
    ("AXFLAIR", "abnormal", ("wml", "artifact")),
    # From here on, the cells that the first 20 leave under 3 volumes are filled up.
    ("AXT1POST", "normal", None),
    ("AXT1PRE", "unlabeled", None),
    ("AXT1", "abnormal", ("mass",)),
    ("AXFLAIR", "normal", None),
    ("AXT1POST", "normal", None),
    ("AXT1", "normal", None),
    ("AXT1PRE", "unlabeled", None),
)

#: Fewest volumes of the schedule in which every (sequence, class) cell of the split has at least
#: 3 volumes (excluded ones not counted), so each reaches train, val and test: the demo cohort size.
DEMO_VOLUMES: int = 27

# Share of annotated volumes per sequence past the schedule (fastMRI+ reviewed 451 of 549
# FLAIR, 340 of 398 T1 and 210 of 1480 T1 post-contrast volumes).
_ANNOTATED = {"AXFLAIR": 0.82, "AXT1": 0.85, "AXT1POST": 0.14, "AXT1PRE": 0.0, "AXT2": 0.0}
_CLASS_MIX = {"abnormal": 0.5, "normal": 0.35, "excluded": 0.15}
# Primary finding of an abnormal volume, per sequence.
_ABNORMAL_MIX = {
    "AXFLAIR": {"wml": 0.6, "mass": 0.2, "cyst": 0.1, "encephalomalacia": 0.1},
    "AXT1": {"mass": 0.35, "cyst": 0.3, "encephalomalacia": 0.2, "wml": 0.15},
    "AXT1POST": {"mass": 0.7, "wml": 0.1, "cyst": 0.1, "encephalomalacia": 0.1},
    "AXT1PRE": {"mass": 0.4, "wml": 0.3, "cyst": 0.2, "encephalomalacia": 0.1},
    "AXT2": {"wml": 0.4, "mass": 0.3, "cyst": 0.2, "encephalomalacia": 0.1},
}
_NARROW = (264, 288)  # phase-encode widths of narrow fastMRI FLAIR volumes, out of 320


def _pick(rng: np.random.Generator, mix: dict) -> object:
    keys = list(mix)
    weights = np.array([mix[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]


def _findings(rng: np.random.Generator, sequence: str, volume_class: str) -> tuple[str, ...]:
    """Draw the findings of a volume of a class (unlabeled volumes may hold lesions too)."""
    if volume_class == "normal":
        return ("normal_variant",) if rng.random() < 0.25 else ()
    if volume_class == "excluded":
        return ("artifact",) if rng.random() < 0.5 else ("posttreatment",)
    if volume_class == "unlabeled" and rng.random() < 0.6:
        return ()
    primary = _pick(rng, _ABNORMAL_MIX[sequence])
    findings = [primary]
    if primary == "mass" and rng.random() < 0.3:
        findings.append("wml")
    if volume_class == "abnormal" and rng.random() < 0.12:
        findings.append("artifact" if rng.random() < 0.5 else "posttreatment")
    return tuple(findings)


def plan_volume(
    index: int,
    seed: int,
    *,
    slices: int = 16,
    width: int = 320,
    readout: int = 640,
    coils: Sequence[int] | None = None,
) -> VolumeSpec:
    """The specification of volume ``index`` of the dataset drawn with ``seed``.

    Args:
        index: position of the volume in the dataset, >= 0.
        seed: dataset seed.
        slices: slices per volume.
        width: phase-encode width of a full-width volume (320); narrow FLAIR volumes get
            264/320 or 288/320 of it (rounded to even), the same pixel size.
        readout: oversampled readout length (640); pixel size is ``440 mm / readout``.
        coils: channel counts to choose from uniformly; None draws from :data:`COIL_MIX`.

    Raises:
        ValueError: for a negative index or an empty ``coils``.
    """
    if index < 0:
        raise ValueError(f"volume index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, index, 0])
    if index < len(SCHEDULE):
        sequence, volume_class, findings = SCHEDULE[index]
        if findings is None:
            findings = _findings(rng, sequence, volume_class)
    else:
        sequence = _pick(rng, SEQUENCE_MIX)
        annotated = rng.random() < _ANNOTATED[sequence]
        volume_class = _pick(rng, _CLASS_MIX) if annotated else "unlabeled"
        findings = _findings(rng, sequence, volume_class)

    site = int(rng.choice(sorted(SCANNERS)))
    model, field_strength = SCANNERS[site]
    if coils is None:
        channels = int(_pick(rng, COIL_MIX))
    else:
        if len(coils) == 0:
            raise ValueError("coils must name at least one channel count")
        channels = int(coils[int(rng.integers(len(coils)))])
    volume_width = width
    if sequence == "AXFLAIR" and rng.random() < 0.4:
        volume_width = 2 * int(round(width * float(rng.choice(_NARROW)) / 320 / 2))
    fraction = rng.uniform(0.75, 1.0) if rng.random() < 0.7 else 1.0
    lines = volume_width - 2 * int(round(volume_width * (1 - fraction) / 2))
    # Ids like fastMRI's (site, then four digits), unique within a dataset of < 10000 volumes.
    offset = int(np.random.default_rng([seed]).integers(10000))
    name = f"file_brain_{sequence}_{site}_{site}{(offset + index) % 10000:04d}"
    patient = hashlib.sha256(f"monai_cmri simulated subject {seed} {index}".encode()).hexdigest()
    return VolumeSpec(
        name=name,
        sequence=sequence,
        field_strength_t=field_strength,
        model=model,
        coils=channels,
        slices=slices,
        readout=readout,
        width=volume_width,
        acquired_lines=lines,
        findings=tuple(findings),
        annotated=volume_class != "unlabeled",
        patient_id=patient,
    )
