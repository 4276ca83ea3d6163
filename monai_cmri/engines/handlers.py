"""Ignite handlers and output transforms for the VAE engines (paper 2.2, 3.1; SPEC 3, 4).

* :func:`magnitudes` adapts an engine's output to MONAI's SSIM / PSNR metric handlers (metrics on
  magnitudes, paper 2.2); :class:`SampleAverage` averages a batch-mean loss over samples;
* :class:`StopOnNonFinite` stops training on a NaN or infinite loss (STYLE 7);
* :class:`ReconstructionReport` gathers the per-sequence reconstruction table (paper Table 3) and
  example patches during an evaluation run and writes the table (CSV, Markdown) and the figure
  (paper Figure 3) when it completes.

Every handler has MONAI's ``attach(engine)`` form, so bundle configs list them in ``train_handlers``
or ``val_handlers``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers import from_engine
from monai.utils import CommonKeys as Keys

from monai_cmri.data.dataset import ABNORMAL, LABELS
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.engines.report import reconstruction_figure, write_reconstruction_table
from monai_cmri.metrics import PerSequenceMetrics
from monai_cmri.transforms.complex import magnitude

__all__ = ["magnitudes", "SampleAverage", "StopOnNonFinite", "ReconstructionReport"]


def magnitudes(keys: Sequence[str]) -> Callable[[Any], tuple[torch.Tensor, ...]]:
    """Output transform giving the magnitudes of two-channel entries of an engine output.

    For SSIM and PSNR on magnitudes (paper 2.2) through MONAI's metric handlers, e.g.
    ``IgniteMetricHandler(SSIMMetric(2, data_range=1.0), output_transform=magnitudes(["pred",
    "label"]))``.

    Args:
        keys: entries of the output, each ``(B, 2, H, W)`` (real, imag); the output may be a
            batch dict or a decollated list of per-sample dicts.

    Returns:
        A callable mapping the output to a tuple of ``(B, 1, H, W)`` magnitudes, one per key.
    """
    keys = list(keys)

    def transform(output: Any) -> tuple[torch.Tensor, ...]:
        if isinstance(output, dict):
            values = [output[key] for key in keys]
        else:
            values = [torch.stack([item[key] for item in output]) for key in keys]
        return tuple(magnitude(value) for value in values)

    return transform


class SampleAverage(Metric):
    """Mean over samples of a batch-mean scalar in the engine output, such as the loss.

    The VAE steps report each loss term as a mean over the batch; weighting each batch by its size
    makes the epoch value the mean over samples even when the last batch is smaller (Ignite's
    ``Average`` counts a scalar output as one example). Sums are kept in float64 and reduced
    across processes under DDP.

    Args:
        key: the scalar entry of the output dict, e.g. ``"loss"``.
        batch_key: an entry whose first axis is the batch, giving its size.
        output_transform: applied to the engine output before reading the two entries.
        device: where the running sum lives.

    Example:
        ``SupervisedEvaluator(..., key_val_metric={"val_loss": SampleAverage("loss")})``
    """

    def __init__(
        self,
        key: str = Keys.LOSS,
        batch_key: str = Keys.IMAGE,
        output_transform: Callable[[Any], Any] = lambda output: output,
        device: str | torch.device = "cpu",
    ) -> None:
        self.key, self.batch_key = key, batch_key
        super().__init__(output_transform=output_transform, device=device)
        # Ignite passes a mapping output to update() as the tuple of these entries.
        self.required_output_keys = (key, batch_key)

    @reinit__is_reduced
    def reset(self) -> None:
        """Start a new epoch."""
        self._sum = torch.zeros((), dtype=torch.float64, device=self._device)
        self._count = 0

    @reinit__is_reduced
    def update(self, output: tuple[Any, Any]) -> None:
        """Add one batch.

        Args:
            output: ``(value, batch)``: the scalar and an entry whose length is the batch size
                (Ignite extracts them from the output dict by ``key`` and ``batch_key``).

        Raises:
            ValueError: if the value is not a scalar.
        """
        value, batch = output
        value = torch.as_tensor(value).detach()
        if value.numel() != 1:
            raise ValueError(f"SampleAverage: {self.key!r} must be a scalar, got shape {tuple(value.shape)}")
        count = len(batch)
        self._sum += value.reshape(()).to(self._device, torch.float64) * count
        self._count += count

    @sync_all_reduce("_sum", "_count")
    def compute(self) -> float:
        """The sample-weighted mean of the epoch.

        Raises:
            NotComputableError: if no sample was seen.
        """
        if self._count == 0:
            raise NotComputableError(f"SampleAverage({self.key!r}) needs at least one sample")
        return float(self._sum) / self._count


class StopOnNonFinite:
    """Raise ``FloatingPointError`` when a training loss is NaN or infinite (STYLE 7).

    Ignite's ``TerminateOnNan`` only ends the run quietly, and the bundle would then exit as if
    training had succeeded; raising makes the failure visible to whatever runs the bundle. The
    checkpoint of the best validation epoch so far stays on disk.

    Args:
        output_transform: maps the engine output to the loss, ``output["loss"]`` by default.
    """

    def __init__(self, output_transform: Callable[[Any], Any] | None = None) -> None:
        self.output_transform = output_transform or _loss

    def attach(self, engine: Engine) -> None:
        """Check the loss after every iteration of ``engine``."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Check this iteration's loss.

        Raises:
            FloatingPointError: naming the epoch, the iteration and the loss terms in the output.
        """
        loss = torch.as_tensor(self.output_transform(engine.state.output))
        if bool(torch.isfinite(loss).all()):
            return
        output = engine.state.output if isinstance(engine.state.output, dict) else {}
        terms = ", ".join(
            f"{name}={float(value):.4g}"
            for name, value in output.items()
            if name.startswith("loss") and isinstance(value, torch.Tensor) and value.numel() == 1
        )
        raise FloatingPointError(
            f"non-finite training loss at epoch {engine.state.epoch}, iteration {engine.state.iteration}"
            f" ({terms or loss}); lower the learning rate or disable AMP"
        )


class ReconstructionReport:
    """Per-sequence reconstruction table and example figure of an evaluation run (paper Table 3, Figure 3).

    Attached to an evaluator whose output holds the reconstructions, the input patches and the
    sequence indices (:class:`~monai_cmri.engines.cvae.CVAEEvalStep` with ``decollate=False``), it
    feeds :class:`~monai_cmri.metrics.PerSequenceMetrics` every iteration and keeps one example per
    sequence (the first abnormal patch of the sequence if the batch labels say so, otherwise its
    first patch). When the run completes it writes, into ``output_dir``:

    * ``<name>.csv`` and ``<name>.md``: phase coherence, magnitude SSIM and PSNR (mean and standard
      deviation over patches) and the patch count per sequence
      (:func:`~monai_cmri.engines.report.write_reconstruction_table`);
    * ``<name>.png``: original, reconstruction and absolute difference of magnitude and phase for
      each example (:func:`~monai_cmri.engines.report.reconstruction_figure`).

    The table is also left in :attr:`table` and logged. The metric buffers are those of this
    process: evaluate on one process (or gather the patches first).

    Args:
        output_dir: folder of the report files (created if missing).
        name: stem of the report files.
        sequences: names of the sequence indices.
        figure: whether to draw the example figure.
        diff_max: upper end of the magnitude difference colour scale (magnitudes are in [0, 1]).
        output_transform: maps the engine output to ``(pred, target, sequence)``; by default its
            ``pred``, ``label`` and ``sequence`` entries.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        name: str = "reconstruction",
        sequences: Sequence[str] = SEQUENCES,
        figure: bool = True,
        diff_max: float = 0.1,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.name = name
        self.sequences = tuple(sequences)
        self.figure = figure
        self.diff_max = float(diff_max)
        self.output_transform = output_transform or from_engine([Keys.PRED, Keys.LABEL, "sequence"])
        self.metrics = PerSequenceMetrics(sequences=self.sequences)
        self.table: dict[str, dict[str, float]] = {}
        self.paths: dict[str, Path] = {}
        self._examples: dict[int, tuple[bool, str, torch.Tensor, torch.Tensor]] = {}
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Reset at the start of each run, gather every iteration, write at completion."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the batches seen."""
        self.metrics.reset()
        self._examples.clear()
        self.table = {}

    def update(self, engine: Engine) -> None:
        """Add the batch of this iteration."""
        pred, target, sequence = self.output_transform(engine.state.output)
        self.metrics.update(pred, target, sequence)
        labels = _labels(engine.state.batch, len(sequence))
        for i, s in enumerate(sequence.tolist()):
            abnormal = labels is not None and labels[i] == ABNORMAL
            kept = self._examples.get(s)
            if kept is None or (abnormal and not kept[0]):
                label = LABELS[labels[i]] if labels is not None else ""
                title = f"{self.sequences[s]} ({label})" if label else self.sequences[s]
                self._examples[s] = (abnormal, title, target[i].detach().float().cpu(), pred[i].detach().float().cpu())

    def write(self, engine: Engine | None = None) -> None:
        """Write the table and the figure into ``output_dir``."""
        self.table = self.metrics.aggregate()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = self.output_dir / f"{self.name}.csv", self.output_dir / f"{self.name}.md"
        write_reconstruction_table(self.table, csv_path, md_path)
        self.paths = {"csv": csv_path, "markdown": md_path}
        if self.figure and self._examples:
            examples = [self._examples[s][1:] for s in sorted(self._examples)]
            self.paths["figure"] = reconstruction_figure(
                examples, self.output_dir / f"{self.name}.png", diff_max=self.diff_max
            )
        for sequence, row in self.table.items():
            self.logger.info(
                "%s: coherence %.4f, SSIM %.3f, PSNR %s dB, n %d",
                sequence,
                row["coherence"],
                row["ssim"],
                f"{row['psnr']:.2f}" if math.isfinite(row["psnr"]) else row["psnr"],
                row["n"],
            )
        self.logger.info("reconstruction report written to %s", self.output_dir)


def _loss(output: Any) -> Any:
    """The loss of a batch output dict, or of a decollated list (replicated in every item)."""
    return output[Keys.LOSS] if isinstance(output, dict) else output[0][Keys.LOSS]


def _labels(batch: Any, size: int) -> list[int] | None:
    """Integer class labels of the batch (``PatchDataset`` key ``label``), if present."""
    labels = batch.get("label") if isinstance(batch, dict) else None
    if isinstance(labels, torch.Tensor) and labels.shape == (size,) and not labels.dtype.is_floating_point:
        return [int(v) for v in labels.tolist()]
    return None
