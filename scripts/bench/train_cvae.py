"""Benchmark of VAE training throughput: the bundle's default and CPU profiles, fp32 and AMP (SPEC 2, 4).

Runs ``monai.engines.SupervisedTrainer`` with :func:`monai_cmri.engines.cvae_train_step`, as the
``cvae`` bundle does, on in-memory batches of smooth complex phantoms (96 x 96, two channels), and
prints training samples per second for each profile and precision with the ratios AMP / fp32 and
default / CPU profile. AMP is bf16 autocast on CPU and fp16 autocast with a gradient scaler on
CUDA (the bundle's ``amp`` setting, which enables it on CUDA only).

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/bench/train_cvae.py                      # CPU, 1 thread, both profiles
    python scripts/bench/train_cvae.py --threads=2 --amp=False
    python scripts/bench/train_cvae.py --device=cuda --batch_size=64 --json=train_cvae.json
"""

from __future__ import annotations

import time
import warnings

import fire
import numpy as np
import torch
from common import Bench, finish, header, setup
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from monai_cmri.engines import cvae_train_step, prepare_cvae_batch
from monai_cmri.losses import CVAELoss
from monai_cmri.networks import ComplexCVAE

#: The bundle's profiles: ``configs/train.json`` defaults and ``configs/cpu.json``.
PROFILES = {
    "default": dict(channels=(64, 128), num_res_blocks=2, norm_num_groups=32),
    "cpu": dict(channels=(16, 32), num_res_blocks=1, norm_num_groups=8),
}


def batch(size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A patch batch ``{"image": (size, 2, 96, 96), "sequence": (size,)}`` of smooth complex blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:96, :96] / 96 - 0.5
    images = []
    for _ in range(size):
        mag = np.exp(-((y - rng.uniform(-0.1, 0.1)) ** 2 + x**2) / (2 * rng.uniform(0.2, 0.3) ** 2))
        z = mag * np.exp(1j * (rng.uniform(-np.pi, np.pi) + 3 * x * rng.uniform(-1, 1)))
        images.append(np.stack([z.real, z.imag]))
    image = torch.from_numpy(np.asarray(images, dtype=np.float32))
    return {"image": image, "sequence": torch.from_numpy(rng.integers(0, 5, size))}


def samples_per_second(profile: str, amp: bool, bench: Bench, batch_size: int, steps: int) -> float:
    """Training samples per second of ``steps`` iterations after two warm-up iterations."""
    device = bench.device
    torch.manual_seed(0)
    network = ComplexCVAE(**PROFILES[profile]).to(device)
    data = [batch(batch_size)] * (steps + 2)
    amp_kwargs = {"dtype": torch.float16 if device.type == "cuda" else torch.bfloat16}
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=data,
        epoch_length=len(data),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-4),
        loss_function=CVAELoss(),
        prepare_batch=prepare_cvae_batch,
        iteration_update=cvae_train_step,
        amp=amp,
        amp_kwargs=amp_kwargs,
        decollate=False,
    )
    times: list[float] = []

    @trainer.on(Events.ITERATION_STARTED)
    def _start(engine: SupervisedTrainer) -> None:
        bench.sync()
        times.append(time.perf_counter())

    with warnings.catch_warnings():
        # run() builds a CUDA gradient scaler for AMP; on CPU it is disabled, as bf16 needs none.
        warnings.simplefilter("ignore")
        trainer.run()
    bench.sync()
    end = time.perf_counter()
    timed = times[2:] + [end]
    return batch_size * steps / (timed[-1] - timed[0])


def main(
    device: str = "cpu",
    batch_size: int = 8,
    steps: int = 3,
    threads: int = 1,
    profiles: str | tuple[str, ...] = ("cpu", "default"),
    amp: bool = True,
    json: str | None = None,
) -> None:
    """Print samples per second per profile and precision, and their ratios.

    Args:
        device: ``cpu`` or ``cuda``.
        batch_size: patches per step.
        steps: timed steps per measurement (after two warm-up steps).
        threads: CPU threads, see :func:`monai_cmri.threads.resolve_threads`.
        profiles: which of ``cpu`` and ``default`` to run, in order (comma-separated or a tuple).
        amp: also time AMP (slow on CPUs without bf16 instructions).
        json: also write the figures to this JSON file (atomically).

    Raises:
        RuntimeError: for ``device="cuda"`` without a CUDA device.
        ValueError: for an unknown profile.
    """
    began = time.perf_counter()
    names = [p.strip() for entry in ([profiles] if isinstance(profiles, str) else profiles) for p in str(entry).split(",")]
    if not names or any(name not in PROFILES for name in names):
        raise ValueError(f"--profiles: expected some of {sorted(PROFILES)}, got {profiles!r}")
    bench = setup(device, threads)
    amp_name = "fp16" if bench.device.type == "cuda" else "bf16"
    results: dict[str, dict[str, float]] = {}
    report = header(bench, batch_size=batch_size, steps=steps, amp=amp_name if amp else None)
    report["samples_per_s"] = results
    print(f"{bench.where}, batch {batch_size}, {steps} timed steps; samples/s")
    for profile in names:
        parameters = sum(p.numel() for p in ComplexCVAE(**PROFILES[profile]).parameters())
        fp32 = samples_per_second(profile, False, bench, batch_size, steps)
        print(f"{profile:>8} ({parameters / 1e6:.2f} M parameters) fp32: {fp32:8.2f}")
        results[profile] = {"fp32": fp32}
        if amp:
            mixed = samples_per_second(profile, True, bench, batch_size, steps)
            results[profile]["amp"] = mixed
            speedup = mixed / fp32
            print(f"{profile:>8} ({parameters / 1e6:.2f} M parameters) {amp_name}: {mixed:8.2f}  ({speedup:.2f}x fp32)")
    if {"default", "cpu"} <= set(results):
        for precision in [p for p in ("fp32", "amp") if p in results["cpu"] and p in results["default"]]:
            ratio = results["cpu"][precision] / results["default"][precision]
            print(f"cpu profile / default profile ({precision}): {ratio:.2f}x")
    finish(report, began, json)


if __name__ == "__main__":
    fire.Fire(main)
