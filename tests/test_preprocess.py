from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import monai_cmri.preprocess as preprocess_module
from monai_cmri.data.annotations import Annotations
from monai_cmri.data.dataset import PatchDataset
from monai_cmri.preprocess import merge, preprocess


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _contents(out: Path) -> dict[str, tuple]:
    """Patches and metadata of every split file, for comparing two runs."""
    contents = {}
    for split in ("train", "val", "test"):
        path = out / f"{split}.h5"
        if not path.is_file():
            continue
        with h5py.File(path, "r") as file:
            contents[split] = (
                file["patches"][()],
                tuple(file["file"].asstr()[()]),
                file["slice"][()],
                file["row"][()],
                file["col"][()],
                tuple(file["label"].asstr()[()]),
            )
    return contents


@pytest.fixture(scope="module")
def processed(fastmri_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("patches")
    summary = preprocess(fastmri_dir, out, seed=3, progress=False)
    assert not summary.failed and summary.done
    return out


def test_patch_files_follow_the_rules(processed, fastmri_dir):
    manifest = json.loads((processed / "manifest.json").read_text())
    annotations = Annotations.from_csv(fastmri_dir / "brain.csv", fastmri_dir / "brain_file_list.csv")
    total = 0
    for split in ("train", "val", "test"):
        if not (processed / f"{split}.h5").is_file():
            continue
        data = PatchDataset(processed / f"{split}.h5", in_memory=True)
        total += len(data)
        for item in (data[i] for i in range(len(data))):
            image = item["image"].numpy()
            assert image.shape == (2, 96, 96)
            # Slice-wise normalisation: magnitude within [0, 1], phase kept.
            assert np.hypot(image[0], image[1]).max() <= 1.0 + 1e-5
            # Every patch belongs to its volume's split.
            assert manifest["volumes"][item["file"]]["split"] == split
            if item["label_name"] == "abnormal":
                assert annotations.volume_class(item["file"]) == "abnormal"
                assert item["overlap"] >= 0.25
    assert total == sum(manifest["patches"].values())
    splits = json.loads((processed / "splits.json").read_text())["volumes"]
    assert set(splits) == set(manifest["volumes"])


def test_table_counts_match_the_files(processed):
    manifest = json.loads((processed / "manifest.json").read_text())
    for split, count in manifest["patches"].items():
        in_table = sum(row[split] for rows in manifest["table"].values() for row in rows.values())
        assert in_table == count


def _subset(fastmri_dir: Path, folder: Path, count: int) -> Path:
    """A folder with the first ``count`` volumes of the shared dataset and its annotations."""
    folder.mkdir()
    for path in sorted(fastmri_dir.glob("*.h5"))[:count]:
        (folder / path.name).symlink_to(path)
    for name in ("brain.csv", "brain_file_list.csv"):
        shutil.copy(fastmri_dir / name, folder / name)
    return folder


def test_shards_and_a_killed_run_give_the_same_output(fastmri_dir, tmp_path, monkeypatch):
    data = _subset(fastmri_dir, tmp_path / "data", 2)
    preprocess(data, tmp_path / "whole", seed=3, progress=False)
    expected = _contents(tmp_path / "whole")
    assert expected

    # Two worker processes give the same patches as one.
    summary = preprocess(data, tmp_path / "workers", seed=3, workers=2, progress=False)
    assert len(summary.done) == 2
    # Positions are identical; pixel values agree to float32 rounding (one torch thread per
    # worker sums in another order than two threads do).
    _assert_same(_contents(tmp_path / "workers"), expected, atol=1e-4)

    # Two shards processed separately, then merged.
    for shard in (0, 1):
        summary = preprocess(data, tmp_path / f"shard{shard}", seed=3, shard=shard, num_shards=2, progress=False)
        assert len(summary.done) == 1 and not summary.failed
    merge(tmp_path / "shard0", parts=[tmp_path / "shard1"])
    _assert_same(_contents(tmp_path / "shard0"), expected)

    # A run killed while writing its second volume leaves the first only; the rerun completes it.
    real = preprocess_module.write_volume_patches
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    killed = tmp_path / "killed"
    # The first volume's patch file is reused from the uninterrupted run, as a finished volume.
    (killed / "volumes").mkdir(parents=True)
    first = sorted((tmp_path / "whole" / "volumes").glob("*.h5"))[0]
    shutil.copy(first, killed / "volumes" / first.name)
    # A temporary file of a writer that died (its process is gone) is removed by the next run.
    (killed / "volumes" / f".{first.name}.{socket.gethostname().replace('.', '_')}.{dead_pid()}.tmp").write_bytes(
        b"half-written"
    )
    monkeypatch.setattr(preprocess_module, "write_volume_patches", dying)
    calls["n"] = 1
    with pytest.raises(KeyboardInterrupt):
        preprocess(data, killed, seed=3, progress=False)
    monkeypatch.setattr(preprocess_module, "write_volume_patches", real)
    assert [p.name for p in (killed / "volumes").iterdir()] == [first.name]
    summary = preprocess(data, killed, seed=3, progress=False)
    assert summary.skipped == [first.stem] and len(summary.done) == 1
    _assert_same(_contents(killed), expected)


def _assert_same(actual: dict, expected: dict, atol: float = 0.0) -> None:
    assert actual.keys() == expected.keys()
    for split in expected:
        np.testing.assert_allclose(actual[split][0], expected[split][0], rtol=0, atol=atol)
        for a, b in zip(actual[split][1:], expected[split][1:]):
            assert tuple(np.asarray(a).tolist()) == tuple(np.asarray(b).tolist())


def test_a_corrupt_file_is_reported_and_skipped(fastmri_dir, tmp_path):
    data = _subset(fastmri_dir, tmp_path / "data", 1)
    files = sorted(data.glob("*.h5"))
    broken = data / "file_brain_AXT2_200_2000999.h5"
    broken.write_bytes(files[0].read_bytes()[:4096])
    summary = preprocess(data, tmp_path / "out", progress=False)
    assert set(summary.failed) == {broken.stem}
    assert str(broken) in summary.failed[broken.stem]
    assert sorted(summary.done) == sorted(path.stem for path in files)
    failed = json.loads((tmp_path / "out" / "failed.json").read_text())
    assert set(failed) == {broken.stem}


def test_external_mode_cuts_the_centre_grid_with_volume_labels(fastmri_dir, tmp_path):
    from monai_cmri.preprocess import preprocess_external

    data = _subset(fastmri_dir, tmp_path / "external", 2)
    files = sorted(data.glob("*.h5"))
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label\n{files[0].stem},abnormal\n{files[1].name},normal\n")
    summary = preprocess_external(data, tmp_path / "out", labels, inferior=1 / 3, progress=False)
    assert sorted(summary.done) == sorted(p.stem for p in files)
    data_set = PatchDataset(tmp_path / "out" / "external.h5", in_memory=True)
    # 3 slices, the lowest third dropped: 2 slices x 4 centre patches per volume.
    assert len(data_set) == 2 * 2 * 4
    items = [data_set[i] for i in range(len(data_set))]
    assert {(item["row"], item["col"]) for item in items} == {(75, 75), (75, 150), (150, 75), (150, 150)}
    assert {item["slice"] for item in items} == {1, 2}
    for item in items:
        expected = "abnormal" if item["file"] == files[0].stem else "normal"
        assert item["label_name"] == expected


def test_external_labels_are_checked(tmp_path):
    from monai_cmri.preprocess import read_external_labels

    bad = tmp_path / "labels.csv"
    bad.write_text("file,label\nfile_brain_AXT1_1_1,metastasis\n")
    with pytest.raises(ValueError, match=r"labels.csv:2"):
        read_external_labels(bad)
