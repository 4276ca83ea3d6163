from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from monai_cmri.data.dataset import PatchDataset
from monai_cmri.data.splits import SPLITS, split_volumes
from monai_cmri.pipeline import check_size, minimum_volumes, run_pipeline
from monai_cmri.simulate import plan_volume


def test_pipeline_streams_volumes_and_writes_patch_datasets(tmp_path, capfd):
    summary = run_pipeline(tmp_path, volumes=2, seed=0, slices=3, coils=[4], train=False, workers=1, progress=True)
    text = summary.read_text()
    stdout, stderr = capfd.readouterr()
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

    # Two volumes are too few to validate and test on: only train.h5 exists, and the summary's list
    # of written files names exactly the files that exist.
    assert [split for split in SPLITS if (tmp_path / "patches" / f"{split}.h5").is_file()] == ["train"]
    written = text.split("## Files written")[1]
    listed = set(re.findall(r"(/\S+\.(?:h5|png|json|csv|md))", written))
    assert listed and all(Path(path).is_file() for path in listed)
    assert str(tmp_path / "patches" / "train.h5") in listed
    assert not any(path.endswith(("val.h5", "test.h5")) for path in listed)
    assert str(tmp_path / "figures" / "patches.png") in listed and str(summary) in listed

    # One line per stage as it starts; the current step of each volume beside the progress bar.
    stages = [line for line in stdout.splitlines() if re.match(r"\[\d/\d\] ", line)]
    assert [line.split(":")[0] for line in stages] == ["[1/3] simulate + preprocess", "[2/3] merge", "[3/3] report"]
    assert all(step in stderr for step in ("simulate", "ESPIRiT", "figure", "patches"))


def test_worker_processes_write_what_one_process_writes(tmp_path):
    import h5py
    import numpy as np

    runs = {workers: tmp_path / f"workers{workers}" for workers in (1, 2)}
    for workers, out in runs.items():
        run_pipeline(out, volumes=3, seed=1, slices=2, coils=[4], train=False, workers=workers, progress=False)
    one, two = runs[1], runs[2]
    # Annotations in volume order, the same figures and splits; the same patches up to float32
    # rounding (the workers' one thread sums ESPIRiT's products in another order than this process).
    for name in ("brain.csv", "brain_file_list.csv"):
        assert (one / "kspace" / name).read_text() == (two / "kspace" / name).read_text()
    assert sorted(p.name for p in (one / "figures").glob("*.png")) == sorted(p.name for p in (two / "figures").glob("*.png"))
    assert (one / "patches" / "splits.json").read_text() == (two / "patches" / "splits.json").read_text()
    volumes = sorted(p.name for p in (one / "patches" / "volumes").glob("*.h5"))
    assert volumes and volumes == sorted(p.name for p in (two / "patches" / "volumes").glob("*.h5"))
    for name in volumes:
        with h5py.File(one / "patches" / "volumes" / name) as a, h5py.File(two / "patches" / "volumes" / name) as b:
            np.testing.assert_allclose(a["patches"][()], b["patches"][()], rtol=0, atol=1e-4)
    summaries = [(out / "summary.md").read_text().split("\n")[3:] for out in (one, two)]
    assert [line.replace(str(two), str(one)) for line in summaries[1]] == summaries[0]


def test_training_needs_the_fewest_volumes_that_give_every_split_both_classes(tmp_path):
    needed = minimum_volumes()
    assert needed == 24
    for seed in (0, 3):
        classes = {}
        for index in range(needed):
            spec = plan_volume(index, seed, slices=1, width=16, readout=32, coils=[1])
            classes[spec.name] = spec.volume_class
            splits = split_volumes(classes, seed)
            both = all({"normal", "abnormal"} <= {classes[name] for name, split in splits.items() if split == wanted}
                       for wanted in SPLITS)
            assert both == (index + 1 == needed)
    check_size(needed, 1, train=True)
    check_size(1, 1, train=False)
    with pytest.raises(ValueError, match=f"at least {needed} volumes"):
        run_pipeline(tmp_path / "run", volumes=needed - 1, slices=4, train=True, progress=False)
    with pytest.raises(ValueError, match="at least 1 volume and 1 slice"):
        run_pipeline(tmp_path / "run", volumes=2, slices=0, train=False, progress=False)
    assert not (tmp_path / "run").exists()


def test_spawned_workers_write_what_forked_ones_write(tmp_path, monkeypatch):
    # With a CUDA device the volume workers are spawned (CUDA cannot be used in a forked child of a
    # process that touched it); the spawned ones must do the same work.
    import multiprocessing

    import monai_cmri.pipeline as pipeline

    forked, spawned = tmp_path / "forked", tmp_path / "spawned"
    run_pipeline(forked, volumes=2, seed=2, slices=1, coils=[4], train=False, workers=2, progress=False)
    monkeypatch.setattr(pipeline, "_worker_context", lambda: multiprocessing.get_context("spawn"))
    run_pipeline(spawned, volumes=2, seed=2, slices=1, coils=[4], train=False, workers=2, progress=False)
    for name in ("kspace/brain.csv", "patches/splits.json", "patches/manifest.json"):
        assert (forked / name).read_text().replace(str(forked), str(spawned)) == (spawned / name).read_text(), name
