"""Benchmark of torch CPU threads on a quiet and on a shared machine (``monai_cmri.threads``).

Times two workloads of the main job with one thread and with all cores' threads, (a) as the
machine is and (b) beside one competing CPU-bound process (a Python busy loop started for the
purpose), and prints medians and the ratios 2-thread / 1-thread and competing / quiet:

- ``espirit``: :func:`monai_cmri.data.reader.combine_volume` of one simulated fastMRI volume
  (4 slices, 16 coils, 640 x 320), as the preprocessing does;
- ``cvae``: training steps of :class:`monai_cmri.networks.ComplexCVAE` at the bundle's CPU
  profile (channels (16, 32), one residual block, 8 norm groups), batch 16, 96 x 96 patches cut
  from the combined volume, with :class:`monai_cmri.losses.CVAELoss` and Adam;
- ``espirit, 2 processes x 1 thread``: the same volume combined by two one-thread worker
  processes at once (the preprocessing's pool), time per volume.

"quiet" means that the benchmark starts no competitor; other jobs on a shared machine still run
and add to both cases, so the 1-minute load average (``os.getloadavg``) is printed with every
measurement and summarised with the medians.

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/bench/threads.py            # 3 repeats: 5 min at load 2-3, 16 min at load 4-7
    python scripts/bench/threads.py --quick    # 2 slices, 2 steps, 2 repeats
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from multiprocessing import get_context
from pathlib import Path

import fire
import numpy as np
import torch

from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.data.reader import combine_volume
from monai_cmri.losses import CVAELoss
from monai_cmri.networks import ComplexCVAE
from monai_cmri.simulate import dataset_volume, write_volume
from monai_cmri.threads import apply_thread_policy, available_cpus


@contextmanager
def competitor() -> Iterator[None]:
    """One CPU-bound process (a Python busy loop) for the duration of the block."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # let it start and take a core
    try:
        yield
    finally:
        process.kill()
        process.wait()


def load() -> float:
    return os.getloadavg()[0]


def espirit(path: Path) -> Callable[[], object]:
    def run() -> np.ndarray:
        with FastMRIFile(path) as volume:
            return combine_volume(volume, device="cpu")

    return run


def patches(image: np.ndarray, batch_size: int, size: int = 96) -> dict[str, torch.Tensor]:
    """``batch_size`` patches ``(B, 2, size, size)`` from a combined volume, scaled to max magnitude 1."""
    slices, height, width = image.shape
    rng = np.random.default_rng(0)
    picks = []
    for i in range(batch_size):
        y, x = rng.integers(height // 4, 3 * height // 4 - size), rng.integers(width // 4, 3 * width // 4 - size)
        picks.append(image[i % slices, y : y + size, x : x + size])
    z = np.asarray(picks) / np.abs(image).max()
    stacked = np.stack([z.real, z.imag], axis=1).astype(np.float32)
    return {"image": torch.from_numpy(stacked), "sequence": torch.from_numpy(rng.integers(0, 5, batch_size))}


def cvae(batch: dict[str, torch.Tensor], steps: int) -> Callable[[], object]:
    torch.manual_seed(0)
    network = ComplexCVAE(channels=(16, 32), num_res_blocks=1, norm_num_groups=8)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    loss_function = CVAELoss()
    network.train()

    def run() -> float:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            recon, mu, logvar = network(batch["image"], batch["sequence"])
            loss, _ = loss_function(recon, batch["image"], mu, logvar)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    return run


def _pool_job(path: str) -> None:
    espirit(Path(path))()


def pooled(pool: ProcessPoolExecutor, path: Path, workers: int) -> Callable[[], float]:
    """Seconds per volume of ``workers`` one-thread processes of ``pool`` combining a volume each at once."""

    def run() -> float:
        start = time.perf_counter()
        list(pool.map(_pool_job, [str(path)] * workers))
        return (time.perf_counter() - start) / workers

    return run


def main(
    repeats: int = 3,
    slices: int = 4,
    coils: int = 16,
    steps: int = 3,
    batch_size: int = 16,
    pool: bool = True,
    quick: bool = False,
) -> None:
    """Print median seconds per workload, thread count and condition, and their ratios.

    Args:
        repeats: timed repeats of every measurement (the median is reported).
        slices: slices of the simulated volume.
        coils: receive coils of the simulated volume.
        steps: training steps per ``cvae`` measurement.
        batch_size: patches per training step.
        pool: also time one one-thread worker process per CPU (``espirit`` only).
        quick: 2 slices, 2 steps, 2 repeats, no pool.
    """
    if quick:
        repeats, slices, steps, pool = 2, 2, 2, False
    began = time.perf_counter()
    cores = available_cpus()
    counts = sorted({1, cores})
    print(
        f"torch {torch.__version__}, {cores} CPUs, load {'/'.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        apply_thread_policy(cores, export=False)
        path = write_volume(dataset_volume(0, 0, slices=slices, coils=[coils]), tmp)
        image = espirit(path)()
        workloads = {
            f"espirit {slices} slices x {coils} coils": espirit(path),
            f"cvae {steps} steps x batch {batch_size}": cvae(patches(image, batch_size), steps),
        }
        if pool and cores > 1:
            # spawn: fresh interpreters, as the policy applies to new processes; started here, untimed.
            context = get_context("spawn")
            executor = ProcessPoolExecutor(cores, context, initializer=apply_thread_policy, initargs=(1,))
            stack.enter_context(executor)
            workloads[f"espirit, {cores} processes x 1 thread"] = pooled(executor, path, cores)
        times: dict[tuple[str, str, int], list[float]] = {}
        loads: dict[str, list[float]] = {"quiet": [], "competing": []}
        for threads in counts:  # warm-up: first calls allocate and pick kernels
            apply_thread_policy(threads, export=False)
            for name, run in workloads.items():
                if threads == 1 or "processes" not in name:
                    run()
        for repeat in range(repeats):
            for condition in ("quiet", "competing"):
                with competitor() if condition == "competing" else nullcontext():
                    for name, run in workloads.items():
                        for threads in [1] if "processes" in name else counts:
                            apply_thread_policy(threads, export=False)
                            start = time.perf_counter()
                            value = run()
                            elapsed = value if "processes" in name else time.perf_counter() - start
                            times.setdefault((name, condition, threads), []).append(elapsed)
                            loads[condition].append(load())
                            print(
                                f"  repeat {repeat + 1}, {condition:9s} {name:36s} {threads} thread(s): "
                                f"{elapsed:7.2f} s, load {load():.2f}",
                                flush=True,
                            )
    apply_thread_policy(1, export=False)

    def median(name: str, condition: str, threads: int) -> float:
        return statistics.median(times[name, condition, threads])

    quiet_load, busy_load = loads["quiet"], loads["competing"]
    print(
        f"\nmedians of {repeats}, seconds; 1-minute load average during the runs: quiet "
        f"{min(quiet_load):.2f}-{max(quiet_load):.2f}, competing {min(busy_load):.2f}-{max(busy_load):.2f}"
    )
    print(f"{'workload':40s} {'threads':>7s} {'quiet':>8s} {'competing':>10s} {'competing/quiet':>16s}")
    for name in workloads:
        for threads in counts:
            if (name, "quiet", threads) in times:
                quiet, busy = median(name, "quiet", threads), median(name, "competing", threads)
                print(f"{name:40s} {threads:7d} {quiet:8.2f} {busy:10.2f} {busy / quiet:16.2f}")
    if cores > 1:
        print(f"\n{cores} threads / 1 thread (below 1: more threads are faster)")
        for name in workloads:
            if (name, "quiet", cores) in times:
                quiet = median(name, "quiet", cores) / median(name, "quiet", 1)
                busy = median(name, "competing", cores) / median(name, "competing", 1)
                print(f"{name:40s} quiet {quiet:5.2f}   beside a busy process {busy:5.2f}")
    pooled_name, single = f"espirit, {cores} processes x 1 thread", next(iter(workloads))
    if (pooled_name, "quiet", 1) in times:
        print(f"\n{cores} processes x 1 thread, time per volume / 1 process x 1 thread")
        for condition in ("quiet", "competing"):
            ratio = median(pooled_name, condition, 1) / median(single, condition, 1)
            print(f"{pooled_name:40s} {condition:9s} {ratio:5.2f}")
    print(f"\ntotal {time.perf_counter() - began:.0f} s")

if __name__ == "__main__":
    fire.Fire(main)
