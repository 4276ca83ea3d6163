"""The rows of a patch or latent file as the experiments see them: volume, sequence, class.

The experiments choose rows by their metadata only, so this reads the ``file``, ``sequence`` and
``label`` columns of a file written by :class:`~monai_cmri.data.dataset.PatchWriter` or
:class:`~monai_cmri.latents.LatentWriter` (both layouts share these columns) and never its arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_cmri.data.dataset import ABNORMAL, LABELS, NORMAL, ArrayFileDataset, PatchDataset, open_array_file
from monai_cmri.latents import LatentDataset

__all__ = ["LABELED", "Rows", "read_rows"]

#: The classes of the downstream task (paper 2.4.2): normal 0, abnormal 1; unlabeled rows take no part.
LABELED: tuple[str, ...] = (LABELS[NORMAL], LABELS[ABNORMAL])


@dataclass(frozen=True)
class Rows:
    """Metadata of every row of one file.

    Attributes:
        path: the file.
        volumes: ``(N,)`` object array, the ``file`` column (volume name; ``"synthetic"`` for samples).
        sequences: ``(N,)`` object array of sequence names.
        labels: ``(N,)`` object array of class names (one of :data:`~monai_cmri.data.dataset.LABELS`).
    """

    path: Path
    volumes: np.ndarray
    sequences: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.volumes)

    def labeled(self) -> np.ndarray:
        """Ascending indices of the normal and abnormal rows."""
        return np.flatnonzero(np.isin(self.labels, LABELED))

    def cells(self, indices: np.ndarray | None = None) -> list[tuple[str, str]]:
        """``(sequence, label)`` of each row (of ``indices``, or of every row)."""
        rows = np.arange(len(self)) if indices is None else np.asarray(indices)
        return list(zip(self.sequences[rows].tolist(), self.labels[rows].tolist()))


def read_rows(path: str | os.PathLike[str]) -> Rows:
    """The metadata of a patch file or a latent file.

    Raises:
        FileNotFoundError: if there is no such file.
        OSError: if it is not HDF5.
        ValueError: if it is neither layout or holds unknown sequences or labels; names the file.
    """
    path = Path(path)
    with open_array_file(path, "patch or latent") as file:
        latent = "latents" in file and "patches" not in file
    if latent:
        data: ArrayFileDataset = LatentDataset(path)
    else:
        data = PatchDataset(path)
    columns = data.columns
    return Rows(path, np.asarray(columns["file"], dtype=object), np.asarray(columns["sequence"], dtype=object),
                np.asarray(columns["label"], dtype=object))
