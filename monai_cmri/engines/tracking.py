"""Experiment tracking: MONAI's ``--tracking mlflow`` handlers on this project's trainers.

``python -m monai.bundle run training ... --tracking mlflow`` appends MONAI's
:class:`~monai.handlers.MLFlowHandler` to ``train#handlers`` and ``validate#handlers`` (the ids of
``monai.bundle.utils.DEFAULT_HANDLERS_ID``, which every training bundle here uses). The trainer's
handler logs the loss of every iteration through ``from_engine(["loss"], first=True)``, written for
decollated outputs (a list of per-sample dicts); our trainers keep the batch output dict
(``decollate: false``), from which it returns a one-element tuple ``(loss,)`` that MLflow cannot log
as a number. Its tag ``train_loss`` is also the name of our trainers' key metric, the epoch
average, which the same handler logs at every epoch: one MLflow series would mix iteration and
epoch steps.

Each training bundle therefore passes its handlers through :func:`tracked`
(``"train_handlers": "$monai_cmri.engines.tracked(@train#handlers)"``): it leaves every handler as it
is except the MLflow ones, whose iteration loss it unpacks and logs as :data:`ITERATION_LOSS`, and
whose artifact paths it evaluates. Without ``--tracking`` there is no MLflow handler and the list
is returned unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from monai.handlers import MLFlowHandler

__all__ = ["ITERATION_LOSS", "tracked"]

#: The MLflow metric of the loss of every iteration; ``train_loss`` is the epoch average.
ITERATION_LOSS = "train_loss_iteration"
#: The iteration tag of MONAI's default tracking settings (``DEFAULT_MLFLOW_SETTINGS``).
_MONAI_TAG = "train_loss"


class _Unpacked:
    """An output transform returning the only element of a one-element tuple or list."""

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, output: Any) -> Any:
        value = self.transform(output)
        if isinstance(value, (tuple, list)) and len(value) == 1:
            return value[0]
        return value


def _artifact(path: Any) -> Any:
    """``<dir> + '/<name>'``, as MONAI composes it from a plain-string ``output_dir``, as ``<dir>/<name>``."""
    if isinstance(path, str) and not os.path.exists(path):
        match = re.fullmatch(r"(.+) \+ '/([^']+)'", path)
        if match:
            return os.path.join(match[1], match[2])
    return path


def tracked(handlers: list[Any]) -> list[Any]:
    """``handlers``, each :class:`~monai.handlers.MLFlowHandler` among them adapted to our trainers.

    An MLflow handler's output transform returns the loss itself, not ``(loss,)``, and MONAI's
    default tag ``train_loss`` becomes :data:`ITERATION_LOSS` (other tags are kept), and an artifact
    path ``<dir> + '/<name>'`` becomes ``<dir>/<name>``. Every other handler is kept as it is. The
    list is changed in place and returned.
    """
    for handler in handlers:
        if isinstance(handler, MLFlowHandler):
            if not isinstance(handler.output_transform, _Unpacked):
                handler.output_transform = _Unpacked(handler.output_transform)
            if handler.tag_name == _MONAI_TAG:
                handler.tag_name = ITERATION_LOSS
            handler.artifacts = tuple(_artifact(path) for path in handler.artifacts)
    return handlers
