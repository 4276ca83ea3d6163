"""Tests of encoding patch files into latent files and decoding them back (paper 2.2, 2.3)."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
import torch
from blob_helpers import complex_blobs

from monai_cmri.data.dataset import PatchDataset, write_patches
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.latents import (
    LatentDataset,
    LatentWriter,
    decode_latents,
    decode_splits,
    encode_patches,
    encode_splits,
)
from monai_cmri.networks import ComplexCVAE

SIZE = 16
N = 7


def phantoms(n: int, seed: int = 0) -> np.ndarray:
    """Smooth complex blobs with a phase ramp, ``(n, 2, SIZE, SIZE)``."""
    return complex_blobs(n, SIZE, seed, ramp="y")


def columns(n: int = N) -> dict[str, object]:
    return {
        "file": [f"file_brain_{SEQUENCES[i % 5]}_0_{i}" for i in range(n)],
        "slice": np.arange(n) * 2,
        "row": np.arange(n) + 100,
        "col": np.arange(n) + 50,
        "sequence": [SEQUENCES[i % 5] for i in range(n)],
        "label": [("abnormal", "normal", "unlabeled")[i % 3] for i in range(n)],
        "overlap": np.linspace(0, 1, n),
        "box": np.arange(n) % 2 - 1,
        "brain": np.linspace(0.8, 1.0, n),
    }


@pytest.fixture
def network() -> ComplexCVAE:
    torch.manual_seed(0)
    return ComplexCVAE(channels=(4, 8), num_res_blocks=1, norm_num_groups=4, cond_dim=8).eval()


@pytest.fixture
def checkpoint(tmp_path, network):
    path = tmp_path / "model.pt"
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture
def patch_file(tmp_path):
    path = tmp_path / "patches" / "train.h5"
    path.parent.mkdir()
    write_patches(path, phantoms(N), columns(), parameters={"seed": 5, "split": "train"})
    return path


def stored(path) -> dict[str, tuple[object, np.ndarray]]:
    """Every metadata dataset of an HDF5 file: ``{name: (dtype, values)}``."""
    with h5py.File(path, "r") as file:
        return {name: (file[name].dtype, file[name][()]) for name in file if name not in ("patches", "latents")}


def test_encode_decode_round_trip_keeps_metadata(tmp_path, network, checkpoint, patch_file):
    latent_file, decoded_file = tmp_path / "latents" / "train.h5", tmp_path / "decoded" / "train.h5"
    assert encode_patches(network, patch_file, latent_file, checkpoint=checkpoint, batch_size=3, progress=False) == N
    assert decode_latents(network, latent_file, decoded_file, checkpoint=checkpoint, batch_size=4, progress=False) == N

    source, latents, decoded = stored(patch_file), stored(latent_file), stored(decoded_file)
    assert set(source) == set(latents) == set(decoded)
    for name, (dtype, values) in source.items():
        for other in (latents, decoded):
            assert other[name][0] == dtype, name
            np.testing.assert_array_equal(other[name][1], values, err_msg=name)

    with h5py.File(latent_file, "r") as file:
        z = file["latents"][()]
        assert z.shape == (N, 2, SIZE // 2, SIZE // 2) and z.dtype == np.float32
        assert file.attrs["kind"] == "latents"
        assert json.loads(file.attrs["parameters"]) == {"seed": 5, "split": "train"}
        encoder = json.loads(file.attrs["encoder"])
    assert encoder["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert encoder["source"] == str(patch_file) and "posterior mean" in encoder["statistic"]
    assert encoder["network"]["channels"] == [4, 8]

    # The latents are the posterior means; the decoded patches are the decoder's output on them.
    x = torch.from_numpy(phantoms(N))
    sequence = torch.tensor([i % 5 for i in range(N)])
    with torch.no_grad():
        mu = network.encode(x, sequence)[0]
        recon = network.decode(torch.from_numpy(z), sequence)
    np.testing.assert_allclose(z, mu.numpy(), atol=1e-5)
    patches = PatchDataset(decoded_file, in_memory=True)
    assert patches.size == SIZE and len(patches) == N
    np.testing.assert_allclose(np.stack([patches[i]["image"].numpy() for i in range(N)]), recon.numpy(), atol=1e-5)
    assert patches.parameters["seed"] == 5
    assert patches.parameters["encoder"] == encoder
    assert patches.parameters["decoder"]["source"] == str(latent_file)


def test_batch_size_and_mode_do_not_change_the_latents(tmp_path, network, patch_file):
    network.train()
    encode_patches(network, patch_file, tmp_path / "a.h5", batch_size=1, progress=False)
    assert network.training  # restored
    encode_patches(network, patch_file, tmp_path / "b.h5", batch_size=N, progress=False)
    a, b = LatentDataset(tmp_path / "a.h5", in_memory=True), LatentDataset(tmp_path / "b.h5")
    for i in range(N):
        torch.testing.assert_close(a[i]["latent"], b[i]["latent"], rtol=0, atol=1e-5)


def test_latent_dataset_items(tmp_path, network, patch_file):
    encode_patches(network, patch_file, tmp_path / "z.h5", progress=False)
    dataset = LatentDataset(tmp_path / "z.h5")
    item = dataset[3]
    assert item["latent"].shape == (2, SIZE // 2, SIZE // 2) and dataset.shape == (2, SIZE // 2, SIZE // 2)
    assert item["sequence"] == 3 and item["sequence_name"] == SEQUENCES[3]
    assert item["label"] == 1 and item["label_name"] == "abnormal"  # LABELS order: normal, abnormal, unlabeled
    assert (item["file"], item["slice"], item["row"], item["col"], item["box"]) == (columns()["file"][3], 6, 103, 53, 0)
    assert dataset.encoder["checkpoint"] is None
    dataset.close()


def test_splits_are_checked_before_anything_is_written(tmp_path, network, checkpoint, patch_file):
    with pytest.raises(FileNotFoundError, match="val.h5"):
        encode_splits(network, patch_file.parent, tmp_path / "latents", checkpoint=checkpoint, progress=False)
    assert not (tmp_path / "latents").exists()
    written = encode_splits(network, patch_file.parent, tmp_path / "latents", splits=["train"], progress=False)
    assert written == {"train": tmp_path / "latents" / "train.h5"}
    decoded = decode_splits(network, tmp_path / "latents", tmp_path / "decoded", splits=["train"], progress=False)
    assert len(PatchDataset(decoded["train"])) == N


def test_empty_patch_file_gives_empty_latent_file(tmp_path, network):
    empty = tmp_path / "empty.h5"
    write_patches(empty, np.zeros((0, 2, SIZE, SIZE), np.float32), columns(0))
    assert encode_patches(network, empty, tmp_path / "z.h5", progress=False) == 0
    dataset = LatentDataset(tmp_path / "z.h5")
    assert len(dataset) == 0 and dataset.shape == (2, SIZE // 2, SIZE // 2)
    assert decode_latents(network, tmp_path / "z.h5", tmp_path / "x.h5", progress=False) == 0
    assert len(PatchDataset(tmp_path / "x.h5")) == 0


def test_bad_inputs_name_the_file_and_leave_nothing(tmp_path, network, patch_file):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        encode_patches(network, tmp_path / "missing.h5", tmp_path / "z.h5", progress=False)
    with pytest.raises(ValueError, match=r"train.h5.*not a latent file"):
        LatentDataset(patch_file)
    with pytest.raises(ValueError, match="batch_size"):
        encode_patches(network, patch_file, tmp_path / "z.h5", batch_size=0, progress=False)
    assert not (tmp_path / "z.h5").exists()
    with pytest.raises(RuntimeError, match="boom"):
        with LatentWriter(tmp_path / "w.h5", (2, 4, 4)) as writer:
            writer.append(np.zeros((2, 2, 4, 4)), columns(2))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patches"]


def test_writer_checks_columns_and_shapes(tmp_path):
    with LatentWriter(tmp_path / "w.h5", (2, 4, 4)) as writer:
        with pytest.raises(ValueError, match="missing metadata column"):
            writer.append(np.zeros((2, 2, 4, 4)), {"file": ["a", "b"]})
        with pytest.raises(ValueError, match=r"w.h5.*\(n, 2, 4, 4\)"):
            writer.append(np.zeros((2, 2, 4, 5)), columns(2))
        bad = columns(2)
        bad["label"] = ["normal", "maybe"]
        with pytest.raises(ValueError, match="unknown label"):
            writer.append(np.zeros((2, 2, 4, 4)), bad)
        writer.append(np.ones((2, 2, 4, 4)), columns(2))
    dataset = LatentDataset(tmp_path / "w.h5", in_memory=True)
    assert len(dataset) == 2 and float(dataset[1]["latent"].sum()) == 32.0
