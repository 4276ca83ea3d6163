"""Tiny patch files of two classification tasks and bundle runs shared by the classifier bundle tests.

* ``separable``: every abnormal patch holds a bright spot somewhere inside its central half (its
  magnitude multiplied by ``1 + A g``, ``g`` a Gaussian of :data:`SPOT_SIGMA` pixels, phase kept);
  normal patches have none. A classifier that learns
  anything separates them (AUROC near 1).
* ``null``: normal and abnormal patches are drawn from one distribution (no spot anywhere), the
  label alternating; no classifier can do better than chance on new patches (AUROC 0.5 in
  expectation).

Each split also holds unlabeled rows (AXT2), which a ``"label"`` target leaves out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from blob_helpers import complex_blobs
from cvae_data import REPO, environment
from monai.bundle import run as bundle_run

from monai_cmri.data.dataset import write_patches

SIZE = 32
#: Peak brightening ``A`` and width (pixels) of the spot of an abnormal patch on the easy task.
SPOT_AMPLITUDE, SPOT_SIGMA = 5.0, 3.0
#: Labeled patches per class in each split, and unlabeled ones.
COUNTS = {"train": 48, "val": 24, "test": 48}
UNLABELED = 4
#: Settings of a CPU test on top of cpu.json (merged first, as users do; its network, 16-32-64,
#: learns the easy task within a few dozen steps where a two-stage 8-16 one does not).
TINY = {"batch_size": 16, "learning_rate": 0.003, "ema_momentum": 0.3, "warmup_epochs": 0}
#: The network sizes of cpu.json.
CPU_NETWORK = {"channels": [16, 32, 64], "blocks": [1, 1, 1]}
CONFIGS = REPO / "bundles" / "classifier" / "configs"
#: What a rank's C++ runtime prints when a gloo process aborts on exit.
SHUTDOWN_ABORT = "terminate called without an active exception"


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / name) for name in names]


def run(entry: str, names: tuple[str, ...], **overrides) -> None:
    """``python -m monai.bundle run <entry>`` of the classifier bundle, in this process.

    Without the bundle's ``logging.conf``, whose ``fileConfig`` would silence the loggers that
    ``caplog`` reads.
    """
    overrides.setdefault("bundle_root", str(REPO / "bundles" / "classifier"))
    bundle_run(entry, config_file=configs(*names), logging_file=False, **overrides)


def spots(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` brightening maps ``1 + A g`` ``(n, 1, SIZE, SIZE)``, ``g`` a Gaussian spot in the central half.

    Multiplying a complex patch by a real map brightens its magnitude and keeps its phase.
    """
    y, x = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(SIZE / 4, 3 * SIZE / 4, 2)
        gauss = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * SPOT_SIGMA**2))
        out.append(1.0 + SPOT_AMPLITUDE * gauss[None])
    return np.asarray(out, dtype=np.float32)


def write_split(path: Path, labeled: int, seed: int, separable: bool) -> None:
    """``labeled`` normal, ``labeled`` abnormal (alternating) and :data:`UNLABELED` unlabeled patches."""
    rng = np.random.default_rng(seed)
    n = 2 * labeled + UNLABELED
    labels = ["normal", "abnormal"] * labeled + ["unlabeled"] * UNLABELED
    patches = complex_blobs(n, SIZE, seed)
    abnormal = np.array([label == "abnormal" for label in labels])
    if separable:
        patches[abnormal] *= spots(int(abnormal.sum()), rng)
    sequences = [("AXFLAIR", "AXT1", "AXT1POST")[i % 3] for i in range(2 * labeled)] + ["AXT2"] * UNLABELED
    columns = {
        "file": [f"file_brain_{s}_{seed}_{i // 4}" for i, s in enumerate(sequences)],
        "slice": np.arange(n) % 4,
        "row": np.full(n, 10),
        "col": np.arange(n),
        "sequence": sequences,
        "label": labels,
        "overlap": abnormal.astype(np.float32),
    }
    write_patches(path, patches, columns, parameters={"split": path.stem, "seed": seed, "separable": separable})


def write_task(folder: Path, separable: bool, seed: int = 0) -> Path:
    """``train.h5``, ``val.h5`` and ``test.h5`` of one task in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (split, labeled) in enumerate(COUNTS.items()):
        write_split(folder / f"{split}.h5", labeled, seed + 10 * offset, separable)
    return folder


def launch_ddp(line: list[str]) -> str:
    """Run a torchrun command line; return its log (stdout and stderr), failing on an error.

    As in the cvae bundle's test, a gloo rank that aborts while its process exits, after the run
    wrote ``metrics.json``, is relaunched once; any other failure is returned as a failure.
    """
    result = subprocess.run(line, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    if result.returncode and SHUTDOWN_ABORT in log and "metrics.json" in log:
        result = subprocess.run(line, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
        log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return log
