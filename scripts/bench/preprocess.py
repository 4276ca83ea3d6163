"""Benchmark of preprocessing end to end: volumes per minute, against the sigpy ESPIRiT path.

Simulates ``volumes`` fastMRI-size volumes (16 slices, 16 coils, 640 x 320 by default) into a
temporary folder, then times ``monai_cmri.preprocess.preprocess`` on them (read k-space, remove
the readout oversampling, ESPIRiT, normalisation, brain mask, patch rules, writing, merging).
The reference, measured in the same run, is the same per-slice work with sigpy's EspiritCalib
(``backend="sigpy"``) on ``reference_slices`` slices, scaled to a volume; the ratio is printed.

Usage::

    python scripts/bench/preprocess.py                       # 3 volumes, 1 sigpy slice
    python scripts/bench/preprocess.py --reference_slices=0  # skip the (slow) sigpy reference
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import fire
import torch

from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.preprocess import combined_volume, preprocess
from monai_cmri.simulate import simulate_dataset


def main(volumes: int = 3, slices: int = 16, coils: int = 16, reference_slices: int = 1, seed: int = 0) -> None:
    """Print seconds per volume and volumes per minute, ours and the sigpy-ESPIRiT reference."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / "data", Path(folder) / "out"
        simulate_dataset(data, volumes=volumes, seed=seed, slices=slices, coils=[coils], progress=False)
        start = time.perf_counter()
        summary = preprocess(data, out, seed=seed, progress=False)
        ours = (time.perf_counter() - start) / max(len(summary.done), 1)
        print(f"preprocess (torch ESPIRiT): {len(summary.done)} volumes, {ours:.1f} s/volume, "
              f"{60 / ours:.2f} volumes/min  ({summary})")
        if reference_slices:
            path = sorted(data.glob("*.h5"))[0]
            with FastMRIFile(path) as volume:
                count = volume.num_slices
            start = time.perf_counter()
            combined_volume(path, backend="sigpy", slices=range(reference_slices))
            per_slice = (time.perf_counter() - start) / reference_slices
            reference = per_slice * count
            print(f"sigpy ESPIRiT path: {per_slice:.1f} s/slice -> {reference:.0f} s/volume of {count} slices, "
                  f"{60 / reference:.3f} volumes/min")
            print(f"ratio (ours / sigpy, volumes per minute): {reference / ours:.1f}x")


if __name__ == "__main__":
    fire.Fire(main)
