"""A table of fastMRI files: sequence, field strength, coils, k-space shape, class and size.

The ``simulate`` command prints it for the files it wrote and the main job writes it into its
``summary.md``; both read the files back, so the table shows what is on disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from monai_cmri.data.annotations import Annotations, find_annotations, volume_name
from monai_cmri.data.fastmri import FastMRIFile

__all__ = ["COLUMNS", "nominal_field", "volume_row", "format_rows", "dataset_summary"]

#: Column titles of the table.
COLUMNS: tuple[str, ...] = ("file", "sequence", "field", "coils", "k-space shape", "class (lenient/strict)", "MB")


def nominal_field(tesla: float) -> str:
    """The field strength as scanners are sold: 1.494 T -> "1.5 T", 2.8936 T -> "3 T"."""
    return "1.5 T" if tesla < 2.0 else "3 T" if tesla < 5.0 else f"{tesla:.1f} T"


def volume_row(path: str | os.PathLike[str], annotations: Annotations) -> tuple[str, ...]:
    """One row of the table (:data:`COLUMNS`) for a fastMRI file.

    Args:
        path: a fastMRI brain ``.h5`` file.
        annotations: the annotations that give its class under both rules.

    Raises:
        OSError, ValueError: when the file cannot be read (:class:`~monai_cmri.data.fastmri.FastMRIFile`).
    """
    path = Path(path)
    name = volume_name(path)
    with FastMRIFile(path) as volume:
        return (
            path.name, volume.sequence, nominal_field(volume.header.field_strength_t), str(volume.num_coils),
            "x".join(map(str, volume.shape)),
            f"{annotations.volume_class(name)}/{annotations.volume_class(name, rule='strict')}",
            f"{path.stat().st_size / 2**20:.0f}",
        )


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width table of :func:`volume_row` rows, under a header line of :data:`COLUMNS`."""
    table = [COLUMNS, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def dataset_summary(folder: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]]) -> str:
    """The table of ``paths``, classed by the folder's annotations (:func:`find_annotations`)."""
    annotations = find_annotations(folder)
    return format_rows([volume_row(path, annotations) for path in paths])
