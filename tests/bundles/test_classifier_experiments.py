"""The substitution experiment run end to end with the classifier bundle, and resumed (paper 2.4.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from blob_helpers import complex_blobs
from classifier_data import SIZE, TINY, spots, write_split, write_task

import monai_cmri.experiments.classifier as experiment
from monai_cmri.experiments.classifier import read_scores, run_additive, run_substitution
from monai_cmri.data.dataset import write_patches
from monai_cmri.experiments.aggregate import volume_auroc
from monai_cmri.experiments.composition import ADDITIVE, REAL_ONLY, REAL_SYNTHETIC

SETTINGS = {**TINY, "epochs": 3}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """An easy task (abnormal patches hold a bright spot) and a synthetic pool of the same task."""
    folder = write_task(tmp_path_factory.mktemp("task"), separable=True, seed=0)
    synthetic = folder.parent / "synthetic.h5"
    write_split(synthetic, 48, seed=99, separable=True)
    return folder, synthetic


def test_substitution_trains_each_configuration_once_and_resumes(task, tmp_path, monkeypatch):
    folder, synthetic = task
    out = tmp_path / "substitution"
    table = run_substitution(folder, synthetic, out, fractions=[1.0, 0.5], seeds=[0], overrides=SETTINGS,
                             progress=False)
    records = [json.loads(path.read_text()) for path in sorted((out / "results").glob("*.json"))]
    conditions = sorted((r["config"]["condition"], r["config"]["fraction"]) for r in records)
    assert conditions == [(REAL_ONLY, 0.5), (REAL_ONLY, 1.0), (REAL_SYNTHETIC, 0.5)]
    counts = {}
    for record in records:
        run = out / "runs" / record["key"]
        summary = json.loads((run / "metrics.json").read_text())
        counts[(record["config"]["condition"], record["config"]["fraction"])] = sum(summary["counts"]["train"].values())
        # the AUROC recorded is the one of the scores file, and the task is easy
        targets, probabilities = read_scores(run / "scores_test.csv")
        assert record["metrics"]["auroc"]["test"] == pytest.approx(experiment.auroc(targets, probabilities))
        assert not (run / "models").exists()  # weights removed once scored
    assert records and all(r["metrics"]["auroc"]["test"] > 0.9 for r in records)
    # real only shrinks with the fraction; real + synthetic keeps the full set's size
    assert counts[(REAL_ONLY, 0.5)] < counts[(REAL_ONLY, 1.0)] == counts[(REAL_SYNTHETIC, 0.5)]
    assert "real+synthetic" in table.read_text() and (out / "substitution.png").is_file()

    # a rerun finds every configuration finished and trains nothing
    calls = []
    monkeypatch.setattr(experiment, "run_bundle", lambda *args, **kwargs: calls.append(args))
    run_substitution(folder, synthetic, out, fractions=[1.0, 0.5], seeds=[0], overrides=SETTINGS, progress=False)
    assert calls == []


def external_file(path, volumes=8, per_volume=4, seed=7):
    """Patches labeled by their volume (as ``preprocess --external`` writes them): odd volumes abnormal."""
    rng = np.random.default_rng(seed)
    n = volumes * per_volume
    volume = np.arange(n) // per_volume
    abnormal = volume % 2 == 1
    patches = complex_blobs(n, SIZE, seed)
    patches[abnormal] *= spots(int(abnormal.sum()), rng)
    columns = {"file": [f"ext_brain_T2TIRM_300_{v}" for v in volume], "slice": np.zeros(n, int),
               "row": np.zeros(n, int), "col": np.arange(n), "sequence": ["AXFLAIR"] * n,
               "label": ["abnormal" if a else "normal" for a in abnormal], "overlap": np.zeros(n, np.float32)}
    write_patches(path, patches, columns, parameters={"external": True})
    return path


def test_additive_scores_the_external_set_per_volume(task, tmp_path):
    folder, synthetic = task
    external = external_file(tmp_path / "external.h5")
    out = tmp_path / "additive"
    run_additive(folder, synthetic, out, fractions=[0.0, 1.0], seeds=[0], overrides=SETTINGS, progress=False,
                 external=external)
    records = [json.loads(path.read_text()) for path in sorted((out / "results").glob("*.json"))]
    assert sorted(r["config"]["fraction"] for r in records) == [0.0, 1.0]
    assert all(r["config"]["condition"] == ADDITIVE for r in records)
    for record in records:
        scores = out / "runs" / record["key"] / "scores_external.csv"
        targets, probabilities, files = read_scores(scores, volumes=True)
        assert len(set(files.tolist())) == 8
        assert record["metrics"]["auroc"]["external"] == pytest.approx(
            volume_auroc(files, probabilities, targets.astype(int)))
        assert record["metrics"]["auroc"]["external"] > 0.9  # the easy task, four volumes of each class
    assert (out / "additive.png").is_file()
