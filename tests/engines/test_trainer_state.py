"""Tests of the resumable trainer state on a small Ignite engine (no bundle, no data files)."""

from __future__ import annotations

import logging
import os
import random
import subprocess

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from torch import nn

from monai_cmri.atomic import temporary_path
from monai_cmri.engines import TrainerState, rng_state, set_rng_state

EPOCHS, BATCHES = 4, 3


class Run:
    """A noisy regression trained with SGD + momentum, a step schedule, a gradient scaler and an EMA.

    Every iteration draws its inputs from torch's, NumPy's and Python's global generators, so a
    resumed run matches an uninterrupted one only if all of them are restored.
    """

    def __init__(self, path, epochs: int = EPOCHS, seed: int = 0, **kwargs) -> None:
        torch.manual_seed(seed + 100)  # another initialisation in every process
        self.network = nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=0.1, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)
        self.ema = torch.optim.swa_utils.AveragedModel(
            self.network, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)
        )
        self.engine = Engine(self.step)
        self.engine.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**seed)
        self.engine.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: self.scheduler.step())
        self.epochs, self.ran = epochs, []
        self.engine.add_event_handler(Events.EPOCH_STARTED, lambda engine: self.ran.append(engine.state.epoch))
        objects = {"network": self.network, "optimizer": self.optimizer, "lr_scheduler": self.scheduler}
        self.state = TrainerState(path, {**objects, "ema": self.ema}, **kwargs)
        self.state.attach(self.engine)
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)

    def step(self, engine: Engine, batch: int) -> float:
        x = torch.randn(4, 3) + float(np.random.uniform()) + random.random()
        loss = ((self.network(x) - x.sum(1, keepdim=True)) ** 2).mean()
        self.optimizer.zero_grad()
        self.engine.scaler.scale(loss).backward()
        self.engine.scaler.step(self.optimizer)
        self.engine.scaler.update()
        self.ema.update_parameters(self.network)
        return loss.item()

    def run(self, stop_after: int | None = None) -> Run:
        if stop_after is not None:
            self.engine.add_event_handler(Events.EPOCH_COMPLETED(once=stop_after), lambda engine: engine.terminate())
        self.engine.run(range(BATCHES), max_epochs=self.epochs)
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**self.network.state_dict(), **{f"ema.{k}": v for k, v in self.ema.state_dict().items()}}


def test_generator_states_survive_a_weights_only_file(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.normal()  # a cached Gaussian is part of NumPy's state
    torch.save(rng_state(), tmp_path / "rng.pt")
    draws = (torch.rand(5), np.random.normal(size=5), [random.random() for _ in range(5)])
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(5), np.random.normal(size=5), [random.random() for _ in range(5)])
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = Run(tmp_path / "a" / "state.pt").run()
    assert straight.ran == [1, 2, 3, 4]
    Run(tmp_path / "b" / "state.pt").run(stop_after=2)
    resumed = Run(tmp_path / "b" / "state.pt", seed=1).run()  # other seeds and initial weights
    assert resumed.ran == [3, 4] and resumed.engine.state.epoch == EPOCHS
    for name, value in straight.tensors().items():
        assert torch.equal(resumed.tensors()[name], value), name
    assert resumed.engine.scaler.get_scale() == straight.engine.scaler.get_scale()
    assert resumed.scheduler.state_dict() == straight.scheduler.state_dict()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["state.pt"]  # no temporaries left


def test_a_finished_run_runs_nothing(tmp_path, caplog):
    path = tmp_path / "state.pt"
    Run(path).run()
    before = path.read_bytes()
    again = Run(path, seed=1)
    with caplog.at_level(logging.INFO, logger="monai_cmri.engines.trainer_state"):
        again.run()
    assert again.ran == [] and f"training already finished: epoch {EPOCHS} of {EPOCHS} in {path}" in caplog.text
    assert path.read_bytes() == before


def test_resume_off_deletes_the_state_and_starts_at_epoch_one(tmp_path):
    path = tmp_path / "state.pt"
    Run(path).run(stop_after=2)
    fresh = Run(path, resume=False)
    fresh.engine.add_event_handler(Events.EPOCH_STARTED(once=1), lambda engine: assert_gone(path))
    fresh.run(stop_after=1)
    assert fresh.ran == [1] and torch.load(path, weights_only=True)["epoch"] == 1


def assert_gone(path) -> None:
    assert not path.exists()


def test_the_evaluator_best_metric_is_restored(tmp_path):
    path = tmp_path / "state.pt"
    evaluator = Engine(lambda engine, batch: None)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.25, 2
    evaluator.state.key_metric_name = "val_loss"
    Run(path, evaluator=evaluator).run(stop_after=2)
    restored = Engine(lambda engine, batch: None)
    restored.state.best_metric, restored.state.best_metric_epoch = -1, -1
    Run(path, evaluator=restored).run(stop_after=3)
    assert (restored.state.best_metric, restored.state.best_metric_epoch) == (0.25, 2)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(epochs=5), "saved by a run of 4 epochs, this run has 5; pass --epochs 4 to resume it"),
        (dict(key={"channels": [8, 8]}), r"saved by a different run \(channels: \[4, 8\] -> \[8, 8\]\)"),
    ],
)
def test_a_different_run_is_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "state.pt"
    Run(path, key={"channels": [4, 8]}).run(stop_after=1)
    with pytest.raises(ValueError, match=message) as caught:
        Run(path, **{"key": {"channels": [4, 8]}, **change}).run()
    assert str(caught.value).endswith("run with --resume false to start over") and "\n" not in str(caught.value)


def test_other_saved_objects_or_batches_per_epoch_are_refused(tmp_path):
    path = tmp_path / "state.pt"
    Run(path).run(stop_after=1)
    other = Run(path)
    other.state.objects.pop("ema")
    with pytest.raises(ValueError, match=r"holds \['ema', .*\], this run saves \['lr_scheduler', .*\]"):
        other.run()
    shorter = Run(path)
    with pytest.raises(ValueError, match="saved with 3 iterations per epoch, this run has 2"):
        shorter.engine.run(range(2), max_epochs=EPOCHS)


def test_an_unreadable_state_is_named(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a state")
    with pytest.raises(ValueError, match="state.pt: not a readable trainer state .*--resume false"):
        Run(path).run()


def test_objects_without_a_state_dict_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'ema' has no state_dict"):
        TrainerState(tmp_path / "state.pt", {"ema": object()})


def test_a_temporary_file_of_a_killed_writer_is_removed(tmp_path):
    path = tmp_path / "state.pt"
    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = temporary_path(path).with_name(temporary_path(path).name.replace(f".{os.getpid()}.", f".{finished.pid}."))
    stale.write_bytes(b"half a state")
    Run(path).run(stop_after=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


@pytest.mark.parametrize("given, expected", [("false", False), ("False", False), ("no", False), (0, False),
                                             ("true", True), ("TRUE", True), ("1", True), (True, True)])
def test_resume_reads_the_command_lines_strings(tmp_path, given, expected):
    # `python -m monai.bundle run ... --resume false` hands over the string "false".
    assert TrainerState(tmp_path / "state.pt", {"net": torch.nn.Linear(1, 1)}, resume=given).resume is expected


def test_a_resume_that_is_no_yes_or_no_is_refused(tmp_path):
    with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
        TrainerState(tmp_path / "state.pt", {"net": torch.nn.Linear(1, 1)}, resume="maybe")
