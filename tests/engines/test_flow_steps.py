"""Flow-matching iterations, stage-2 phases, resume and sampling (paper 2.3, SPEC 2)."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch
from ignite.engine import Events
from ignite.handlers import EMAHandler
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from monai_cmri.engines import TrainerState
from monai_cmri.engines.flow import (
    FlowEvalStep,
    FlowTrainStep,
    TwoPhaseFinetuning,
    flow_matching_loss,
    load_stage1,
    prepare_flow_batch,
    stage2_parameter_groups,
)
from monai_cmri.flow.sampling import FlowSampler, counts_per_sequence, matched_counts, sample_latents
from monai_cmri.latents import LatentDataset, LatentWriter
from monai_cmri.networks import FlowUNet
from monai_cmri.networks.nets.flow_unet import CLASS_NULL, SEQUENCE_NULL

SIZE = 8


def tiny(num_classes: int | None = None, seed: int = 0) -> FlowUNet:
    torch.manual_seed(seed)
    return FlowUNet(channels=(8, 16), attention_levels=(False, True), num_res_blocks=1, norm_num_groups=4,
                    num_head_channels=8, num_classes=num_classes)


def batches(n: int, batch: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 2, SIZE, SIZE, generator=generator)
    sequence = torch.arange(n) % 5
    label = torch.where(sequence >= 3, 2, torch.arange(n) % 2)
    return [{"latent": latent[i:i + batch], "sequence": sequence[i:i + batch], "label": label[i:i + batch]}
            for i in range(0, n, batch)]


def trainer(network, optimizer, data, step, epochs=1, handlers=()):
    return SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=data, network=network,
        optimizer=optimizer, loss_function=flow_matching_loss, prepare_batch=prepare_flow_batch,
        iteration_update=step, train_handlers=list(handlers), decollate=False,
    )


def test_prepare_flow_batch_returns_tokens_and_rejects_missing_keys():
    batch = batches(4, 4)[0]
    latent, target, (sequence, label), kwargs = prepare_flow_batch(batch)
    assert latent is target and latent.shape == (4, 2, SIZE, SIZE) and kwargs == {}
    assert sequence.dtype == label.dtype == torch.long
    with pytest.raises(ValueError, match="label"):
        prepare_flow_batch({"latent": batch["latent"], "sequence": batch["sequence"]})


def test_stage1_drop_rate_is_ten_percent_and_dropped_samples_get_the_null_sequence():
    network = tiny()
    torch.manual_seed(1)
    data = batches(6000, 6000)
    engine = trainer(network, torch.optim.SGD(network.parameters(), lr=0.0), data, FlowTrainStep(0.1, "sequence"))
    engine.run()
    output = engine.state.output
    dropped = output["dropped"]
    # 6000 draws: the standard error of the rate is 0.0039; 4 standard errors
    assert abs(dropped.float().mean().item() - 0.1) < 0.016
    assert torch.all(output["sequence"][dropped] == SEQUENCE_NULL)
    assert torch.equal(output["sequence"][~dropped], data[0]["sequence"][~dropped])
    assert torch.equal(output["label"], data[0]["label"])


def test_stage2_drops_only_the_class():
    network = tiny(num_classes=3)
    data = batches(2000, 2000)
    engine = trainer(network, torch.optim.SGD(network.parameters(), lr=0.0), data, FlowTrainStep(0.5, "class"))
    engine.run()
    output = engine.state.output
    assert torch.equal(output["sequence"], data[0]["sequence"])
    assert torch.all(output["label"][output["dropped"]] == CLASS_NULL)
    assert 0.4 < output["dropped"].float().mean().item() < 0.6


def test_class_dropping_needs_a_class_embedding():
    network = tiny()
    engine = trainer(network, torch.optim.SGD(network.parameters(), lr=0.0), batches(4, 4), FlowTrainStep(0.1, "class"))
    with pytest.raises(ValueError, match="class embedding"):
        engine.run()


def test_train_step_clips_the_gradient_and_lowers_the_loss():
    network = tiny()
    data = batches(64, 16)
    step = FlowTrainStep(0.0, max_grad_norm=1e-3)
    engine = trainer(network, torch.optim.SGD(network.parameters(), lr=1.0), data, step)
    engine.run()
    total = torch.nn.utils.get_total_norm([p.grad for p in network.parameters() if p.grad is not None])
    assert total.item() == pytest.approx(1e-3, rel=1e-3)
    assert engine.state.output["grad_norm"].item() > 1e-3


def test_eval_step_draws_the_same_times_and_noise_every_validation():
    network = tiny()
    data = batches(24, 8)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data, network=network,
                                    prepare_batch=prepare_flow_batch, iteration_update=FlowEvalStep(seed=3),
                                    decollate=False)
    losses = []
    for _ in range(2):
        evaluator.run()
        losses.append(evaluator.state.output["loss"].item())
    assert losses[0] == losses[1]


def test_load_stage1_is_exact_and_leaves_the_stage1_velocity_unchanged(tmp_path):
    stage1 = tiny(seed=1)
    path = tmp_path / "model.pt"
    torch.save(stage1.state_dict(), path)
    stage2 = load_stage1(tiny(num_classes=3, seed=2), path)
    for name, tensor in stage1.state_dict().items():
        assert torch.equal(stage2.state_dict()[name], tensor), name
    x, t, sequence = torch.randn(6, 2, SIZE, SIZE), torch.linspace(0, 1, 6), torch.tensor([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        for label in (0, 1, 2, CLASS_NULL):
            assert torch.equal(stage2(x, t, sequence, torch.full((6,), label)), stage1(x, t, sequence))


def test_load_stage1_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt.*flow_stage1"):
        load_stage1(tiny(num_classes=3), tmp_path / "missing.pt")
    other = FlowUNet(channels=(8, 8), attention_levels=(False, True), num_res_blocks=1, norm_num_groups=4,
                     num_head_channels=8)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt.*shape differs"):
        load_stage1(tiny(num_classes=3), tmp_path / "other.pt")


def test_phase1_trains_only_the_class_embedding_then_phase2_everything():
    network = tiny(num_classes=3)
    # a trained stage 1 has non-zero weights where MONAI initialises zeros (the output layer, the
    # second convolution of every residual block), which would leave the class embedding without a gradient
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if not name.startswith("class_embedding") and not parameter.any():
                parameter.normal_(std=0.1)
    optimizer = torch.optim.AdamW(stage2_parameter_groups(network, 1e-2, 1e-3), weight_decay=0.1)
    phases = TwoPhaseFinetuning(network, optimizer, phase1_epochs=1, pretrained_learning_rate=1e-3)
    before = copy.deepcopy(network.state_dict())
    seen = []

    def record(engine):
        pretrained = [p for p in network.pretrained_parameters() if p.grad is not None]
        seen.append((phases.phase, len(pretrained), network.class_embedding.weight.grad is not None))

    snapshots = []

    def snapshot(engine):
        snapshots.append((copy.deepcopy(network.state_dict()), phases.phase, optimizer.param_groups[1]["lr"]))

    engine = trainer(network, optimizer, batches(16, 8), FlowTrainStep(0.1, "class"), epochs=2, handlers=[phases])
    engine.add_event_handler(Events.ITERATION_COMPLETED, record)
    engine.add_event_handler(Events.EPOCH_COMPLETED, snapshot)
    engine.run()
    (after1, phase1, lr1), (after2, phase2, lr2) = snapshots
    for name, tensor in before.items():
        if not name.startswith("class_embedding"):
            assert torch.equal(after1[name], tensor), name
    assert not torch.equal(after1["class_embedding.weight"], before["class_embedding.weight"])
    assert all(has for phase, count, has in seen)
    assert [(phase, count) for phase, count, _ in seen[:2]] == [(1, 0), (1, 0)]
    assert (phase1, lr1, phase2, lr2) == (1, 0.0, 2, 1e-3)
    assert all(count > 0 for phase, count, _ in seen[2:])
    changed = [name for name, tensor in after2.items() if not torch.equal(tensor, after1[name])]
    assert len(changed) > len(after2) // 2


def _run(tmp_path, epochs, resume):
    torch.manual_seed(0)
    network = tiny()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    ema = EMAHandler(network, momentum=0.1)
    state = TrainerState(tmp_path / "state.pt", {"network": network, "optimizer": optimizer, "ema": ema.ema_model},
                         resume=resume)
    engine = trainer(network, optimizer, batches(32, 8), FlowTrainStep(0.1), epochs=epochs, handlers=[ema, state])
    engine.run()
    return network, ema.ema_model, optimizer, engine


def test_resume_continues_with_the_same_network_optimizer_and_ema(tmp_path):
    straight, straight_ema, straight_opt, _ = _run(tmp_path / "a", 2, resume=False)
    first, *_ = _run(tmp_path / "b", 1, resume=False)
    # the state of epoch 1 was saved for a 1-epoch run; make it the state of a 2-epoch run's first epoch
    payload = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    payload["objects"]["trainer"]["max_epochs"] = 2
    torch.save(payload, tmp_path / "b" / "state.pt")
    resumed, resumed_ema, resumed_opt, engine = _run(tmp_path / "b", 2, resume=True)
    assert engine.state.iteration == 8
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(straight_ema.parameters(), resumed_ema.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert straight_opt.state_dict()["state"][0]["step"] == resumed_opt.state_dict()["state"][0]["step"]


def test_sampler_counts_nfe_with_and_without_guidance_and_interval():
    network, noise, sequence = tiny(), torch.randn(3, 2, SIZE, SIZE), torch.tensor([0, 2, 4])
    # Heun on 4 intervals evaluates at t = 0, .25 | .25, .5 | .5, .75 | .75, 1: five of the eight
    # evaluations lie in [0.5, 1] and are guided (2 each), three are not (1 each)
    cases = [(1.0, None, 8), (2.0, None, 16), (2.0, (0.5, 1.0), 3 + 2 * 5)]
    for scale, interval, nfe in cases:
        sampler = FlowSampler("heun", 4, scale, interval)
        sampler(noise, network, sequence)
        assert sampler.nfe == nfe, (scale, interval)
    sampler = FlowSampler("euler", 5, 2.0)
    sampler(noise, network, sequence)
    assert sampler.nfe == 10


def test_sampler_guidance_on_the_class_keeps_the_sequence():
    network = tiny(num_classes=3)
    calls = []
    forward = network.forward

    def spy(x, t, sequence, label=None):
        calls.append((sequence.clone(), None if label is None else label.clone()))
        return forward(x, t, sequence, label)

    network.forward = spy
    sequence, label = torch.tensor([0, 1]), torch.tensor([1, 0])
    FlowSampler("euler", 1, 2.0, guide="class")(torch.randn(2, 2, SIZE, SIZE), network, sequence, label)
    (seen_sequence, seen_label), = calls
    assert torch.equal(seen_sequence, torch.tensor([0, 1, 0, 1]))
    assert torch.equal(seen_label, torch.tensor([1, 0, CLASS_NULL, CLASS_NULL]))


def test_sample_latents_is_reproducible_whatever_the_batch_and_records_its_settings(tmp_path):
    network = tiny()
    sampler = FlowSampler("midpoint", 2, 2.0)
    a = sample_latents(network, counts_per_sequence(2), tmp_path / "a.h5", sampler, shape=(2, SIZE, SIZE),
                       seed=5, batch_size=3, checkpoint=None, progress=False)
    b = sample_latents(network, counts_per_sequence(2), tmp_path / "b.h5", sampler, shape=(2, SIZE, SIZE),
                       seed=5, batch_size=10, progress=False)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        np.testing.assert_array_equal(fa["latents"][()], fb["latents"][()])
    dataset = LatentDataset(a)
    assert len(dataset) == 10 and dataset.encoder["weights"] == "EMA"
    assert list(dataset.columns["seed"]) == list(range(5, 15))
    assert set(dataset.columns["nfe"].tolist()) == {8} and set(dataset.columns["solver"]) == {"midpoint"}
    assert dataset.sequences.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_matched_counts_reads_the_cells_of_a_real_file(tmp_path):
    rows = [("AXT1", "normal")] * 3 + [("AXT1", "abnormal")] * 2 + [("AXT2", "unlabeled")]
    path = tmp_path / "train.h5"
    with LatentWriter(path, (2, SIZE, SIZE)) as writer:
        n = len(rows)
        writer.append(np.zeros((n, 2, SIZE, SIZE), np.float32), {
            "file": ["v"] * n, "slice": np.zeros(n, int), "row": np.zeros(n, int), "col": np.zeros(n, int),
            "sequence": [s for s, _ in rows], "label": [c for _, c in rows], "overlap": np.zeros(n)})
    assert matched_counts(path) == [(1, 0, 3), (1, 1, 2), (4, 2, 1)]
    assert matched_counts(path, by_class=False) == [(1, 2, 5), (4, 2, 1)]
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        matched_counts(tmp_path / "nope.h5")
