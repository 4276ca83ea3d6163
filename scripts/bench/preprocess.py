"""Benchmark of preprocessing end to end: volumes per minute, against the sigpy ESPIRiT path, and a projection.

Simulates ``volumes`` fastMRI-size volumes (16 slices, 16 coils, 640 x 320 by default) into a
temporary folder, in parallel and untimed, then times ``monai_cmri.preprocess.preprocess`` on them
with ``workers`` one-thread processes (read k-space, remove the readout oversampling, ESPIRiT on
``device``, normalisation, brain mask, patch rules, writing, merging). The reference, measured in
the same run, is the same per-slice work with sigpy's EspiritCalib (``backend="sigpy"``) on
``reference_slices`` slices, scaled to a volume; the ratio is printed.

Projection: the time for a fastMRI-brain-size set (7,000 volumes of 16 slices) with ``workers``
processes, from the measured time per round of volumes (a round: up to ``workers`` volumes at
once; the run's wall time over its ``ceil(volumes / workers)`` rounds). With fewer volumes than
workers this assumes that the workers scale, which the run did not measure; give at least as many
volumes as workers to measure it. The GPU target is under an hour on one GPU with 16 workers.

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/bench/preprocess.py                       # 3 volumes, 1 worker, 1 sigpy slice
    python scripts/bench/preprocess.py --reference_slices=0  # skip the (slow) sigpy reference
    python scripts/bench/preprocess.py --volumes=1 --json=preprocess.json
    python scripts/bench/preprocess.py --device=cuda --volumes=16 --workers=16 --reference_slices=0
"""

from __future__ import annotations

import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import fire
import torch
from common import finish, header, setup

from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.preprocess import combined_volume, preprocess
from monai_cmri.simulate import dataset_volume, write_annotations, write_volume
from monai_cmri.threads import apply_thread_policy

#: The fastMRI brain set the projection is for: volumes of 16 slices.
FASTMRI_VOLUMES = 7_000
FASTMRI_SLICES = 16
#: The GPU target for preprocessing it, seconds.
GPU_TARGET_S = 3600.0


def _simulate(folder: str, index: int, seed: int, slices: int, coils: int) -> tuple[str, bool, list[object]]:
    """Write volume ``index`` of the dataset; return its name, whether it is annotated, its annotations."""
    volume = dataset_volume(index, seed, slices=slices, coils=[coils])
    write_volume(volume, folder)
    return volume.spec.name, volume.spec.annotated, list(volume.annotations)


def simulate(folder: Path, volumes: int, seed: int, slices: int, coils: int, workers: int) -> None:
    """The first ``volumes`` volumes of :func:`~monai_cmri.simulate.simulate_dataset`, made by ``workers`` processes."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder), index, seed, slices, coils) for index in range(volumes)]
    with ProcessPoolExecutor(
        max(1, min(workers, volumes)), get_context("spawn"), initializer=apply_thread_policy, initargs=(1,)
    ) as pool:
        made = list(pool.map(_simulate, *zip(*jobs)))
    write_annotations(folder, [a for _, _, found in made for a in found], [name for name, annotated, _ in made if annotated])


def main(
    volumes: int = 3,
    slices: int = FASTMRI_SLICES,
    coils: int = 16,
    workers: int = 1,
    device: str = "cpu",
    reference_slices: int = 1,
    seed: int = 0,
    threads: int | str = "auto",
    json: str | None = None,
) -> None:
    """Print seconds per volume, volumes per minute, the ratio to sigpy and the fastMRI-size projection.

    Args:
        volumes: simulated volumes to preprocess.
        slices: slices per volume.
        coils: receive coils per volume.
        workers: preprocessing processes, one thread each (also simulate in parallel).
        device: where ESPIRiT runs inside the workers, ``cpu`` or ``cuda``.
        reference_slices: slices combined with sigpy's ESPIRiT for the reference (0 skips it).
        seed: dataset and run seed.
        threads: CPU threads of this process (the sigpy reference), see
            :func:`monai_cmri.threads.resolve_threads`.
        json: also write the figures to this JSON file (atomically).

    Raises:
        RuntimeError: for ``device="cuda"`` without a CUDA device.
    """
    began = time.perf_counter()
    bench = setup(device, threads)
    print(f"torch {torch.__version__} on {bench.where}; {volumes} volume(s) of {slices} slices x {coils} coils, "
          f"{workers} worker(s)", flush=True)
    report = header(bench, volumes=volumes, slices=slices, coils=coils, workers=workers)
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / "data", Path(folder) / "out"
        start = time.perf_counter()
        simulate(data, volumes, seed, slices, coils, workers)
        print(f"simulated in {time.perf_counter() - start:.1f} s (not timed below)", flush=True)
        start = time.perf_counter()
        summary = preprocess(data, out, seed=seed, workers=workers, device=device, progress=False)
        wall = time.perf_counter() - start
        done = max(len(summary.done), 1)
        ours = wall / done
        print(f"preprocess (torch ESPIRiT, {workers} worker(s)): {len(summary.done)} volumes in {wall:.1f} s, "
              f"{ours:.1f} s/volume, {60 / ours:.2f} volumes/min  ({summary})")
        report["preprocess"] = {"volumes_done": len(summary.done), "wall_s": wall, "seconds_per_volume": ours,
                                "volumes_per_min": 60 / ours}
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
            report["sigpy"] = {"slices": reference_slices, "seconds_per_slice": per_slice,
                               "seconds_per_volume": reference, "ratio": reference / ours}

    # A round: up to `workers` volumes side by side; its time scales with the slices per volume.
    rounds = math.ceil(done / workers)
    per_round = wall / rounds * FASTMRI_SLICES / slices
    projected = math.ceil(FASTMRI_VOLUMES / workers) * per_round
    print(f"\nprojection: {FASTMRI_VOLUMES} volumes of {FASTMRI_SLICES} slices with {workers} worker(s): "
          f"{projected / 3600:.2f} h ({per_round:.1f} s per round of {workers} volume(s), scaled to "
          f"{FASTMRI_SLICES} slices; {'measured' if done >= workers else 'assumed'} scaling over the workers)")
    report["projection"] = {"volumes": FASTMRI_VOLUMES, "slices": FASTMRI_SLICES, "workers": workers,
                            "seconds_per_round": per_round, "projected_s": projected,
                            "scaling_measured": done >= workers}
    if bench.device.type == "cuda":
        met = projected < GPU_TARGET_S
        report["projection"].update(target_s=GPU_TARGET_S, target_met=met)
        print(f"GPU target: under {GPU_TARGET_S / 3600:.0f} h: {'met' if met else 'NOT met'}")
    finish(report, began, json)


if __name__ == "__main__":
    fire.Fire(main)
