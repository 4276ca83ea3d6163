"""Benchmark of latent flow matching: FlowUNet training throughput and guided sampling cost (SPEC 2).

Training: the flow-matching step of stage 1 on random latents ``(B, 2, 48, 48)`` -- logit-normal
``t``, ``x_t = (1 - t) eps + t x_1``, MSE of the velocity in fp32 against ``x_1 - eps``, AdamW,
gradient norm clipped to 1 -- in these variants, all built in one run and timed in turn within
every repeat (a shared machine then slows all of them alike):

- ``fp32 eager``, the baseline; ``fp32 channels_last``; ``fp32 channels_last + compile``
  (``torch.compile`` of the network, whose first step, compilation included, is reported apart and
  left out of the throughput);
- on CUDA also ``bf16``, ``bf16 channels_last`` and ``bf16 channels_last + compile`` (autocast of
  the network only; the time embedding stays fp32 inside :class:`FlowUNet`).

Sampling: Euler, midpoint and Heun (:mod:`monai_cmri.flow.solvers`) from noise to ``t = 1`` with
classifier-free guidance, ``w = 2``, conditions the sequence tokens and null :data:`SEQUENCE_NULL`,
under ``torch.inference_mode``; Euler with ``n`` steps and the two-stage solvers with ``n / 2`` make
the same NFE. Prints latents per second, the solver's NFE and the guided NFE per sample
(:attr:`ClassifierFreeGuidance.nfe`, cond + null), and the ratio to Euler at the same NFE.

Every figure is the median over ``repeats`` timed repeats after warm-up. Threads follow
:func:`monai_cmri.threads.apply_thread_policy` (one unless ``OMP_NUM_THREADS`` says otherwise).

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/bench/flow.py                       # CPU profile, 1 thread (~5 min, compile ~4 min cold)
    python scripts/bench/flow.py --quick               # tiny smoke run, no compile (< 1 min)
    python scripts/bench/flow.py --compile=False       # skip torch.compile
    python scripts/bench/flow.py --device=cuda --json=gpu_check/flow.json   # full-size U-Net
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import fire
import torch
import torch.nn.functional as F
from common import Bench, Variant, finish, header, load, pick_profile, rate_table, setup, time_in_turn, warm_variants

from monai_cmri.flow import (
    ClassifierFreeGuidance,
    euler,
    heun,
    interpolate,
    midpoint,
    sample_logit_normal,
    target_velocity,
    time_grid,
)
from monai_cmri.networks.nets import SEQUENCE_NULL, FlowUNet

#: ``cpu``: the small U-Net of the bundles' ``configs/cpu.json``; ``full``: FlowUNet's defaults, sized for a GPU.
PROFILES: dict[str, dict[str, object]] = {
    "cpu": dict(
        channels=(16, 32, 64), attention_levels=(False, False, True), num_res_blocks=1, norm_num_groups=8,
        num_head_channels=16,
    ),
    "full": {},
}
#: Per profile: training batch, sampling batch (latents; guidance doubles it), training steps per repeat.
SIZES = {"cpu": (8, 2, 2), "full": (64, 64, 5)}
LATENT = (2, 48, 48)
SOLVERS = {"euler": euler, "midpoint": midpoint, "heun": heun}
#: Steps per solver; Euler's ``n`` and the two-stage solvers' ``n / 2`` give the same NFE.
STEPS = {"euler": (8, 16, 32), "midpoint": (4, 8, 16), "heun": (4, 8, 16)}
QUICK_STEPS = {"euler": (2, 4), "midpoint": (1, 2), "heun": (1, 2)}
GUIDANCE_SCALE = 2.0


def variants(device: torch.device, compile: bool) -> list[tuple[str, bool, bool, bool]]:
    """``(name, bf16, channels_last, compile)`` per training variant; the first is the baseline."""
    out = [("fp32 eager", False, False, False), ("fp32 channels_last", False, True, False)]
    if compile:
        out.append(("fp32 channels_last + compile", False, True, True))
    if device.type == "cuda":
        out += [("bf16", True, False, False), ("bf16 channels_last", True, True, False)]
        if compile:
            out.append(("bf16 channels_last + compile", True, True, True))
    return out


def training_step(
    kwargs: dict[str, object], device: torch.device, batch: int, bf16: bool, channels_last: bool, compiled: bool
) -> Callable[[int], torch.Tensor]:
    """A function running ``n`` flow-matching training steps of a fresh FlowUNet; returns the last loss."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = FlowUNet(**kwargs).to(device=device, memory_format=layout)
    model = torch.compile(net) if compiled else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x_1 = torch.randn(batch, *LATENT, device=device).contiguous(memory_format=layout)
    sequence = torch.arange(batch, device=device) % SEQUENCE_NULL
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def run(steps: int) -> torch.Tensor:
        for _ in range(steps):
            t = sample_logit_normal(batch, device=device)
            noise = torch.randn_like(x_1)
            x_t = interpolate(noise, x_1, t)
            with autocast:  # the network only; the loss is taken in fp32
                v = model(x_t, t, sequence)
            loss = F.mse_loss(v.float(), target_velocity(noise, x_1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
        return loss.detach()

    return run


def sampler(
    net: FlowUNet, device: torch.device, batch: int, solver: str, steps: int, bf16: bool
) -> Callable[[], tuple[int, int]]:
    """A function sampling ``batch`` latents with guidance; returns ``(solver NFE, guided NFE per sample)``."""
    sequence = torch.arange(batch, device=device) % SEQUENCE_NULL
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def model(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        with autocast:
            return net(x, t, cond).float()

    guidance = ClassifierFreeGuidance(model, sequence, torch.full_like(sequence, SEQUENCE_NULL), GUIDANCE_SCALE)
    times = time_grid(steps, device=device)
    generator = torch.Generator(device).manual_seed(0)
    x_0 = torch.randn(batch, *LATENT, device=device, generator=generator)

    def run() -> tuple[int, int]:
        guidance.reset()
        with torch.inference_mode():
            x, nfe = SOLVERS[solver](guidance, x_0, times)
        if not bool(torch.isfinite(x).all()):
            raise RuntimeError(f"{solver} with {steps} steps gave non-finite latents")
        return nfe, guidance.nfe

    return run


def main(
    device: str = "cpu",
    profile: str | None = None,
    batch: int | None = None,
    sample_batch: int | None = None,
    steps: int | None = None,
    repeats: int = 3,
    compile: bool = True,
    threads: int | str = "auto",
    quick: bool = False,
    json: str | None = None,
) -> None:
    """Print median training samples/s per variant and guided sampling latents/s per solver, with ratios.

    Args:
        device: ``cpu`` or ``cuda``.
        profile: ``cpu`` (small U-Net) or ``full`` (FlowUNet defaults); by default ``cpu`` on a
            CPU and ``full`` on CUDA.
        batch: training batch (default 8 for ``cpu``, 64 for ``full``).
        sample_batch: latents per sampling run (default 2 for ``cpu``, 64 for ``full``); guidance
            runs the network on twice as many.
        steps: training steps per timed repeat (default 2 for ``cpu``, 5 for ``full``).
        repeats: timed repeats per measurement (the median is reported).
        compile: also time ``torch.compile`` of the network (its first step, compilation included,
            took about 220 s on the project's 2-core CPU with an empty Inductor cache).
        threads: CPU threads, see :func:`monai_cmri.threads.resolve_threads`.
        quick: batch 2, one latent, one step per repeat, 2 repeats, 1-4 sampling steps, no compile.
        json: also write the figures to this JSON file (atomically).

    Raises:
        RuntimeError: for ``device="cuda"`` without a CUDA device, or a non-finite loss or sample.
        ValueError: for an unknown profile.
    """
    began = time.perf_counter()
    bench = setup(device, threads)
    profile = pick_profile(profile, bench, PROFILES)
    default_batch, default_sample_batch, default_steps = (2, 1, 1) if quick else SIZES[profile]
    batch, sample_batch, steps = batch or default_batch, sample_batch or default_sample_batch, steps or default_steps
    if quick:
        repeats, compile = 2, False
    kwargs = PROFILES[profile]
    parameters = sum(p.numel() for p in FlowUNet(**kwargs).parameters())
    print(
        f"torch {torch.__version__} on {bench.where}; profile {profile} ({parameters / 1e6:.2f} M parameters), "
        f"latents {LATENT}, training batch {batch} x {steps} steps per repeat, {repeats} repeats; "
        f"load {load()} (1/5/15 min)",
        flush=True,
    )
    report = header(
        bench,
        profile=profile,
        parameters=parameters,
        batch=batch,
        sample_batch=sample_batch,
        steps=steps,
        repeats=repeats,
    )

    # Training: build and warm up every variant, then time them in turn within every repeat.
    def build(bf16: bool, channels_last: bool, compiled: bool) -> Variant:
        def make() -> tuple[Callable[[], object], Callable[[], object]]:
            run = training_step(kwargs, bench.device, batch, bf16, channels_last, compiled)

            def timed() -> None:
                loss = run(steps)
                if not bool(torch.isfinite(loss)):
                    raise RuntimeError(f"non-finite training loss {loss.item()}")

            return (lambda: run(1)), timed

        return make

    runs, first_step = warm_variants(
        [(name, compiled, build(bf16, last, compiled)) for name, bf16, last, compiled in variants(bench.device, compile)],
        bench,
    )
    if not compile:
        print("torch.compile: skipped (--quick or --compile=False)")
    rates = time_in_turn(runs, repeats, bench, batch * steps)
    report["training"] = rate_table("training", rates, "samples/s", first_call=first_step)

    # Sampling: eager network (bf16 channels_last on CUDA); every configuration once per repeat.
    report["sampling"] = sampling(bench, kwargs, sample_batch, repeats, quick)
    finish(report, began, json)


def sampling(
    bench: Bench, kwargs: dict[str, object], sample_batch: int, repeats: int, quick: bool
) -> dict[str, object]:
    """Time every solver and step count in turn; print latents/s and the ratio to Euler at the same NFE."""
    sample_bf16 = bench.device.type == "cuda"
    layout = torch.channels_last if sample_bf16 else torch.contiguous_format
    torch.manual_seed(0)
    net = FlowUNet(**kwargs).to(device=bench.device, memory_format=layout).eval()
    grid = QUICK_STEPS if quick else STEPS
    samplers = {(s, n): sampler(net, bench.device, sample_batch, s, n, sample_bf16) for s in SOLVERS for n in grid[s]}
    sampler(net, bench.device, sample_batch, "euler", 1, sample_bf16)()  # warm-up: first calls allocate, pick kernels
    bench.sync()
    nfes: dict[tuple[str, int], tuple[int, int]] = {}

    def recording(key: tuple[str, int], run: Callable[[], tuple[int, int]]) -> Callable[[], None]:
        def timed() -> None:
            nfes[key] = run()

        return timed

    named = {f"{s} {n}": recording((s, n), run) for (s, n), run in samplers.items()}
    timed = time_in_turn(named, repeats, bench, sample_batch)
    latents = {key: timed[f"{key[0]} {key[1]}"] for key in samplers}
    precision = "bf16 channels_last" if sample_bf16 else "fp32"
    print(
        f"\nsampling, guidance w={GUIDANCE_SCALE:g} (cond: sequence tokens, null: {SEQUENCE_NULL}), {precision} eager, "
        f"{sample_batch} latents per run ({2 * sample_batch} per network call), median of {repeats}"
    )
    print("ratio: latents/s over Euler's at the same solver NFE in this run; evals/s = latents/s x guided NFE")
    print(f"{'solver':8s} {'steps':>5s} {'NFE':>4s} {'guided NFE':>10s} {'latents/s':>10s} {'ratio':>7s} {'evals/s':>8s}")
    euler_rate = {nfes[key][0]: statistics.median(latents[key]) for key in samplers if key[0] == "euler"}
    runs: list[dict[str, object]] = []
    for (solver, n), values in latents.items():
        median = statistics.median(values)
        nfe, guided = nfes[solver, n]
        ratio = median / euler_rate[nfe] if nfe in euler_rate else float("nan")
        print(f"{solver:8s} {n:5d} {nfe:4d} {guided:10d} {median:10.3f} {ratio:6.2f}x {median * guided:8.2f}")
        runs.append(
            {
                "solver": solver,
                "steps": n,
                "nfe": nfe,
                "guided_nfe_per_sample": guided,
                "latents_per_s": median,
                "ratio_to_euler_same_nfe": ratio,
                "repeats": values,
            }
        )
    return {"guidance_scale": GUIDANCE_SCALE, "precision": precision, "runs": runs}


if __name__ == "__main__":
    fire.Fire(main)
