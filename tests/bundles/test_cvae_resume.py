"""Killed and restarted training of the ``cvae`` bundle (STYLE 12: every long stage can be killed and rerun).

A run killed after epoch ``k`` must continue at epoch ``k + 1`` of the same schedule, end at the
configured number of epochs, and never replace ``models/model.pt`` by a worse model.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from cvae_data import REPO, TINY, command, config, environment
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.bundle import run as bundle_run

import monai_cmri.engines.trainer_state

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

#: Trainer lines "Epoch[j] Metrics -- train_..." and evaluator lines "Epoch[j] Metrics -- val_...".
TRAIN_EPOCH = re.compile(r"Epoch\[(\d+)\] Metrics -- train_")
VAL_LOSS = re.compile(r"Epoch\[(\d+)\] Metrics -- .*?val_loss: ([-\d.e+]+)")
#: The evaluator's "Key metric: val_loss best value: <value> at epoch: <epoch>" line.
BEST = re.compile(r"Key metric: val_loss best value: ([-\d.e+]+) at epoch: (\d+)")


def saved_epoch(path: Path) -> int | None:
    """The epoch in a trainer state file, None while there is none."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return None


def test_a_killed_training_resumes_at_the_next_epoch_and_keeps_the_better_model(patches, tmp_path, caplog):
    pytest.importorskip("tensorboard")
    out, epochs = tmp_path / "cvae", 8
    models, state = out / "models", out / "models" / "trainer_state.pt"
    settings = {**TINY, "epochs": epochs, "dataset_dir": str(patches), "output_dir": str(out)}
    line = command("training", config("train.json", "cpu.json"), **settings)

    # 1. Train, and kill the process (SIGKILL) once the state of epoch 2 or later is on disk.
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        process = subprocess.Popen(line, cwd=REPO, env=environment(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while (saved_epoch(state) or 0) < 2:
            assert process.poll() is None, f"training ended before it was killed:\n{first_log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no trainer state of epoch 2 at {state}"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    k = saved_epoch(state)
    assert 2 <= k < epochs
    before = {name: (models / name).read_bytes() for name in ("model.pt", "model.json")}
    losses = {int(j): float(v) for j, v in VAL_LOSS.findall(first_log.read_text())}
    best_epoch = min((j for j in losses if j <= k), key=losses.get)
    # The kill may fall after epoch k + 1 saved a better model but before it saved its trainer state.
    if json.loads(before["model.json"])["key_metric"]["epoch"] == k + 1:
        assert losses[k + 1] < losses[best_epoch]
        best_epoch = k + 1
    record = json.loads(before["model.json"])
    assert record["key_metric"]["epoch"] == best_epoch
    assert record["key_metric"]["value"] == pytest.approx(losses[best_epoch], abs=1e-4)

    # 2. Rerun with a heavier KL weight, so that every resumed epoch validates worse than the best so far.
    rerun = subprocess.run(
        line + ["--lambda_kl", "0.01"], cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300
    )
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert f"resuming from {state}: epoch {k} of {epochs} done" in log, log[-3000:]
    assert f"training continues at epoch {k + 1}" in log
    assert [int(j) for j in TRAIN_EPOCH.findall(log)] == list(range(k + 1, epochs + 1)), log[-3000:]
    resumed = {int(j): float(v) for j, v in VAL_LOSS.findall(log)}
    assert sorted(resumed) == list(range(k + 1, epochs + 1))
    assert min(resumed.values()) > losses[best_epoch]  # the rerun's epochs are all worse ...
    for name, content in before.items():  # ... so the best model of epochs 1..k stays, byte for byte
        assert (models / name).read_bytes() == content, name
    # The evaluator compares against the best of the killed run (restored, or adopted from model.json).
    bests = [(float(v), int(j)) for v, j in BEST.findall(log)]
    assert len(bests) == epochs - k and all(j == best_epoch for _, j in bests), bests
    assert bests[0][0] == pytest.approx(losses[best_epoch], abs=1e-4)
    assert saved_epoch(state) == epochs
    # A temporary file of the killed writer, if the kill fell inside a write, is gone too.
    assert sorted(p.name for p in models.iterdir()) == ["model.json", "model.pt", "trainer_state.pt"]

    # 3. Once more: the state says training finished; nothing runs, nothing is written.
    stamps = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    with caplog.at_level(logging.INFO, logger="monai_cmri.engines.trainer_state"):
        bundle_run("training", config_file=config("train.json", "cpu.json"), logging_file=False, **settings)
    assert f"training already finished: epoch {epochs} of {epochs} in {state}" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in models.iterdir()} == stamps

    # 4. --resume false starts over: the old state is deleted, and the new run's own best model is saved.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="monai_cmri.engines.trainer_state"):
        bundle_run(
            "training", config_file=config("train.json", "cpu.json"), logging_file=False,
            **{**settings, "epochs": 1, "resume": False},
        )  # fmt: skip
    assert f"resume is off: deleted the trainer state of the earlier run, {state}" in caplog.text
    assert saved_epoch(state) == 1
    assert json.loads((models / "model.json").read_text())["key_metric"]["epoch"] == 1
    assert (models / "model.pt").read_bytes() != before["model.pt"]


class Killed(Exception):
    """Stands for a kill at the end of an epoch, after validation, before the trainer state is saved."""


def crash(engine) -> None:
    raise Killed(f"epoch {engine.state.epoch}")


def train(
    patches: Path, out: Path, stop_after: int | None = None, crash_at: int | None = None, epochs: int = 2
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Train the tiny model in this process (resuming by default).

    Args:
        stop_after: end the run after this epoch, its trainer state saved.
        crash_at: raise :class:`Killed` at the end of this epoch, before its trainer state is saved.

    Returns:
        The final weights and the epochs this call ran.
    """
    workflow = ConfigWorkflow(
        config_file=config("train.json", "cpu.json"), logging_file=False, workflow_type=None,
        **{**TINY, "epochs": epochs, "dataset_dir": str(patches), "output_dir": str(out), "progress": False},
    )  # fmt: skip
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    ran: list[int] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: ran.append(engine.state.epoch))
    if stop_after is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=stop_after), lambda engine: engine.terminate())
    if crash_at is not None:  # registered before the run starts, so before the trainer state's handler
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=crash_at), crash)
    trainer.run()
    weights = {name: value.detach().clone() for name, value in trainer.network.state_dict().items()}
    return weights, ran


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(patches, tmp_path, monkeypatch):
    """Optimizer, scheduler and random generators are restored exactly: 1 + 1 epochs equal 2 epochs."""
    pytest.importorskip("tensorboard")
    straight, ran = train(patches, tmp_path / "straight")
    assert ran == [1, 2]
    _, ran = train(patches, tmp_path / "resumed", stop_after=1)
    assert ran == [1]
    resumed, ran = train(patches, tmp_path / "resumed")
    assert ran == [2]  # the second call trained the second epoch only
    for name, value in straight.items():
        assert torch.equal(resumed[name], value), name

    # Without the random generator states the resumed epoch draws other batches and latents.
    _, ran = train(patches, tmp_path / "no_rng", stop_after=1)
    monkeypatch.setattr(monai_cmri.engines.trainer_state, "set_rng_state", lambda state: None)
    different, ran = train(patches, tmp_path / "no_rng")
    assert ran == [2] and not all(torch.equal(different[name], value) for name, value in straight.items())


def test_a_model_saved_after_the_last_trainer_state_stays_the_best(patches, tmp_path, caplog):
    """Killed after epoch 3 saved a better model.pt but before epoch 3's trainer state was written."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "cvae"
    with pytest.raises(Killed):
        train(patches, out, crash_at=3, epochs=3)
    models = out / "models"
    record = json.loads((models / "model.json").read_text())["key_metric"]
    state = torch.load(models / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert record["epoch"] == 3 and state["epoch"] == 2 and state["best"]["evaluator"]["value"] > record["value"]
    before = {name: (models / name).read_bytes() for name in ("model.pt", "model.json")}
    with caplog.at_level(logging.INFO, logger="monai_cmri.engines"):
        _, ran = train(patches, out, epochs=3)
    assert ran == [3]
    assert f"holds val_loss {record['value']:.6g} of epoch 3, saved after the last trainer state" in caplog.text
    # Epoch 3 again gives the same model, not a better one: nothing is written.
    assert {name: (models / name).read_bytes() for name in before} == before
    state = torch.load(models / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 3 and state["best"]["evaluator"] == {**record, "name": "val_loss"}
