"""A bundle's weights file ``models/model.pt``, its record ``model.json``, and loading them (SPEC 4).

``model.pt`` holds one network's ``state_dict`` and nothing else. Beside it, ``model.json`` records
what the weights are: the network's constructor sizes and the configuration profile they were
trained with, the key metric and epoch that selected them, and the file's SHA-256:

.. code-block:: json

    {"key_metric": {"name": "val_loss", "value": 0.061, "epoch": 37},
     "network": {"channels": [16, 32], "num_res_blocks": 1, "norm_num_groups": 8, "latent_channels": 2,
                 "profile": "cpu", "profile_config": "bundles/cvae/configs/cpu.json", ...},
     "sha256": "...", "weights": "model.pt"}

:class:`BestModelSaver` writes both during training, each atomically; :func:`load_weights` reads the
weights and, when they do not fit the network, says in one line which sizes they were trained with
(from ``model.json``, or read from the tensor shapes when there is none) and which sizes the
network has.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from torch import nn

from monai_cmri.atomic import atomic_write, file_sha256, remove_stale_temporaries, write_json

__all__ = ["load_weights", "load_recorded", "BestModelSaver", "EpochCheckpoints", "epoch_checkpoints",
           "kept_epochs", "read_record", "record_path", "network_sizes", "state_dict_sizes"]

#: Constructor sizes named in messages, in this order.
SIZE_KEYS = ("channels", "num_res_blocks", "norm_num_groups", "latent_channels", "in_channels", "cond_dim",
             "num_sequences")
#: Sizes always named when known; the others only when they differ.
_MAIN_KEYS = SIZE_KEYS[:3]


def record_path(path: str | os.PathLike[str]) -> Path:
    """The record beside a weights file: ``models/model.pt`` -> ``models/model.json``."""
    return Path(path).with_suffix(".json")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``model.json`` of a weights file if it exists, is readable and describes these bytes.

    Args:
        path: the weights file.

    Returns:
        The record, or None when it is missing, unreadable, or its SHA-256 is not that of ``path``
        (a record left over from other weights).
    """
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("sha256") != _sha256(Path(path)):
        return None
    return record


def load_weights(
    network: nn.Module, path: str | os.PathLike[str], device: str | torch.device | None = None
) -> nn.Module:
    """Load a state dict saved by training into ``network`` and move it to ``device``.

    Loading goes through ``torch.load(..., weights_only=True)``, which unpickles tensors and plain
    containers only.

    Args:
        network: the network, built with the sizes it was trained with.
        path: the checkpoint, a ``state_dict`` alone (``models/model.pt``).
        device: where the network goes; the tensors are mapped there directly (CPU if None).

    Returns:
        ``network``, on ``device``, with the loaded weights.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        OSError: if it cannot be read as a weights-only checkpoint.
        ValueError: if it is not a state dict, or its keys or shapes do not match the network; the
            one-line message names the sizes of both, e.g. ``model.pt: trained with channels [16,
            32], num_res_blocks 1, norm_num_groups 8 (the cpu profile: add
            'bundles/cvae/configs/cpu.json' to --config_file); this config builds channels [64,
            128], num_res_blocks 2, norm_num_groups 32``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train the bundle first)")
    device = torch.device(device) if device is not None else torch.device("cpu")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # unpickling errors have many types; all mean "not a weights file"
        first = (str(error).strip().splitlines() or [""])[0][:160]
        raise OSError(f"{path}: not a readable weights-only checkpoint ({type(error).__name__}: {first})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a network state_dict (name -> tensor), got {type(state).__name__}")
    try:
        network.load_state_dict(state)
    except RuntimeError:
        raise ValueError(_mismatch(path, state, network)) from None
    return network.to(device)


def load_recorded(path: str | os.PathLike[str], device: str | torch.device | None = None) -> nn.Module:
    """Build the network that ``model.json`` describes and load ``model.pt`` into it.

    For a bundle that uses another bundle's weights without repeating its sizes: the flow bundles
    decode their samples with the ``cvae`` bundle's decoder, built from the cvae's record, whichever
    profile trained it.

    Args:
        path: the weights file; its record (``model.json``, written by :class:`BestModelSaver`) must
            describe these bytes and name a network class of :mod:`monai_cmri.networks`.
        device: where the network goes (CPU if None).

    Returns:
        The network with the loaded weights, on ``device``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the record is missing, stale (another file's SHA-256) or names no known network.
    """
    import inspect

    import monai_cmri.networks as networks

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train the bundle first)")
    record = read_record(path)
    if record is None:
        raise ValueError(f"{record_path(path)}: missing, unreadable or describing other weights; cannot build the network")
    described = dict(record.get("network") or {})
    name = str(described.get("network", "")).rsplit(".", 1)[-1]
    cls = getattr(networks, name, None) if name in getattr(networks, "__all__", ()) else None
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"{record_path(path)}: names network {described.get('network')!r}, not one of monai_cmri.networks")
    accepted = inspect.signature(cls.__init__).parameters
    arguments = {key: value for key, value in described.items() if key in accepted and key != "self"}
    return load_weights(cls(**arguments), path, device)


class BestModelSaver:
    """Write ``model.pt`` and ``model.json`` when the evaluator reaches a new best key metric.

    Attach to the validation evaluator of a MONAI workflow. MONAI's workflow decides whether an
    epoch is the new best (``metric_cmp_fn`` against ``state.best_metric``, before the evaluator's
    handlers run); this handler saves when ``state.best_metric_epoch`` is the epoch that just ended.
    Because the decision is the evaluator's state, restoring ``best_metric`` and
    ``best_metric_epoch`` on resume (:class:`~monai_cmri.engines.trainer_state.TrainerState`) is all
    it takes for the weights file to be replaced only by a better model.

    One gap remains: a run killed after this handler saved epoch ``k + 1`` but before the trainer
    state of that epoch was written resumes with the best of epoch ``k`` or earlier, while the file
    holds the better model of ``k + 1``. So when the evaluator first starts in a process that
    resumed (a restored ``best_metric_epoch``), a record that describes the weights on disk (its
    SHA-256 matches), names the same key metric, a later epoch and a better value
    (``engine.metric_cmp_fn``) becomes the evaluator's best. A fresh run (no best yet) ignores the
    record: its first validated model replaces whatever an earlier run left.

    Written here rather than with MONAI's ``CheckpointSaver(save_key_metric=True)``, which keeps the
    best score in memory only (its Ignite ``Checkpoint`` list starts empty in a new process, so the
    first epoch after a restart always overwrites the best model), deletes the previous file before
    it writes the new one in place (``DiskSaver(atomic=False)``), and writes no record.

    Args:
        save_dir: folder of the weights (created if missing).
        network: the network whose ``state_dict`` is saved (a DDP wrapper is unwrapped).
        filename: the weights file name; the record is the same name with ``.json``.
        record: JSON-serialisable description written as ``network`` in the record: constructor
            sizes (``channels``, ``num_res_blocks``, ``norm_num_groups``, ...), ``profile`` and
            ``profile_config`` (the config file that selects the profile).
        save_rank: the process that writes under DDP.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        network: nn.Module,
        filename: str = "model.pt",
        record: Mapping[str, Any] | None = None,
        save_rank: int = 0,
    ) -> None:
        self.path = Path(save_dir) / filename
        self.network = network
        self.record = json.loads(json.dumps(dict(record or {})))
        self.save_rank = int(save_rank)
        self.logger = logging.getLogger(__name__)
        self._checked_record = False
        #: ``(epoch, value)`` of the model on disk, as far as this process knows.
        self._on_disk: tuple[int, float] | None = None

    def attach(self, engine: Engine) -> None:
        """Check for a new best at the end of every epoch of ``engine``.

        Temporary files of the weights and the record left by a writer that was killed while
        saving are removed now.
        """
        engine.add_event_handler(Events.STARTED, self.adopt_record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        if idist.get_rank() == self.save_rank:
            for name in (self.path.name, record_path(self.path).name):
                remove_stale_temporaries(self.path.parent, f".{name}.*.tmp")

    def adopt_record(self, engine: Engine) -> None:
        """Once per process, make a later and better model on disk the evaluator's best (see above)."""
        if self._checked_record:
            return
        self._checked_record = True
        state, compare = engine.state, getattr(engine, "metric_cmp_fn", None)
        best_epoch = getattr(state, "best_metric_epoch", -1)
        if best_epoch in (-1, None) or compare is None:
            return
        metric = (read_record(self.path) or {}).get("key_metric") or {}
        if metric.get("name") != getattr(state, "key_metric_name", None) or int(metric.get("epoch", -1)) <= best_epoch:
            return
        if compare(float(metric["value"]), state.best_metric):
            state.best_metric, state.best_metric_epoch = float(metric["value"]), int(metric["epoch"])
            self._on_disk = (state.best_metric_epoch, state.best_metric)
            self.logger.info(
                f"{self.path} holds {metric['name']} {state.best_metric:.6g} of epoch {state.best_metric_epoch}, "
                "saved after the last trainer state: it is the best so far"
            )

    def __call__(self, engine: Engine) -> None:
        """Save if the epoch that just ended is the evaluator's new best.

        The epoch of a model adopted from disk that is validated again (after a resume) is saved
        only if the evaluator found it better than the adopted value.
        """
        state = engine.state
        if getattr(state, "best_metric_epoch", -1) != state.epoch or idist.get_rank() != self.save_rank:
            return
        best = (int(state.best_metric_epoch), float(state.best_metric))
        if best == self._on_disk:
            return
        network = self.network.module if isinstance(self.network, nn.parallel.DistributedDataParallel) else self.network
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, "wb") as handle:
            torch.save(network.state_dict(), handle)
        name = str(getattr(state, "key_metric_name", "") or "")
        write_json(
            record_path(self.path),
            {
                "weights": self.path.name,
                "sha256": _sha256(self.path),
                "key_metric": {"name": name, "value": float(state.best_metric), "epoch": int(state.epoch)},
                "network": self.record,
            },
        )
        self._on_disk = best
        self.logger.info(f"new best {name} {float(state.best_metric):.6g} at epoch {state.epoch}: saved {self.path}")


#: File name of the weights that :class:`EpochCheckpoints` keeps from one epoch.
EPOCH_FILE = "epoch_{epoch:04d}.pt"


def kept_epochs(epochs: int, keep: int, interval: int | None = None) -> list[int]:
    """The epochs whose weights :class:`EpochCheckpoints` keeps: the last ``keep`` multiples of
    ``interval`` counted back from the final epoch.

    Args:
        epochs: the training's ``max_epochs``.
        keep: how many to keep (0 keeps none).
        interval: epochs between two kept ones; by default ``max(1, epochs // keep)``, which
            spreads them over the training.

    Returns:
        Ascending epochs in ``[1, epochs]``; the last is ``epochs``.

    Raises:
        ValueError: for ``epochs < 1``, ``keep < 0`` or ``interval < 1``.
    """
    if epochs < 1 or keep < 0 or (interval is not None and interval < 1):
        raise ValueError(f"kept_epochs: need epochs >= 1, keep >= 0, interval >= 1; got {epochs}, {keep}, {interval}")
    if keep == 0:
        return []
    step = int(interval) if interval is not None else max(1, epochs // keep)
    return sorted(epoch for epoch in range(epochs, 0, -step)[:keep])


def epoch_checkpoints(save_dir: str | os.PathLike[str]) -> list[Path]:
    """The weights kept by :class:`EpochCheckpoints` in ``save_dir`` whose record describes them,
    in epoch order."""
    found = []
    for path in Path(save_dir).glob("epoch_*.pt"):
        record = read_record(path)
        if record is not None and isinstance(record.get("epoch"), int):
            found.append((record["epoch"], path))
    return [path for _, path in sorted(found)]


class EpochCheckpoints:
    """Keep the weights of a few epochs spread over training, for model selection (paper 2.4.3).

    At the end of each epoch of :func:`kept_epochs` (``keep`` of them, the last one the final
    epoch) the network's ``state_dict`` goes to ``save_dir/epoch_<epoch>.pt`` with a record
    ``epoch_<epoch>.json`` (``epoch``, the validation metrics of that epoch when an evaluator is
    given, the network's description, the file's SHA-256), each written atomically. Files left by
    an earlier run go: at the end of every epoch those of later epochs, and when a file is kept
    those of epochs this run does not keep, so after training the folder holds this run's
    checkpoints only; a resumed run finds the files of its earlier epochs and keeps them.

    The selection itself (:mod:`monai_cmri.experiments.selection`) trains classifiers on samples
    of each kept checkpoint; ``model.pt`` (:class:`BestModelSaver`, lowest validation loss) stays
    the bundle's default weights.

    Written here rather than with MONAI's ``CheckpointSaver(save_interval=..., n_saved=...)``, whose
    Ignite ``Checkpoint`` forgets the files of earlier processes (a resumed run would keep more than
    ``n_saved``) and writes no record.

    Args:
        save_dir: folder of the weights (created if missing).
        network: the network whose ``state_dict`` is saved (the EMA copy; a DDP wrapper is unwrapped).
        epochs: the training's ``max_epochs``.
        keep: how many epochs to keep.
        interval: epochs between kept ones (:func:`kept_epochs`).
        evaluator: the validation engine whose metrics of the epoch go into the record.
        record: JSON-serialisable description of the network, written as ``network``.
        save_rank: the process that writes under DDP.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        network: nn.Module,
        epochs: int,
        keep: int,
        interval: int | None = None,
        evaluator: Engine | None = None,
        record: Mapping[str, Any] | None = None,
        save_rank: int = 0,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.network = network
        self.epochs = kept_epochs(int(epochs), int(keep), interval)
        self.evaluator = evaluator
        self.record = json.loads(json.dumps(dict(record or {})))
        self.save_rank = int(save_rank)
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        """Save at the end of the kept epochs of ``engine``; remove temporaries of a killed writer."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        if idist.get_rank() == self.save_rank:
            remove_stale_temporaries(self.save_dir, ".epoch_*.tmp")

    def path(self, epoch: int) -> Path:
        """The weights file of ``epoch``."""
        return self.save_dir / EPOCH_FILE.format(epoch=int(epoch))

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if idist.get_rank() != self.save_rank:
            return
        # Files of later epochs than this one were left by an earlier run: they go, whatever the epoch.
        for path in self.save_dir.glob("epoch_*.pt"):
            if (read_record(path) or {}).get("epoch", epoch + 1) > epoch:
                path.unlink(missing_ok=True)
                record_path(path).unlink(missing_ok=True)
        if epoch not in self.epochs:
            return
        network = self.network.module if isinstance(self.network, nn.parallel.DistributedDataParallel) else self.network
        path = self.path(epoch)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as handle:
            torch.save(network.state_dict(), handle)
        metrics = {}
        if self.evaluator is not None and getattr(self.evaluator.state, "epoch", None) == epoch:
            metrics = {name: float(value) for name, value in self.evaluator.state.metrics.items()
                       if isinstance(value, (int, float))}
        write_json(record_path(path), {"weights": path.name, "sha256": _sha256(path), "epoch": epoch,
                                       "metrics": metrics, "network": self.record})
        mine = {self.path(kept) for kept in self.epochs}
        for stale in self.save_dir.glob("epoch_*.pt"):
            if stale not in mine:
                stale.unlink(missing_ok=True)
                record_path(stale).unlink(missing_ok=True)
        self.logger.info(f"epoch {epoch}: kept {path} for model selection")


def network_sizes(network: nn.Module) -> dict[str, Any]:
    """Constructor sizes of a built network, read from its layers (see :func:`state_dict_sizes`).

    ``norm_num_groups`` is that of the first ``GroupNorm``; it has no trace in the tensor shapes.
    """
    sizes = state_dict_sizes(network.state_dict())
    groups = next((m.num_groups for m in network.modules() if isinstance(m, nn.GroupNorm)), None)
    if sizes and groups is not None:
        sizes["norm_num_groups"] = groups
    return sizes


def state_dict_sizes(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor sizes of a :class:`~monai_cmri.networks.ComplexCVAE` read from its tensor shapes.

    The encoder is an input convolution, per level ``num_res_blocks`` residual blocks (keys
    ``encoder.<i>.norm1.*``) with a downsampling convolution between levels, then a GroupNorm and
    the output convolution to ``2 * latent_channels`` maps; the width of a level is the output width
    of its blocks.

    Args:
        state: a state dict.

    Returns:
        ``channels``, ``num_res_blocks``, ``latent_channels``, ``in_channels``, ``cond_dim`` and
        ``num_sequences``; an empty dict if ``state`` does not have this layout.
    """
    layers: dict[int, set[str]] = {}
    for name in state:
        parts = name.split(".")
        if parts[0] == "encoder" and len(parts) > 2 and parts[1].isdigit():
            layers.setdefault(int(parts[1]), set()).add(".".join(parts[2:]))
    try:
        indices = sorted(layers)
        levels: list[list[int]] = [[]]
        for i in indices[1:]:
            if "norm1.weight" in layers[i]:
                levels[-1].append(int(state[f"encoder.{i}.conv2.conv.weight"].shape[0]))
            elif "conv.weight" in layers[i] and levels[-1] and i != indices[-1]:
                levels.append([])
        blocks = {len(level) for level in levels}
        if not levels[-1] or len(blocks) != 1:
            return {}
        return {
            "channels": [level[-1] for level in levels],
            "num_res_blocks": blocks.pop(),
            "latent_channels": int(state[f"encoder.{indices[-1]}.conv.weight"].shape[0]) // 2,
            "in_channels": int(state["encoder.0.conv.weight"].shape[1]),
            "cond_dim": int(state["embedding.weight"].shape[1]),
            "num_sequences": int(state["embedding.weight"].shape[0]),
        }
    except (KeyError, IndexError):
        return {}


def _mismatch(path: Path, state: Mapping[str, torch.Tensor], network: nn.Module) -> str:
    """One line: which sizes the weights were trained with and which the network has."""
    record = read_record(path)
    trained = dict(state_dict_sizes(state))
    hint = " (read from the weight shapes; no model.json)"
    if record is not None:
        described = record.get("network") or {}
        trained.update({key: described[key] for key in SIZE_KEYS if key in described})
        profile, config = described.get("profile"), described.get("profile_config")
        if profile and config:
            hint = f" (the {profile} profile: add '{config}' to --config_file)"
        elif profile:
            hint = f" (the {profile} profile)"
        else:
            hint = ""
    built = network_sizes(network)
    keys = [k for k in SIZE_KEYS if k in trained and k in built and (k in _MAIN_KEYS or trained[k] != built[k])]
    if keys and any(trained[k] != built[k] for k in keys):
        return (
            f"{path}: trained with {_describe(trained, keys)}{hint}; this config builds {_describe(built, keys)}"
        )
    # Not a size we can name: name the first tensor that differs instead.
    own = network.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        detail = (
            f"{len(missing)} missing keys (first {missing[:1]}), {len(unexpected)} unexpected (first {unexpected[:1]})"
        )
    else:
        name = next((k for k in own if own[k].shape != state[k].shape), None)
        detail = (
            f"{name} is {tuple(state[name].shape)} in the file, {tuple(own[name].shape)} in the network"
            if name is not None
            else "no key or shape differs"
        )
    return f"{path}: weights do not fit {type(network).__name__} ({detail}); build it with the sizes used for training"


def _describe(sizes: Mapping[str, Any], keys: list[str]) -> str:
    values = {key: list(sizes[key]) if isinstance(sizes[key], (list, tuple)) else sizes[key] for key in keys}
    return ", ".join(f"{key} {value}" for key, value in values.items())


def _sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None
