"""Latent datasets: patches encoded by the trained VAE, and latents decoded back to patches (paper 2.2, 2.3).

The flow-matching models train on the latents of the patch files; their samples are decoded back
to patches. Data flows one way: patch file -> :func:`encode_patches` -> latent file ->
(flow matching) -> :func:`decode_latents` -> patch file.

Layout of a latent file (HDF5, :data:`LAYOUT_VERSION` 1), the patch-file layout of
:mod:`monai_cmri.data.dataset` with ``latents`` in place of ``patches``:

* ``latents``: float32 ``(N, C, h, w)``, ``(N, 2, 48, 48)`` for the paper's VAE, one sample per
  chunk. Encoded latents are the **posterior means** ``mu`` of ``q(z | x, sequence)``, not draws:
  deterministic, and the mode of the posterior, which is what the flow model learns to generate;
* one 1D dataset of length ``N`` per metadata column, the columns of
  :data:`~monai_cmri.data.dataset.COLUMNS` plus any extras, stored as in a patch file (strings
  UTF-8, integers int32, floats float32); an encoded file carries exactly the columns of its
  patch file, row for row;
* attributes ``layout_version``, ``kind`` (``"latents"``), ``parameters`` (JSON: the patch file's
  parameters, unchanged) and ``encoder`` (JSON: the source file, the checkpoint path and its
  SHA-256, the statistic stored, the network's class and sizes).

Files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from monai_cmri.atomic import file_sha256
from monai_cmri.data.dataset import (
    ArrayFileDataset,
    ArrayWriter,
    PatchDataset,
    PatchWriter,
    check_array_file,
    describe,
    json_attribute,
)
from monai_cmri.data.splits import SPLITS

__all__ = [
    "LAYOUT_VERSION",
    "STATISTIC",
    "LatentWriter",
    "LatentDataset",
    "encode_patches",
    "decode_latents",
    "encode_splits",
    "decode_splits",
]

#: Version of the latent-file layout described in the module docstring.
LAYOUT_VERSION: int = 1
#: What ``latents`` holds in a file written by :func:`encode_patches`.
STATISTIC = "posterior mean (mu) of q(z | x, sequence)"



class LatentWriter(ArrayWriter):
    """Append latents and their metadata to a new latent file; rename it into place on close.

    Use as a context manager: on an exception the temporary file is removed and nothing is left
    under ``path``.

    Args:
        path: the latent file to create (an existing one is replaced on close).
        shape: ``(C, h, w)`` of one latent.
        parameters: JSON-serialisable description of the data (a patch file's ``parameters``).
        encoder: JSON-serialisable description of how the latents were made.

    Raises:
        ValueError: if ``shape`` is not three positive sizes or a description is not
            JSON-serialisable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: Sequence[int],
        parameters: Mapping[str, Any] | None = None,
        encoder: Mapping[str, Any] | None = None,
    ) -> None:
        path = Path(path)
        if len(tuple(shape)) != 3 or min(int(s) for s in shape) < 1:
            raise ValueError(f"{path}: latent shape must be (C, h, w), got {tuple(shape)}")
        attrs = {
            "layout_version": LAYOUT_VERSION,
            "kind": "latents",
            "parameters": describe(parameters, path),
            "encoder": describe(encoder, path),
        }
        super().__init__(path, name="latents", shape=shape, attrs=attrs)


class LatentDataset(ArrayFileDataset):
    """Latents of a latent file as MONAI dictionaries (the flow models' training data, paper 2.3).

    Item ``i`` is ``{"latent": (C, h, w) float32 tensor, "sequence": int (index into SEQUENCES),
    "label": int (index into LABELS), "sequence_name": str, "label_name": str, ...every other
    metadata column}``, passed through ``transform``; reading as
    :class:`~monai_cmri.data.dataset.ArrayFileDataset`.

    Args:
        path: the latent file.
        in_memory: read every latent into memory now (``N * C * h * w * 4`` bytes).
        transform: callable or sequence of callables applied to each item.

    Attributes:
        shape: ``(C, h, w)`` of one latent.
        encoder: how the latents were made (checkpoint, statistic, network).
        parameters: the patch parameters carried by the file.
        columns, sequences, labels: as :class:`~monai_cmri.data.dataset.ArrayFileDataset`.

    Raises:
        OSError: if the file is missing or not HDF5.
        ValueError: if it is not a latent file of this layout; the message names the file.
    """

    name, key, kind = "latents", "latent", "latent"

    def _read_header(self, file: h5py.File) -> int:
        count, *shape = check_array_file(file, self.path, self.name, self.kind)
        self.shape: tuple[int, int, int] = tuple(shape)
        self.encoder = json_attribute(file, "encoder", self.path)
        return count

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape))
        return f"LatentDataset({str(self.path)!r}, {len(self)} latents {shape}, {self._mode()})"


def encode_patches(
    network: nn.Module,
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> int:
    """Encode a patch file into a latent file of posterior means (paper 2.2, last paragraph).

    Args:
        network: the trained VAE, with ``encode(x, sequence) -> (mu, logvar)``
            (:class:`~monai_cmri.networks.ComplexCVAE`); run in eval mode and restored after.
        source: a patch file (:mod:`monai_cmri.data.dataset` layout).
        target: the latent file to write (module docstring layout).
        checkpoint: the weights file the network was loaded from, recorded with its SHA-256.
        batch_size: patches per forward pass.
        device: where to run; the network's device if None.
        progress: show a tqdm progress bar.

    Returns:
        The number of latents written (the number of patches).

    Raises:
        OSError: if ``source`` is missing or unreadable.
        ValueError: if ``source`` is not a valid patch file or ``batch_size < 1``.
    """
    source, target = Path(source), Path(target)
    if batch_size < 1:
        raise ValueError(f"{source}: batch_size must be >= 1, got {batch_size}")
    patches = PatchDataset(source)
    device = _device(network, device)
    encoder = {
        "source": str(source),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": _sha256(Path(checkpoint)) if checkpoint is not None else None,
        "statistic": STATISTIC,
        "network": _describe_network(network),
    }
    count = len(patches)
    with _evaluating(network), torch.inference_mode(), h5py.File(source, "r") as file:
        shape = tuple(
            network.encode(
                torch.zeros(1, 2, patches.size, patches.size, device=device),
                torch.zeros(1, dtype=torch.long, device=device),
            )[0].shape[1:]
        )
        with (
            LatentWriter(target, shape, parameters=patches.parameters, encoder=encoder) as writer,
            tqdm(total=count, unit="patch", desc=f"encode {source.name}", disable=not progress) as bar,
        ):
            for start in range(0, count, batch_size):
                stop = min(start + batch_size, count)
                x = torch.from_numpy(np.asarray(file["patches"][start:stop], dtype=np.float32)).to(device)
                sequence = torch.from_numpy(patches.sequences[start:stop]).to(device)
                mu, _ = network.encode(x, sequence)
                writer.append(mu.float(), {name: column[start:stop] for name, column in patches.columns.items()})
                bar.update(stop - start)
            if count == 0:
                writer.append(np.zeros((0, *shape), np.float32), dict(patches.columns))
    return count


def decode_latents(
    network: nn.Module,
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> int:
    """Decode a latent file into a patch file with the same metadata (paper 2.3, 2.4.2).

    The patch file's ``parameters`` are the latent file's, plus ``"encoder"`` (the latent file's
    provenance) and ``"decoder"`` (the latent file, the checkpoint and its SHA-256, the network).

    Args:
        network: the trained VAE, with ``decode(z, sequence) -> x``; run in eval mode and
            restored after.
        source: a latent file (module docstring layout).
        target: the patch file to write (:mod:`monai_cmri.data.dataset` layout).
        checkpoint: the weights file the network was loaded from, recorded with its SHA-256.
        batch_size: latents per forward pass.
        device: where to run; the network's device if None.
        progress: show a tqdm progress bar.

    Returns:
        The number of patches written.

    Raises:
        OSError: if ``source`` is missing or unreadable.
        ValueError: if ``source`` is not a valid latent file, the decoded patches are not square
            two-channel images, or ``batch_size < 1``.
    """
    source, target = Path(source), Path(target)
    if batch_size < 1:
        raise ValueError(f"{source}: batch_size must be >= 1, got {batch_size}")
    latents = LatentDataset(source)
    device = _device(network, device)
    parameters = dict(latents.parameters)
    parameters["encoder"] = latents.encoder
    parameters["decoder"] = {
        "source": str(source),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": _sha256(Path(checkpoint)) if checkpoint is not None else None,
        "network": _describe_network(network),
    }
    count = len(latents)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _evaluating(network), torch.inference_mode(), h5py.File(source, "r") as file:
        shape = tuple(
            network.decode(
                torch.zeros(1, *latents.shape, device=device), torch.zeros(1, dtype=torch.long, device=device)
            ).shape[1:]
        )
        if len(shape) != 3 or shape[0] != 2 or shape[1] != shape[2]:
            raise ValueError(f"{source}: the network decodes to {shape}, not square (2, P, P) patches")
        with (
            PatchWriter(target, size=shape[-1], parameters=parameters) as writer,
            tqdm(total=count, unit="latent", desc=f"decode {source.name}", disable=not progress) as bar,
        ):
            for start in range(0, count, batch_size):
                stop = min(start + batch_size, count)
                z = torch.from_numpy(np.asarray(file["latents"][start:stop], dtype=np.float32)).to(device)
                sequence = torch.from_numpy(latents.sequences[start:stop]).to(device)
                x = network.decode(z, sequence).float().cpu().numpy()
                writer.append(x, {name: column[start:stop] for name, column in latents.columns.items()})
                bar.update(stop - start)
            if count == 0:
                writer.append(np.zeros((0, *shape), np.float32), dict(latents.columns))
    return count


def encode_splits(
    network: nn.Module,
    dataset_dir: str | os.PathLike[str],
    latent_dir: str | os.PathLike[str],
    *,
    splits: Iterable[str] = SPLITS,
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Encode ``<dataset_dir>/<split>.h5`` into ``<latent_dir>/<split>.h5`` for each split.

    Args:
        network: the trained VAE.
        dataset_dir: folder of the patch files (a preprocessing output).
        latent_dir: folder of the latent files (created if missing).
        splits: split names, ``("train", "val", "test")`` by default.
        checkpoint, batch_size, device, progress: as :func:`encode_patches`.

    Returns:
        ``{split: latent file}``.

    Raises:
        OSError: if a patch file is missing or unreadable (checked before anything is written).
        ValueError: as :func:`encode_patches`.
    """
    options = {"checkpoint": checkpoint, "batch_size": batch_size, "device": device, "progress": progress}
    return _each_split(encode_patches, network, dataset_dir, latent_dir, splits, options)


def decode_splits(
    network: nn.Module,
    latent_dir: str | os.PathLike[str],
    patch_dir: str | os.PathLike[str],
    *,
    splits: Iterable[str] = SPLITS,
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Decode ``<latent_dir>/<split>.h5`` into ``<patch_dir>/<split>.h5`` for each split.

    Args:
        network: the trained VAE.
        latent_dir: folder of the latent files.
        patch_dir: folder of the decoded patch files (created if missing).
        splits: split names, ``("train", "val", "test")`` by default.
        checkpoint, batch_size, device, progress: as :func:`decode_latents`.

    Returns:
        ``{split: patch file}``.

    Raises:
        OSError: if a latent file is missing or unreadable (checked before anything is written).
        ValueError: as :func:`decode_latents`.
    """
    options = {"checkpoint": checkpoint, "batch_size": batch_size, "device": device, "progress": progress}
    return _each_split(decode_latents, network, latent_dir, patch_dir, splits, options)


def _each_split(
    function: Callable[..., int],
    network: nn.Module,
    source_dir: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    splits: Iterable[str],
    options: Mapping[str, Any],
) -> dict[str, Path]:
    """``function(network, <source_dir>/<split>.h5, <target_dir>/<split>.h5, **options)`` per split.

    Every source is checked before anything is written.
    """
    sources = _split_files(source_dir, splits)
    targets = {split: Path(target_dir) / source.name for split, source in sources.items()}
    for split, source in sources.items():
        function(network, source, targets[split], **options)
    return targets


def _split_files(folder: str | os.PathLike[str], splits: Iterable[str]) -> dict[str, Path]:
    folder = Path(folder)
    files = {split: folder / f"{split}.h5" for split in splits}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing split file(s) {', '.join(missing)}")
    return files


class _evaluating:
    """Eval mode inside the block; the network's previous mode after it."""

    def __init__(self, network: nn.Module) -> None:
        self.network, self.training = network, network.training

    def __enter__(self) -> nn.Module:
        return self.network.eval()

    def __exit__(self, *exc: object) -> None:
        self.network.train(self.training)


def _device(network: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    parameter = next(network.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _describe_network(network: nn.Module) -> dict[str, Any]:
    described: dict[str, Any] = {"class": f"{type(network).__module__}.{type(network).__qualname__}"}
    for name in ("in_channels", "latent_channels", "channels", "num_sequences", "downsample_factor"):
        if hasattr(network, name):
            value = getattr(network, name)
            described[name] = list(value) if isinstance(value, tuple) else value
    described["parameters"] = sum(p.numel() for p in network.parameters())
    return described


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return file_sha256(path)
