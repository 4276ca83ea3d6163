"""Engines: MONAI trainer/evaluator iterations, handlers, reports, weights and resumable training.

The bundle ``bundles/cvae`` wires these into ``monai.engines.SupervisedTrainer`` and
``SupervisedEvaluator`` (paper 2.2, 3.1; SPEC 2-4); ``bundles/flow_stage1`` and
``bundles/flow_stage2`` do the same with the iterations of :mod:`monai_cmri.engines.flow` (paper 2.3), and
``bundles/classifier`` with those of :mod:`monai_cmri.engines.classifier` (paper 2.4). :class:`TrainerState`,
:class:`BestModelSaver` and :class:`TerminalProgressBar` serve every training bundle.
"""

from __future__ import annotations

from monai_cmri.engines.checkpoint import (
    BestModelSaver,
    EpochCheckpoints,
    epoch_checkpoints,
    kept_epochs,
    load_recorded,
    load_weights,
    network_sizes,
    read_record,
    record_path,
    state_dict_sizes,
)
from monai_cmri.engines.classifier import (
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
from monai_cmri.engines.cvae import CVAEEvalStep, cvae_train_step, lower_is_better, prepare_cvae_batch
from monai_cmri.engines.handlers import ReconstructionReport, SampleAverage, StopOnNonFinite, magnitudes
from monai_cmri.engines.progress import TerminalProgressBar
from monai_cmri.engines.report import (
    TABLE_COLUMNS,
    markdown_table,
    reconstruction_figure,
    write_reconstruction_table,
)
from monai_cmri.engines.tracking import ITERATION_LOSS, tracked
from monai_cmri.engines.trainer_state import TrainerState, rng_state, set_rng_state

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
    "load_recorded",
    "BestModelSaver",
    "EpochCheckpoints",
    "epoch_checkpoints",
    "kept_epochs",
    "read_record",
    "record_path",
    "network_sizes",
    "state_dict_sizes",
    "TerminalProgressBar",
    "TrainerState",
    "rng_state",
    "set_rng_state",
    "prepare_classifier_batch",
    "mixup",
    "classifier_loss",
    "ClassifierTrainStep",
    "ClassifierEvalStep",
    "auroc",
    "SCORE_COLUMNS",
    "write_scores",
    "ScoreWriter",
    "write_metrics",
    "tracked",
    "ITERATION_LOSS",
]
