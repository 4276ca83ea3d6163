"""The ``flow_stage1`` and ``flow_stage2`` bundles end to end on tiny latents, on the CPU (paper 2.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flow_data import TINY_FLOW, run, write_flow_latents

from monai_cmri.atomic import file_sha256
from monai_cmri.data.dataset import PatchDataset
from monai_cmri.engines import record_path
from monai_cmri.flow.sampling import matched_counts
from monai_cmri.latents import LatentDataset

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

@pytest.fixture(scope="module")
def latents(patches, tmp_path_factory) -> dict[str, Path]:
    """A tiny cvae checkpoint with its record, and the patch folder encoded with it."""
    pytest.importorskip("tensorboard")
    return write_flow_latents(patches, tmp_path_factory.mktemp("flow"))


def test_stage1_then_stage2_train_and_sample(latents):
    root = latents["root"]
    common = {"dataset_dir": str(latents["latents"]), **TINY_FLOW}
    inference = {"patch_dir": str(latents["patches"]), "cvae_ckpt": str(latents["cvae"]), "steps": 2}
    stage1, stage2 = root / "stage1", root / "stage2"

    run("flow_stage1", "training", ("train.json", "cpu.json"), output_dir=str(stage1), epochs=2, **common)
    weights = stage1 / "models" / "model.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    assert json.loads(record_path(weights).read_text())["network"]["weights"] == "EMA"

    run("flow_stage1", "run", ("inference.json", "cpu.json"), output_dir=str(stage1), samples_per_sequence=2,
        **common, **inference)
    synthetic = LatentDataset(stage1 / "synthetic" / "latents.h5")
    assert len(synthetic) == 10 and synthetic.shape == (2, 16, 16)
    assert set(synthetic.columns["checkpoint_sha256"]) == {file_sha256(weights)}
    assert set(synthetic.columns["nfe"].tolist()) == {4}  # Heun, 2 steps, w = 1: no null branch
    assert synthetic.sequences.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert len(PatchDataset(stage1 / "synthetic" / "patches.h5")) == 10
    assert (stage1 / "samples.png").stat().st_size > 0
    assert "| AXFLAIR | 0 |" in (stage1 / "latent_statistics.md").read_text()

    with pytest.raises(Exception) as error:
        run("flow_stage2", "training", ("train.json", "cpu.json"), output_dir=str(stage2), epochs=2,
            phase1_epochs=1, stage1_ckpt=str(root / "missing.pt"), **common)
    assert "missing.pt" in "".join(map(str, _chain(error.value)))

    run("flow_stage2", "training", ("train.json", "cpu.json"), output_dir=str(stage2), epochs=2, phase1_epochs=1,
        stage1_ckpt=str(weights), **common)
    run("flow_stage2", "run", ("inference.json", "cpu.json"), output_dir=str(stage2), **common, **inference)
    synthetic = LatentDataset(stage2 / "synthetic" / "latents.h5")
    real = latents["latents"] / "train.h5"
    assert matched_counts(stage2 / "synthetic" / "latents.h5") == matched_counts(real)
    assert set(synthetic.columns["nfe"].tolist()) == {8}  # Heun, 2 steps, w = 2: both halves
    assert synthetic.encoder["guide"] == "class" and synthetic.encoder["guidance_scale"] == 2.0
    assert (stage2 / "samples.png").stat().st_size > 0


def _chain(error: BaseException | None):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__
