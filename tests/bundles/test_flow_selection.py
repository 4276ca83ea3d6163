"""Model selection among the checkpoints the flow bundles keep (paper 2.4.3), end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from classifier_data import TINY
from flow_data import TINY_FLOW, run, write_flow_latents

import monai_cmri.experiments.classifier as experiment
import monai_cmri.experiments.selection as selection
from monai_cmri.atomic import file_sha256
from monai_cmri.data.dataset import PatchDataset
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.experiments.selection import (
    POOL_SEED,
    SELECTION_FILE,
    VALIDATION,
    adopt_selected_samples,
    candidates,
    select_stage1,
    select_stage2,
    selected_checkpoint,
)
from monai_cmri.flow.sampling import matched_counts
from monai_cmri.latents import LatentDataset

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

CLASSIFIER = {**TINY, "epochs": 1}
FLOW = {**TINY_FLOW, "steps": 2}


@pytest.fixture(scope="module")
def stage1(patches, tmp_path_factory):
    """A tiny stage 1 trained for 2 epochs, keeping both."""
    pytest.importorskip("tensorboard")
    data = write_flow_latents(patches, tmp_path_factory.mktemp("selection"))
    folder = data["root"] / "stage1"
    run("flow_stage1", "training", ("train.json", "cpu.json"), output_dir=str(folder), epochs=2, keep_checkpoints=2,
        dataset_dir=str(data["latents"]), **TINY_FLOW)
    return {**data, "stage1": folder}


def test_stage1_selects_the_lowest_real_vs_synthetic_auroc_and_resumes(stage1, monkeypatch):
    folder = stage1["stage1"]
    kept = candidates(folder)
    assert [path.name for path in kept] == ["epoch_0001.pt", "epoch_0002.pt"]
    assert selected_checkpoint(folder) == folder / "models" / "model.pt"  # nothing selected yet

    record = select_stage1(stage1["latents"], folder, overrides=CLASSIFIER, flow_overrides=FLOW, progress=False)
    assert record == json.loads((folder / SELECTION_FILE).read_text())
    assert [entry["epoch"] for entry in record["candidates"]] == [1, 2]
    sequences = sorted({SEQUENCES[i] for i in LatentDataset(stage1["latents"] / "train.h5").sequences})
    results = [json.loads(path.read_text()) for path in (folder / "selection" / "results").glob("*.json")]
    for entry, path in zip(record["candidates"], kept):
        assert entry["sha256"] == file_sha256(path)
        assert sorted(run["sequence"] for run in entry["runs"]) == sequences
        mine = [r["metrics"]["auroc"][VALIDATION] for r in results if r["config"]["checkpoint"]["sha256"] == entry["sha256"]]
        assert entry["mean_auroc"] == pytest.approx(sum(mine) / len(mine))
        # the candidate's pool was drawn from that checkpoint
        pool = LatentDataset(folder / "selection" / f"{path.stem}_latents.h5")
        assert set(pool.columns["checkpoint_sha256"]) == {entry["sha256"]}
        assert pool.columns["seed"].min() == POOL_SEED  # seeds of their own, apart from the experiment's
        # per sequence: its real training latents, its validation latents twice (classifier
        # validation, then the unseen synthetic set that scores the checkpoint)
        real = {split: LatentDataset(stage1["latents"] / f"{split}.h5").sequences for split in ("train", "val")}
        expected = np.bincount(real["train"], minlength=5) + 2 * np.bincount(real["val"], minlength=5)
        assert np.bincount(pool.sequences, minlength=5).tolist() == expected.tolist()
    best = min(record["candidates"], key=lambda entry: (entry["mean_auroc"], -entry["epoch"]))
    assert record["selected"]["sha256"] == best["sha256"]
    assert selected_checkpoint(folder) == kept[[e["sha256"] for e in record["candidates"]].index(best["sha256"])]
    assert "| yes |" in (folder / "selection.md").read_text()

    # a rerun reuses every pool and every classifier result: no bundle runs at all
    calls = []
    monkeypatch.setattr(experiment, "run_bundle", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setattr(selection, "run_bundle", lambda *args, **kwargs: calls.append(args))
    assert select_stage1(stage1["latents"], folder, overrides=CLASSIFIER, flow_overrides=FLOW, progress=False) == record
    assert calls == []


def test_stage2_selects_the_highest_downstream_auroc_on_its_own_synthetic_data(stage1):
    root, latents = stage1["root"], stage1["latents"]
    folder = root / "stage2"
    run("flow_stage2", "training", ("train.json", "cpu.json"), output_dir=str(folder), epochs=2, phase1_epochs=1,
        keep_checkpoints=2, stage1_ckpt=str(selected_checkpoint(stage1["stage1"])), dataset_dir=str(latents),
        **TINY_FLOW)
    record = select_stage2(stage1["patches"], latents, folder, stage1["cvae"], overrides=CLASSIFIER,
                           flow_overrides=FLOW, progress=False)
    assert [entry["epoch"] for entry in record["candidates"]] == [1, 2]
    for entry, path in zip(record["candidates"], candidates(folder)):
        synthetic = folder / "selection" / path.stem
        # class- and sequence-matched to the real training latents, drawn by that checkpoint
        assert matched_counts(synthetic / "latents.h5") == matched_counts(latents / "train.h5")
        assert set(LatentDataset(synthetic / "latents.h5").columns["checkpoint_sha256"]) == {entry["sha256"]}
        # one run per seed, trained on synthetic patches only
        (run_record,) = [json.loads(p.read_text()) for p in (folder / "selection" / "results").glob("*.json")
                         if json.loads(p.read_text())["config"]["checkpoint"]["sha256"] == entry["sha256"]]
        sources = json.loads((folder / "selection" / "runs" / run_record["key"] / "sources.json").read_text())
        assert {source["path"] for source in sources["train"]} == {str(synthetic / "patches.h5")}
    best = max(record["candidates"], key=lambda entry: (entry["mean_auroc"], entry["epoch"]))
    assert record["selected"]["sha256"] == best["sha256"] == file_sha256(selected_checkpoint(folder))

    # the selected checkpoint's set is the one the bundle's run entry draws from those weights
    assert adopt_selected_samples(folder, folder / "synthetic")
    run("flow_stage2", "generate", ("inference.json", "cpu.json"), output_dir=str(folder), dataset_dir=str(latents),
        ckpt_path=str(selected_checkpoint(folder)), cvae_ckpt=str(stage1["cvae"]), steps=2,
        synthetic_latents=str(root / "direct" / "latents.h5"), synthetic_patches=str(root / "direct" / "patches.h5"),
        **TINY_FLOW)
    for name, kind in (("latents.h5", LatentDataset), ("patches.h5", PatchDataset)):
        adopted, direct = kind(folder / "synthetic" / name), kind(root / "direct" / name)
        assert np.array_equal(_array(adopted), _array(direct))


def _array(dataset) -> np.ndarray:
    return np.stack([dataset[i][dataset.key].numpy() for i in range(len(dataset))])


def test_a_changed_selected_file_falls_back_to_the_best_validation_loss_model(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    chosen = models / "epoch_0002.pt"
    chosen.write_bytes(b"weights")
    (tmp_path / SELECTION_FILE).write_text(json.dumps({"selected": {"path": str(chosen), "sha256": file_sha256(chosen)}}))
    assert selected_checkpoint(tmp_path) == chosen
    chosen.write_bytes(b"other weights")
    assert selected_checkpoint(tmp_path) == models / "model.pt"
    (tmp_path / SELECTION_FILE).write_text("{")
    assert selected_checkpoint(tmp_path) == models / "model.pt"


@pytest.mark.parametrize("lowest", [True, False])
def test_the_criterion_picks_by_the_mean_over_runs_and_ties_go_to_the_later_epoch(tmp_path, monkeypatch, lowest):
    # AUROC per (epoch, seed): epoch 1 mean 0.7, epoch 2 mean 0.8, epoch 3 mean 0.6, epoch 4 mean 0.8 (a tie
    # with 2 for the highest: the later epoch wins) -> lowest picks 3, highest 4
    values = {(1, 0): 0.6, (1, 1): 0.8, (2, 0): 0.8, (2, 1): 0.8, (3, 0): 0.5, (3, 1): 0.7, (4, 0): 0.9, (4, 1): 0.7}

    class Fake:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, config):
            return {"auroc": {VALIDATION: values[(config["checkpoint"]["epoch"], config["seed"])]}}

    monkeypatch.setattr(selection, "BundleClassifier", Fake)
    grid = [{"experiment": "t", "checkpoint": {"path": str(tmp_path / f"epoch_{e}.pt"), "sha256": f"h{e}", "epoch": e},
             "seed": s} for e in (1, 2, 3, 4) for s in (0, 1)]
    record = selection._select(tmp_path, grid, None, "cpu", None, False, lowest=lowest, criterion="test")
    assert record["selected"]["epoch"] == (3 if lowest else 4)
    assert [entry["mean_auroc"] for entry in record["candidates"]] == pytest.approx([0.7, 0.8, 0.6, 0.8])
