from __future__ import annotations

import subprocess
import sys

from monai_cmri.data.annotations import Annotations


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "monai_cmri", *args], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


def test_labels_command_prints_both_rules_with_real_counts():
    out = _run("labels")
    annotations = Annotations.default()
    lenient = annotations.counts("lenient")
    strict = annotations.counts("strict")
    line = next(row for row in out.splitlines() if row.startswith("AXFLAIR"))
    numbers = [int(n) for n in line.split() if n.isdigit()]
    expected = [lenient["AXFLAIR"][c] for c in ("abnormal", "normal", "excluded", "unlabeled")]
    expected += [strict["AXFLAIR"][c] for c in ("abnormal", "normal", "excluded", "unlabeled")]
    assert numbers[:8] == expected
    assert "lenient" in out and "strict" in out


def test_merge_command_joins_shard_folders(tmp_path):
    import json

    import numpy as np

    from monai_cmri.data.dataset import write_patches

    names = [f"file_brain_AXT2_200_{i}" for i in range(4)]
    for index, name in enumerate(names):
        folder = tmp_path / f"shard{index % 3}" / "volumes"
        folder.mkdir(parents=True, exist_ok=True)
        columns = {"file": [name] * 2, "slice": [0, 1], "row": [0, 0], "col": [0, 0], "sequence": ["AXT2"] * 2,
                   "label": ["unlabeled"] * 2, "overlap": [0.0, 0.0]}
        parameters = {"volume": name, "volume_class": "unlabeled", "sequence": "AXT2", "seed": 5}
        write_patches(folder / f"{name}.h5", np.zeros((2, 2, 96, 96), np.float32), columns, parameters)
    out = tmp_path / "shard0"
    _run("merge", "--out", str(out), "--parts", f"{tmp_path / 'shard1'},{tmp_path / 'shard2'}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["volumes"]) == names
    assert sum(manifest["patches"].values()) == 8
    assert manifest["seed"] == 5
