"""Classifier iterations, mixup, loss, AUROC and score files (paper 2.4)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from ignite.handlers import EMAHandler
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ROCAUC, ValidationHandler, from_engine
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import nn

from monai_cmri.engines import (
    SCORE_COLUMNS,
    ClassifierEvalStep,
    ClassifierTrainStep,
    ScoreWriter,
    auroc,
    classifier_loss,
    mixup,
    prepare_classifier_batch,
    write_metrics,
    write_scores,
)

SIZE = 6


class Tiny(nn.Module):
    """One logit per image: a linear map of the mean of each channel."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(2, 3))).squeeze(1)


def batches(n: int, batch: int, seed: int = 0, separable: bool = True) -> list[dict]:
    """Images whose channel-0 mean is shifted by +2 for target 1 when ``separable``, with row metadata."""
    generator = torch.Generator().manual_seed(seed)
    target = (torch.arange(n) % 2).float()
    image = torch.randn(n, 2, SIZE, SIZE, generator=generator)
    if separable:
        image[:, 0] += 2.0 * target[:, None, None]
    out = []
    for i in range(0, n, batch):
        index = torch.arange(i, min(i + batch, n))
        out.append({"image": image[index], "target": target[index], "source": torch.zeros_like(index), "index": index,
                    "file": [f"f{j}" for j in index.tolist()], "slice": torch.zeros_like(index),
                    "row": torch.ones_like(index), "col": torch.full_like(index, 2), "sequence": index % 5})
    return out


def trainer(network, data, step, epochs=1, handlers=(), lr=0.1):
    return SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=data, network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr), loss_function=classifier_loss,
        prepare_batch=prepare_classifier_batch, iteration_update=step, train_handlers=list(handlers), decollate=False,
    )


def evaluator(network, data, handlers=()):
    return SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=data, network=network, prepare_batch=prepare_classifier_batch,
        iteration_update=ClassifierEvalStep(), decollate=False, val_handlers=list(handlers),
        key_val_metric={"auroc": ROCAUC(output_transform=from_engine(["pred", "label"]))},
    )


def test_mixup_alpha_zero_is_the_identity():
    images, targets = torch.randn(4, 2, 3, 3), torch.tensor([0.0, 1.0, 1.0, 0.0])
    state = torch.get_rng_state()
    mixed, mixed_targets, lam = mixup(images, targets, 0.0)
    assert mixed is images and mixed_targets is targets and lam == 1.0
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn


def test_mixup_mixes_targets_with_the_weights_of_the_images():
    # every pixel of image i equals its target, so a mixed image must equal its mixed target
    targets = torch.tensor([0.0, 1.0, 0.25, 1.0, 0.0, 0.5])
    images = targets[:, None, None, None].expand(6, 2, 3, 3).clone()
    mixed, mixed_targets, lam = mixup(images, targets, 0.4, generator=torch.Generator().manual_seed(1))
    assert 0.0 <= lam <= 1.0 and lam not in (0.0, 1.0)
    torch.testing.assert_close(mixed, mixed_targets[:, None, None, None].expand_as(mixed))
    assert not torch.equal(mixed_targets, targets)
    # a permutation: the mean is kept
    assert mixed_targets.mean().item() == pytest.approx(targets.mean().item())
    again = mixup(images, targets, 0.4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again[0], mixed) and again[2] == lam
    with pytest.raises(ValueError, match="alpha"):
        mixup(images, targets, -1.0)


def test_mixup_weights_follow_the_beta_distribution():
    generator = torch.Generator().manual_seed(0)
    images, targets = torch.zeros(2, 1, 1, 1), torch.zeros(2)
    lams = [mixup(images, targets, 0.4, generator=generator)[2] for _ in range(400)]
    assert stats.kstest(lams, "beta", args=(0.4, 0.4)).pvalue > 0.01


def test_classifier_loss_is_fp32_binary_cross_entropy_on_soft_targets():
    logits = torch.tensor([[2.0], [-1.0], [0.5]], dtype=torch.bfloat16)
    targets = torch.tensor([1.0, 0.2, 0.5])
    loss = classifier_loss(logits, targets)
    x = logits.float().reshape(-1).double().numpy()
    p = 1 / (1 + np.exp(-x))
    expected = -np.mean(targets.numpy() * np.log(p) + (1 - targets.numpy()) * np.log(1 - p))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="one logit per image"):
        classifier_loss(torch.zeros(3, 2), targets)


def test_auroc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 301)
    scores = np.round(rng.random(301) + 0.3 * targets, 1)  # rounding makes ties
    expected = roc_auc_score(targets, scores.astype(np.float32))
    assert auroc(torch.from_numpy(scores).float(), targets) == pytest.approx(expected, abs=1e-12)
    assert auroc([0.1, 0.9, 0.4], [0, 1, 1]) == pytest.approx(roc_auc_score([0, 1, 1], [0.1, 0.9, 0.4]))
    with pytest.warns(UserWarning):
        assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_train_step_learns_an_easy_task_and_reports_its_output():
    torch.manual_seed(0)
    network = Tiny()
    step = ClassifierTrainStep(mixup_alpha=0.2)
    engine = trainer(network, batches(64, 16), step, epochs=8)
    engine.run()
    output = engine.state.output
    assert set(output) == {"loss", "pred", "target", "lam", "grad_norm"}
    assert output["pred"].shape == (16,) and output["pred"].dtype == torch.float32
    assert 0.0 <= output["target"].min() and output["target"].max() <= 1.0  # soft targets
    assert output["loss"].requires_grad is False and math.isfinite(output["loss"].item())
    tester = evaluator(network, batches(64, 16, seed=1))
    tester.run()
    assert tester.state.metrics["auroc"] > 0.95


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    network, clipped = Tiny(), Tiny()
    clipped.load_state_dict(network.state_dict())
    data = batches(8, 8)
    for net, norm in ((network, None), (clipped, 1e-3)):
        engine = trainer(net, data, ClassifierTrainStep(max_grad_norm=norm), lr=1.0)
        engine.run()
        grad_norm = engine.state.output["grad_norm"].item()
        total = torch.nn.utils.get_total_norm([p.grad for p in net.parameters()]).item()
        if norm is None:
            assert total == pytest.approx(grad_norm)
        else:
            assert grad_norm > 1e-2 and total == pytest.approx(norm, rel=1e-4)


def test_eval_step_gives_probabilities_and_the_handler_auroc_equals_scikit_learn(tmp_path):
    torch.manual_seed(0)
    network = Tiny()
    data = batches(21, 8, seed=3, separable=False)
    writer = ScoreWriter(tmp_path / "scores.csv")
    engine = evaluator(network, data, handlers=[writer])
    engine.run()
    images = torch.cat([b["image"] for b in data])
    targets = torch.cat([b["target"] for b in data]).numpy()
    with torch.no_grad():
        probabilities = torch.sigmoid(network(images)).numpy()
    assert engine.state.metrics["auroc"] == pytest.approx(roc_auc_score(targets, probabilities), abs=1e-12)
    output = engine.state.output
    torch.testing.assert_close(output["pred"], torch.sigmoid(output["logits"]))
    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SCORE_COLUMNS and len(rows) == 21
    assert [row["file"] for row in rows] == [f"f{i}" for i in range(21)]
    assert rows[7]["sequence"] == "AXT1POST" and rows[7]["row"] == "1" and rows[7]["target"] in ("0", "1")
    np.testing.assert_allclose([float(row["probability"]) for row in rows], probabilities, rtol=1e-6)
    assert writer.scores["index"] == list(range(21))
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_scores_checks_its_columns(tmp_path):
    scores = {name: [1, 2] for name in SCORE_COLUMNS}
    scores.update(sequence=[0, "AXT2"], probability=[0.25, 1 / 3], extra=["a", "b"])
    path = write_scores(tmp_path / "out" / "s.csv", scores)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(SCORE_COLUMNS) + ",extra"
    assert lines[1] == "1,1,1,1,1,1,AXFLAIR,1,0.25,a" and lines[2].split(",")[-2] == "0.333333333"
    with pytest.raises(ValueError, match="lack"):
        write_scores(tmp_path / "t.csv", {"source": [1]})
    with pytest.raises(ValueError, match="different lengths"):
        write_scores(tmp_path / "t.csv", {**scores, "extra": ["a"]})


def test_ema_weights_validate_and_metrics_summarise_the_run(tmp_path):
    torch.manual_seed(0)
    network = Tiny()
    ema = EMAHandler(network, momentum=0.5)
    validator = evaluator(ema.ema_model, batches(32, 16, seed=1))
    engine = trainer(network, batches(32, 16), ClassifierTrainStep(), epochs=3,
                     handlers=[ema, ValidationHandler(interval=1, validator=validator, epoch_level=True)])
    engine.run()
    # the validated network is the EMA copy, not the trained one
    assert validator.network is ema.ema_model
    assert not torch.equal(ema.ema_model.linear.weight, network.linear.weight)
    tester = evaluator(ema.ema_model, batches(32, 16, seed=2))
    tester.run()
    summary = write_metrics(tmp_path / "metrics.json", validator=validator, tester=tester, trainer=engine,
                            record={"seed": 7})
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["best_epoch"] in (1, 2, 3) and written["val_auroc"] == validator.state.best_metric
    assert written["test_auroc"] == tester.state.metrics["auroc"] and written["seed"] == 7
    assert written["epochs"] == written["epochs_done"] == 3 and written["timing"]["train_seconds"] > 0


@pytest.mark.filterwarnings("ignore:.*GradScaler:FutureWarning", "ignore:.*CUDA is not available:UserWarning")
def test_autocast_runs_the_network_in_bfloat16_and_the_loss_in_fp32():
    """``amp`` on the CPU: autocast to bfloat16 around the network only (STYLE 7)."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(2, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    dtypes = []
    network.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    engine = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=batches(16, 8), network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=classifier_loss,
        prepare_batch=prepare_classifier_batch, iteration_update=ClassifierTrainStep(mixup_alpha=0.4),
        amp=True, decollate=False, amp_kwargs={"dtype": torch.bfloat16},
    )
    engine.run()
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    output = engine.state.output
    assert output["loss"].dtype == output["pred"].dtype == torch.float32 and math.isfinite(output["loss"].item())
