"""The files of the ``classifier`` bundle: file set, metadata against the schema, configs that parse (paper 2.4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from classifier_data import CONFIGS, REPO, configs
from monai.bundle import ConfigParser

from monai_cmri.data.classification import ClassificationDataset
from monai_cmri.networks import SEResNetClassifier

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

SCHEMA = Path(__file__).with_name("meta_schema_20240725.json")
ROOT = REPO / "bundles" / "classifier"


def bundle_files(bundle: str) -> set[str]:
    """The bundle's files, relative to its folder, without trained outputs in ``models/``."""
    root = REPO / "bundles" / bundle
    files = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}
    return {name for name in files if not name.startswith("models/") or name == "models/.gitkeep"}


@pytest.mark.parametrize("other", ["cvae", "flow_stage1"])
def test_bundle_has_every_file_of_the_other_bundles(other):
    # multi_gpu_inference.json shares a flow bundle's sampling over ranks; the classifier samples nothing.
    expected = {name for name in bundle_files(other)
                if not name.startswith("docs/images/") and name != "configs/multi_gpu_inference.json"}
    missing = expected - bundle_files("classifier")
    assert not missing, f"classifier lacks {sorted(missing)}"
    assert (ROOT / "LICENSE").read_text() == (REPO / "bundles" / other / "LICENSE").read_text()


def test_metadata_is_valid_and_describes_the_network():
    jsonschema = pytest.importorskip("jsonschema")
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    fmt = meta["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    assert (image["num_channels"], image["spatial_shape"]) == (2, [96, 96])
    assert (pred["num_channels"], pred["spatial_shape"]) == (1, [])
    # the CPU profile's network maps the declared input to one value per item
    cpu = json.loads((CONFIGS / "cpu.json").read_text())
    net = SEResNetClassifier(in_channels=2, channels=cpu["channels"], blocks=cpu["blocks"]).eval()
    with torch.no_grad():
        out = net(torch.zeros(3, image["num_channels"], *image["spatial_shape"]))
    assert out.shape == (3, 1)


def test_train_config_has_run_and_training_and_its_defaults_read_the_demo_patches():
    parser = ConfigParser()
    parser.read_config(configs("train.json"))
    assert parser["training"] == "@run" and len(parser["run"]) == 3
    for split in ("train", "val", "test"):
        assert parser.get_parsed_content(f"{split}_sources") == [
            {"path": f"runs/demo/patches/{split}.h5", "target": "label", "indices": None, "sequences": None}]
    assert parser.get_parsed_content("augment") is True
    inference = ConfigParser()
    inference.read_config(configs("inference.json"))
    assert inference.get_parsed_content("sources")[0]["path"] == "runs/demo/patches/test.h5"
    # the network of every config is built from the same variables
    assert inference["network_def"] == parser["network_def"]


def test_multi_gpu_config_parses(tmp_path):
    """Without a process group: the merged config is valid JSON and its non-distributed ids resolve."""
    parser = ConfigParser()
    parser.read_config(configs("train.json", "multi_gpu_train.json"))
    parser.update({"bundle_root": str(ROOT)})
    assert parser.get_parsed_content("train#dataloader#shuffle") is False
    assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert parser["train#sampler"]["_target_"] == "DistributedWeightedRandomSampler"
    assert parser["test#sampler"]["_target_"] == "DistributedSampler"
    assert parser["ema"]["model"] == "@network"  # Ignite's EMAHandler unwraps the DDP network
    assert isinstance(parser.get_parsed_content("network_def"), SEResNetClassifier)
    handlers = parser["train#handlers"]
    assert [h["_target_"] for h in handlers[-3:]] == [
        "StatsHandler", "TensorBoardStatsHandler", "monai_cmri.engines.TerminalProgressBar"]


def test_sources_override_reaches_the_datasets(tmp_path):
    from classifier_data import write_split

    write_split(tmp_path / "a.h5", 3, 0, separable=True)
    parser = ConfigParser()
    parser.read_config(configs("train.json", "cpu.json"))
    sources = [{"path": str(tmp_path / "a.h5"), "target": 1, "indices": [0, 2], "sequences": None}]
    parser.update({"bundle_root": str(ROOT), "train_sources": sources, "augment": False})
    dataset = parser.get_parsed_content("train#dataset")
    assert isinstance(dataset, ClassificationDataset) and dataset.rows.tolist() == [0, 2]
    assert dataset.targets.tolist() == [1, 1] and parser.get_parsed_content("train#transform") is None
