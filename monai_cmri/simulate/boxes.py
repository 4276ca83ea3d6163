"""fastMRI+ annotation rows of a simulated volume (SPEC 1.2).

Boxes use the fastMRI+ up/down-flipped convention: on the unflipped ``N x N`` image
(``N = readout // 2``, 320 for fastMRI) a box covers rows ``[N - y - height, N - y)`` and
columns ``[x, x + width)``, so a box around rows ``[r0, r1)`` is written with ``y = N - r1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CSV_HEADER", "Annotation", "box_from_mask", "rows_of_box"]

#: Column names of fastMRI+ ``brain.csv``.
CSV_HEADER: tuple[str, ...] = ("file", "slice", "study_level", "x", "y", "width", "height", "label")


@dataclass(frozen=True)
class Annotation:
    """One row of ``brain.csv``; study-level rows have no box (``x`` ... ``height`` are None).

    Attributes:
        file: file stem without ``.h5``.
        slice: slice index (0 for study-level rows).
        study_level: ``True`` for a study-level label such as "Normal for age".
        x: first column of the box.
        y: flipped row coordinate ``N - row_end``.
        width: box columns.
        height: box rows.
        label: fastMRI+ label text.
    """

    file: str
    slice: int
    study_level: bool
    x: int | None
    y: int | None
    width: int | None
    height: int | None
    label: str

    def csv_row(self) -> list[str]:
        """The row as ``brain.csv`` writes it (``Yes``/``No``, empty fields for no box)."""
        box = ("", "", "", "") if self.study_level else (self.x, self.y, self.width, self.height)
        return [self.file, str(self.slice), "Yes" if self.study_level else "No", *map(str, box), self.label]


def box_from_mask(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """Tight flipped-convention box around a 2D mask, grown by ``margin`` pixels.

    Args:
        mask: ``(N, N)`` bool, the lesion on the unflipped square image; not empty.
        margin: pixels added on every side (the box is clipped to the image).

    Returns:
        ``(x, y, width, height)`` with ``y = N - row_end``.

    Raises:
        ValueError: when the mask is empty or not square.
    """
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask must be a square 2D array, got shape {mask.shape}")
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise ValueError("mask is empty: no box")
    size = mask.shape[0]
    r0, r1 = max(int(rows.min()) - margin, 0), min(int(rows.max()) + 1 + margin, size)
    c0, c1 = max(int(cols.min()) - margin, 0), min(int(cols.max()) + 1 + margin, size)
    return c0, size - r1, c1 - c0, r1 - r0


def rows_of_box(y: int, height: int, size: int) -> slice:
    """Rows ``[size - y - height, size - y)`` of the unflipped image covered by a box."""
    return slice(size - y - height, size - y)
