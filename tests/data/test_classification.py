"""Tests of ClassificationDataset and class-balanced weights (paper 2.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from torch.utils.data import WeightedRandomSampler

from monai_cmri.data.classification import ClassificationDataset, balanced_weights
from monai_cmri.data.dataset import write_patches
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.latents import LatentWriter

P = 8
#: Rows of the first patch file: (sequence, label).
ROWS_A = [("AXFLAIR", "normal"), ("AXT1", "abnormal"), ("AXT2", "unlabeled"), ("AXFLAIR", "abnormal"),
          ("AXT1", "normal"), ("AXFLAIR", "normal"), ("AXT1PRE", "unlabeled"), ("AXT1", "abnormal")]
#: Rows of the second patch file.
ROWS_B = [("AXT1POST", "abnormal"), ("AXT1POST", "normal"), ("AXFLAIR", "normal"), ("AXT1POST", "normal")]


def columns(rows, prefix: str, extra: dict | None = None) -> dict:
    n = len(rows)
    return {
        "file": [f"{prefix}_{i}" for i in range(n)],
        "slice": np.arange(n) + 100,
        "row": np.arange(n) * 2,
        "col": np.arange(n) * 3,
        "sequence": [s for s, _ in rows],
        "label": [label for _, label in rows],
        "overlap": np.zeros(n),
        **(extra or {}),
    }


def arrays(n: int, seed: int, size: int = P) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2, size, size)).astype(np.float32)


@pytest.fixture
def files(tmp_path):
    a, b = arrays(len(ROWS_A), 0), arrays(len(ROWS_B), 1)
    write_patches(tmp_path / "a.h5", a, columns(ROWS_A, "a", {"box": np.arange(len(ROWS_A))}))
    write_patches(tmp_path / "b.h5", b, columns(ROWS_B, "b", {"brain": np.ones(len(ROWS_B))}))
    write_patches(tmp_path / "big.h5", arrays(2, 2, size=P + 2), columns(ROWS_B[:2], "big"))
    latents = arrays(3, 3, size=P)
    with LatentWriter(tmp_path / "latents.h5", shape=(2, P, P), parameters={}, encoder={}) as writer:
        writer.append(latents, columns(ROWS_B[:3], "syn"))
    return {"a": (tmp_path / "a.h5", a), "b": (tmp_path / "b.h5", b), "big": tmp_path / "big.h5",
            "latents": (tmp_path / "latents.h5", latents)}


def test_label_target_keeps_normal_and_abnormal_rows_with_their_classes(files):
    path, a = files["a"]
    dataset = ClassificationDataset([{"path": str(path), "target": "label"}])
    kept = [i for i, (_, label) in enumerate(ROWS_A) if label != "unlabeled"]
    assert dataset.rows.tolist() == kept
    assert dataset.targets.tolist() == [float(ROWS_A[i][1] == "abnormal") for i in kept]
    assert len(dataset) == 6 and dataset.shape == (2, P, P)
    item = dataset[1]
    assert item["index"] == 1 and item["source"] == 0
    assert item["target"].dtype == torch.float32 and item["target"].ndim == 0 and float(item["target"]) == 1.0
    assert item["image"].dtype == torch.float32 and torch.equal(item["image"], torch.from_numpy(a[1]))
    assert item["sequence"] == SEQUENCES.index("AXT1") and item["sequence_name"] == "AXT1"
    assert (item["file"], item["slice"], item["row"], item["col"]) == ("a_1", 101, 2, 3)
    assert item["box"] == 1  # a column of the only file is kept


def test_constant_target_indices_and_sequences_select_rows(files):
    (path_a, a), (path_b, b) = files["a"], files["b"]
    dataset = ClassificationDataset([
        {"path": path_a, "target": 0, "indices": [6, 2, 0, 3], "sequences": ["axflair", "AX T2", "AXT1PRE"]},
        {"path": str(path_b), "target": 1, "sequences": ["AXT1POST"]},
    ])
    # unlabeled rows take part with a constant target; order follows the indices; row 3 is AXFLAIR too
    assert dataset.source_ids.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert dataset.rows.tolist() == [6, 2, 0, 3, 0, 1, 3]
    assert dataset.targets.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert dataset.sources[0]["sequences"] == ["AXFLAIR", "AXT2", "AXT1PRE"]
    assert torch.equal(dataset[5]["image"], torch.from_numpy(b[1]))
    assert dataset.counts() == {"0": 4, "1": 3}
    assert dataset.counts(by_sequence=True) == {"0": {"AXFLAIR": 2, "AXT1PRE": 1, "AXT2": 1}, "1": {"AXT1POST": 3}}
    # only the columns common to both files are items' metadata, so mixed batches collate
    assert "box" not in dataset.column_names and "brain" not in dataset.column_names
    batch = next(iter(DataLoader(dataset, batch_size=7)))
    assert batch["image"].shape == (7, 2, P, P) and batch["target"].tolist() == dataset.targets.tolist()
    assert batch["file"] == ["a_6", "a_2", "a_0", "a_3", "b_0", "b_1", "b_3"]
    assert batch["index"].tolist() == dataset.rows.tolist()


def test_latent_files_give_images_too(files):
    (path, latents), (patch_path, _) = files["latents"], files["b"]
    dataset = ClassificationDataset([{"path": path, "target": 1}, {"path": patch_path, "target": 0, "indices": [2]}],
                                    in_memory=True)
    assert dataset.targets.tolist() == [1, 1, 1, 0]
    assert torch.equal(dataset[2]["image"], torch.from_numpy(latents[2]))


def test_transform_is_applied_to_the_item(files):
    path, a = files["a"]
    double = lambda item: {**item, "image": 2 * item["image"]}  # noqa: E731
    dataset = ClassificationDataset([{"path": path, "target": 1}], transform=double)
    assert torch.equal(dataset[0]["image"], 2 * torch.from_numpy(a[0]))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"target": 2}, "target must be 'label', 0 or 1"),
        ({"target": True}, "target must be"),
        ({"indices": [0, 8]}, "outside the file's 8 rows"),
        ({"indices": [-1]}, "outside"),
        ({"sequences": ["AXT3"]}, "unknown sequence"),
        ({"weights": 1}, "unknown source key"),
    ],
)
def test_malformed_sources_name_the_file(files, source, message):
    path, _ = files["a"]
    with pytest.raises(ValueError, match=message) as error:
        ClassificationDataset([{"path": str(path), **source}])
    assert str(path) in str(error.value)


def test_sources_of_another_shape_are_refused_naming_the_file(files):
    with pytest.raises(ValueError, match=r"big\.h5: arrays of shape \(2, 10, 10\) differ") as error:
        ClassificationDataset([{"path": files["a"][0]}, {"path": files["big"]}])
    assert "a.h5" in str(error.value)
    with pytest.raises(ValueError, match="list of source dicts"):
        ClassificationDataset({"path": files["a"][0]})
    with pytest.raises(ValueError, match="no sources"):
        ClassificationDataset([])


def test_balanced_weights_give_every_target_the_same_total():
    targets = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    sequences = np.array([0, 0, 0, 0, 1, 2, 3, 3])
    weights = balanced_weights(targets)
    assert weights.dtype == torch.float64
    np.testing.assert_allclose(weights.numpy(), [1 / 12] * 6 + [1 / 4] * 2)
    # within target 0, sequences 0, 1, 2 share 1/2 equally: 1/6 each
    by_sequence = balanced_weights(targets, sequences).numpy()
    np.testing.assert_allclose(by_sequence, [1 / 24] * 4 + [1 / 6, 1 / 6] + [1 / 4] * 2)
    assert by_sequence.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(balanced_weights([1, 1, 1]).numpy(), [1 / 3] * 3)
    with pytest.raises(ValueError, match="do not match"):
        balanced_weights(targets, sequences[:3])


def test_weighted_sampler_draws_both_targets_equally(files):
    (path_a, _), (path_b, _) = files["a"], files["b"]
    dataset = ClassificationDataset([{"path": path_a, "target": 0}, {"path": path_b, "target": 1, "indices": [0]}])
    weights = dataset.sampling_weights()
    assert weights[:8].sum().item() == pytest.approx(0.5) and weights[8].item() == pytest.approx(0.5)
    draws = list(WeightedRandomSampler(weights, 4000, generator=torch.Generator().manual_seed(0)))
    drawn_targets = dataset.targets[draws]
    assert abs(drawn_targets.mean() - 0.5) < 0.03  # 4000 draws: standard error 0.008
