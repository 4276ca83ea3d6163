"""Reconstruction quality of complex patches: phase coherence, magnitude SSIM and PSNR (paper 2.2, 3.1).

Inputs are two-channel ``(B, 2, H, W)`` tensors (real, imag). Phase coherence (paper Eq. 2)
compares the complex images; SSIM and PSNR compare their magnitudes, through MONAI's
``SSIMMetric`` and ``PSNRMetric`` with ``data_range = 1`` because magnitudes are normalised to
``[0, 1]`` slice-wise (SPEC 1.3). :class:`PerSequenceMetrics` gathers the three per acquisition
sequence for the reconstruction table (paper Table 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import Cumulative, CumulativeIterationMetric, PSNRMetric, SSIMMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.transforms.complex import channels_to_complex, magnitude

__all__ = ["phase_coherence", "PhaseCoherenceMetric", "PhaseCoherence", "PerSequenceMetrics"]


def phase_coherence(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Phase coherence ``|sum(xhat * conj(x))| / sum(|xhat| |x|)`` per sample (paper Eq. 2, SPEC 3).

    Each pixel's conjugate product is a vector whose angle is the local phase error and whose length
    is the product of the magnitudes: the ratio is 1 when the phase error is the same everywhere (a
    global phase offset carries no information), lower when it varies, and low-magnitude pixels,
    whose phase is noise, weigh little. It is also 1 for any positive scaling of ``pred``. Summed in
    float64 so that values near 1 keep their digits.

    Args:
        pred: reconstruction ``(B, 2, H, W)`` (real, imag).
        target: reference ``(B, 2, H, W)``.

    Returns:
        ``(B,)`` float64 in ``[0, 1]``; NaN for a sample where ``pred`` or ``target`` is zero
        everywhere (no phase to compare), which MONAI's reductions skip.

    Raises:
        ValueError: if the shapes differ or are not ``(B, 2, H, W)``.
    """
    _check_pair(pred, target, "phase_coherence")
    xhat = channels_to_complex(pred.detach().double())
    x = channels_to_complex(target.detach().double())
    num = (xhat * x.conj()).sum(dim=(-2, -1)).abs()
    den = (xhat.abs() * x.abs()).sum(dim=(-2, -1))
    return torch.where(den > 0, num / den, torch.full_like(den, float("nan")))


class PhaseCoherenceMetric(CumulativeIterationMetric):
    """Phase coherence as a MONAI cumulative metric (paper Eq. 2).

    Each call returns and adds to the buffer one float64 value per sample, ``(B, 1)``;
    :meth:`aggregate` reduces the buffer with ``reduction``, skipping NaN values (from all-zero
    images), and keeps MONAI's shapes (``(1,)`` for ``"mean"``).

    Args:
        reduction: MONAI reduction mode (``"mean"``, ``"sum"``, ``"none"``, ``"mean_batch"``, ...),
            applied by ``aggregate()``; default the mean.
        get_not_nans: if True, ``aggregate()`` returns ``(value, not_nans)``.

    Example:
        >>> metric = PhaseCoherenceMetric()
        >>> x = torch.randn(4, 2, 8, 8)
        >>> _ = metric(y_pred=-x, y=x)  # a phase shift of pi
        >>> round(float(metric.aggregate()), 6)
        1.0
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return phase_coherence(y_pred, y).unsqueeze(1)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered per-sample values.

        Args:
            reduction: overrides the constructor's ``reduction`` for this call.

        Returns:
            The reduced value, or ``(value, not_nans)`` with ``get_not_nans``.

        Raises:
            ValueError: if nothing has been buffered.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{type(self).__name__}.aggregate: no values buffered yet")
        value, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (value, not_nans) if self.get_not_nans else value


class PhaseCoherence(IgniteMetricHandler):
    """Ignite handler of :class:`PhaseCoherenceMetric`, as MONAI's ``MeanDice`` wraps ``DiceMetric``.

    Attach it to an evaluator, ``PhaseCoherence().attach(engine, "coherence")``; the value lands in
    ``engine.state.metrics["coherence"]`` and, with ``save_details``, the per-sample values in
    ``engine.state.metric_details["coherence"]``. Values are gathered across ranks under DDP.

    Args:
        reduction: MONAI reduction mode, default the mean over samples.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, each ``(B, 2, H, W)``.
        save_details: whether to keep the per-sample values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=PhaseCoherenceMetric(reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class PerSequenceMetrics:
    """Phase coherence, magnitude SSIM and magnitude PSNR per acquisition sequence (paper Table 3).

    Feed batches with :meth:`update`; :meth:`aggregate` returns, for each sequence seen, the mean and
    standard deviation over patches of each metric and the patch count. The per-patch values are
    computed by :class:`PhaseCoherenceMetric` and MONAI's ``SSIMMetric`` / ``PSNRMetric``, whose
    buffers hold them; a ``Cumulative`` keeps the matching sequence indices. The buffers are those
    of this process: under DDP, evaluate on one rank or gather the patches first.

    Args:
        sequences: names of the sequence indices, :data:`~monai_cmri.data.sequences.SEQUENCES` by
            default; they key the result.
        data_range: magnitude range for SSIM and PSNR, 1.0 for magnitudes normalised to ``[0, 1]``.
        win_size: SSIM Gaussian window (11 as in Wang et al. 2004); images must be at least this size.

    Example:
        >>> table = PerSequenceMetrics()
        >>> x = torch.rand(3, 2, 16, 16)
        >>> table.update(x, x, torch.tensor([0, 0, 4]))
        >>> {name: row["n"] for name, row in table.aggregate().items()}
        {'AXFLAIR': 2, 'AXT2': 1}
    """

    def __init__(self, sequences: Sequence[str] = SEQUENCES, data_range: float = 1.0, win_size: int = 11) -> None:
        self.sequences = tuple(sequences)
        self.win_size = win_size
        self._metrics = {
            "coherence": PhaseCoherenceMetric(reduction="none"),
            "ssim": SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win_size, reduction="none"),
            "psnr": PSNRMetric(max_val=data_range, reduction="none"),
        }
        self._sequence = Cumulative()

    def reset(self) -> None:
        """Forget every batch seen."""
        for metric in self._metrics.values():
            metric.reset()
        self._sequence.reset()

    def update(self, pred: torch.Tensor, target: torch.Tensor, sequence: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: reconstructions ``(B, 2, H, W)`` (real, imag), ``H, W >= win_size``.
            target: references ``(B, 2, H, W)``.
            sequence: integer sequence indices ``(B,)`` in ``[0, len(sequences))``.

        Raises:
            ValueError: on mismatched shapes, images smaller than the SSIM window, or bad indices.
        """
        name = type(self).__name__
        _check_pair(pred, target, name)
        if min(pred.shape[-2:]) < self.win_size:
            raise ValueError(f"{name}: images {tuple(pred.shape)} are smaller than the SSIM window {self.win_size}")
        batch, count = pred.shape[0], len(self.sequences)
        if not isinstance(sequence, torch.Tensor) or sequence.dtype.is_floating_point or sequence.shape != (batch,):
            raise ValueError(f"{name}: sequence must be an integer tensor ({batch},), got {sequence!r}")
        if batch and (int(sequence.min()) < 0 or int(sequence.max()) >= count):
            raise ValueError(f"{name}: sequence indices must lie in [0, {count}), got {sequence.tolist()}")
        pred, target = pred.detach().float(), target.detach().float()
        self._metrics["coherence"](y_pred=pred, y=target)
        mag_pred, mag_target = magnitude(pred), magnitude(target)
        self._metrics["ssim"](y_pred=mag_pred, y=mag_target)
        self._metrics["psnr"](y_pred=mag_pred, y=mag_target)
        self._sequence.extend(sequence.detach().long().cpu())

    def aggregate(self) -> dict[str, dict[str, float]]:
        """Per-sequence summary.

        Returns:
            ``{sequence: {"coherence", "coherence_std", "ssim", "ssim_std", "psnr" (dB),
            "psnr_std", "n"}}`` for every sequence with at least one patch, in the order of
            ``sequences``; means and (unbiased, 0 for one patch) standard deviations over the
            patches whose value is not NaN, ``n`` the number of patches. A patch reconstructed
            exactly has an infinite PSNR, which makes its sequence's PSNR infinite.
        """
        buffer = self._sequence.get_buffer()
        if buffer is None:
            return {}
        index = buffer.reshape(-1)
        values = {name: metric.get_buffer().reshape(-1).double().cpu() for name, metric in self._metrics.items()}
        table: dict[str, dict[str, float]] = {}
        for i, name in enumerate(self.sequences):
            chosen = index == i
            if not bool(chosen.any()):
                continue
            row: dict[str, float] = {}
            for metric, v in values.items():
                v = v[chosen]
                v = v[~v.isnan()]
                row[metric] = float(v.mean()) if len(v) else float("nan")
                row[f"{metric}_std"] = float(v.std()) if len(v) > 1 else 0.0
            row["n"] = int(chosen.sum())
            table[name] = row
        return table


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} expects torch tensors, got {type(pred).__name__} and {type(target).__name__}")
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(
            f"{name} expects pred and target of one shape (B, 2, H, W), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
