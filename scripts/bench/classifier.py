"""Benchmark of classifier training throughput: SEResNetClassifier on latents and on patches (SPEC 3).

Measures training samples per second of :class:`~monai_cmri.networks.SEResNetClassifier` on random
latents ``(B, 2, 48, 48)`` (real versus synthetic, paper 2.4.1) and random patches
``(B, 2, 96, 96)`` (normal versus abnormal, paper 2.4.2). Each step is the iteration the
``classifier`` bundle runs: MONAI's ``SupervisedTrainer`` with
:func:`~monai_cmri.engines.prepare_classifier_batch` and
:class:`~monai_cmri.engines.ClassifierTrainStep` (mixup with ``alpha = 0.2``, the network, binary
cross-entropy with logits in fp32 by :func:`~monai_cmri.engines.classifier_loss`, backward, AdamW)
with the bundle's per-iteration handlers: Ignite's ``EMAHandler`` (the EMA weights), MONAI's
``LrScheduleHandler`` on ``WarmupCosineSchedule`` and :class:`~monai_cmri.engines.StopOnNonFinite`
(which reads the loss every step). The batches are made once and already sit on the device; data
loading, augmentation, validation and logging are not timed. Variants, all built in one run and
timed in turn within every repeat (a shared machine then slows all of them alike):

- ``fp32 eager``, the reference; ``fp32 channels_last`` (the network in ``channels_last`` and the
  batch converted by the trainer's ``to_kwargs``, as a bundle would do it);
  ``fp32 channels_last + compile`` (``torch.compile`` of the network; its first step, compilation
  included, is reported apart as the cold compile time and left out of the throughput: by default
  the run compiles into a fresh, empty Inductor cache, so nothing comes from earlier runs);
- on CUDA also ``bf16``, ``bf16 channels_last`` and ``bf16 channels_last + compile`` (the trainer's
  ``amp`` with ``amp_kwargs={"dtype": torch.bfloat16}``: autocast of the network only, no gradient
  scaler, which bf16 does not need), and ``fp16 + scaler``: ``amp=True`` as the bundle sets it on
  CUDA, fp16 autocast with MONAI's gradient scaler.

On a CPU bf16 autocast is neither measured nor used: the bundle's ``amp`` is off there.

How to read it: every figure is the median samples/s over ``repeats`` timed repeats after a
warm-up, the range is the slowest and fastest repeat, and ``ratio`` is a variant's median over
the ``fp32 eager`` median of the same input in the same run (above 1: faster than the reference).
Compare ratios rather than absolute rates between runs on a shared machine. Threads follow
:func:`monai_cmri.threads.apply_thread_policy` (one unless ``OMP_NUM_THREADS`` says otherwise).

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/bench/classifier.py                     # CPU profile, 1 thread (~2.5 min, compile cold)
    python scripts/bench/classifier.py --help              # the options
    python scripts/bench/classifier.py --quick             # tiny smoke run, no compile (< 30 s)
    python scripts/bench/classifier.py --compile=False     # skip torch.compile
    python scripts/bench/classifier.py --device=cuda --json=gpu_check/classifier.json   # full profile
"""

from __future__ import annotations

import time
from collections.abc import Callable

import fire
import torch
from common import (
    Bench,
    Variant,
    finish,
    header,
    inductor_cache,
    load,
    pick_profile,
    rate_table,
    setup,
    time_in_turn,
    warm_variants,
)
from ignite.handlers import EMAHandler
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule

from monai_cmri.engines import ClassifierTrainStep, StopOnNonFinite, classifier_loss, prepare_classifier_batch
from monai_cmri.networks import SEResNetClassifier

#: The classifier bundle's profiles: ``cpu`` is ``configs/cpu.json``, ``full`` the ``configs/train.json`` defaults.
PROFILES: dict[str, dict[str, object]] = {
    "cpu": dict(channels=(16, 32, 64), blocks=(1, 1, 1)),
    "full": dict(channels=(32, 64, 128, 256), blocks=(1, 1, 1, 1)),
}
#: Per profile: the bundle's batch size (``batch_size``), training steps per timed repeat.
SIZES = {"cpu": (32, 4), "full": (64, 20)}
#: Per profile: the bundle's ``learning_rate`` and ``ema_momentum`` (they do not change the cost).
OPTIM = {"cpu": (2e-3, 0.05), "full": (1e-3, 1e-3)}
#: The two inputs of the paper's evaluations.
INPUTS = {"latents": (2, 48, 48), "patches": (2, 96, 96)}
MIXUP_ALPHA = 0.2
WEIGHT_DECAY = 1e-4


def variants(device: torch.device, compile: bool) -> list[tuple[str, torch.dtype | None, bool, bool]]:
    """``(name, autocast dtype or None, channels_last, compile)`` per variant; the first is the reference."""
    out: list[tuple[str, torch.dtype | None, bool, bool]] = [
        ("fp32 eager", None, False, False),
        ("fp32 channels_last", None, True, False),
    ]
    if compile:
        out.append(("fp32 channels_last + compile", None, True, True))
    if device.type == "cuda":
        out += [("bf16", torch.bfloat16, False, False), ("bf16 channels_last", torch.bfloat16, True, False)]
        if compile:
            out.append(("bf16 channels_last + compile", torch.bfloat16, True, True))
        out.append(("fp16 + scaler (bundle amp)", torch.float16, False, False))
    return out


def batches(shape: tuple[int, ...], batch: int, count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``count`` batches ``{"image": (batch, *shape), "target": (batch,)}`` of random images and 0/1 targets."""
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randn(batch, *shape, generator=generator).to(device),
            "target": torch.randint(0, 2, (batch,), generator=generator).float().to(device),
        }
        for _ in range(count)
    ]


def trainer(
    kwargs: dict[str, object],
    device: torch.device,
    data: list[dict[str, torch.Tensor]],
    optim: tuple[float, float],
    dtype: torch.dtype | None,
    channels_last: bool,
    compiled: bool,
) -> SupervisedTrainer:
    """A ``SupervisedTrainer`` of a fresh classifier as the bundle wires it, over ``data`` for one epoch."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = SEResNetClassifier(**kwargs).to(device=device, memory_format=layout)
    learning_rate, ema_momentum = optim
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=0, t_total=10**6)
    engine = SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=data,
        network=torch.compile(net) if compiled else net,
        optimizer=optimizer,
        loss_function=classifier_loss,
        prepare_batch=prepare_classifier_batch,
        iteration_update=ClassifierTrainStep(mixup_alpha=MIXUP_ALPHA, max_grad_norm=None),
        train_handlers=[
            EMAHandler(net, momentum=ema_momentum),
            LrScheduleHandler(schedule, epoch_level=False, print_lr=False),
            StopOnNonFinite(),
        ],
        amp=dtype is not None,
        amp_kwargs={"dtype": dtype} if dtype is not None else None,
        to_kwargs={"memory_format": torch.channels_last} if channels_last else None,
        decollate=False,
    )
    if dtype == torch.bfloat16:
        engine.scaler = None  # bf16 has fp32's range: no loss scaling
    return engine


def measure(
    input_name: str,
    kwargs: dict[str, object],
    bench: Bench,
    profile: str,
    batch: int,
    steps: int,
    repeats: int,
    compile: bool,
) -> dict[str, object]:
    """Time every variant on one input, print its table and return its figures."""
    shape = INPUTS[input_name]
    data = batches(shape, batch, steps, bench.device)

    def build(dtype: torch.dtype | None, channels_last: bool, compiled: bool) -> Variant:
        def make() -> tuple[Callable[[], object], Callable[[], object]]:
            engine = trainer(kwargs, bench.device, data, OPTIM[profile], dtype, channels_last, compiled)

            def first() -> None:  # one step: the compile, then the warm-up
                engine.data_loader = data[:1]
                engine.run()

            def timed() -> None:  # a fresh epoch over all the batches
                engine.data_loader = data
                engine.run()

            return first, timed

        return make

    specs = variants(bench.device, compile)
    runs, first_step = warm_variants(
        [(name, compiled, build(dtype, last, compiled)) for name, dtype, last, compiled in specs],
        bench,
        f"{input_name} {shape}",
    )
    rates = time_in_turn(runs, repeats, bench, batch * steps)
    table = rate_table(f"{input_name} {shape}, training", rates, "samples/s", first_call=first_step, digits=1)
    return {"shape": list(shape), "variants": table}


def main(
    device: str = "cpu",
    profile: str | None = None,
    batch: int | None = None,
    steps: int | None = None,
    repeats: int = 5,
    inputs: str | tuple[str, ...] = ("latents", "patches"),
    compile: bool = True,
    cold_cache: bool = True,
    threads: int | str = "auto",
    quick: bool = False,
    json: str | None = None,
) -> None:
    """Print median training samples/s per input and variant, with the ratio to fp32 eager.

    Args:
        device: ``cpu`` or ``cuda``.
        profile: ``cpu``, the sizes of the bundle's ``configs/cpu.json`` (channels 16, 32, 64, one
            block per stage, batch 32), or ``full``, those of ``configs/train.json`` (channels 32,
            64, 128, 256, one block per stage, batch 64); by default ``cpu`` on a CPU and ``full``
            on CUDA.
        batch: training batch (default: the profile's, 32 or 64).
        steps: training steps per timed repeat (default 4 for ``cpu``, 20 for ``full``).
        repeats: timed repeats per variant (the median is reported).
        inputs: ``latents`` (2 x 48 x 48), ``patches`` (2 x 96 x 96) or both (comma-separated).
        compile: also time ``torch.compile`` of the network (its first step, compilation included,
            is printed apart; each input compiles anew).
        cold_cache: compile into a fresh, empty Inductor (and Triton) cache directory, removed at
            the end, so the first step shows the cold compile time; ``--cold_cache=False`` uses the
            usual cache, where a repeated run finds its kernels compiled already. Latents compile
            first; patches may find the few kernels whose code is identical.
        threads: CPU threads, see :func:`monai_cmri.threads.resolve_threads`.
        quick: batch 4, one step per repeat, 2 repeats, no compile.
        json: also write the figures to this JSON file (atomically).

    Raises:
        RuntimeError: for ``device="cuda"`` without a CUDA device.
        FloatingPointError: for a non-finite training loss (from ``StopOnNonFinite``).
        ValueError: for an unknown profile or input.
    """
    began = time.perf_counter()
    bench = setup(device, threads)
    profile = pick_profile(profile, bench, PROFILES)
    names = [inputs] if isinstance(inputs, str) else list(inputs)
    names = [name.strip() for entry in names for name in str(entry).split(",") if name.strip()]
    if not names or any(name not in INPUTS for name in names):
        raise ValueError(f"--inputs: expected some of {sorted(INPUTS)}, got {inputs!r}")
    default_batch, default_steps = (4, 1) if quick else SIZES[profile]
    batch, steps = batch or default_batch, steps or default_steps
    if quick:
        repeats, compile = 2, False
    kwargs = PROFILES[profile]
    parameters = sum(p.numel() for p in SEResNetClassifier(**kwargs).parameters())
    print(
        f"torch {torch.__version__} on {bench.where}; profile {profile} ({parameters / 1e6:.3f} M parameters, "
        f"channels {kwargs['channels']}), batch {batch} x {steps} steps per repeat, {repeats} repeats; "
        f"load {load()} (1/5/15 min)",
        flush=True,
    )
    if bench.device.type == "cpu":
        print("bf16 autocast: not measured on a CPU (the bundle's amp is off there)")
    if not compile:
        print("torch.compile: skipped (--quick or --compile=False)")
    report = header(
        bench, profile=profile, parameters=parameters, batch=batch, steps=steps, repeats=repeats, mixup_alpha=MIXUP_ALPHA
    )
    with inductor_cache(compile and cold_cache) as cache:
        if cache is not None:
            print(f"torch.compile: cold, into the empty Inductor cache {cache} (removed at the end)")
        elif compile:
            print("torch.compile: with the usual Inductor cache (--cold_cache=False): the first step may not be cold")
        report["training"] = {
            name: measure(name, kwargs, bench, profile, batch, steps, repeats, compile) for name in names
        }
    finish(report, began, json)


if __name__ == "__main__":
    fire.Fire(main)
