"""What one simulated volume is: sequence, scanner, matrix, coils and findings (SPEC 1.1, 1.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from monai_cmri.data.sequences import normalize_sequence
from monai_cmri.simulate.lesions import ABNORMAL_FINDINGS, FINDING_LABELS

__all__ = ["SCANNERS", "VolumeSpec"]

#: fastMRI brain sites (the number in the file name) and their Siemens scanner:
#: ``site -> (systemModel, systemFieldStrength_T)``; about half 1.5 T, half 3 T.
SCANNERS: dict[int, tuple[str, float]] = {
    200: ("Aera", 1.494),
    201: ("Skyra", 2.8936),
    202: ("Prisma_fit", 2.8936),
    203: ("Avanto", 1.494),
    204: ("Biograph_mMR", 2.8936),
    205: ("Aera", 1.494),
    206: ("Avanto", 1.494),
    207: ("Skyra", 2.8936),
    208: ("Prisma_fit", 2.8936),
    209: ("Aera", 1.494),
    210: ("Skyra", 2.8936),
}

_NAME = re.compile(r"^file_brain_(AXFLAIR|AXT1POST|AXT1PRE|AXT1|AXT2)_(\d{3})_(\d+)$")


@dataclass(frozen=True)
class VolumeSpec:
    """Everything about a simulated volume that is decided before its anatomy is drawn.

    Attributes:
        name: file stem ``file_brain_{SEQUENCE}_{site}_{id}``; its sequence must match.
        sequence: acquisition (``AXFLAIR``, ``AXT1``, ``AXT1POST``, ``AXT1PRE``, ``AXT2``).
        field_strength_t: main field, tesla (1.494 or 2.8936 on the fastMRI scanners).
        model: Siemens scanner model.
        coils: receive channels ``C``.
        slices: slices ``S``.
        readout: k-space readout samples (2x oversampled), a multiple of 4.
        width: phase-encode matrix ``W`` <= ``readout // 2``; less for narrow FLAIR volumes.
        acquired_lines: phase-encode lines acquired around the k-space centre (the rest of
            the ``W`` lines are zero-filled), ``None`` for all of them.
        findings: keys of :data:`~monai_cmri.simulate.lesions.FINDING_LABELS` to place.
        annotated: whether the volume is in the fastMRI+-style annotation files.
        patient_id: the ``patient_id`` attribute.
    """

    name: str
    sequence: str
    field_strength_t: float = 1.494
    model: str = "Aera"
    coils: int = 16
    slices: int = 16
    readout: int = 640
    width: int = 320
    acquired_lines: int | None = None
    findings: tuple[str, ...] = ()
    annotated: bool = False
    patient_id: str = ""

    def __post_init__(self) -> None:
        where = f"volume {self.name!r}"
        if normalize_sequence(self.sequence, where) != self.sequence:
            raise ValueError(f"{where}: sequence must be spelled {normalize_sequence(self.sequence)!r}")
        match = _NAME.match(self.name)
        if match is None or match.group(1) != self.sequence:
            raise ValueError(f"{where}: name must be file_brain_{self.sequence}_{{site}}_{{id}}")
        if not self.field_strength_t > 0:
            raise ValueError(f"{where}: field strength must be positive, got {self.field_strength_t}")
        if self.coils < 1:
            raise ValueError(f"{where}: coils must be >= 1, got {self.coils}")
        if self.slices < 1:
            raise ValueError(f"{where}: slices must be >= 1, got {self.slices}")
        if self.readout < 32 or self.readout % 4:
            raise ValueError(f"{where}: readout must be a multiple of 4 and >= 32, got {self.readout}")
        if not 8 <= self.width <= self.readout // 2 or self.width % 2:
            raise ValueError(f"{where}: width must be even, >= 8 and <= readout // 2, got {self.width}")
        lines = self.lines
        if not 2 <= lines <= self.width or (self.width - lines) % 2:
            raise ValueError(
                f"{where}: acquired_lines must be in [2, width] with width - lines even, got {lines}"
            )
        unknown = set(self.findings) - set(FINDING_LABELS)
        if unknown:
            raise ValueError(f"{where}: unknown findings {sorted(unknown)}")

    @property
    def site(self) -> int:
        """The site number in the file name."""
        return int(_NAME.match(self.name).group(2))

    @property
    def lines(self) -> int:
        """Phase-encode lines acquired."""
        return self.width if self.acquired_lines is None else self.acquired_lines

    @property
    def volume_class(self) -> str:
        """``abnormal``, ``normal``, ``excluded`` or ``unlabeled`` by the lenient rule (SPEC 1.2)."""
        if not self.annotated:
            return "unlabeled"
        if any(f in ABNORMAL_FINDINGS for f in self.findings):
            return "abnormal"
        if set(self.findings) <= {"normal_variant"}:
            return "normal"
        return "excluded"
