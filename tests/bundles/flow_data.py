"""Tiny latents, a tiny cvae checkpoint and bundle runs shared by the flow bundle tests."""

from __future__ import annotations

from pathlib import Path

import torch
from cvae_data import REPO
from monai.bundle import run as bundle_run

from monai_cmri.atomic import file_sha256, write_json
from monai_cmri.engines import record_path
from monai_cmri.latents import encode_splits
from monai_cmri.networks import ComplexCVAE

#: A flow network small enough for a CPU test, on 2x16x16 latents.
TINY_FLOW = {"channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1, "norm_num_groups": 4,
             "num_head_channels": 8, "batch_size": 8}


def configs(bundle: str, *names: str) -> list[str]:
    return [str(REPO / "bundles" / bundle / "configs" / name) for name in names]


def run(bundle: str, entry: str, names: tuple[str, ...], **overrides) -> None:
    """``python -m monai.bundle run <entry>`` of a flow bundle, in this process."""
    bundle_run(entry, config_file=configs(bundle, *names), bundle_root=str(REPO / "bundles" / bundle),
               logging_file=str(REPO / "bundles" / bundle / "configs" / "logging.conf"), **overrides)


def write_flow_latents(patches: Path, root: Path) -> dict[str, Path]:
    """A tiny cvae checkpoint with its record in ``root/cvae``, and ``patches`` encoded with it."""
    torch.manual_seed(0)
    cvae = ComplexCVAE(channels=[4, 8], num_res_blocks=1, norm_num_groups=4)
    checkpoint = root / "cvae" / "model.pt"
    checkpoint.parent.mkdir()
    torch.save(cvae.state_dict(), checkpoint)
    write_json(record_path(checkpoint), {
        "weights": "model.pt", "sha256": file_sha256(checkpoint),
        "network": {"network": "monai_cmri.networks.ComplexCVAE", "in_channels": 2, "latent_channels": 2,
                    "channels": [4, 8], "num_res_blocks": 1, "norm_num_groups": 4}})
    encode_splits(cvae, patches, root / "latents", checkpoint=checkpoint, progress=False)
    return {"root": root, "cvae": checkpoint, "latents": root / "latents", "patches": patches}
