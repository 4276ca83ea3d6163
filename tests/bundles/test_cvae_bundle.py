"""Tests of the ``cvae`` bundle: metadata, configs, and tiny end-to-end runs on CPU (SPEC 4)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from blob_helpers import complex_blobs
from monai.bundle import ConfigParser
from monai.bundle import run as bundle_run

from monai_cmri.data.dataset import PatchDataset, write_patches
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.losses import CVAELoss
from monai_cmri.metrics import phase_coherence
from monai_cmri.networks import ComplexCVAE

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "cvae" / "configs"
SCHEMA = Path(__file__).with_name("meta_schema_20240725.json")
SIZE = 32
#: Test split: 3 AXFLAIR, 2 AXT1, 1 AXT2.
TEST_SEQUENCES = ["AXFLAIR", "AXT1", "AXFLAIR", "AXT2", "AXT1", "AXFLAIR"]
#: What a rank's C++ runtime prints when a gloo process aborts on exit.
SHUTDOWN_ABORT = "terminate called without an active exception"
#: A model small enough for a CPU test; cpu.json is merged first, as users do.
TINY = {"channels": [4, 8], "num_res_blocks": 1, "norm_num_groups": 4, "batch_size": 4, "epochs": 1}


def config(*names: str) -> list[str]:
    return [str(CONFIGS / name) for name in names]


def phantoms(n: int, seed: int) -> np.ndarray:
    """Smooth complex blobs with a phase ramp, ``(n, 2, SIZE, SIZE)``."""
    return complex_blobs(n, SIZE, seed, ramp="x")


def write_split(path: Path, sequences: list[str], seed: int) -> None:
    n = len(sequences)
    labels = [
        "unlabeled" if s in ("AXT2", "AXT1PRE") else ("normal", "abnormal")[i % 2] for i, s in enumerate(sequences)
    ]
    columns = {
        "file": [f"file_brain_{s}_{seed}_{i}" for i, s in enumerate(sequences)],
        "slice": np.arange(n),
        "row": np.full(n, 10),
        "col": np.full(n, 20),
        "sequence": sequences,
        "label": labels,
        "overlap": np.zeros(n),
        "brain": np.ones(n),
    }
    write_patches(path, phantoms(n, seed), columns, parameters={"split": path.stem, "seed": seed})


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("patches")
    write_split(folder / "train.h5", [SEQUENCES[i % 5] for i in range(10)], 0)
    write_split(folder / "val.h5", [SEQUENCES[i % 5] for i in range(5)], 1)
    write_split(folder / "test.h5", TEST_SEQUENCES, 2)
    return folder


@pytest.fixture(scope="module")
def trained(patches, tmp_path_factory) -> Path:
    """Train one epoch through the command line of the README, as ``run training``."""
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("cvae")
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", json.dumps(config("train.json", "cpu.json")),
        "--dataset_dir", str(patches), "--output_dir", str(out), "--ckpt_dir", str(out / "models"),
    ]  # fmt: skip
    for key, value in TINY.items():
        command += [f"--{key}", json.dumps(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Epoch[1] Metrics -- " in result.stdout and "val_coherence" in result.stdout
    return out


def tiny_network() -> ComplexCVAE:
    return ComplexCVAE(channels=TINY["channels"], num_res_blocks=1, norm_num_groups=4)


def overrides(patches: Path, out: Path) -> dict[str, object]:
    return {"dataset_dir": str(patches), "output_dir": str(out), "ckpt_dir": str(out / "models"), **TINY}


def test_metadata_is_valid_against_the_local_schema():
    jsonschema = pytest.importorskip("jsonschema")
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    # The declared shapes are those of the network.
    fmt = meta["network_data_format"]
    net = ComplexCVAE(channels=(8, 16), num_res_blocks=1, norm_num_groups=4).eval()
    shape = fmt["inputs"]["image"]["spatial_shape"]
    with torch.no_grad():
        recon, mu, logvar = net(torch.zeros(1, fmt["inputs"]["image"]["num_channels"], *shape), torch.tensor([4]))
    assert list(recon.shape[1:]) == [
        fmt["outputs"]["reconstruction"]["num_channels"],
        *fmt["outputs"]["reconstruction"]["spatial_shape"],
    ]
    assert list(mu.shape[1:]) == [
        fmt["outputs"]["latents"]["num_channels"],
        *fmt["outputs"]["latents"]["spatial_shape"],
    ]
    assert fmt["inputs"]["sequence"]["value_range"] == [0, len(SEQUENCES) - 1]
    assert list(fmt["inputs"]["sequence"]["channel_def"].values()) == list(SEQUENCES)


def test_configs_agree_with_each_other():
    train = json.loads((CONFIGS / "train.json").read_text())
    cpu = json.loads((CONFIGS / "cpu.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    # The CPU profile only overrides variables, so it merges onto every config.
    assert set(cpu) <= set(train) and all(not isinstance(train[k], dict) for k in cpu)
    assert inference["network_def"] == train["network_def"]
    for key in ("channels", "num_res_blocks", "norm_num_groups", "dataset_dir", "output_dir", "bundle_root"):
        assert inference[key] == train[key], key
    # Both entries of SPEC 4 run the same training.
    assert train["run"] == ["$@train#trainer.run()"] and train["training"] == "@run"
    assert train["dataset_dir"] == "runs/demo/patches" and train["output_dir"] == "runs/demo/cvae"
    parser = ConfigParser()
    parser.read_config(config("train.json", "cpu.json", "multi_gpu_train.json"))
    assert parser["train#dataloader#sampler"] == "@train#sampler"


def test_training_writes_a_loadable_state_dict(trained):
    path = trained / "models" / "model.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    network = tiny_network()
    network.load_state_dict(state)  # strict: the state dict alone, no "module." or "model" prefix
    assert any(p.name.startswith("events.out.tfevents") for p in trained.iterdir())


def test_evaluate_writes_the_per_sequence_table(trained, patches, tmp_path):
    out = tmp_path / "eval"
    bundle_run(
        "run",
        config_file=config("train.json", "cpu.json", "evaluate.json"),
        logging_file=False,
        **{**overrides(patches, out), "ckpt_dir": str(trained / "models")},
    )
    with open(out / "reconstruction.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["sequence"] for row in rows] == ["AXFLAIR", "AXT1", "AXT2"]
    assert [int(row["n"]) for row in rows] == [3, 2, 1]
    assert all(0.0 <= float(row["coherence"]) <= 1.0 and np.isfinite(float(row["psnr"])) for row in rows)
    markdown = (out / "reconstruction.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in markdown[2:]] == ["AXFLAIR", "AXT1", "AXT2"]
    assert (out / "reconstruction.png").stat().st_size > 0


def test_encode_then_decode_keeps_metadata(trained, patches, tmp_path):
    out = tmp_path / "inference"
    common = dict(
        logging_file=False,
        dataset_dir=str(patches),
        output_dir=str(out),
        ckpt_dir=str(trained / "models"),
        progress=False,
        **{key: TINY[key] for key in ("channels", "num_res_blocks", "norm_num_groups")},
    )
    bundle_run("run", config_file=config("inference.json"), **common)
    bundle_run("decode", config_file=config("inference.json"), **common)
    for split in ("train", "val", "test"):
        source, latent, decoded = (
            patches / f"{split}.h5",
            out / "latents" / f"{split}.h5",
            out / "decoded" / f"{split}.h5",
        )
        with h5py.File(source, "r") as a, h5py.File(latent, "r") as z, h5py.File(decoded, "r") as b:
            n = a["patches"].shape[0]
            assert z["latents"].shape == (n, 2, SIZE // 2, SIZE // 2)
            assert b["patches"].shape == (n, 2, SIZE, SIZE)
            names = sorted(k for k in a if k != "patches")
            assert names == sorted(k for k in z if k != "latents") == sorted(k for k in b if k != "patches")
            for name in names:
                np.testing.assert_array_equal(z[name][()], a[name][()], err_msg=name)
                np.testing.assert_array_equal(b[name][()], a[name][()], err_msg=name)
            assert json.loads(z.attrs["encoder"])["checkpoint"] == str(trained / "models" / "model.pt")
        assert PatchDataset(decoded).parameters["split"] == split


def test_multi_gpu_config_trains_with_two_gloo_processes(patches, tmp_path):
    """Two DDP processes on CPU (gloo), started by torchrun as the bundle's README says.

    The validation set of 5 patches splits 3 + 2 across the ranks; the metrics rank 0 logs must be
    those of the whole set, each patch counted once: they equal a one-process evaluation of the
    saved weights (1 epoch, so the key-metric checkpoint holds the weights that were validated).
    """
    pytest.importorskip("tensorboard")
    # A process group and Ignite's distributed context must not leak into the other tests.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run",
        "--config_file", json.dumps(config("train.json", "cpu.json", "multi_gpu_train.json")),
    ]  # fmt: skip
    for key, value in overrides(patches, out).items():
        command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    if result.returncode and SHUTDOWN_ABORT in log and log.count("Engine run finished") == 2:
        # About one run in 40 here, a gloo rank aborts while its process exits, after training,
        # validation and the checkpoint are complete (see the bundle's docs/README.md); one relaunch
        # keeps that race out of this test, and any other failure still fails it.
        shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    # Only rank 0 logs, saves and draws the progress bar.
    assert log.count("Epoch[1] Metrics -- ") == 2, log[-3000:]  # the trainer's and the evaluator's line
    logged = {name: float(value) for name, value in re.findall(r"(val_\w+): ([-\d.e+]+)", log)}
    assert sorted(logged) == ["val_coherence", "val_loss", "val_psnr", "val_ssim"], log[-3000:]
    network = tiny_network()
    network.load_state_dict(torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    val = PatchDataset(patches / "val.h5", in_memory=True)
    images = torch.stack([item["image"] for item in val])
    with torch.no_grad():
        recon, mu, logvar = network(images, torch.as_tensor(val.sequences))
    coherence = phase_coherence(recon, images)
    # The patches differ enough that a patch counted twice or missed would move the mean past 1e-4.
    assert coherence.std() > 1e-2
    assert logged["val_coherence"] == pytest.approx(coherence.mean().item(), abs=1e-4), log[-3000:]
    assert logged["val_loss"] == pytest.approx(CVAELoss()(recon, images, mu, logvar)[0].item(), abs=1e-4), log[-3000:]
