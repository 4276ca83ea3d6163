"""Helpers of the experiment tests: tiny patch and latent files written with the project's writers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from monai_cmri.data.dataset import PatchWriter
from monai_cmri.latents import LatentWriter

#: Patch side and latent shape: the experiments read metadata only, so the arrays can be tiny.
SIZE = 4
LATENT = (2, 2, 2)


def write_rows(path: Path, volumes, sequences, labels, latent: bool = False) -> Path:
    """A patch (or latent) file of random arrays with the given ``file``, ``sequence`` and ``label`` columns."""
    n = len(volumes)
    shape = LATENT if latent else (2, SIZE, SIZE)
    data = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
    columns = {
        "file": list(volumes), "slice": np.zeros(n, int), "row": np.zeros(n, int), "col": np.zeros(n, int),
        "sequence": list(sequences), "label": list(labels), "overlap": np.zeros(n, np.float32),
    }
    writer = LatentWriter(path, LATENT) if latent else PatchWriter(path, size=SIZE)
    with writer:
        writer.append(data, columns)
    return path


def real_table(seed: int = 0, prefix: str = "") -> tuple[list[str], list[str], list[str]]:
    """Rows of a real training split: per sequence (AXFLAIR, AXT1) 5 abnormal volumes (abnormal and normal
    patches) and 7 normal ones, 2-6 patches each, and 2 unlabeled AXT2 volumes that take no part."""
    rng = np.random.default_rng(seed)
    volumes, sequences, labels = [], [], []
    sizes = (("abnormal", 5), ("normal", 7))
    plan = [(s, c, k) for s in ("AXFLAIR", "AXT1") for c, count in sizes for k in range(count)]
    plan += [("AXT2", "unlabeled", k) for k in range(2)]
    for sequence, volume_class, k in plan:
        name = f"{prefix}file_brain_{sequence}_{volume_class[:2]}_{k}"
        n = int(rng.integers(2, 7))
        for i in range(n):
            label = volume_class if volume_class != "abnormal" else ("abnormal" if i < (n + 1) // 2 else "normal")
            volumes.append(name)
            sequences.append(sequence)
            labels.append(label)
    return volumes, sequences, labels


def synthetic_rows(counts: Counter, extra: int = 3) -> tuple[list[str], list[str], list[str]]:
    """``counts[(sequence, label)] + extra`` synthetic rows per cell, cells interleaved."""
    cells = [cell for cell, n in sorted(counts.items()) for _ in range(n + extra)]
    order = np.random.default_rng(7).permutation(len(cells))
    cells = [cells[i] for i in order]
    return ["synthetic"] * len(cells), [s for s, _ in cells], [c for _, c in cells]
