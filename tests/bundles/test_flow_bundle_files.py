"""The files of the ``flow_stage1`` and ``flow_stage2`` bundles: metadata, file set, configs, evaluation (paper 2.3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from cvae_data import REPO
from flow_data import TINY_FLOW, configs, run, write_flow_latents
from monai.bundle import ConfigParser

from monai_cmri.networks import FlowUNet

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

SCHEMA = Path(__file__).with_name("meta_schema_20240725.json")
BUNDLES = ("flow_stage1", "flow_stage2")
def bundle_files(bundle: str) -> set[str]:
    """The bundle's files, relative to its folder, without trained outputs in ``models/``."""
    root = REPO / "bundles" / bundle
    files = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}
    return {name for name in files if not name.startswith("models/") or name == "models/.gitkeep"}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_has_every_file_of_the_cvae_bundle(bundle):
    missing = bundle_files("cvae") - bundle_files(bundle)
    assert not missing, f"{bundle} lacks {sorted(missing)}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_is_valid_against_the_local_schema(bundle):
    jsonschema = pytest.importorskip("jsonschema")
    meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    fmt = meta["network_data_format"]
    expected = {"image", "t", "sequence"} | ({"label"} if bundle == "flow_stage2" else set())
    assert set(fmt["inputs"]) == expected and set(fmt["outputs"]) == {"pred"}
    # The declared shapes and tokens are those of the network (input: the latent x_t; output: its velocity).
    latent, velocity = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    net = FlowUNet(in_channels=latent["num_channels"], out_channels=velocity["num_channels"],
                   num_classes=3 if bundle == "flow_stage2" else None, **{
                       k: v for k, v in TINY_FLOW.items() if k != "batch_size"}).eval()
    assert fmt["inputs"]["sequence"]["value_range"][1] == net.sequence_null
    if bundle == "flow_stage2":
        assert fmt["inputs"]["label"]["value_range"][1] == net.class_null
    x = torch.zeros(1, latent["num_channels"], *latent["spatial_shape"])
    label = torch.tensor([net.class_null]) if bundle == "flow_stage2" else None
    with torch.no_grad():
        v = net(x, torch.tensor([0.5]), torch.tensor([net.sequence_null]), label)
    assert list(v.shape[1:]) == [velocity["num_channels"], *velocity["spatial_shape"]]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_multi_gpu_config_parses(bundle):
    """Without a process group: the merged config is valid JSON and its non-distributed ids resolve."""
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "multi_gpu_train.json"))
    parser.update({"bundle_root": str(REPO / "bundles" / bundle)})
    assert parser.get_parsed_content("train#dataloader#shuffle") is False
    assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert parser["train#sampler"]["_target_"] == (
        "DistributedSampler" if bundle == "flow_stage1" else "DistributedWeightedRandomSampler")
    assert parser["ema"]["model"] == "@network"  # Ignite's EMAHandler unwraps the DDP network
    assert isinstance(parser.get_parsed_content("network_def"), FlowUNet)
    assert parser.get_parsed_content("device").type in ("cpu", "cuda")
    handlers = parser["train#handlers"]
    assert [h["_target_"] for h in handlers[-3:]] == [
        "StatsHandler", "TensorBoardStatsHandler", "monai_cmri.engines.TerminalProgressBar"]


@pytest.fixture(scope="module")
def latents(patches, tmp_path_factory) -> dict[str, Path]:
    """A tiny cvae checkpoint with its record, and the patch folder encoded with it."""
    pytest.importorskip("tensorboard")
    return write_flow_latents(patches, tmp_path_factory.mktemp("flow_files"))


def test_evaluate_reports_a_finite_test_loss(latents, caplog):
    """Train each stage one epoch, then evaluate its EMA weights on the test split's latents.

    Stage 2's evaluation loads the stage-2 weights alone: the stage-1 file is gone by then.
    """
    root = latents["root"]
    common = {"dataset_dir": str(latents["latents"]), **TINY_FLOW}
    stage1, stage2 = root / "stage1", root / "stage2"
    run("flow_stage1", "training", ("train.json", "cpu.json"), output_dir=str(stage1), epochs=1, **common)
    run("flow_stage2", "training", ("train.json", "cpu.json"), output_dir=str(stage2), epochs=1, phase1_epochs=1,
        stage1_ckpt=str(stage1 / "models" / "model.pt"), **common)
    weights1 = stage1 / "models" / "model.pt"
    moved = root / "stage1_moved.pt"
    weights1.rename(moved)  # stage 2's evaluation must not need the stage-1 file
    try:
        evaluate("flow_stage2", stage2, common)
    finally:
        moved.rename(weights1)
    evaluate("flow_stage1", stage1, common)


def evaluate(bundle: str, out: Path, common: dict) -> None:
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "cpu.json", "evaluate.json"))
    parser.update({"bundle_root": str(REPO / "bundles" / bundle), "output_dir": str(out), **common})
    evaluator = parser.get_parsed_content("validate#evaluator")
    assert evaluator.network is parser.get_parsed_content("network")
    assert str(parser.get_parsed_content("validate#dataset#path")).endswith("test.h5")
    evaluator.run()
    loss = evaluator.state.metrics["test_loss"]
    assert math.isfinite(loss) and loss > 0, (bundle, loss)
    # The bundle's own command runs too.
    run(bundle, "run", ("train.json", "cpu.json", "evaluate.json"), output_dir=str(out), **common)
