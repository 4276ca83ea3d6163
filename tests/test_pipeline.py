from __future__ import annotations

import json

from monai_cmri.data.dataset import PatchDataset
from monai_cmri.pipeline import run_pipeline


def test_pipeline_streams_volumes_and_writes_patch_datasets(tmp_path):
    summary = run_pipeline(tmp_path, volumes=2, seed=0, slices=3, coils=[4], train=False, progress=False)
    text = summary.read_text()
    # k-space is deleted once processed; annotations, figures and patches stay.
    assert not list((tmp_path / "kspace").glob("*.h5"))
    assert (tmp_path / "kspace" / "brain.csv").is_file()
    manifest = json.loads((tmp_path / "patches" / "manifest.json").read_text())
    assert len(manifest["volumes"]) >= 2
    sequences = {v["sequence"] for v in manifest["volumes"].values()}
    assert {p.stem for p in (tmp_path / "figures").glob("*.png")} >= sequences
    train = PatchDataset(tmp_path / "patches" / "train.h5")
    assert len(train) == manifest["patches"]["train"] > 0
    for name in manifest["volumes"]:
        assert name + ".h5" in text
