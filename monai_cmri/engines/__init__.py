"""Engines of the VAE: MONAI trainer/evaluator iterations, handlers, reports and weight loading.

The bundle ``bundles/cvae`` wires these into ``monai.engines.SupervisedTrainer`` and
``SupervisedEvaluator`` (paper 2.2, 3.1; SPEC 2-4).
"""

from __future__ import annotations

from monai_cmri.engines.checkpoint import load_weights
from monai_cmri.engines.cvae import CVAEEvalStep, cvae_train_step, lower_is_better, prepare_cvae_batch
from monai_cmri.engines.handlers import ReconstructionReport, SampleAverage, StopOnNonFinite, magnitudes
from monai_cmri.engines.report import (
    TABLE_COLUMNS,
    markdown_table,
    reconstruction_figure,
    write_reconstruction_table,
)

__all__ = [
    "prepare_cvae_batch",
    "cvae_train_step",
    "CVAEEvalStep",
    "lower_is_better",
    "magnitudes",
    "SampleAverage",
    "StopOnNonFinite",
    "ReconstructionReport",
    "TABLE_COLUMNS",
    "markdown_table",
    "write_reconstruction_table",
    "reconstruction_figure",
    "load_weights",
]
