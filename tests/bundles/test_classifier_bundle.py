"""The ``classifier`` bundle end to end on tiny synthetic patch files, on the CPU (paper 2.4).

Tolerances: the easy task (abnormal patches hold a bright spot) must reach a test AUROC above
0.95. When both classes come from one distribution the test AUROC of any classifier is a
Mann-Whitney statistic of independent labels: mean 0.5 and, for 48 + 48 test patches, standard
deviation ``sqrt(97 / (12 * 48 * 48)) = 0.059``; the test allows ``|AUROC - 0.5| < 0.2`` (3.4
standard deviations).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from classifier_data import COUNTS, CPU_NETWORK, REPO, TINY, configs, launch_ddp, run, write_task
from cvae_data import flags
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from sklearn.metrics import roc_auc_score

from monai_cmri.engines import record_path
from monai_cmri.networks import SEResNetClassifier

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

CPU = ("train.json", "cpu.json")


def settings(data: Path, out: Path, **extra) -> dict:
    return {"dataset_dir": str(data), "output_dir": str(out), "progress": False, **TINY, **extra}


@pytest.fixture(scope="module")
def separable(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard")
    return write_task(tmp_path_factory.mktemp("separable"), separable=True)


@pytest.fixture(scope="module")
def trained(separable, tmp_path_factory) -> Path:
    """The CPU profile trained 6 epochs on the easy task, with augmentation and mixup."""
    out = tmp_path_factory.mktemp("trained")
    run("training", CPU, **settings(separable, out, epochs=6))
    return out


def read_scores(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_an_easy_task_is_learnt_and_every_output_is_written(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test_auroc"] > 0.95, metrics
    assert metrics["val_metric"] == "val_auroc" and 1 <= metrics["best_epoch"] <= 6
    assert metrics["epochs"] == metrics["epochs_done"] == 6 and metrics["seed"] == 0
    n = {split: {"0": count, "1": count} for split, count in COUNTS.items()}  # unlabeled rows left out
    assert metrics["counts"] == n
    assert metrics["timing"]["train_seconds"] > 0 and metrics["timing"]["test_seconds"] > 0
    # the scores file gives the same AUROC, by scikit-learn
    rows = read_scores(trained / "scores_test.csv")
    assert len(rows) == 2 * COUNTS["test"] and [int(row["index"]) for row in rows] == list(range(len(rows)))
    auc = roc_auc_score([int(row["target"]) for row in rows], [float(row["probability"]) for row in rows])
    assert auc == pytest.approx(metrics["test_auroc"], abs=1e-6)
    assert {row["sequence"] for row in rows} == {"AXFLAIR", "AXT1", "AXT1POST"}
    # model.pt: the EMA weights alone, loadable with weights_only=True
    weights = trained / "models" / "model.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network = SEResNetClassifier(**CPU_NETWORK)
    network.load_state_dict(state)
    record = json.loads(record_path(weights).read_text())
    assert record["network"]["weights"] == "EMA" and record["key_metric"]["name"] == "val_auroc"
    assert record["key_metric"]["epoch"] == metrics["best_epoch"]
    assert record["key_metric"]["value"] == pytest.approx(metrics["val_auroc"])


def test_one_distribution_gives_chance_auroc(tmp_path):
    pytest.importorskip("tensorboard")
    data = write_task(tmp_path / "null", separable=False, seed=5)
    run("training", CPU, **settings(data, tmp_path / "out", epochs=3))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert abs(metrics["test_auroc"] - 0.5) < 0.2, metrics


def test_evaluate_and_inference_score_the_saved_model(trained, separable, tmp_path):
    metrics = json.loads((trained / "metrics.json").read_text())
    workflow = ConfigWorkflow(config_file=configs(*CPU, "evaluate.json"), logging_file=False, workflow_type=None,
                              **settings(separable, tmp_path / "eval", ckpt_dir=str(trained / "models")))
    workflow.initialize()
    workflow.run()
    state = workflow.parser.get_parsed_content("test#evaluator").state
    assert state.key_metric_name == "test_auroc"
    assert state.metrics["test_auroc"] == pytest.approx(metrics["test_auroc"], abs=1e-6)
    assert len(read_scores(tmp_path / "eval" / "scores_test.csv")) == 2 * COUNTS["test"]

    # inference scores any source list: every val row of the file as target 0, test abnormal rows as 1
    sources = [{"path": str(separable / "val.h5"), "target": 0, "indices": [0, 1, 2, 3], "sequences": None},
               {"path": str(separable / "test.h5"), "target": "label", "indices": None, "sequences": ["AXT1"]}]
    scores = tmp_path / "scores.csv"
    run("run", ("inference.json", "cpu.json"), sources=sources, scores_path=str(scores),
        ckpt_path=str(trained / "models" / "model.pt"), batch_size=TINY["batch_size"])
    rows = read_scores(scores)
    assert [(row["source"], row["index"], row["target"]) for row in rows[:4]] == [
        ("0", str(i), "0") for i in range(4)]
    assert {row["sequence"] for row in rows[4:]} == {"AXT1"} and len(rows) == 4 + 2 * COUNTS["test"] // 3
    test_rows = {row["index"]: float(row["probability"]) for row in read_scores(trained / "scores_test.csv")}
    assert [float(row["probability"]) for row in rows[4:]] == pytest.approx(
        [test_rows[row["index"]] for row in rows[4:]], abs=1e-5)


def test_a_stopped_training_resumes_at_the_next_epoch(separable, tmp_path, caplog):
    """Stop after epoch 1 of 2 (the trainer state of epoch 1 is saved), then run the bundle again."""
    out = tmp_path / "resume"
    overrides = settings(separable, out, epochs=2, augment=False, bundle_root=str(REPO / "bundles" / "classifier"))
    parser = ConfigParser()
    parser.read_config(configs(*CPU))
    parser.update(overrides)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda engine: engine.terminate())
    trainer.run()
    path = out / "models" / "trainer_state.pt"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    per_epoch = saved["objects"]["trainer"]["iteration"]
    assert saved["epoch"] == 1 and per_epoch == 2 * COUNTS["train"] // TINY["batch_size"]
    assert not (out / "metrics.json").exists()

    with caplog.at_level(logging.INFO, logger="monai_cmri.engines.trainer_state"):
        run("training", CPU, **overrides)
    assert f"resuming from {path}: epoch 1 of 2 done" in caplog.text
    assert "training continues at epoch 2" in caplog.text
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 2 and saved["objects"]["trainer"]["iteration"] == 2 * per_epoch
    # the per-iteration cosine schedule continued where it stopped
    assert saved["objects"]["lr_scheduler"]["last_epoch"] == 2 * per_epoch
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 2 and metrics["best_epoch"] in (1, 2)


def test_two_gloo_processes_train_and_score_every_test_item_once(separable, tmp_path):
    """``multi_gpu_train.json`` with two DDP processes on CPU (gloo), started by torchrun as the README says.

    The test set (96 items) splits 48 + 48 across the ranks; the AUROC in ``metrics.json`` and the
    scores must be those of the whole set, each item once: equal to a one-process evaluation of
    the saved weights.
    """
    out = tmp_path / "ddp"
    overrides = {"dataset_dir": str(separable), "output_dir": str(out), **TINY, "epochs": 1}
    line = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
        "run", "training", "--config_file", json.dumps(configs(*CPU, "multi_gpu_train.json")), *flags(**overrides),
    ]  # fmt: skip
    log = launch_ddp(line)
    assert log.count("Metrics -- test_auroc") == 1, log[-3000:]  # rank 0 alone logs
    rows = read_scores(out / "scores_test.csv")
    assert [int(row["index"]) for row in rows] == list(range(2 * COUNTS["test"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["test"] == {"0": COUNTS["test"], "1": COUNTS["test"]}
    auc = roc_auc_score([int(row["target"]) for row in rows], [float(row["probability"]) for row in rows])
    assert metrics["test_auroc"] == pytest.approx(auc, abs=1e-6)
    workflow = ConfigWorkflow(config_file=configs(*CPU, "evaluate.json"), logging_file=False, workflow_type=None,
                              **settings(separable, tmp_path / "eval", ckpt_dir=str(out / "models")))
    workflow.initialize()
    workflow.run()
    single = workflow.parser.get_parsed_content("test#evaluator").state.metrics["test_auroc"]
    assert metrics["test_auroc"] == pytest.approx(single, abs=1e-9)
    state = torch.load(out / "models" / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and len(state["rng"]) == 2
