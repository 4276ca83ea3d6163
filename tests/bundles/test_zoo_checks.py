"""The MONAI model zoo's bundle checks on every bundle, offline (issue: model-zoo CI).

Project-MONAI/model-zoo's ``ci/verify_bundle.py`` in its full mode checks, per bundle: the files a
bundle must have (``configs/metadata.json``, ``LICENSE``) and should have (``models/model.pt``,
``configs/inference.json``), the version against the changelog, the metadata against MONAI's schema
(``verify_metadata``), the data shape of ``network_def`` in ``configs/inference.json`` from
``network_data_format`` (``verify_net_in_out``) and the TorchScript export of ``models/model.pt``
into that network (``ckpt_export``), skipping the bundles of its exclude lists. This module runs the
same MONAI functions with the same arguments, with the schema shipped beside the tests instead of
the download.

The flow bundles are declared the way the zoo declares its generative diffusion bundles: excluded
from the TorchScript export, because their network is MONAI's ``DiffusionModelUNet``, which
TorchScript cannot compile, and from the argument-free shape check, because a velocity needs the
flow time and the sequence besides the latent. Their shapes are checked here with those inputs
(``extra_forward_args``) instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cvae_data import REPO
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from monai_cmri.engines import load_weights, read_record

pytestmark = pytest.mark.filterwarnings("ignore")

BUNDLES = ("cvae", "flow_stage1", "flow_stage2", "classifier")
SCHEMA = Path(__file__).parent / "meta_schema_20240725.json"
#: The zoo's exclude lists, as the entries these bundles need (``ci/bundle_custom_data.py``).
EXCLUDE_SHAPE = {"flow_stage1", "flow_stage2"}
EXCLUDE_TORCHSCRIPT = {"flow_stage1", "flow_stage2"}
#: Inputs besides the image of the networks excluded from the plain shape check.
EXTRA_FORWARD_ARGS = {
    "flow_stage1": {"t": torch.tensor([0.5]), "sequence": torch.tensor([0])},
    "flow_stage2": {"t": torch.tensor([0.5]), "sequence": torch.tensor([0]), "label": torch.tensor([1])},
}
#: Profile of the weights each bundle ships in models/ (the flow networks of the default profile
#: hold 27 million parameters, 109 MB, over the zoo's 25 MB per file).
SHIPPED_PROFILE = {"cvae": "default", "classifier": "default", "flow_stage1": "cpu", "flow_stage2": "cpu"}


@pytest.fixture(scope="module", params=BUNDLES)
def bundle(request, tmp_path_factory) -> Path:
    """A copy of one bundle in a zoo-like ``models`` folder (the checks may write beside it)."""
    models = tmp_path_factory.mktemp("models")
    shutil.copytree(REPO / "bundles" / request.param, models / request.param)
    (models / "model_info.json").write_text("{}")
    return models / request.param


def test_required_files_version_and_metadata(bundle):
    for name in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        assert (bundle / name).is_file(), name
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    schema = bundle / "eval" / "schema.json"
    schema.parent.mkdir()
    shutil.copy(SCHEMA, schema)
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema))
    # well under the zoo's 25 MB per file
    assert (bundle / "models" / "model.pt").stat().st_size < 10e6


def test_the_data_shape_of_network_def(bundle):
    extra = EXTRA_FORWARD_ARGS.get(bundle.name, {}) if bundle.name in EXCLUDE_SHAPE else {}
    verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
                      extra_forward_args=extra)


def test_shipped_weights_fit_their_network_and_say_what_they_are(bundle):
    configs = [str(bundle / "configs" / "inference.json")]
    profile = SHIPPED_PROFILE[bundle.name]
    if profile == "cpu":
        configs.append(str(bundle / "configs" / "cpu.json"))
    parser = ConfigParser()
    parser.read_config(configs)
    parser["bundle_root"] = str(bundle)
    weights = bundle / "models" / "model.pt"
    load_weights(parser.get_parsed_content("network_def"), weights)  # strict: every key and shape
    record = read_record(weights)
    assert record is not None, "models/model.json must describe models/model.pt (its SHA-256)"
    assert record["network"]["profile"] == profile
    assert "simulated" in json.loads((bundle / "configs" / "metadata.json").read_text())["description"]


def test_torchscript_export_of_the_shipped_weights(bundle, tmp_path):
    if bundle.name in EXCLUDE_TORCHSCRIPT:
        # what the exclusion declares: MONAI's DiffusionModelUNet, inside FlowUNet, does not script
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "cpu.json")])
        parser["bundle_root"] = str(bundle)
        with pytest.raises(RuntimeError):  # TorchScript's compile error
            torch.jit.script(parser.get_parsed_content("network_def"))
        return
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(bundle / "models" / "model.pt"),
                meta_file=str(bundle / "configs" / "metadata.json"),
                config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle))
    scripted = torch.jit.load(str(exported))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = load_weights(parser.get_parsed_content("network_def"), bundle / "models" / "model.pt").eval()
    image = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    x = torch.randn(2, image["num_channels"], *image["spatial_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(scripted(x), network(x), atol=1e-5)
