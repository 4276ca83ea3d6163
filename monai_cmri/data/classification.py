"""Binary classification data over rows of several patch or latent files (paper 2.4, SPEC 3).

Both evaluations of the paper train one classifier recipe on rows gathered from several files:

* real versus synthetic latents (paper 2.4.1): the real latent file with target 0 and a synthetic
  one with target 1, per sequence;
* normal versus abnormal patches (paper 2.4.2): the real patch file with the file's own labels,
  plus class- and sequence-matched synthetic patches, or a fraction of the real rows.

A *source* says which rows of one file take part and with which target. Sources are plain dicts,
so a bundle override or an experiment script passes them as JSON::

    {"path": "runs/demo/patches/train.h5", "target": "label", "indices": null, "sequences": null}

* ``path``: a patch file (:class:`~monai_cmri.data.dataset.PatchDataset`) or a latent file
  (:class:`~monai_cmri.latents.LatentDataset`), told apart by their array dataset;
* ``target``: ``"label"`` (the default) takes the file's ``label`` column, ``normal`` -> 0,
  ``abnormal`` -> 1, and leaves out the rows of any other label (``unlabeled``); ``0`` or ``1``
  gives every selected row that target (e.g. real 0, synthetic 1);
* ``indices``: the rows of the file to use, in that order (None: every row);
* ``sequences``: keep only rows of these sequences (None: every sequence).

Class-balanced sampling (paper 2.4.1) is :meth:`ClassificationDataset.sampling_weights` with
``torch.utils.data.WeightedRandomSampler`` or MONAI's ``DistributedWeightedRandomSampler``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from monai.data import Dataset

from monai_cmri.data.dataset import ABNORMAL, NORMAL, ArrayFileDataset, PatchDataset, open_array_file
from monai_cmri.data.sequences import SEQUENCES, normalize_sequence

__all__ = ["LABEL_TARGET", "SOURCE_KEYS", "TARGETS", "ClassificationDataset", "balanced_weights"]

#: The ``target`` of a source that takes each row's class from the file's ``label`` column.
LABEL_TARGET = "label"
#: The keys a source dict may have.
SOURCE_KEYS: tuple[str, ...] = ("path", "target", "indices", "sequences")
#: The binary targets: 0 (normal, or real) and 1 (abnormal, or synthetic).
TARGETS: tuple[int, ...] = (0, 1)
#: Item keys set by the dataset itself; file columns of these names are not copied.
_ITEM_KEYS = ("image", "target", "sequence", "label", "source", "index")


class ClassificationDataset(Dataset):
    """Rows of several patch or latent files with a binary target, as MONAI dictionaries (paper 2.4).

    Item ``i`` is ``{"image": (C, H, W) float32 tensor, "target": float32 scalar tensor (0. or 1.),
    "sequence": int (index into SEQUENCES), "label": int (the file's class, index into LABELS),
    "source": int (index into ``sources``), "index": int (row in its file), ...}`` plus the
    metadata columns that every source file has (``file``, ``slice``, ``row``, ``col``,
    ``overlap``, ``sequence_name``, ``label_name``, and any extra column common to all files), so
    that batches of mixed sources collate. The item goes through ``transform`` (a MONAI
    ``Compose`` on ``"image"``, e.g. the augmentation of paper 2.4.2). A latent file's ``latent``
    array is the item's ``image`` too.

    Rows are ordered by source, then as the source's ``indices`` list them.

    Args:
        sources: one dict per file, see the module docstring; keys ``path`` (required),
            ``target`` (``"label"``, 0 or 1; default ``"label"``), ``indices`` (list of rows or
            None), ``sequences`` (list of sequence names or None).
        in_memory: read every array of each file into memory now (the whole file, also rows that
            are not selected).
        transform: callable or sequence of callables applied to each item.

    Attributes:
        sources: the sources, normalised (``path`` a string, every key present, sequences in
            canonical spelling).
        files: the :class:`~monai_cmri.data.dataset.ArrayFileDataset` of each source.
        shape: ``(C, H, W)`` of one image, the same for all sources.
        targets: ``(N,)`` float32, 0 or 1.
        sequences: ``(N,)`` int64 index into :data:`~monai_cmri.data.sequences.SEQUENCES`.
        source_ids: ``(N,)`` int64 index into ``sources``.
        rows: ``(N,)`` int64 row of each item in its file.
        column_names: the file metadata columns copied into every item.

    Raises:
        ValueError: for no sources, a malformed source (unknown key, target, sequence, or a row
            outside the file), or files whose arrays differ in shape; the message names the file.
        OSError: if a file is missing or not HDF5.

    Example:
        >>> dataset = ClassificationDataset([  # doctest: +SKIP
        ...     {"path": "latents/train.h5", "target": 0, "sequences": ["AXT2"]},
        ...     {"path": "synthetic/latents.h5", "target": 1, "sequences": ["AXT2"]},
        ... ])
    """

    def __init__(
        self,
        sources: Sequence[Mapping[str, Any]],
        in_memory: bool = False,
        transform: Sequence[Callable] | Callable | None = None,
    ) -> None:
        if isinstance(sources, (Mapping, str, os.PathLike)) or not isinstance(sources, Sequence):
            raise ValueError(f"ClassificationDataset expects a list of source dicts, got {type(sources).__name__}")
        if not sources:
            raise ValueError("ClassificationDataset: no sources")
        self.sources = [_check_source(source, i) for i, source in enumerate(sources)]
        self.files: list[ArrayFileDataset] = []
        parts: dict[str, list[np.ndarray]] = {"targets": [], "sequences": [], "source_ids": [], "rows": []}
        names: list[str] | None = None
        self.shape: tuple[int, ...] = ()
        for i, source in enumerate(self.sources):
            file = _open(Path(source["path"]), in_memory)
            shape = _item_shape(file)
            if not self.shape:
                self.shape = shape
            elif shape != self.shape:
                first = self.sources[0]["path"]
                raise ValueError(
                    f"{file.path}: arrays of shape {shape} differ from the shape {self.shape} of {first}; "
                    "every source of a classification dataset must have the same shape"
                )
            rows, targets = _select(file, source)
            self.files.append(file)
            parts["targets"].append(targets)
            parts["sequences"].append(file.sequences[rows])
            parts["source_ids"].append(np.full(len(rows), i, dtype=np.int64))
            parts["rows"].append(rows)
            columns = [*file.columns, "sequence_name", "label_name"]
            names = columns if names is None else [name for name in names if name in columns]
        self.column_names = [name for name in names or [] if name not in _ITEM_KEYS]
        self.targets = np.concatenate(parts["targets"]).astype(np.float32)
        self.sequences = np.concatenate(parts["sequences"]).astype(np.int64)
        self.source_ids = np.concatenate(parts["source_ids"])
        self.rows = np.concatenate(parts["rows"])
        super().__init__(data=range(len(self.rows)), transform=transform)

    def _transform(self, index: int) -> Any:
        index = self.data[index]
        source, row = int(self.source_ids[index]), int(self.rows[index])
        file = self.files[source]
        # the file's item without its own transform: array, sequence, label and every column
        base = file[row]
        item: dict[str, Any] = {
            "image": torch.as_tensor(base[file.key], dtype=torch.float32),
            "target": torch.tensor(float(self.targets[index]), dtype=torch.float32),
            "sequence": int(base["sequence"]),
            "label": int(base["label"]),
            "source": source,
            "index": row,
        }
        for name in self.column_names:
            item[name] = base[name]
        return self.transform(item)

    def counts(self, by_sequence: bool = False) -> dict[str, Any]:
        """Items per target, ``{"0": n_0, "1": n_1}``; with ``by_sequence``, ``{"0": {"AXFLAIR": n, ...}, ...}``.

        Every target is listed, also with no item; with ``by_sequence`` only the sequences present.
        """
        counts: dict[str, Any] = {}
        for target in TARGETS:
            chosen = self.targets == target
            if not by_sequence:
                counts[str(target)] = int(chosen.sum())
                continue
            values, numbers = np.unique(self.sequences[chosen], return_counts=True)
            counts[str(target)] = {SEQUENCES[v]: int(n) for v, n in zip(values.tolist(), numbers.tolist())}
        return counts

    def sampling_weights(self, by_sequence: bool = False) -> torch.Tensor:
        """Class-balanced sampling weights, ``(N,)`` float64 summing to 1 (paper 2.4.1).

        Every target present gets the same total weight; with ``by_sequence`` that weight is split
        equally between the sequences present within the target (see :func:`balanced_weights`).
        For ``torch.utils.data.WeightedRandomSampler`` or MONAI's
        ``DistributedWeightedRandomSampler``.
        """
        return balanced_weights(self.targets, self.sequences if by_sequence else None)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape))
        counts = ", ".join(f"target {t}: {n}" for t, n in self.counts().items())
        return f"ClassificationDataset({len(self.sources)} sources, {len(self)} items {shape}, {counts})"


def balanced_weights(
    targets: Sequence[Any] | np.ndarray, groups: Sequence[Any] | np.ndarray | None = None
) -> torch.Tensor:
    """Per-item weights giving every target the same total, and every group within a target an equal share.

    With ``T`` distinct targets, each gets ``1 / T``; within a target with ``G_t`` distinct groups
    (e.g. sequences), each group gets ``1 / (T G_t)``, shared equally by its ``n`` items. Without
    groups an item of target ``t`` weighs ``1 / (T n_t)``. Written here because
    ``torch.utils.data.WeightedRandomSampler`` and MONAI's samplers take the weights but do not
    compute them, and :func:`~monai_cmri.data.dataset.sampling_weights` balances (sequence, class)
    cells of one file, not targets of several.

    Args:
        targets: ``(N,)`` target of each item.
        groups: ``(N,)`` group of each item (e.g. sequence index), or None.

    Returns:
        float64 ``(N,)``, summing to 1.

    Raises:
        ValueError: for no items or ``groups`` of another length.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1 or targets.size == 0:
        raise ValueError(f"balanced_weights: targets must be a non-empty (N,) array, got shape {targets.shape}")
    groups = np.zeros(targets.size, dtype=np.int64) if groups is None else np.asarray(groups)
    if groups.shape != targets.shape:
        raise ValueError(f"balanced_weights: groups of shape {groups.shape} do not match targets {targets.shape}")
    weights = np.zeros(targets.size, dtype=np.float64)
    classes = np.unique(targets)
    for target in classes:
        chosen = targets == target
        cells, inverse, counts = np.unique(groups[chosen], return_inverse=True, return_counts=True)
        weights[chosen] = 1.0 / (classes.size * cells.size * counts[inverse.reshape(-1)])
    return torch.from_numpy(weights)


def _check_source(source: Any, position: int) -> dict[str, Any]:
    """A source dict with every key, checked; ValueError naming the source otherwise."""
    if not isinstance(source, Mapping) or "path" not in source:
        raise ValueError(f"source {position}: expected a dict with a 'path', got {source!r}")
    path = os.fspath(source["path"])
    unknown = sorted(set(source) - set(SOURCE_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown source key(s) {unknown}; expected {', '.join(SOURCE_KEYS)}")
    target = source.get("target", LABEL_TARGET)
    constant = isinstance(target, numbers.Real) and not isinstance(target, (bool, np.bool_)) and target in TARGETS
    if not (constant or (isinstance(target, str) and target == LABEL_TARGET)):
        raise ValueError(f"{path}: target must be 'label', 0 or 1, got {target!r}")
    indices = source.get("indices")
    if indices is not None:
        array = np.asarray(indices)
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise ValueError(f"{path}: indices must be a list of integers, got {indices!r:.80}")
        indices = array.astype(np.int64).tolist()
    sequences = source.get("sequences")
    if sequences is not None:
        if isinstance(sequences, str):
            sequences = [sequences]
        sequences = [normalize_sequence(name, path) for name in sequences]
    return {
        "path": path,
        "target": target if target == LABEL_TARGET else int(target),
        "indices": indices,
        "sequences": sequences,
    }


def _open(path: Path, in_memory: bool) -> ArrayFileDataset:
    """The dataset of a patch or latent file, chosen by the array dataset the file holds."""
    # The latent reader lives in monai_cmri.latents, beside its writer and the encoder; imported here
    # rather than at the top so that importing the data package never loads the latent stage.
    from monai_cmri.latents import LatentDataset

    with open_array_file(path, "patch or latent") as file:
        kinds = [name for name in ("patches", "latents") if isinstance(file.get(name), h5py.Dataset)]
    if not kinds:
        raise ValueError(f"{path}: neither a 'patches' nor a 'latents' dataset; not a patch or latent file")
    reader = PatchDataset if kinds[0] == "patches" else LatentDataset
    return reader(path, in_memory=in_memory)


def _item_shape(file: ArrayFileDataset) -> tuple[int, ...]:
    shape = getattr(file, "shape", None)
    return tuple(shape) if shape is not None else (2, file.size, file.size)


def _select(file: ArrayFileDataset, source: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``file`` that the source keeps, and their targets."""
    count = len(file)
    if source["indices"] is None:
        rows = np.arange(count, dtype=np.int64)
    else:
        rows = np.asarray(source["indices"], dtype=np.int64).reshape(-1)
        outside = rows[(rows < 0) | (rows >= count)]
        if outside.size:
            raise ValueError(f"{file.path}: indices {outside[:5].tolist()} outside the file's {count} rows")
    keep = np.ones(rows.size, dtype=bool)
    if source["sequences"] is not None:
        keep &= np.isin(file.sequences[rows], [SEQUENCES.index(name) for name in source["sequences"]])
    if source["target"] == LABEL_TARGET:
        labels = file.labels[rows]
        keep &= (labels == NORMAL) | (labels == ABNORMAL)
        targets = (labels == ABNORMAL).astype(np.float32)
    else:
        targets = np.full(rows.size, source["target"], dtype=np.float32)
    return rows[keep], targets[keep]
