"""Tests of the VAE iterations for MONAI's trainer and evaluator (monai_cmri.engines.cvae; paper 2.2, Eq. 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents

from monai_cmri.data.dataset import LABELS, PatchDataset, write_patches
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.engines import CVAEEvalStep, cvae_train_step, lower_is_better, prepare_cvae_batch
from monai_cmri.losses import CVAELoss
from monai_cmri.networks import ComplexCVAE

SIZE = 16


def phantoms(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth complex blobs with a phase ramp, as two channels ``(n, 2, size, size)``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(-0.15, 0.15, 2).tolist() + [rng.uniform(0.2, 0.35)]
        mag = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))
        phase = rng.uniform(-np.pi, np.pi) + rng.uniform(-2, 2) * x + rng.uniform(-2, 2) * y
        z = mag * np.exp(1j * phase)
        out.append(np.stack([z.real, z.imag]))
    return np.asarray(out, dtype=np.float32)


@pytest.fixture
def patch_dataset(tmp_path) -> PatchDataset:
    n = 7
    sequences = [SEQUENCES[i % len(SEQUENCES)] for i in range(n)]
    labels = [
        "abnormal" if s == "AXFLAIR" else "unlabeled" if s in ("AXT2", "AXT1PRE") else "normal" for s in sequences
    ]
    columns = {
        "file": [f"file_brain_{s}_0_{i}" for i, s in enumerate(sequences)],
        "slice": np.arange(n),
        "row": np.zeros(n, int),
        "col": np.zeros(n, int),
        "sequence": sequences,
        "label": labels,
        "overlap": np.zeros(n),
    }
    path = tmp_path / "train.h5"
    write_patches(path, phantoms(n), columns)
    return PatchDataset(path, in_memory=True)


def tiny_network(seed: int = 0) -> ComplexCVAE:
    torch.manual_seed(seed)
    return ComplexCVAE(channels=(4, 8), num_res_blocks=1, norm_num_groups=4, cond_dim=8)


def trainer(network, dataset, loss=None, epochs=1, batch_size=3) -> SupervisedTrainer:
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=DataLoader(dataset, batch_size=batch_size, shuffle=False),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
        loss_function=CVAELoss() if loss is None else loss,
        prepare_batch=prepare_cvae_batch,
        iteration_update=cvae_train_step,
        decollate=False,
    )


def evaluator(network, dataset, step) -> SupervisedEvaluator:
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(dataset, batch_size=3, shuffle=False),
        network=network,
        prepare_batch=prepare_cvae_batch,
        iteration_update=step,
        decollate=False,
    )


def test_prepare_batch_gives_image_as_target_and_sequence_as_argument():
    image = torch.randn(3, 2, 8, 8)
    sequence = torch.tensor([0, 4, 2])
    inputs, target, args, kwargs = prepare_cvae_batch({"image": image, "sequence": sequence, "file": ["a"] * 3})
    assert torch.equal(inputs, image) and target is inputs
    assert len(args) == 1 and torch.equal(args[0], sequence) and kwargs == {}


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"image": torch.randn(3, 2, 8, 8)}, "'sequence'"),
        ({"image": torch.randn(3, 1, 8, 8), "sequence": torch.zeros(3, dtype=torch.long)}, r"\(B, 2, H, W\)"),
        ({"image": torch.randn(3, 2, 8, 8), "sequence": torch.zeros(3)}, "integer"),
        ({"image": torch.randn(3, 2, 8, 8), "sequence": torch.zeros(2, dtype=torch.long)}, r"\(3,\)"),
    ],
)
def test_prepare_batch_rejects_bad_batches(batch, message):
    with pytest.raises(ValueError, match=message):
        prepare_cvae_batch(batch)


def test_train_step_reports_the_objective_of_its_outputs_and_updates_the_network(patch_dataset):
    network = tiny_network()
    before = [p.detach().clone() for p in network.parameters()]
    engine = trainer(network, patch_dataset)
    events = {"backward": 0}
    engine.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED, lambda e: events.__setitem__("backward", events["backward"] + 1)
    )
    outputs = []
    engine.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    engine.run()

    assert events["backward"] == math.ceil(len(patch_dataset) / 3) == engine.state.iteration
    output = engine.state.output
    assert {"image", "label", "pred", "mu", "logvar", "sequence", "loss", "loss_recon", "loss_grad", "loss_kl"} <= set(
        output
    )
    assert output["pred"].shape == (1, 2, SIZE, SIZE) and output["mu"].shape == (1, 2, SIZE // 2, SIZE // 2)
    assert not output["loss"].requires_grad
    # The loss is the objective of the reconstruction and posterior this step produced (Eq. 1).
    for seen in outputs:
        total, terms = CVAELoss()(seen["pred"], seen["image"], seen["mu"], seen["logvar"])
        assert float(seen["loss"].detach()) == pytest.approx(float(total), rel=1e-6)
        assert float(seen["loss_kl"]) == pytest.approx(float(terms["kl"]), rel=1e-6)
    assert all(not torch.equal(a, b) for a, b in zip(before, network.parameters()) if a.abs().sum() > 0)


def test_train_step_lowers_the_loss_over_steps(patch_dataset):
    engine = trainer(tiny_network(), patch_dataset, epochs=30, batch_size=7)
    losses = []
    engine.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    engine.run()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_train_step_needs_the_vae_loss(patch_dataset):
    engine = trainer(tiny_network(), patch_dataset, loss=torch.nn.L1Loss())
    with pytest.raises(ValueError, match="CVAELoss"):
        engine.run()


def test_eval_step_reconstructs_the_posterior_mean_without_gradients(patch_dataset):
    network = tiny_network()
    network.train()
    outputs = []
    engine = evaluator(network, patch_dataset, CVAEEvalStep(CVAELoss()))
    engine.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: outputs.append(e.state.output))
    engine.run()
    assert network.training  # the evaluator's eval_mode restores the mode
    image = torch.stack([patch_dataset[i]["image"] for i in range(3)])
    sequence = torch.tensor([patch_dataset[i]["sequence"] for i in range(3)])
    with torch.no_grad():
        expected = network.eval().decode(network.encode(image, sequence)[0], sequence)
    torch.testing.assert_close(outputs[0]["pred"], expected, rtol=0, atol=1e-6)
    assert not outputs[0]["pred"].requires_grad
    total, _ = CVAELoss()(outputs[0]["pred"], image, outputs[0]["mu"], outputs[0]["logvar"])
    assert float(outputs[0]["loss"]) == pytest.approx(float(total), rel=1e-6)
    assert all(p.grad is None for p in network.parameters())


def test_eval_step_without_loss_reports_no_loss(patch_dataset):
    outputs = []
    engine = evaluator(tiny_network(), patch_dataset, CVAEEvalStep())
    engine.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: outputs.append(e.state.output))
    engine.run()
    assert "loss" not in outputs[0] and outputs[0]["pred"].shape == (3, 2, SIZE, SIZE)
    with pytest.raises(ValueError, match="CVAELoss"):
        CVAEEvalStep(torch.nn.L1Loss())


def test_patch_labels_follow_the_dataset_convention(patch_dataset):
    assert [LABELS[patch_dataset[i]["label"]] for i in range(5)] == [
        "abnormal",
        "normal",
        "normal",
        "unlabeled",
        "unlabeled",
    ]


@pytest.mark.parametrize(
    ("current", "best", "expected"), [(0.5, -1, True), (0.5, 0.4, False), (0.3, 0.4, True), (0.4, 0.4, False)]
)
def test_lower_is_better(current, best, expected):
    assert lower_is_better(current, best) is expected
