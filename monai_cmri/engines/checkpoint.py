"""Loading a network's weights from a bundle's ``models/model.pt`` (SPEC 4).

A bundle's ``model.pt`` holds one network's ``state_dict`` and nothing else, as MONAI's
``CheckpointSaver`` writes it for a single saved object. Loading goes through
``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_weights"]


def load_weights(
    network: nn.Module, path: str | os.PathLike[str], device: str | torch.device | None = None
) -> nn.Module:
    """Load a state dict saved by training into ``network`` and move it to ``device``.

    Args:
        network: the network, built with the hyper-parameters it was trained with.
        path: the checkpoint, a ``state_dict`` alone (``models/model.pt``).
        device: where the network goes; the tensors are mapped there directly (CPU if None).

    Returns:
        ``network``, on ``device``, with the loaded weights.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        OSError: if it cannot be read as a weights-only checkpoint.
        ValueError: if it is not a state dict, or its keys or shapes do not match the network
            (typically other ``channels`` or ``num_res_blocks`` than at training).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train the bundle first)")
    device = torch.device(device) if device is not None else torch.device("cpu")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # unpickling errors have many types; all mean "not a weights file"
        raise OSError(f"{path}: not a readable weights-only checkpoint ({error})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a network state_dict (name -> tensor), got {type(state).__name__}")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: weights do not fit {type(network).__name__}; build it with the hyper-parameters "
            f"used for training ({error})"
        ) from None
    return network.to(device)
