"""The substitution experiment run end to end with the classifier bundle, and resumed (paper 2.4.2)."""

from __future__ import annotations

import json

import pytest
from classifier_data import TINY, write_split, write_task

import monai_cmri.experiments.classifier as experiment
from monai_cmri.experiments.classifier import read_scores, run_substitution
from monai_cmri.experiments.composition import REAL_ONLY, REAL_SYNTHETIC

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
