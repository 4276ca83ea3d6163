"""Tiny patch files and command lines shared by the ``cvae`` bundle tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from blob_helpers import complex_blobs

from monai_cmri.data.dataset import write_patches
from monai_cmri.data.sequences import SEQUENCES

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "cvae" / "configs"
SIZE = 32
#: Test split: 3 AXFLAIR, 2 AXT1, 1 AXT2.
TEST_SEQUENCES = ["AXFLAIR", "AXT1", "AXFLAIR", "AXT2", "AXT1", "AXFLAIR"]
#: A model small enough for a CPU test; cpu.json is merged first, as users do.
TINY = {"channels": [4, 8], "num_res_blocks": 1, "norm_num_groups": 4, "batch_size": 4, "epochs": 1}
#: The sizes of TINY that the inference config must be given to build the trained network.
TINY_NETWORK = {key: TINY[key] for key in ("channels", "num_res_blocks", "norm_num_groups")}


def config(*names: str) -> list[str]:
    return [str(CONFIGS / name) for name in names]


def phantoms(n: int, seed: int) -> np.ndarray:
    """Smooth complex blobs with a phase ramp, ``(n, 2, SIZE, SIZE)``."""
    return complex_blobs(n, SIZE, seed, ramp="x")


def write_split(path: Path, sequences: list[str], seed: int) -> None:
    n = len(sequences)
    labels = [
        "unlabeled" if s in ("AXT2", "AXT1PRE") else ("normal", "abnormal")[i % 2] for i, s in enumerate(sequences)
    ]
    columns = {
        "file": [f"file_brain_{s}_{seed}_{i}" for i, s in enumerate(sequences)],
        "slice": np.arange(n),
        "row": np.full(n, 10),
        "col": np.full(n, 20),
        "sequence": sequences,
        "label": labels,
        "overlap": np.zeros(n),
        "brain": np.ones(n),
    }
    write_patches(path, phantoms(n, seed), columns, parameters={"split": path.stem, "seed": seed})


def write_patch_folder(folder: Path) -> Path:
    """``train.h5`` (10 patches), ``val.h5`` (5) and ``test.h5`` (:data:`TEST_SEQUENCES`) in ``folder``."""
    write_split(folder / "train.h5", [SEQUENCES[i % 5] for i in range(10)], 0)
    write_split(folder / "val.h5", [SEQUENCES[i % 5] for i in range(5)], 1)
    write_split(folder / "test.h5", TEST_SEQUENCES, 2)
    return folder


def flags(**overrides: object) -> list[str]:
    """``--key value`` command-line overrides; values other than strings as JSON."""
    line = []
    for key, value in overrides.items():
        line += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return line


def command(entry: str, configs: list[str], **overrides: object) -> list[str]:
    """``python -m monai.bundle run <entry> --config_file [...] --key value ...``, as the README writes it."""
    line = [sys.executable, "-m", "monai.bundle", "run", entry, "--config_file", json.dumps(configs)]
    return line + flags(**overrides)


def environment() -> dict[str, str]:
    """One thread per process, and the repository importable from the bundle's expressions."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
