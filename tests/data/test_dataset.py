"""Tests of the patch file and PatchDataset (SPEC 1.3, paper 2.3 weighted sampling)."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from monai_cmri.data.dataset import (
    ABNORMAL,
    COLUMNS,
    LABELS,
    NORMAL,
    UNLABELED,
    PatchDataset,
    PatchWriter,
    merge_patches,
    read_parameters,
    sampling_weights,
    write_patches,
)
from monai_cmri.data.patches import cut_patches, plan_patches
from monai_cmri.data.sequences import SEQUENCES

P = 8
N = 11


def columns(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "file": np.array([f"file_brain_AXT1_1_{i // 3}" for i in range(n)]),
        "slice": rng.integers(0, 16, n),
        "row": rng.integers(0, 224, n),
        "col": rng.integers(0, 224, n),
        "sequence": rng.choice(["AXFLAIR", "axt1", "AXT1POST", "AXT2"], n),
        "label": rng.choice(LABELS, n),
        "overlap": rng.random(n),
        "box": rng.integers(-1, 3, n),
    }


@pytest.fixture
def patch_file(tmp_path):
    patches = np.random.default_rng(1).standard_normal((N, 2, P, P)).astype(np.float32)
    meta = columns()
    path = tmp_path / "patches.h5"
    write_patches(path, patches, meta, parameters={"seed": 3, "size": P})
    return path, patches, meta


def test_label_constants():
    assert (LABELS[NORMAL], LABELS[ABNORMAL], LABELS[UNLABELED]) == ("normal", "abnormal", "unlabeled")


def test_round_trip(patch_file, tmp_path):
    path, patches, meta = patch_file
    assert [p.name for p in tmp_path.iterdir()] == ["patches.h5"]
    assert read_parameters(path) == {"seed": 3, "size": P}
    dataset = PatchDataset(path)
    assert len(dataset) == N and dataset.size == P
    for i in range(N):
        item = dataset[i]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (2, P, P)
        np.testing.assert_array_equal(item["image"].numpy(), patches[i])
        assert item["sequence_name"] == meta["sequence"][i].upper()
        assert item["sequence"] == SEQUENCES.index(item["sequence_name"])
        assert item["label"] == LABELS.index(meta["label"][i]) and item["label_name"] == meta["label"][i]
        assert item["file"] == meta["file"][i] and item["box"] == meta["box"][i]
        assert (item["slice"], item["row"], item["col"]) == (meta["slice"][i], meta["row"][i], meta["col"][i])
        assert item["overlap"] == pytest.approx(meta["overlap"][i], rel=1e-6)
    with h5py.File(path) as file:
        assert set(COLUMNS) <= set(file) and file["patches"].chunks == (1, 2, P, P)


def test_lazy_equals_in_memory_and_transform(patch_file):
    path = patch_file[0]
    lazy, memory = PatchDataset(path), PatchDataset(path, in_memory=True)
    for i in range(N):
        a, b = lazy[i], memory[i]
        assert a.keys() == b.keys()
        assert torch.equal(a["image"], b["image"])
        assert all(a[k] == b[k] for k in a if k != "image")
    doubled = PatchDataset(path, transform=lambda item: {**item, "image": 2 * item["image"]})
    assert torch.equal(doubled[4]["image"], 2 * lazy[4]["image"])
    memory[0]["image"].zero_()
    assert torch.equal(memory[0]["image"], lazy[0]["image"])
    lazy.close()


def test_dataloader_with_two_workers(patch_file):
    path, patches, meta = patch_file
    dataset = PatchDataset(path)
    dataset[0]  # a handle opened in the parent must not be shared with the workers
    loader = DataLoader(dataset, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    images = torch.cat([batch["image"] for batch in batches])
    np.testing.assert_array_equal(images.numpy(), patches)
    files = [name for batch in batches for name in batch["file"]]
    assert files == list(meta["file"])


def cell_sums(weights: torch.Tensor, cells: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    sums: dict[tuple[int, int], float] = {}
    for weight, cell in zip(weights.tolist(), cells):
        sums[cell] = sums.get(cell, 0.0) + weight
    return sums


def test_sampling_weights_balance_cells(patch_file):
    dataset = PatchDataset(patch_file[0])
    weights = sampling_weights(dataset)
    assert weights.shape == (N,) and weights.dtype == torch.float64
    cells = [(int(s), int(c)) for s, c in zip(dataset.sequences, dataset.labels)]
    sums = cell_sums(weights, cells)
    assert len(sums) > 3
    np.testing.assert_allclose(list(sums.values()), 1.0 / len(sums), rtol=1e-12)
    assert float(weights.sum()) == pytest.approx(1.0)
    picked = [0, 2, 4, 6]
    sums = cell_sums(sampling_weights(dataset[picked]), [cells[i] for i in picked])
    np.testing.assert_allclose(list(sums.values()), 1.0 / len(sums), rtol=1e-12)
    sampler = WeightedRandomSampler(weights, 4000, generator=torch.Generator().manual_seed(0))
    drawn = np.bincount([cells.index(cells[i]) for i in sampler], minlength=N)
    share = {cell: drawn[cells.index(cell)] / 4000 for cell in set(cells)}
    np.testing.assert_allclose(list(share.values()), 1.0 / len(share), atol=0.04)
    with pytest.raises(ValueError, match="PatchDataset"):
        sampling_weights(list(range(3)))


def test_pickled_dataset_reopens_its_file(patch_file):
    dataset = PatchDataset(patch_file[0])
    first = dataset[3]["image"]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._file is None and torch.equal(copy[3]["image"], first)


def test_writer_appends_and_merges(tmp_path):
    rng = np.random.default_rng(2)
    parts = [rng.standard_normal((n, 2, P, P)).astype(np.float32) for n in (4, 0, 3)]
    paths = []
    for k, part in enumerate(parts):
        paths.append(tmp_path / f"shard{k}.h5")
        with PatchWriter(paths[-1], size=P, parameters={"shard": k}) as writer:
            writer.append(part, columns(len(part), seed=k))
    merged = tmp_path / "merged.h5"
    assert merge_patches(paths, merged, block=2) == 7
    dataset = PatchDataset(merged, in_memory=True)
    images = np.stack([dataset[i]["image"].numpy() for i in range(7)])
    np.testing.assert_array_equal(images, np.concatenate(parts))
    assert read_parameters(merged) == {"shard": 0}
    assert [dataset[i]["file"] for i in range(7)] == [*columns(4, 0)["file"], *columns(3, 2)["file"]]


def test_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with PatchWriter(path, size=P) as writer:
            writer.append(np.zeros((2, 2, P, P)), columns(2))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    bad = columns(2)
    del bad["overlap"]
    with pytest.raises(ValueError, match="out.h5: missing metadata column"):
        write_patches(path, np.zeros((2, 2, P, P)), bad)
    with pytest.raises(ValueError, match="out.h5: unknown sequence 'T9'"):
        write_patches(path, np.zeros((2, 2, P, P)), {**columns(2), "sequence": ["T9", "AXT1"]})
    with pytest.raises(ValueError, match="out.h5: unknown label"):
        write_patches(path, np.zeros((2, 2, P, P)), {**columns(2), "label": ["lesion", "normal"]})
    with pytest.raises(ValueError, match=r"out.h5: expected real patches"):
        write_patches(path, np.zeros((2, 1, P, P)), columns(2))
    assert list(tmp_path.iterdir()) == []


def test_bad_files_name_the_file(tmp_path, patch_file):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        PatchDataset(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(OSError, match="text.h5"):
        PatchDataset(text)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as file:
        file["other"] = np.zeros(3)
    with pytest.raises(ValueError, match="empty.h5: no 'patches'"):
        PatchDataset(empty)
    broken = tmp_path / "broken.h5"
    with h5py.File(patch_file[0]) as source, h5py.File(broken, "w") as file:
        for name in source:
            file[name] = source[name][()][:5] if name == "label" else source[name][()]
    with pytest.raises(ValueError, match="broken.h5: metadata 'label' has shape"):
        PatchDataset(broken)


def test_patches_of_a_plan_round_trip(tmp_path):
    """From a brain mask to a PatchDataset item: the item holds the volume's pixels at the record."""
    rng = np.random.default_rng(0)
    shape = (4, 128, 128)
    volume = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    mask = np.zeros((4, 128, 128), dtype=bool)
    mask[:, 10:120, 8:125] = True
    plan = plan_patches(mask, "normal", np.random.default_rng(1), size=32)
    path = tmp_path / "plan.h5"
    write_patches(path, cut_patches(volume, plan.records, 32), plan.columns("file_brain_AXT2_1_1", "AXT2"))
    dataset = PatchDataset(path)
    assert len(dataset) == len(plan) == 10
    for i, record in enumerate(plan.records):
        item = dataset[i]
        crop = volume[record.slice, record.row : record.row + 32, record.col : record.col + 32]
        np.testing.assert_array_equal(item["image"][0].numpy(), crop.real)
        np.testing.assert_array_equal(item["image"][1].numpy(), crop.imag)
        assert item["label"] == NORMAL and item["sequence_name"] == "AXT2" and item["box"] == -1
