"""Tests of the top-5 % volume score and the AUROC (paper 2.4.2, external test set)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monai_cmri.experiments.aggregate import auroc, top_count, top_mean, volume_auroc, volume_labels, volume_scores


def test_top_count_is_the_ceiling_of_five_percent():
    assert [top_count(n) for n in (1, 19, 20, 21, 40, 41, 60, 64, 100, 101)] == [1, 1, 1, 2, 2, 3, 3, 4, 5, 6]
    assert top_count(10, 1.0) == 10
    with pytest.raises(ValueError, match="at least one patch"):
        top_count(0)


def test_volume_scores_by_hand():
    # Volume a: 30 patches -> ceil(1.5) = 2 highest, 0.9 and 0.8; volume b: 3 patches -> the highest alone.
    a = [0.9, 0.8] + [0.1] * 28
    volumes = ["b", "a", "b"] + ["a"] * 29 + ["b"]
    probabilities = [0.2, a[0], 0.7] + a[1:] + [0.3]
    scores = volume_scores(volumes, probabilities)
    assert list(scores) == ["a", "b"]
    assert scores["a"] == pytest.approx(0.85) and scores["b"] == pytest.approx(0.7)
    assert top_mean([0.5]) == 0.5


def test_auroc_equals_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 2)  # rounded: ties count one half
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 1], [0.2, 0.3])


def test_volume_auroc_ranks_volume_scores():
    rng = np.random.default_rng(1)
    names = [f"v{i}" for i in range(12)]
    truth = {name: i % 2 for i, name in enumerate(names)}
    volumes = np.repeat(names, 25)
    positive = np.array([truth[v] for v in volumes])
    probabilities = rng.random(volumes.size) * 0.5 + 0.4 * positive * rng.random(volumes.size)
    expected = [np.mean(np.sort(probabilities[volumes == name])[-2:]) for name in names]
    reference = roc_auc_score([truth[name] for name in names], expected)
    assert volume_auroc(volumes, probabilities, truth) == pytest.approx(reference, abs=1e-12)
    patch_labels = [truth[v] for v in volumes]
    assert volume_auroc(volumes, probabilities, patch_labels) == pytest.approx(reference, abs=1e-12)
    with pytest.raises(ValueError, match="volume v0: its patches carry different labels"):
        volume_labels(volumes, [1] + patch_labels[1:])
