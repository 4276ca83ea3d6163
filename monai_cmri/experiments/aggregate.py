"""Volume scores from patch probabilities, and AUROC (paper 2.4.2 external evaluation, 2.4.3).

The external test set labels whole volumes, so the patch probabilities of a volume are pooled:
"the volume-level score is computed as the mean of the top 5% of these probabilities", which
weights the most suspicious patches without averaging over mostly normal tissue.

How many patches is "the top 5 %": ``k = ceil(0.05 * n)`` of a volume's ``n`` patches, so at least
one patch, and at least 5 % of them (a volume of 64 patches: 4; of 100: 5; of 101: 6). The product
is rounded to 9 decimals before the ceiling, so that ``0.05 * 60`` (``3.0000000000000004`` in
binary) counts 3 patches, not 4.

AUROC is scikit-learn's ``roc_auc_score`` (ties count one half).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["TOP_FRACTION", "top_count", "top_mean", "volume_scores", "volume_labels", "auroc", "volume_auroc"]

#: Share of a volume's highest patch probabilities that its score averages (paper 2.4.2).
TOP_FRACTION: float = 0.05


def top_count(n: int, fraction: float = TOP_FRACTION) -> int:
    """Patches averaged for a volume of ``n``: ``ceil(fraction * n)``, at least 1 (module docstring).

    Raises:
        ValueError: for ``n < 1`` or a fraction outside ``(0, 1]``.
    """
    if n < 1:
        raise ValueError(f"top_count needs at least one patch, got {n}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top_count: fraction must lie in (0, 1], got {fraction}")
    return max(1, math.ceil(round(fraction * n, 9)))


def top_mean(probabilities: np.ndarray | Sequence[float], fraction: float = TOP_FRACTION) -> float:
    """Mean of the ``top_count(n, fraction)`` highest of ``n`` probabilities.

    Raises:
        ValueError: for an empty or non-1D input, or a bad fraction.
    """
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"top_mean expects a non-empty 1D array of probabilities, got shape {values.shape}")
    k = top_count(values.size, fraction)
    return float(np.mean(np.sort(values)[-k:]))


def volume_scores(
    volumes: Sequence[str] | np.ndarray, probabilities: Sequence[float] | np.ndarray, fraction: float = TOP_FRACTION
) -> dict[str, float]:
    """``{volume: top_mean of its patches' probabilities}`` (paper 2.4.2).

    Args:
        volumes: ``(N,)`` volume name of each patch.
        probabilities: ``(N,)`` abnormality probability of each patch.
        fraction: share of the highest probabilities averaged.

    Returns:
        Scores in sorted volume order.

    Raises:
        ValueError: for arrays of different lengths, not 1D, or empty.
    """
    names, values = _pair(volumes, probabilities, "probabilities")
    return {name: top_mean(group, fraction) for name, group in _groups(names, values)}


def volume_labels(volumes: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray) -> dict[str, int]:
    """``{volume: label}`` from per-patch labels that inherit their volume's label (paper 2.1.4).

    Raises:
        ValueError: for arrays of different lengths, or a volume whose patches disagree (named).
    """
    names, values = _pair(volumes, labels, "labels")
    result = {}
    for name, group in _groups(names, values):
        found = np.unique(group)
        if found.size != 1:
            raise ValueError(f"volume {name}: its patches carry different labels {found.tolist()}")
        result[name] = int(found[0])
    return result


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of binary ``labels`` (1 positive) ranked by ``scores``.

    Raises:
        ValueError: for different lengths, labels other than 0 and 1, or only one class.
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"auroc expects labels and scores of one 1D shape, got {y.shape} and {s.shape}")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError(f"auroc expects labels 0 and 1, got {np.unique(y).tolist()}")
    if np.unique(y).size != 2:
        raise ValueError("auroc needs both classes among the labels")
    return float(roc_auc_score(y, s))


def volume_auroc(
    volumes: Sequence[str] | np.ndarray,
    probabilities: Sequence[float] | np.ndarray,
    labels: Mapping[str, int] | Sequence[int] | np.ndarray,
    fraction: float = TOP_FRACTION,
) -> float:
    """Volume-level AUROC of top-``fraction`` mean scores (paper 2.4.2, the external test set).

    Args:
        volumes: ``(N,)`` volume name of each patch.
        probabilities: ``(N,)`` abnormality probability of each patch.
        labels: ``{volume: 0 | 1}``, or ``(N,)`` per-patch labels (each volume's patches agree).
        fraction: share of the highest probabilities averaged.

    Raises:
        ValueError: as :func:`volume_scores` and :func:`auroc`, or a volume without a label.
    """
    scores = volume_scores(volumes, probabilities, fraction)
    truth = dict(labels) if isinstance(labels, Mapping) else volume_labels(volumes, labels)
    absent = sorted(set(scores) - set(truth))
    if absent:
        raise ValueError(f"volume_auroc: no label for volume(s) {absent[:5]}")
    return auroc([truth[name] for name in scores], list(scores.values()))


def _pair(
    volumes: Sequence[str] | np.ndarray, values: Sequence | np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    names, array = np.asarray(volumes, dtype=object), np.asarray(values)
    if names.ndim != 1 or array.shape != names.shape or names.size == 0:
        raise ValueError(f"expected non-empty 1D volumes and {what} of one length, got {names.shape} and {array.shape}")
    return names, array


def _groups(names: np.ndarray, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(volume, its values)`` in sorted volume order, by one stable sort rather than a pass per volume."""
    unique, inverse, counts = np.unique(names.astype(str), return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    return list(zip(unique.tolist(), np.split(values[order], np.cumsum(counts)[:-1])))
