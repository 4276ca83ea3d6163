"""Data sources: the JSON-friendly description of which rows of which file a classifier trains on.

A *source* is ``{"path": str, "target": "label" | 0 | 1, "indices": list[int] | None,
"sequences": list[str] | None}``:

* ``path``: a patch or latent file (:mod:`monai_cmri.data.dataset`, :mod:`monai_cmri.latents`);
* ``target``: ``"label"`` for the row's own class (normal 0, abnormal 1: the downstream task of
  paper 2.4.2), or a constant ``0`` / ``1`` for every row (real 0, synthetic 1: paper 2.4.1);
* ``indices``: the rows of the file to use, ascending; ``None`` for every row;
* ``sequences``: keep only rows of these sequences; ``None`` for every sequence.

A training set is a list of sources. The functions of this package always give explicit
``indices`` and ``sequences=None``, so a source never depends on how a reader combines the two
filters.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from monai_cmri.data.sequences import normalize_sequence

__all__ = ["TARGETS", "Source", "make_source"]

#: Allowed values of a source's ``target``.
TARGETS: tuple[str | int, ...] = ("label", 0, 1)

#: A source dict (module docstring).
Source = dict[str, Any]


def make_source(
    path: str | os.PathLike[str],
    target: str | int,
    indices: Iterable[int] | np.ndarray | None = None,
    sequences: Iterable[str] | None = None,
) -> Source:
    """A checked source dict of plain Python values (JSON-serialisable).

    Args:
        path: the patch or latent file.
        target: ``"label"``, ``0`` or ``1``.
        indices: rows of the file; stored sorted, as ``int``. ``None`` for every row.
        sequences: sequence names (any spelling :func:`normalize_sequence` accepts); ``None`` for all.

    Returns:
        ``{"path", "target", "indices", "sequences"}``.

    Raises:
        ValueError: for another target, a negative or repeated index, or an unknown sequence.
    """
    if isinstance(target, bool) or target not in TARGETS:
        raise ValueError(f"{path}: target must be one of {TARGETS}, got {target!r}")
    rows = None
    if indices is not None:
        array = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        if array.ndim != 1:
            raise ValueError(f"{path}: indices must be 1D, got shape {array.shape}")
        array = np.sort(array)
        if array.size and (array[0] < 0 or np.any(np.diff(array) == 0)):
            raise ValueError(f"{path}: indices must be distinct non-negative rows")
        rows = array.tolist()
    names = None if sequences is None else [normalize_sequence(name, str(path)) for name in sequences]
    return {"path": str(path), "target": target, "indices": rows, "sequences": names}

