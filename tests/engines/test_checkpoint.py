"""Tests of a bundle's weights file and its record (SPEC 4: models/model.pt holds one state dict)."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events

from monai_cmri.engines import (
    BestModelSaver,
    EpochCheckpoints,
    epoch_checkpoints,
    kept_epochs,
    load_weights,
    network_sizes,
    read_record,
    state_dict_sizes,
)
from monai_cmri.networks import ComplexCVAE

#: What the cvae bundle's CPU profile records beside its weights.
CPU_RECORD = {
    "network": "monai_cmri.networks.ComplexCVAE",
    "in_channels": 2,
    "latent_channels": 2,
    "channels": [16, 32],
    "num_res_blocks": 1,
    "norm_num_groups": 8,
    "profile": "cpu",
    "profile_config": "bundles/cvae/configs/cpu.json",
}


def tiny(channels=(4, 8), seed=0, num_res_blocks=1, norm_num_groups=4, latent_channels=2) -> ComplexCVAE:
    torch.manual_seed(seed)
    return ComplexCVAE(
        channels=channels,
        num_res_blocks=num_res_blocks,
        norm_num_groups=norm_num_groups,
        latent_channels=latent_channels,
        cond_dim=8,
    )


def validated(epochs_and_losses, best=(-1, -1)) -> Engine:
    """An engine whose epochs end with the given losses, tracking the best as MONAI's workflows do.

    ``best``: ``(value, epoch)`` of the best so far, as restored on resume.
    """
    losses = dict(epochs_and_losses)
    engine = Engine(lambda engine, batch: None)
    engine.metric_cmp_fn = lambda current, best: current < best
    engine.state.best_metric, engine.state.best_metric_epoch = best
    engine.state.key_metric_name = "val_loss"

    @engine.on(Events.EPOCH_COMPLETED)
    def compare(engine):
        loss = losses[engine.state.epoch]
        if engine.state.best_metric_epoch == -1 or loss < engine.state.best_metric:
            engine.state.best_metric, engine.state.best_metric_epoch = loss, engine.state.epoch

    return engine


def test_round_trip_restores_every_tensor(tmp_path):
    source = tiny(seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    loaded = load_weights(tiny(seed=2), path, "cpu")
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x, s = torch.randn(2, 2, 16, 16), torch.tensor([0, 3])
    torch.testing.assert_close(loaded.eval()(x, s)[0], source.eval()(x, s)[0], rtol=0, atol=0)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_weights(tiny(), tmp_path / "nowhere.pt")


def test_other_sizes_are_named_in_one_line_from_the_weight_shapes(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(tiny(channels=(8, 16)).state_dict(), path)
    with pytest.raises(ValueError) as caught:
        load_weights(tiny(), path)
    message = str(caught.value)
    assert message == (
        f"{path}: trained with channels [8, 16], num_res_blocks 1 (read from the weight shapes; no model.json); "
        "this config builds channels [4, 8], num_res_blocks 1"
    )
    # No nested torch traceback: the size mismatch report of load_state_dict is suppressed.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_cpu_profile_model_names_its_profile_and_config_file(tmp_path):
    """The record written beside the weights names the sizes and the config file to add."""
    trained = ComplexCVAE(channels=(16, 32), num_res_blocks=1, norm_num_groups=8)
    engine = validated({1: 0.5})
    BestModelSaver(tmp_path, trained, record=CPU_RECORD).attach(engine)
    engine.run([0], max_epochs=1)
    default = ComplexCVAE(channels=(64, 128), num_res_blocks=2, norm_num_groups=32)
    with pytest.raises(ValueError) as caught:
        load_weights(default, tmp_path / "model.pt")
    assert str(caught.value) == (
        f"{tmp_path / 'model.pt'}: trained with channels [16, 32], num_res_blocks 1, norm_num_groups 8 (the cpu "
        "profile: add 'bundles/cvae/configs/cpu.json' to --config_file); this config builds channels [64, 128], "
        "num_res_blocks 2, norm_num_groups 32"
    )
    assert "\n" not in str(caught.value) and caught.value.__suppress_context__


def test_a_record_of_other_weights_is_ignored(tmp_path):
    path = tmp_path / "model.pt"
    engine = validated({1: 0.5})
    BestModelSaver(tmp_path, tiny(channels=(16, 32), norm_num_groups=8), record=CPU_RECORD).attach(engine)
    engine.run([0], max_epochs=1)
    assert read_record(path)["network"] == CPU_RECORD
    torch.save(tiny(channels=(8, 16)).state_dict(), path)  # replaced without its record
    assert read_record(path) is None
    with pytest.raises(ValueError, match=r"trained with channels \[8, 16\], num_res_blocks 1 \(read from the weight"):
        load_weights(tiny(), path)


def test_other_layers_name_the_first_tensor_that_differs(tmp_path):
    path = tmp_path / "model.pt"
    state = tiny().state_dict()
    state["decoder.6.conv.bias"] = torch.zeros(3)  # the sizes read from the encoder all agree
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"decoder.6.conv.bias is \(3,\) in the file, \(2,\) in the network"):
        load_weights(tiny(), path)


@pytest.mark.parametrize(
    "sizes",
    [
        dict(channels=(4, 8), num_res_blocks=1, norm_num_groups=4, latent_channels=2),
        dict(channels=(4, 8, 12), num_res_blocks=2, norm_num_groups=2, latent_channels=3),
        dict(channels=(6,), num_res_blocks=3, norm_num_groups=3, latent_channels=1),
    ],
)
def test_sizes_read_from_a_network_are_its_constructor_arguments(sizes):
    network = tiny(**sizes)
    expected = {**sizes, "channels": list(sizes["channels"]), "in_channels": 2, "cond_dim": 8, "num_sequences": 5}
    assert network_sizes(network) == expected
    assert state_dict_sizes(network.state_dict()) == {k: v for k, v in expected.items() if k != "norm_num_groups"}
    assert state_dict_sizes({"weight": torch.zeros(3)}) == {}


def test_best_model_saver_replaces_the_weights_only_on_a_better_epoch(tmp_path):
    network = tiny()
    engine = validated({1: 0.5, 2: 0.7, 3: 0.4, 4: 0.4})
    saved, weights = {}, {}

    @engine.on(Events.EPOCH_STARTED)
    def perturb(engine):
        with torch.no_grad():
            network.embedding.weight.add_(1.0)  # every epoch has other weights

    BestModelSaver(tmp_path, network, record={"channels": [4, 8]}).attach(engine)

    @engine.on(Events.EPOCH_COMPLETED)
    def snapshot(engine):
        saved[engine.state.epoch] = (tmp_path / "model.pt").read_bytes()
        weights[engine.state.epoch] = network.embedding.weight.detach().clone()

    engine.run([0], max_epochs=4)
    assert saved[2] == saved[1] and saved[3] != saved[2] and saved[4] == saved[3]  # 0.4 is not below 0.4
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["key_metric"] == {"name": "val_loss", "value": 0.4, "epoch": 3}
    assert record["network"] == {"channels": [4, 8]} and read_record(tmp_path / "model.pt") == record
    loaded = load_weights(tiny(seed=1), tmp_path / "model.pt")
    assert torch.equal(loaded.embedding.weight, weights[3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt"]  # no temporaries left


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"epoch": 3, "model": tiny().state_dict()}, path)
    with pytest.raises(ValueError, match="state_dict"):
        load_weights(tiny(), path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(OSError, match="model.pt"):
        load_weights(tiny(), path)


def test_a_model_saved_after_the_last_trainer_state_stays_the_best(tmp_path):
    """Killed between saving epoch 3's better model and epoch 3's trainer state (best: epoch 2)."""
    network = tiny()
    engine = validated({1: 0.5, 2: 0.4, 3: 0.3})
    BestModelSaver(tmp_path, network).attach(engine)
    engine.run([0], max_epochs=3)
    weights = (tmp_path / "model.pt").read_bytes()

    # The resumed run restores the best of epoch 2 and validates epoch 3 again, a little worse.
    with torch.no_grad():
        network.embedding.weight.add_(1.0)
    resumed = validated({3: 0.35, 4: 0.32, 5: 0.2}, best=(0.4, 2))
    BestModelSaver(tmp_path, network).attach(resumed)
    resumed.load_state_dict({"epoch": 2, "max_epochs": 4, "epoch_length": 1})
    resumed.run([0])
    assert (resumed.state.best_metric, resumed.state.best_metric_epoch) == (0.3, 3)
    assert (tmp_path / "model.pt").read_bytes() == weights  # neither 0.35 nor 0.32 beat 0.3
    resumed.state.max_epochs = 5
    resumed.run([0])
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["key_metric"] == {"name": "val_loss", "value": 0.2, "epoch": 5}

    # A fresh run (no best restored) replaces the model of an earlier run at its first epoch.
    fresh = validated({1: 0.9})
    BestModelSaver(tmp_path, network).attach(fresh)
    fresh.run([0], max_epochs=1)
    assert json.loads((tmp_path / "model.json").read_text())["key_metric"]["epoch"] == 1


@pytest.mark.parametrize(
    "epochs, keep, interval, expected",
    [(24, 3, None, [8, 16, 24]), (12, 2, None, [6, 12]), (10, 3, None, [4, 7, 10]), (5, 8, None, [1, 2, 3, 4, 5]),
     (200, 5, None, [40, 80, 120, 160, 200]), (10, 2, 1, [9, 10]), (7, 0, None, [])],
)
def test_kept_epochs_end_at_the_last_epoch_and_spread_over_training(epochs, keep, interval, expected):
    assert kept_epochs(epochs, keep, interval) == expected


def test_kept_epochs_reject_bad_arguments():
    for args in ((0, 2), (5, -1), (5, 2, 0)):
        with pytest.raises(ValueError, match="kept_epochs"):
            kept_epochs(*args)


def _train(network, save_dir, epochs, keep, start=0, evaluator=None):
    """Run ``epochs`` epochs of an engine that nudges ``network``, keeping checkpoints; return the
    state dict after each epoch."""
    states = {}

    def step(engine, batch):
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(0.01)

    engine = Engine(step)
    saver = EpochCheckpoints(save_dir, network, epochs=epochs, keep=keep, evaluator=evaluator, record={"name": "tiny"})
    saver.attach(engine)
    engine.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: states.update({e.state.epoch: {k: v.clone() for k, v in network.state_dict().items()}})
    )
    if start:
        engine.state.epoch, engine.state.iteration, engine.state.max_epochs = start, start, epochs
        engine.state.epoch_length = 1
    engine.run([0], max_epochs=epochs)
    return states


def test_epoch_checkpoints_keep_the_scheduled_epochs_with_records(tmp_path):
    network = torch.nn.Linear(3, 2)
    states = _train(network, tmp_path, epochs=6, keep=3)
    kept = epoch_checkpoints(tmp_path)
    assert [path.name for path in kept] == ["epoch_0002.pt", "epoch_0004.pt", "epoch_0006.pt"]
    for path, epoch in zip(kept, (2, 4, 6)):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        assert all(torch.equal(loaded[key], states[epoch][key]) for key in loaded)
        record = read_record(path)
        assert record["epoch"] == epoch and record["network"] == {"name": "tiny"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_epoch_checkpoints_replace_those_of_an_earlier_run(tmp_path):
    network = torch.nn.Linear(3, 2)
    _train(network, tmp_path, epochs=8, keep=2)  # an earlier run kept 4 and 8
    assert [p.name for p in epoch_checkpoints(tmp_path)] == ["epoch_0004.pt", "epoch_0008.pt"]
    # a new run of 6 epochs keeping 3: the earlier run's files go, later epochs first
    _train(network, tmp_path, epochs=6, keep=3)
    assert [p.name for p in epoch_checkpoints(tmp_path)] == ["epoch_0002.pt", "epoch_0004.pt", "epoch_0006.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"epoch_000{e}.{suffix}" for e in (2, 4, 6) for suffix in ("pt", "json")])
    # epoch 4's file is this run's, not the earlier one's (whose weights were older)
    assert read_record(tmp_path / "epoch_0004.pt")["epoch"] == 4


def test_a_resumed_run_keeps_the_files_of_its_earlier_epochs(tmp_path):
    network = torch.nn.Linear(3, 2)
    _train(network, tmp_path, epochs=3, keep=2)  # a killed run that had kept epochs 2 and 3
    first = {p.name: p.read_bytes() for p in tmp_path.glob("epoch_*.pt")}
    assert sorted(first) == ["epoch_0002.pt", "epoch_0003.pt"]
    # resume a 6-epoch schedule keeping 3 (2, 4, 6) from epoch 3: epoch 2's file stays, 3 is not kept
    _train(network, tmp_path, epochs=6, keep=3, start=3)
    names = [p.name for p in epoch_checkpoints(tmp_path)]
    assert names == ["epoch_0002.pt", "epoch_0004.pt", "epoch_0006.pt"]
    assert (tmp_path / "epoch_0002.pt").read_bytes() == first["epoch_0002.pt"]


def test_epoch_checkpoints_record_the_validation_metrics_of_their_epoch(tmp_path):
    network = torch.nn.Linear(3, 2)
    evaluator = Engine(lambda engine, batch: None)

    def validate(engine):
        evaluator.state.epoch = engine.state.epoch
        evaluator.state.metrics = {"val_loss": 1.0 / engine.state.epoch, "note": "text"}

    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    EpochCheckpoints(tmp_path, network, epochs=4, keep=2, evaluator=evaluator).attach(trainer)
    trainer.run([0], max_epochs=4)
    assert read_record(tmp_path / "epoch_0002.pt")["metrics"] == {"val_loss": 0.5}
    assert read_record(tmp_path / "epoch_0004.pt")["metrics"] == {"val_loss": 0.25}
