"""``run training ... --tracking mlflow`` on every training bundle, on tiny data, on the CPU.

MONAI's default settings (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``) append an
``MLFlowHandler`` to ``train#handlers`` and ``validate#handlers``; the bundles pass the trainer's
through :func:`monai_cmri.engines.tracked`. Each test reads the runs back with ``MlflowClient``:
the parameters, the iteration loss, the train and validation metrics of every epoch, the executed
config as an artifact; and the bundle's own outputs (weights, trainer state, kept epochs, metrics)
are there as without tracking. The cvae test keeps the default tracking URI (a SQLite database
``<output_dir>/mlruns.db``, artifacts in ``<output_dir>/mlruns``) and resumes a killed training,
whose MLflow run the rerun goes on with; the others share one database given as
``--tracking_uri``, one experiment per bundle.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from classifier_data import TINY as CLASSIFIER_TINY
from classifier_data import write_task
from cvae_data import REPO
from cvae_data import TINY as CVAE_TINY
from flow_data import TINY_FLOW, write_flow_latents
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.bundle import run as bundle_run
from monai.utils import path_to_sqlite_uri

from monai_cmri.engines import ITERATION_LOSS, epoch_checkpoints, read_record

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")
pytest.importorskip("tensorboard")

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


@pytest.fixture(autouse=True)
def no_tracking_environment(monkeypatch):
    """``MLFLOW_TRACKING_URI`` would take priority over the bundles' ``tracking_uri``."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def shared_uri(tmp_path_factory) -> str:
    return path_to_sqlite_uri(tmp_path_factory.mktemp("mlflow") / "mlruns.db")


def train(bundle: str, **overrides) -> None:
    """``python -m monai.bundle run training --config_file [train.json, cpu.json] --tracking mlflow``."""
    folder = REPO / "bundles" / bundle
    overrides.setdefault("progress", False)
    bundle_run("training", config_file=[str(folder / "configs" / name) for name in ("train.json", "cpu.json")],
               bundle_root=str(folder), logging_file=False, tracking="mlflow", **overrides)


def runs(uri: str, experiment: str) -> list:
    """The runs of ``experiment``, oldest first."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def history(uri: str, run, key: str) -> list:
    metrics = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, key)
    return sorted(metrics, key=lambda metric: metric.step)


def check_run(uri: str, run, epochs: range, train: list[str], val: list[str]) -> None:
    """A finished run with the parameters, every epoch's metrics and every iteration's loss and lr."""
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == str(epochs[-1])
    length = int(run.data.params["epoch_length"])
    for key in train + val:
        metrics = history(uri, run, key)
        assert [metric.step for metric in metrics] == list(epochs), key
        assert all(math.isfinite(metric.value) for metric in metrics), key
    iterations = list(range((epochs[0] - 1) * length + 1, epochs[-1] * length + 1))
    for key in (ITERATION_LOSS, "lr_group_0"):
        metrics = history(uri, run, key)
        assert [metric.step for metric in metrics] == iterations, key
        assert all(math.isfinite(metric.value) for metric in metrics), key
    artifacts = mlflow.MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id)
    assert any(a.path.startswith("config_") and a.path.endswith(".json") for a in artifacts), artifacts


def saved_epoch(models: Path) -> int:
    return int(torch.load(models / "trainer_state.pt", map_location="cpu", weights_only=True)["epoch"])


class Killed(Exception):
    """Stands for a kill at the start of an epoch, the trainer state of the one before saved."""


def kill(engine) -> None:
    raise Killed(f"epoch {engine.state.epoch}")


def test_cvae_tracks_into_its_output_dir_and_a_resumed_run_goes_on_in_the_same_run(patches, tmp_path):
    out = tmp_path / "cvae"
    settings = {**CVAE_TINY, "epochs": 2, "dataset_dir": str(patches), "output_dir": str(out), "progress": False}
    folder = REPO / "bundles" / "cvae"
    workflow = ConfigWorkflow(
        config_file=[str(folder / "configs" / name) for name in ("train.json", "cpu.json")],
        bundle_root=str(folder), logging_file=False, workflow_type=None, tracking="mlflow", **settings)
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_STARTED(once=2), kill)
    with pytest.raises(Killed):
        trainer.run()
    assert saved_epoch(out / "models") == 1
    uri = path_to_sqlite_uri(out / "mlruns.db")  # the default: <output_dir>/mlruns.db
    (killed,) = runs(uri, "monai_experiment")
    assert killed.info.status == "RUNNING"

    train("cvae", **settings)  # the trainer state resumes at epoch 2, the MLflow run goes on
    (run,) = runs(uri, "monai_experiment")
    assert run.info.run_id == killed.info.run_id
    check_run(uri, run, range(1, 3), ["train_loss", "train_recon", "train_grad", "train_kl"],
              ["val_loss", "val_coherence", "val_ssim", "val_psnr"])
    assert any((out / "mlruns").rglob("config_*.json"))  # the artifacts, next to the database
    models = out / "models"
    assert saved_epoch(models) == 2
    assert sorted(p.name for p in models.iterdir()) == ["model.json", "model.pt", "trainer_state.pt"]


def test_flow_stages_track_into_a_given_uri(patches, shared_uri, tmp_path):
    latents = write_flow_latents(patches, tmp_path)
    common = {"dataset_dir": str(latents["latents"]), **TINY_FLOW, "epochs": 2, "tracking_uri": shared_uri}
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    train("flow_stage1", output_dir=str(stage1), experiment_name="flow_stage1", **common)
    train("flow_stage2", output_dir=str(stage2), experiment_name="flow_stage2", phase1_epochs=1,
          stage1_ckpt=str(stage1 / "models" / "model.pt"), **common)

    for out, experiment in ((stage1, "flow_stage1"), (stage2, "flow_stage2")):
        (run,) = runs(shared_uri, experiment)
        check_run(shared_uri, run, range(1, 3), ["train_loss"], ["val_loss"])
        assert not (out / "mlruns.db").exists()
        models = out / "models"
        assert (models / "model.pt").is_file() and saved_epoch(models) == 2
        assert [read_record(path)["epoch"] for path in epoch_checkpoints(models)] == [1, 2]


def test_classifier_tracks_into_a_given_uri(shared_uri, tmp_path):
    data = write_task(tmp_path / "data", separable=True)
    out = tmp_path / "classifier"
    train("classifier", dataset_dir=str(data), output_dir=str(out), **CLASSIFIER_TINY, epochs=2,
          tracking_uri=shared_uri, experiment_name="classifier")

    (run,) = runs(shared_uri, "classifier")
    check_run(shared_uri, run, range(1, 3), ["train_loss"], ["val_auroc", "val_loss"])
    assert (out / "models" / "model.pt").is_file() and saved_epoch(out / "models") == 2
    assert "test_auroc" in json.loads((out / "metrics.json").read_text())
