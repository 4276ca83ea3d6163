"""Tissue relaxation parameters and per-sequence signal equations (SPEC 1.4).

Each tissue has a proton density (PD, water fraction relative to CSF) and T1/T2 relaxation
times at 1.5 T and 3 T from typical literature values (Stanisz et al. 2005, Wansapura et al.
1999, Bojorquez et al. 2017; fat T2 is the apparent value in turbo spin echo). Lesion tissues
follow the usual appearance: vasogenic edema and gliosis are T2/FLAIR bright, necrosis is
CSF-like but not fully suppressed by FLAIR, hemosiderin is dark on T2, cysts are CSF.

Signals (SPEC 1.4):

- spin echo: ``S = PD (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2)``;
- inversion recovery: ``S = PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)``, kept signed,
  so tissue that has not recovered past the null (CSF in T1-FLAIR) carries a phase of pi;
- gadolinium (post-contrast T1): ``1/T1' = 1/T1 + r1 C`` with ``r1 = 4 /mM/s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monai_cmri.data.sequences import normalize_sequence

__all__ = [
    "TISSUES",
    "RELAXIVITY_PER_MM_S",
    "Protocol",
    "protocol",
    "spin_echo",
    "inversion_recovery",
    "tissue_signals",
]

#: Tissue classes of the simulator, in the order of the fraction maps.
TISSUES: tuple[str, ...] = (
    "csf",
    "gm",
    "wm",
    "dura",
    "bone",
    "fat",
    "muscle",
    "edema",
    "tumor",
    "necrosis",
    "hemosiderin",
    "wml",
    "cyst",
)

#: Longitudinal relaxivity of gadolinium chelates, 1/(mM s) (about the same at 1.5 T and 3 T).
RELAXIVITY_PER_MM_S = 4.0

# (T1 ms, T2 ms, PD) per tissue at 1.5 T and at 3 T.
_RELAXATION: dict[str, dict[str, tuple[float, float, float]]] = {
    "1.5T": {
        "csf": (4000.0, 2000.0, 1.00),
        "gm": (1100.0, 95.0, 0.82),
        "wm": (650.0, 75.0, 0.70),
        "dura": (900.0, 40.0, 0.50),
        "bone": (300.0, 1.0, 0.05),
        "fat": (260.0, 120.0, 0.90),
        "muscle": (1000.0, 45.0, 0.75),
        "edema": (1300.0, 200.0, 0.90),
        "tumor": (1100.0, 110.0, 0.85),
        "necrosis": (2200.0, 300.0, 0.92),
        "hemosiderin": (700.0, 20.0, 0.70),
        "wml": (1000.0, 130.0, 0.80),
        "cyst": (3800.0, 1800.0, 1.00),
    },
    "3T": {
        "csf": (4300.0, 2000.0, 1.00),
        "gm": (1350.0, 95.0, 0.82),
        "wm": (850.0, 68.0, 0.70),
        "dura": (1100.0, 35.0, 0.50),
        "bone": (350.0, 1.0, 0.05),
        "fat": (370.0, 110.0, 0.90),
        "muscle": (1400.0, 40.0, 0.75),
        "edema": (1700.0, 180.0, 0.90),
        "tumor": (1450.0, 100.0, 0.85),
        "necrosis": (2700.0, 280.0, 0.92),
        "hemosiderin": (900.0, 15.0, 0.70),
        "wml": (1300.0, 120.0, 0.80),
        "cyst": (4200.0, 1800.0, 1.00),
    },
}

# Gadolinium concentration (mM) after contrast: enhancing tumour rim, dura, scalp muscle.
_GADOLINIUM_MM: dict[str, float] = {"tumor": 0.45, "dura": 0.15, "muscle": 0.1, "necrosis": 0.02}


@dataclass(frozen=True)
class Protocol:
    """Timing of one acquisition.

    Attributes:
        sequence: fastMRI acquisition name (``AXT2`` ...).
        kind: ``"spin_echo"`` or ``"inversion_recovery"``.
        tr_ms: repetition time.
        te_ms: echo time.
        ti_ms: inversion time, ``None`` for spin echo.
        flip_angle_deg: flip angle written to the header.
        sequence_type: ISMRMRD ``sequence_type``.
        gadolinium: whether contrast agent was given (``AXT1POST``).
    """

    sequence: str
    kind: str
    tr_ms: float
    te_ms: float
    ti_ms: float | None
    flip_angle_deg: float
    sequence_type: str
    gadolinium: bool


def protocol(sequence: str, field_strength_t: float) -> Protocol:
    """The protocol of a fastMRI brain sequence at a field strength (SPEC 1.4).

    T1-weighted sequences (``AXT1``, ``AXT1PRE``, ``AXT1POST``) are spin echo TR 500 / TE 10 ms
    at 1.5 T and T1-FLAIR TR 2000 / TI 850 / TE 10 ms at 3 T; ``AXT2`` is TR 5000 / TE 100 ms;
    ``AXFLAIR`` is TR 9000 / TI 2500 ms with TE 86 ms at 1.5 T and 90 ms at 3 T.

    Args:
        sequence: one of :data:`monai_cmri.data.sequences.SEQUENCES` (any case).
        field_strength_t: main field in tesla; below 2 T counts as 1.5 T.

    Raises:
        ValueError: for an unknown sequence or a non-positive field.
    """
    name = normalize_sequence(sequence)
    if not field_strength_t > 0:
        raise ValueError(f"field strength must be positive, got {field_strength_t} T")
    high = field_strength_t >= 2.0
    if name == "AXT2":
        return Protocol(name, "spin_echo", 5000.0, 100.0, None, 150.0, "TurboSpinEcho", False)
    if name == "AXFLAIR":
        te = 90.0 if high else 86.0
        return Protocol(name, "inversion_recovery", 9000.0, te, 2500.0, 150.0, "TurboSpinEcho", False)
    post = name == "AXT1POST"
    if high:
        return Protocol(name, "inversion_recovery", 2000.0, 10.0, 850.0, 150.0, "TurboSpinEcho", post)
    return Protocol(name, "spin_echo", 500.0, 10.0, None, 90.0, "SpinEcho", post)


def spin_echo(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, tr: float, te: float) -> np.ndarray:
    """Spin-echo signal ``PD (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2)``; times in ms."""
    return pd * (1 - 2 * np.exp(-(tr - te / 2) / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery(
    pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, tr: float, te: float, ti: float
) -> np.ndarray:
    """Signed inversion-recovery signal ``PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)``; ms."""
    return pd * (1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def tissue_signals(acquisition: Protocol, field_strength_t: float) -> np.ndarray:
    """Signed signal of every tissue in :data:`TISSUES` for one protocol.

    Args:
        acquisition: the sequence timing (its ``gadolinium`` flag shortens T1 per tissue).
        field_strength_t: selects the 1.5 T or 3 T relaxation table.

    Returns:
        ``(len(TISSUES),)`` float64 signals in units of the CSF proton density.
    """
    table = _RELAXATION["3T" if field_strength_t >= 2.0 else "1.5T"]
    t1, t2, pd = (np.array([table[name][k] for name in TISSUES]) for k in range(3))
    if acquisition.gadolinium:
        dose = np.array([_GADOLINIUM_MM.get(name, 0.0) for name in TISSUES])
        t1 = np.where(dose > 0, 1.0 / (1.0 / t1 + RELAXIVITY_PER_MM_S * dose / 1000.0), t1)
    if acquisition.kind == "spin_echo":
        return spin_echo(pd, t1, t2, acquisition.tr_ms, acquisition.te_ms)
    return inversion_recovery(pd, t1, t2, acquisition.tr_ms, acquisition.te_ms, acquisition.ti_ms)

