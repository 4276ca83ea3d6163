"""The classifier recipe of both evaluations, as MONAI engine iterations and handlers (paper 2.4, SPEC 3).

One recipe serves the real-versus-synthetic classifier on latents (paper 2.4.1) and the downstream
normal-versus-abnormal classifier on decoded patches (paper 2.4.2): an SE-ResNet
(:class:`~monai_cmri.networks.SEResNetClassifier`) trained with mixup, a cosine learning-rate
schedule, an exponential moving average of the weights and class-balanced sampling, scored by the
area under the ROC curve. The ``classifier`` bundle wires the pieces here into MONAI's
``SupervisedTrainer`` and ``SupervisedEvaluator``:

* :func:`prepare_classifier_batch` turns a :class:`~monai_cmri.data.classification.ClassificationDataset`
  batch into ``(image, target, (), {})``;
* :func:`mixup` mixes a batch and its targets (Zhang et al. 2018);
* :class:`ClassifierTrainStep` is the trainer's ``iteration_update``: mixup, binary cross-entropy
  with logits on the (soft) targets (:func:`classifier_loss`, fp32), optional autocast and
  gradient scaler, gradient-norm clipping;
* :class:`ClassifierEvalStep` is the evaluator's ``iteration_update``: probabilities
  ``sigmoid(logit)`` as ``pred`` and the targets as ``label``, the form MONAI's ``ROCAUC`` handler
  (``ROCAUCMetric``) reads through ``from_engine(["pred", "label"])``;
* :func:`auroc` is ``ROCAUCMetric`` on two tensors; :class:`ScoreWriter` and :func:`write_scores`
  write the per-item probabilities of an evaluation as CSV; :func:`write_metrics` writes the run's
  summary (``metrics.json``).

What the bundle takes from the libraries: the EMA is Ignite's ``EMAHandler`` (its ``ema_model``
is what the evaluator validates, :class:`~monai_cmri.engines.BestModelSaver` saves and the test
evaluation scores); the cosine schedule is MONAI's ``WarmupCosineSchedule`` (linear warmup, then a
half cosine to 0), stepped **per iteration** by MONAI's ``LrScheduleHandler(epoch_level=False)``;
class-balanced sampling is ``WeightedRandomSampler`` on
:meth:`~monai_cmri.data.classification.ClassificationDataset.sampling_weights`; resuming is
:class:`~monai_cmri.engines.TrainerState`.

Random numbers: mixup draws from torch's global generator (or the one given), whose state
:class:`~monai_cmri.engines.TrainerState` saves every epoch, so a resumed run mixes as an
uninterrupted one would.

Precision (STYLE 7): only the network runs under autocast; logits are cast to fp32 before the
sigmoid and the loss.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine
from monai.metrics import ROCAUCMetric
from monai.utils import CommonKeys as Keys

from monai_cmri.atomic import remove_stale_temporaries, write_json, write_text
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.engines.cvae import _autocast, _backward_step
from monai_cmri.engines.trainer_state import _gather

__all__ = [
    "SCORE_COLUMNS",
    "prepare_classifier_batch",
    "mixup",
    "classifier_loss",
    "ClassifierTrainStep",
    "ClassifierEvalStep",
    "auroc",
    "write_scores",
    "ScoreWriter",
    "write_metrics",
]

#: Columns of a scores CSV, in this order (further columns follow them).
SCORE_COLUMNS: tuple[str, ...] = ("source", "index", "file", "slice", "row", "col", "sequence", "target", "probability")


def prepare_classifier_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor, tuple[()], dict[str, Any]]:
    """Images and targets of a classification batch (MONAI ``prepare_batch``).

    Args:
        batchdata: a collated :class:`~monai_cmri.data.classification.ClassificationDataset` batch
            with ``image`` ``(B, C, H, W)`` and ``target`` ``(B,)`` in ``[0, 1]``.
        device: where to move the tensors.
        non_blocking: passed to ``Tensor.to``.
        kwargs: further ``Tensor.to`` arguments (the engine's ``to_kwargs``).

    Returns:
        ``(image, target, (), {})``: float32 ``(B, C, H, W)`` and float32 ``(B,)``, the engine's
        4-tuple form (the network takes the image alone).

    Raises:
        ValueError: if a key is missing or a tensor has the wrong shape.
    """
    if not isinstance(batchdata, Mapping) or "image" not in batchdata or "target" not in batchdata:
        found = sorted(batchdata) if isinstance(batchdata, Mapping) else type(batchdata).__name__
        raise ValueError(f"prepare_classifier_batch expects a batch dict with 'image' and 'target', got {found}")
    image = batchdata["image"]
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"prepare_classifier_batch: 'image' must be a (B, C, H, W) tensor, got {shape}")
    target = torch.as_tensor(batchdata["target"])
    if target.shape != (image.shape[0],):
        found = tuple(target.shape)
        raise ValueError(f"prepare_classifier_batch: 'target' must have shape ({image.shape[0]},), got {found}")
    # A MetaTensor (from the augmentations) would carry per-item metadata through every layer.
    image = image.as_tensor() if isinstance(image, MetaTensor) else image
    image = image.float().to(device=device, non_blocking=non_blocking, **kwargs)
    target = target.float().to(device=device, non_blocking=non_blocking)
    return image, target, (), {}


def mixup(
    images: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup of a batch: ``lambda x + (1 - lambda) x[perm]``, targets alike (Zhang et al. 2018; paper 2.4.1).

    One ``lambda ~ Beta(alpha, alpha)`` and one permutation of the batch per call; the targets are
    mixed with the same weight and permutation as the images, so they become soft targets in
    ``[0, 1]``. ``alpha = 0`` returns the batch unchanged and draws nothing.

    Written here rather than with MONAI's ``MixUp``: that transform mixes labels only of the
    images' rank (it rejects ``(B,)`` targets), needs the batch size at construction (a smaller
    last batch fails), keeps its weights on the CPU and draws from its own NumPy state rather than
    torch's generator, which :class:`~monai_cmri.engines.TrainerState` saves.

    Args:
        images: ``(B, ...)`` float.
        targets: ``(B,)`` or ``(B, K)`` float, on the images' device.
        alpha: Beta concentration, ``>= 0``; 0 disables mixing.
        generator: torch CPU generator of the draws; torch's global one when None.

    Returns:
        ``(mixed images, mixed targets, lambda)``, the tensors in the inputs' dtypes.

    Raises:
        ValueError: for a negative ``alpha`` or targets whose batch differs from the images'.
    """
    if not alpha >= 0:
        raise ValueError(f"mixup: alpha must be >= 0, got {alpha}")
    if targets.shape[:1] != images.shape[:1]:
        raise ValueError(f"mixup: targets {tuple(targets.shape)} and images {tuple(images.shape)} differ in batch size")
    if alpha == 0 or images.shape[0] < 2:
        return images, targets, 1.0
    # NumPy has a Beta sampler with a seed, torch has none that takes a generator: seed NumPy from torch.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(images.shape[0], generator=generator).to(images.device)
    mixed_images = lam * images + (1.0 - lam) * images[perm]
    mixed_targets = lam * targets + (1.0 - lam) * targets[perm]
    return mixed_images, mixed_targets, lam


def classifier_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits on (soft) targets, in fp32 (paper 2.4).

    ``torch.nn.functional.binary_cross_entropy_with_logits``, which takes soft targets as mixup
    makes them and is stable for large logits.

    Args:
        logits: ``(B,)`` or ``(B, 1)``, any float dtype (cast to fp32).
        targets: ``(B,)`` in ``[0, 1]``.

    Returns:
        fp32 scalar, the mean over the batch.

    Raises:
        ValueError: if the shapes do not match.
    """
    logits = _logits(logits, targets.shape[0] if targets.ndim else -1)
    if targets.shape != logits.shape:
        raise ValueError(f"classifier_loss: targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}")
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


class ClassifierTrainStep:
    """One optimisation step of the classifier: the ``iteration_update`` of a ``SupervisedTrainer`` (paper 2.4).

    The batch goes through :func:`mixup` (``mixup_alpha``), the network (training mode, autocast
    when ``engine.amp``) gives one logit per image, and the trainer's ``loss_function``
    (:func:`classifier_loss`) compares it with the mixed targets. The backward pass uses the
    trainer's gradient scaler when it has one; the global gradient norm is clipped to
    ``max_grad_norm`` after unscaling. The engine events ``FORWARD_COMPLETED``,
    ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED`` and ``MODEL_COMPLETED`` fire as in MONAI's step.

    The iteration output (``engine.state.output``; run with ``decollate=False``): ``loss``
    (detached fp32 scalar), ``pred`` (probabilities ``(B,)`` of the mixed images, fp32),
    ``target`` (the mixed targets ``(B,)``), ``lam`` (the mixup weight, a 0-dim tensor) and
    ``grad_norm`` (before clipping).

    Args:
        mixup_alpha: Beta concentration of mixup; 0 disables it.
        max_grad_norm: clipping threshold of the global gradient norm; ``None`` or ``<= 0`` disables.

    Raises:
        ValueError: for a negative ``mixup_alpha``.
    """

    def __init__(self, mixup_alpha: float = 0.0, max_grad_norm: float | None = None) -> None:
        if not mixup_alpha >= 0:
            raise ValueError(f"ClassifierTrainStep: mixup_alpha must be >= 0, got {mixup_alpha}")
        self.mixup_alpha = float(mixup_alpha)
        self.max_grad_norm = None if max_grad_norm is None or max_grad_norm <= 0 else float(max_grad_norm)

    def __call__(self, engine: SupervisedTrainer, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run one batch; returns the iteration output.

        Raises:
            ValueError: if ``batchdata`` is None or gradient accumulation is requested.
        """
        if batchdata is None:
            raise ValueError("ClassifierTrainStep: no batch data for this iteration")
        if getattr(engine, "accumulation_steps", 1) != 1:
            steps = engine.accumulation_steps
            raise ValueError(f"ClassifierTrainStep does not accumulate gradients, got {steps} steps")
        image, target, args, kwargs = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        image, target, lam = mixup(image, target, self.mixup_alpha)
        engine.state.output = output = {"target": target, "lam": torch.tensor(lam)}

        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with _autocast(engine):
            logits = engine.inferer(image, engine.network, *args, **kwargs)
        logits = _logits(logits, image.shape[0]).float()
        output[Keys.PRED] = torch.sigmoid(logits.detach())
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        loss = engine.loss_function(logits, target)
        output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        output["grad_norm"] = _backward_step(engine, loss, self.max_grad_norm)
        output[Keys.LOSS] = loss.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output


class ClassifierEvalStep:
    """Probabilities of a batch without gradients: the ``iteration_update`` of an evaluator (paper 2.4).

    The network runs in the evaluator's mode (``eval``), under autocast when ``engine.amp``. Output
    (``decollate=False``): ``pred`` = ``sigmoid(logit)`` ``(B,)`` fp32, ``label`` = the targets
    ``(B,)``, ``logits`` ``(B,)`` fp32 and ``loss`` (:func:`classifier_loss`, fp32 scalar). MONAI's
    ``ROCAUC`` handler reads ``from_engine(["pred", "label"])``; :class:`ScoreWriter` writes them.

    Example:
        ``SupervisedEvaluator(..., prepare_batch=prepare_classifier_batch,
        iteration_update=ClassifierEvalStep(), key_val_metric={"val_auroc":
        ROCAUC(output_transform=from_engine(["pred", "label"]))}, decollate=False)``
    """

    def __call__(self, engine: SupervisedEvaluator, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run one batch; returns the iteration output.

        Raises:
            ValueError: if ``batchdata`` is None.
        """
        if batchdata is None:
            raise ValueError("ClassifierEvalStep: no batch data for this iteration")
        image, target, args, kwargs = engine.prepare_batch(
            batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs
        )
        with engine.mode(engine.network), _autocast(engine), torch.no_grad():
            logits = engine.inferer(image, engine.network, *args, **kwargs)
        logits = _logits(logits, image.shape[0]).float()
        engine.state.output = output = {
            Keys.PRED: torch.sigmoid(logits),
            Keys.LABEL: target,
            "logits": logits,
            Keys.LOSS: classifier_loss(logits, target),
        }
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output


def auroc(
    probabilities: torch.Tensor | np.ndarray | Sequence[float], targets: torch.Tensor | np.ndarray | Sequence[float]
) -> float:
    """Area under the ROC curve of binary targets, by MONAI's ``ROCAUCMetric`` (paper 2.4.3).

    Ties count one half, as in scikit-learn's ``roc_auc_score``.

    Args:
        probabilities: ``(N,)`` scores (probabilities or logits).
        targets: ``(N,)`` 0 or 1.

    Returns:
        The AUROC; NaN (with MONAI's warning) when only one class is present.
    """
    metric = ROCAUCMetric()
    metric(torch.as_tensor(np.asarray(probabilities, dtype=np.float64)).reshape(-1),
           torch.as_tensor(np.asarray(targets, dtype=np.float64)).reshape(-1))
    return float(metric.aggregate())


def write_scores(path: str | os.PathLike[str], scores: Mapping[str, Sequence[Any]]) -> Path:
    """Write per-item scores as CSV, atomically (:func:`monai_cmri.atomic.write_text`).

    Args:
        path: the CSV file (its folder is created).
        scores: one column per name, all of one length: every name of :data:`SCORE_COLUMNS` (in
            that order in the file; ``sequence`` as an index into ``SEQUENCES`` or a name), then
            any further columns. Floats are written with 9 significant digits (float32 exactly).

    Returns:
        ``path``.

    Raises:
        ValueError: for a missing column or columns of different lengths.
    """
    missing = [name for name in SCORE_COLUMNS if name not in scores]
    if missing:
        raise ValueError(f"{path}: scores lack the column(s) {missing}")
    names = [*SCORE_COLUMNS, *(name for name in scores if name not in SCORE_COLUMNS)]
    lengths = {name: len(scores[name]) for name in names}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: score columns of different lengths {lengths}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for i in range(next(iter(lengths.values()))):
        writer.writerow([_cell(name, scores[name][i]) for name in names])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, buffer.getvalue())


class ScoreWriter:
    """Gather the per-item probabilities of an evaluation run and write them as CSV when it completes.

    Attach to an evaluator running :class:`ClassifierEvalStep` over a
    :class:`~monai_cmri.data.classification.ClassificationDataset`: every iteration it takes
    ``pred`` and ``label`` from the output and ``source``, ``index``, ``file``, ``slice``,
    ``row``, ``col``, ``sequence`` from the batch (a missing column is left empty). When the run
    completes the rows of every process are gathered (DDP), sorted by ``(source, index)`` and
    written by :func:`write_scores` on ``save_rank``. The columns stay in :attr:`scores`.

    Args:
        path: the CSV file, e.g. ``<output_dir>/scores_test.csv``.
        output_transform: maps the engine output to ``(probabilities, targets)``.
        save_rank: the process that writes under DDP.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        save_rank: int = 0,
    ) -> None:
        self.path = Path(path)
        self.output_transform = output_transform or from_engine([Keys.PRED, Keys.LABEL])
        self.save_rank = int(save_rank)
        self.scores: dict[str, list[Any]] = {}
        self._rows: list[tuple[Any, ...]] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Reset at the start of each run, gather every iteration, write at completion."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)
        if idist.get_rank() == self.save_rank:
            remove_stale_temporaries(self.path.parent, f".{self.path.name}.*.tmp")

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the rows gathered."""
        self._rows = []

    def update(self, engine: Engine) -> None:
        """Add the rows of this iteration's batch."""
        probabilities, targets = self.output_transform(engine.state.output)
        probabilities = torch.as_tensor(probabilities).detach().float().reshape(-1).cpu().tolist()
        targets = torch.as_tensor(targets).detach().float().reshape(-1).cpu().tolist()
        batch = engine.state.batch if isinstance(engine.state.batch, Mapping) else {}
        size = len(probabilities)
        columns = [_column(batch, name, size) for name in SCORE_COLUMNS[:7]]
        self._rows.extend(zip(*columns, targets, probabilities))

    def write(self, engine: Engine | None = None) -> None:
        """Gather the rows of every process and write the CSV (on ``save_rank``)."""
        rows = [row for rank_rows in _gather(self._rows) for row in rank_rows]
        if idist.get_rank() != self.save_rank:
            return
        rows.sort(key=lambda row: (_order(row[0]), _order(row[1])))
        self.scores = {name: [row[i] for row in rows] for i, name in enumerate(SCORE_COLUMNS)}
        write_scores(self.path, self.scores)
        self.logger.info(f"scores of {len(rows)} items written to {self.path}")


def write_metrics(
    path: str | os.PathLike[str],
    *,
    validator: Engine | None,
    tester: Engine,
    trainer: Engine | None = None,
    datasets: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    save_rank: int = 0,
) -> dict[str, Any]:
    """Summarise a classifier run and write it as JSON, atomically (``metrics.json``; paper 2.4.3).

    Entries: ``val_auroc`` and ``best_epoch`` (the validator's best key metric and its epoch, the
    model that was saved and tested), ``val_metric`` (its name), ``test_auroc`` (the tester's key
    metric), ``test_metric``, ``epochs`` (configured) and ``epochs_done``, ``counts`` (items per
    target of each dataset, :meth:`~monai_cmri.data.classification.ClassificationDataset.counts`),
    ``timing`` (``train_seconds``: the trainer's run in this process, validation included, so only
    the resumed part after a restart; ``epoch_seconds``: its last epoch; ``test_seconds``), and the
    entries of ``record`` (seed, settings). A NaN AUROC (one class only) is written as null.

    Args:
        path: the JSON file (its folder is created).
        validator: the validation evaluator (its best metric is restored on resume), or None.
        tester: the evaluator that scored the test set with the selected model.
        trainer: the trainer, or None.
        datasets: name -> dataset with a ``counts()`` method, e.g. ``{"train": ..., "test": ...}``.
        record: further JSON-serialisable entries.
        save_rank: the process that writes under DDP.

    Returns:
        The summary (on every process).
    """
    best_epoch = getattr(validator.state, "best_metric_epoch", -1) if validator is not None else -1
    summary: dict[str, Any] = {
        "val_metric": getattr(validator.state, "key_metric_name", None) if validator is not None else None,
        "val_auroc": _finite(validator.state.best_metric) if best_epoch not in (-1, None) else None,
        "best_epoch": int(best_epoch) if best_epoch not in (-1, None) else None,
        "test_metric": tester.state.key_metric_name,
        "test_auroc": _finite(tester.state.metrics.get(tester.state.key_metric_name)),
        "counts": {name: dataset.counts() for name, dataset in (datasets or {}).items()},
        "timing": {"test_seconds": _finite(tester.state.times.get(Events.COMPLETED.name))},
    }
    if trainer is not None:
        summary["epochs"] = int(trainer.state.max_epochs)
        summary["epochs_done"] = int(trainer.state.epoch)
        summary["timing"]["train_seconds"] = _finite(trainer.state.times.get(Events.COMPLETED.name))
        summary["timing"]["epoch_seconds"] = _finite(trainer.state.times.get(Events.EPOCH_COMPLETED.name))
    summary.update(dict(record or {}))
    if idist.get_rank() == save_rank:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(path, summary)
        logging.getLogger(__name__).info(
            f"{summary['val_metric']} {summary['val_auroc']} at epoch {summary['best_epoch']}, "
            f"{summary['test_metric']} {summary['test_auroc']}: written to {path}"
        )
    return summary


def _logits(logits: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B,)`` logits from a network output of ``(B,)`` or ``(B, 1)``; ValueError otherwise."""
    if isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if not isinstance(logits, torch.Tensor) or logits.shape != (batch,):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the classifier must return one logit per image, ({batch},) or ({batch}, 1), got {shape}")
    return torch.as_tensor(logits)


def _column(batch: Mapping[str, Any], name: str, size: int) -> list[Any]:
    values = batch.get(name)
    if values is None:
        return [""] * size
    if isinstance(values, torch.Tensor):
        values = values.reshape(-1).tolist()
    values = list(values)
    if name == "sequence":
        values = [SEQUENCES[int(v)] if isinstance(v, (int, np.integer)) else v for v in values]
    return values if len(values) == size else [""] * size


def _cell(name: str, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if name == "target" and isinstance(value, float) and value.is_integer():
        return int(value)
    if name == "sequence" and isinstance(value, int):
        return SEQUENCES[value]
    if isinstance(value, float):
        return format(value, ".9g")
    return value


def _order(value: Any) -> Any:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
