"""Resumable training: the whole trainer state in one file, saved every epoch and loaded at the start.

A training bundle lists :class:`TrainerState` among its ``train_handlers``. At the end of every
epoch, after every other end-of-epoch handler (validation, learning-rate step), it writes
``trainer_state.pt`` atomically: the network, optimizer, learning-rate scheduler, AMP gradient
scaler (if the trainer has one), any further object with a ``state_dict`` (an EMA, ...), the
engine's epoch and iteration, the best key metric of the trainer and of the evaluator, and the
random number generator states (Python, NumPy, torch CPU and CUDA) of every process. When the
engine starts it loads the file, so a killed run continues at the next epoch with the state an
uninterrupted run would have had there (STYLE 12).

Why not MONAI's or Ignite's checkpoint handlers alone:

* MONAI's ``CheckpointLoader`` needs the file to exist, so "resume if there is something to resume"
  is not expressible in a config; it restores neither the evaluator's best metric nor RNG states.
* Ignite's ``Checkpoint`` with a fixed file name removes the previous file before it writes the new
  one (``Checkpoint.__call__`` calls ``save_handler.remove``), and MONAI's ``CheckpointSaver`` writes
  in place (``DiskSaver(atomic=False)``): a kill in between leaves no state or a truncated one.

Saving is therefore written here (:func:`monai_cmri.atomic.atomic_write`: temporary name, then
``os.replace``); loading goes through Ignite's ``Checkpoint.load_objects`` (which unwraps
``DistributedDataParallel`` and restores the engine through ``Engine.load_state_dict``).

Under DDP every process attaches the handler: the RNG states of all ranks are gathered and rank 0
writes the file; every rank loads it and takes its own RNG state.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from monai_cmri.atomic import atomic_write, remove_stale_temporaries
from monai_cmri.bundles import as_flag

__all__ = ["TrainerState", "rng_state", "set_rng_state"]

#: Layout version of the file; a file of another version is refused rather than half-loaded.
FORMAT = 1


class TrainerState:
    """Save the whole training state every epoch and resume from it when the engine starts.

    Attach to a trainer (MONAI ``SupervisedTrainer`` or any Ignite ``Engine``) by listing it in the
    bundle's ``train_handlers``; its place in the list does not matter (see :meth:`attach`).

    On start, with ``resume=True`` and a file at ``path``:

    * the file must have been saved by a run with the same ``max_epochs``, the same number of
      iterations per epoch, the same objects and the same ``key`` (e.g. network sizes and data);
      otherwise a one-line ``ValueError`` names what differs and how to start over;
    * a run that had finished (epoch ``max_epochs``) is logged as finished and runs no epoch;
    * otherwise the objects, the engine's epoch and iteration, the best metrics and the RNG
      states are restored and training continues at the next epoch.

    With ``resume=False`` an existing file is deleted at the start (the new run must not be
    resumed into the old one if it is killed before its first epoch ends), and training starts at
    epoch 1.

    Args:
        path: the state file, e.g. ``<ckpt_dir>/trainer_state.pt`` (its folder is created).
        objects: what to save beside the engine, name -> object with ``state_dict`` and
            ``load_state_dict``: ``{"network": ..., "optimizer": ..., "lr_scheduler": ...}``, plus
            e.g. ``"ema"``. The trainer's gradient scaler (``engine.scaler``) is added as
            ``"scaler"`` when it exists.
        evaluator: the validation engine whose ``state.best_metric`` and
            ``state.best_metric_epoch`` are saved and restored, so that the evaluator's best-model
            handlers compare against the best of the whole training, not of this process.
        resume: load the file when the engine starts (True) or delete it and start afresh; the
            command line's strings ("false", "true") are read as such (:func:`~monai_cmri.bundles.as_flag`).
        key: JSON-serialisable description of what must not change for a resume, e.g. the network
            sizes and the training data; compared as JSON.
        save_rank: the process that writes the file under DDP.

    Example:
        ``TrainerState("models/trainer_state.pt", {"network": net, "optimizer": opt},
        evaluator=evaluator).attach(trainer)``
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        objects: Mapping[str, Any],
        evaluator: Engine | None = None,
        resume: bool = True,
        key: Mapping[str, Any] | None = None,
        save_rank: int = 0,
    ) -> None:
        for name, obj in objects.items():
            if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
                raise ValueError(f"TrainerState: {name!r} has no state_dict/load_state_dict, got {type(obj).__name__}")
        if "trainer" in objects or "scaler" in objects:
            raise ValueError("TrainerState: 'trainer' and 'scaler' are added from the engine; use other names")
        self.path = Path(path)
        self.objects = dict(objects)
        self.evaluator = evaluator
        self.resume = as_flag(resume, "resume")
        self.key = _canonical(key or {}, "key")
        self.save_rank = int(save_rank)
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Load (or discard) the state when ``engine`` starts; save it at the end of every epoch.

        The saving handler is registered when the engine starts, after every handler attached at
        construction, so that it runs last at the end of an epoch: the validation has updated the
        best metric and the learning-rate scheduler has stepped.
        """
        engine.add_event_handler(Events.STARTED, self.start)

    def start(self, engine: Engine) -> None:
        """Register :meth:`save`, then resume from the file or discard it.

        A temporary file left by a writer that was killed while saving is removed first.
        """
        if not engine.has_event_handler(self.save, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
        if idist.get_rank() == self.save_rank:
            remove_stale_temporaries(self.path.parent, f".{self.path.name}.*.tmp")
        if self.resume:
            self.load(engine)
        elif self.path.is_file() and idist.get_rank() == self.save_rank:
            self.path.unlink()
            self.logger.info(f"resume is off: deleted the trainer state of the earlier run, {self.path}")

    def targets(self, engine: Engine) -> dict[str, Any]:
        """The objects saved and loaded: the engine, the given objects and the gradient scaler."""
        targets = {"trainer": engine, **self.objects}
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            targets["scaler"] = scaler
        return targets

    def state_dict(self, engine: Engine) -> dict[str, Any]:
        """The file's content without the RNG states (which need every rank, see :meth:`save`)."""
        return {
            "format": FORMAT,
            "epoch": int(engine.state.epoch),
            "objects": {name: _unwrap(obj).state_dict() for name, obj in self.targets(engine).items()},
            "best": {"trainer": _best(engine), "evaluator": _best(self.evaluator)},
            "key": self.key,
        }

    def save(self, engine: Engine) -> None:
        """Write the state of the epoch that just ended (on ``save_rank``; every rank must call it)."""
        states = _gather(rng_state())
        if idist.get_rank() != self.save_rank:
            return
        payload = self.state_dict(engine)
        payload["rng"] = states
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, "wb") as handle:
            torch.save(payload, handle)

    def load(self, engine: Engine) -> bool:
        """Restore the state from the file, if there is one; return whether it was restored.

        Raises:
            ValueError: the file is unreadable, or was saved by a run that differs from this one
                (epochs, iterations per epoch, saved objects or ``key``).
        """
        if not self.path.is_file():
            self.logger.info(f"no trainer state at {self.path}: training starts at epoch 1")
            return False
        start_over = "run with --resume false to start over"
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling errors have many types; all mean "not a state file"
            raise ValueError(
                f"{self.path}: not a readable trainer state ({_first_line(error)}); {start_over}"
            ) from None
        if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
            found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
            raise ValueError(f"{self.path}: trainer state format {found}, expected {FORMAT}; {start_over}")
        saved_engine = payload["objects"]["trainer"]
        epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        if saved_engine.get("max_epochs") != epochs:
            raise ValueError(
                f"{self.path}: saved by a run of {saved_engine.get('max_epochs')} epochs, this run has {epochs}; "
                f"pass --epochs {saved_engine.get('max_epochs')} to resume it, or {start_over}"
            )
        if epoch_length is not None and saved_engine.get("epoch_length") != epoch_length:
            raise ValueError(
                f"{self.path}: saved with {saved_engine.get('epoch_length')} iterations per epoch, this run has "
                f"{epoch_length} (other data or batch size); {start_over}"
            )
        if payload["key"] != self.key:
            difference = _difference(payload["key"], self.key)
            raise ValueError(f"{self.path}: saved by a different run ({difference}); {start_over}")
        targets = self.targets(engine)
        if set(payload["objects"]) != set(targets):
            raise ValueError(
                f"{self.path}: holds {sorted(payload['objects'])}, this run saves {sorted(targets)}; {start_over}"
            )
        try:
            Checkpoint.load_objects(to_load=targets, checkpoint=payload["objects"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise ValueError(
                f"{self.path}: the saved state does not fit this run ({_first_line(error)}); {start_over}"
            ) from None
        _set_best(engine, payload["best"]["trainer"])
        _set_best(self.evaluator, payload["best"]["evaluator"])
        states, rank = payload["rng"], idist.get_rank()
        if len(states) == idist.get_world_size():
            set_rng_state(states[rank])
        else:
            self.logger.warning(
                f"{self.path}: saved by {len(states)} processes, this run has {idist.get_world_size()}: random number "
                "generators not restored"
            )
        epoch, best = int(payload["epoch"]), payload["best"]["evaluator"] or payload["best"]["trainer"]
        where = f"best {best['name']} {best['value']:.6g} at epoch {best['epoch']}" if best else "no best metric yet"
        if epoch >= epochs:
            self.logger.info(
                f"training already finished: epoch {epoch} of {epochs} in {self.path} ({where}); nothing to do "
                f"(--resume false starts over)"
            )
        else:
            self.logger.info(
                f"resuming from {self.path}: epoch {epoch} of {epochs} done ({where}); training continues at "
                f"epoch {epoch + 1}"
            )
        return True


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global random number generators.

    Every entry is a tensor, number, string or tuple, so the state loads with
    ``torch.load(..., weights_only=True)``.
    """
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generator states returned by :func:`rng_state`.

    The CUDA states are restored when CUDA is available and the device count matches.
    """
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy["bit_generator"],
            "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _first_line(error: BaseException) -> str:
    """``Type: first line`` of an error, at most 160 characters: torch's messages run to many lines."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _unwrap(obj: Any) -> Any:
    """The module inside a (Distributed)DataParallel wrapper, so that keys carry no ``module.``."""
    return obj.module if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else obj


def _best(engine: Engine | None) -> dict[str, Any] | None:
    """The best key metric a MONAI workflow tracks (``state.best_metric``), None before the first."""
    state = getattr(engine, "state", None)
    if state is None or getattr(state, "best_metric_epoch", -1) in (-1, None):
        return None
    return {
        "name": str(getattr(state, "key_metric_name", None) or ""),
        "value": float(state.best_metric),
        "epoch": int(state.best_metric_epoch),
    }


def _set_best(engine: Engine | None, best: Mapping[str, Any] | None) -> None:
    if engine is None or best is None:
        return
    engine.state.best_metric = best["value"]
    engine.state.best_metric_epoch = best["epoch"]


def _canonical(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=_jsonable)
    except (TypeError, ValueError) as error:
        raise ValueError(f"TrainerState: {what} must be JSON-serialisable ({error})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _difference(saved: str, current: str) -> str:
    """The entries of two JSON keys that differ, as ``name: saved -> current``."""
    saved_dict, current_dict = _flatten(json.loads(saved)), _flatten(json.loads(current))
    names = sorted(set(saved_dict) | set(current_dict))
    parts = [
        f"{name}: {json.dumps(saved_dict.get(name))} -> {json.dumps(current_dict.get(name))}"
        for name in names
        if saved_dict.get(name) != current_dict.get(name)
    ]
    text = "; ".join(parts) or "key differs"
    return text if len(text) <= 300 else text[:297] + "..."


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for name, item in value.items():
            flat.update(_flatten(item, f"{prefix}{name}."))
        return flat
    return {prefix[:-1] or "key": value}


def _gather(state: dict[str, Any]) -> list[dict[str, Any]]:
    """``state`` of every rank, in rank order (a collective under DDP)."""
    if idist.get_world_size() == 1:
        return [state]
    states: list[Any] = [None] * idist.get_world_size()
    dist.all_gather_object(states, state)
    return states
