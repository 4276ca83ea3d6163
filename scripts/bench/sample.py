"""Benchmark of drawing a synthetic set: stage 1's guided sampling, then the cvae decoder (paper 2.3, 2.4; SPEC 2).

Generation is what ``bundles/flow_stage1/configs/inference.json`` runs: :class:`FlowSampler` with
the Heun solver, classifier-free guidance of the sequence at ``w = 2`` (the paper's; cond: the
sequence tokens, null: :data:`SEQUENCE_NULL`), a :class:`FlowUNet` of the bundle's sizes and
random noise ``(B, 2, 48, 48)``. Decoding is ``ComplexCVAE.decode`` of the ``cvae`` bundle's sizes
on random latents, as :func:`~monai_cmri.latents.decode_latents` runs it. Profiles: ``full``, the bundles' defaults, for
a GPU; ``cpu``, their ``configs/cpu.json``, for a CPU. The weights are random, with MONAI's
zero-initialised layers drawn too, so that the variants' outputs can be compared.

Variants, all built with the same weights in one run and timed in turn within every repeat:

- ``fp32 eager`` is the baseline (what the bundle does on a CPU);
- on CUDA: ``bf16 autocast (bundle amp)`` (``FlowSampler(amp=True)``, what the bundle's
  ``amp: $torch.cuda.is_available()`` gives), ``bf16 channels_last``, ``bf16 channels_last + SDPA``
  (``use_flash_attention``: PyTorch's scaled-dot-product attention, the same weights) and, with
  ``--compile``, the same under ``torch.compile``; the decoder in bf16 ``channels_last``, also
  compiled;
- on a CPU: ``fp32 channels_last``, ``fp32 channels_last + SDPA`` and the latter with a 4x larger
  batch (guidance runs the network on twice the batch); the decoder in ``channels_last``, also at a
  4x batch; ``--compile`` adds compiled variants (cold compilation takes minutes on 2 cores).

Every figure is the median latents/s over ``repeats`` timed repeats after two warm-up calls; the
ratio is a variant's median over the baseline's of the same run. For each variant the relative RMS
difference of its latents (and patches) from the baseline's, same noise, is printed: bf16 moves the
ODE's trajectory a little, SDPA and ``channels_last`` only by rounding.

Projection: the time to draw and decode the paper-size set (34,000 latents, Heun, ``w = 2``, the
bundle's default 32 steps: 64 NFE, 128 network evaluations per latent with guidance) for the
baseline and for the fast path (the generation and decoding variants quickest over the whole set),
generation scaled from the measured steps by the NFE, a compiled variant's first call (its
compilation) added once, so that compiling counts only where it wins.
The GPU target is under 2 minutes.

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/bench/sample.py                       # CPU profile, 1 thread (~2 min)
    python scripts/bench/sample.py --quick               # tiny smoke run (< 1 min)
    python scripts/bench/sample.py --device=cuda --json=gpu_check/sample.json   # full size, compile
"""

from __future__ import annotations

import time
from collections.abc import Callable

import fire
import torch
from common import (
    Bench,
    Variant,
    bundle_settings,
    finish,
    header,
    load,
    pick_profile,
    rate_table,
    save,
    setup,
    time_in_turn,
    warm_variants,
)
from torch import nn

from monai_cmri.flow.sampling import FlowSampler
from monai_cmri.networks import ComplexCVAE, FlowUNet
from monai_cmri.networks.nets import SEQUENCE_NULL

#: The paper-size synthetic set (paper 2.4) and the guidance scale of the projection.
PAPER_LATENTS = 34_000
GUIDANCE_SCALE = 2.0
#: The GPU target for drawing and decoding the paper-size set, seconds.
GPU_TARGET_S = 120.0
#: Per device: measured Heun steps and timed repeats (quick: 1 step, 2 repeats, batch 2).
MEASURED = {"cuda": (4, 3), "cpu": (2, 3)}
#: Decoding batches per timed run, so that a run lasts long enough to time.
DECODE_CHUNKS = {"cuda": 8, "cpu": 2}

#: The bundle variables that size the networks.
FLOW_KEYS = ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups")
CVAE_KEYS = ("latent_channels", "channels", "num_res_blocks", "norm_num_groups")

#: A generation or decoding variant: ``(name, autocast dtype or None, channels_last, SDPA, compile, batch factor)``.
Spec = tuple[str, torch.dtype | None, bool, bool, bool, int]


def generation_variants(device: torch.device, compile: bool) -> list[Spec]:
    """The generation variants of this device; the first is the baseline, a None dtype with
    ``bundle amp`` in the name is the bundle's ``FlowSampler(amp=True)``."""
    if device.type == "cuda":
        out: list[Spec] = [
            ("fp32 eager", None, False, False, False, 1),
            ("bf16 autocast (bundle amp)", None, False, False, False, 1),
            ("bf16 channels_last", torch.bfloat16, True, False, False, 1),
            ("bf16 channels_last + SDPA", torch.bfloat16, True, True, False, 1),
        ]
        if compile:
            out.append(("bf16 channels_last + SDPA + compile", torch.bfloat16, True, True, True, 1))
        return out
    out = [
        ("fp32 eager", None, False, False, False, 1),
        ("fp32 channels_last", None, True, False, False, 1),
        ("fp32 channels_last + SDPA", None, True, True, False, 1),
        ("fp32 channels_last + SDPA, batch x4", None, True, True, False, 4),
    ]
    if compile:
        out.append(("fp32 channels_last + SDPA + compile", None, True, True, True, 1))
    return out


def decoding_variants(device: torch.device, compile: bool) -> list[Spec]:
    """The decoding variants of this device; the first is the baseline (SDPA does not apply)."""
    if device.type == "cuda":
        out: list[Spec] = [
            ("fp32 eager", None, False, False, False, 1),
            ("bf16 channels_last", torch.bfloat16, True, False, False, 1),
        ]
        if compile:
            out.append(("bf16 channels_last + compile", torch.bfloat16, True, False, True, 1))
        return out
    out = [
        ("fp32 eager", None, False, False, False, 1),
        ("fp32 channels_last", None, True, False, False, 1),
        ("fp32 channels_last, batch x4", None, True, False, False, 4),
    ]
    if compile:
        out.append(("fp32 channels_last + compile", None, True, False, True, 1))
    return out


class Autocast(nn.Module):
    """A velocity network (maybe compiled) under autocast of ``dtype``, with the attributes :class:`FlowSampler` reads.

    The sampler's own ``amp`` is bf16 autocast around the network call; this wrapper adds
    ``channels_last`` and compiled variants around the same call.
    ``dtype=None`` runs the network as it is.
    """

    def __init__(self, network: nn.Module, sequence_null: int, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.network = network
        self.sequence_null = sequence_null
        self.class_embedding = None
        self.dtype = dtype

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, sequence: torch.Tensor, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.dtype is None:
            return self.network(x, t, sequence, label)
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.network(x, t, sequence, label)


def random_weights(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's initial weights with every all-zero tensor drawn at random (scale 0.02).

    MONAI's U-Net starts with a zero output layer, whose velocity of 0 would make every variant
    agree trivially; the cost of a call does not depend on the values.
    """
    generator = torch.Generator().manual_seed(2)
    return {
        key: torch.randn(value.shape, generator=generator) * 0.02
        if value.is_floating_point() and not bool(value.any())
        else value
        for key, value in network.state_dict().items()
    }


def relative_rms(x: torch.Tensor, reference: torch.Tensor) -> float:
    """``||x - reference|| / ||reference||`` in fp32 over the first ``len(reference)`` samples."""
    x = x[: len(reference)].float()
    return float(torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference))


def generation(
    bench: Bench, sizes: dict[str, object], batch: int, steps: int, repeats: int, compile: bool
) -> dict[str, object]:
    """Time every generation variant; return its table, the guided NFE per latent and the agreement."""
    torch.manual_seed(0)
    weights = random_weights(FlowUNet(**sizes))
    largest = batch * max(spec[5] for spec in generation_variants(bench.device, compile))
    noise = torch.randn(largest, 2, 48, 48, generator=torch.Generator().manual_seed(0))
    sequence = torch.arange(largest) % SEQUENCE_NULL
    outputs: dict[str, torch.Tensor] = {}
    nfe: dict[str, int] = {}

    def build(name: str, dtype: torch.dtype | None, last: bool, sdpa: bool, compiled: bool, factor: int) -> Variant:
        def make() -> tuple[Callable[[], object], Callable[[], object]]:
            layout = torch.channels_last if last else torch.contiguous_format
            net = FlowUNet(**sizes, use_flash_attention=sdpa)
            net.load_state_dict(weights)
            net = net.to(device=bench.device, memory_format=layout).eval()
            model: nn.Module = torch.compile(net) if compiled else net
            if dtype is not None or compiled:
                model = Autocast(model, net.sequence_null, dtype)
            sampler = FlowSampler("heun", steps, GUIDANCE_SCALE, guide="sequence", amp="bundle amp" in name)
            x_0 = noise[: batch * factor].to(bench.device).contiguous(memory_format=layout)
            tokens = sequence[: batch * factor].to(bench.device)

            def run() -> None:
                x = sampler(x_0, model, tokens)
                if not bool(torch.isfinite(x).all()):
                    raise RuntimeError(f"{name}: non-finite latents")
                outputs[name], nfe[name] = x, sampler.nfe

            return run, run

        return make

    specs = generation_variants(bench.device, compile)
    runs, first_call = warm_variants([(spec[0], spec[4], build(*spec)) for spec in specs], bench, "generation")
    work = {spec[0]: batch * spec[5] for spec in specs}
    rates = time_in_turn(runs, repeats, bench, work)
    table = rate_table(
        f"generation, Heun {steps} steps, w={GUIDANCE_SCALE:g}", rates, "latents/s", first_call=first_call, digits=3
    )
    reference = outputs["fp32 eager"][:batch].float()
    print("relative RMS difference of the latents from fp32 eager's, same noise:")
    for name in runs:
        table[name]["batch"] = work[name]
        table[name]["relative_rms_to_baseline"] = relative_rms(outputs[name], reference)
        print(f"  {name:40s} {table[name]['relative_rms_to_baseline']:.2e}")
    return {"variants": table, "guided_nfe_per_latent": nfe["fp32 eager"]}


def decoding(bench: Bench, sizes: dict[str, object], batch: int, repeats: int, compile: bool) -> dict[str, object]:
    """Time every decoding variant; return its table and the agreement."""
    torch.manual_seed(0)
    weights = random_weights(ComplexCVAE(**sizes))
    chunks = DECODE_CHUNKS[bench.device.type]
    specs = decoding_variants(bench.device, compile)
    largest = batch * max(spec[5] for spec in specs)
    latents = torch.randn(largest, int(sizes.get("latent_channels", 2)), 48, 48, generator=torch.Generator().manual_seed(1))
    sequence = torch.arange(largest) % SEQUENCE_NULL
    outputs: dict[str, torch.Tensor] = {}

    def build(name: str, dtype: torch.dtype | None, last: bool, sdpa: bool, compiled: bool, factor: int) -> Variant:
        def make() -> tuple[Callable[[], object], Callable[[], object]]:
            layout = torch.channels_last if last else torch.contiguous_format
            net = ComplexCVAE(**sizes)
            net.load_state_dict(weights)
            net = net.to(device=bench.device, memory_format=layout).eval()
            decode = torch.compile(net.decode) if compiled else net.decode
            z = latents[: batch * factor].to(bench.device).contiguous(memory_format=layout)
            tokens = sequence[: batch * factor].to(bench.device)

            def run() -> None:
                with torch.inference_mode(), torch.autocast(bench.device.type, dtype=dtype, enabled=dtype is not None):
                    for _ in range(chunks):
                        x = decode(z, tokens)
                if not bool(torch.isfinite(x).all()):
                    raise RuntimeError(f"{name}: non-finite patches")
                outputs[name] = x

            return run, run

        return make

    runs, first_call = warm_variants([(spec[0], spec[4], build(*spec)) for spec in specs], bench, "decoding")
    work = {spec[0]: batch * spec[5] * chunks for spec in specs}
    rates = time_in_turn(runs, repeats, bench, work)
    table = rate_table("decoding", rates, "latents/s", first_call=first_call, digits=1)
    reference = outputs["fp32 eager"][:batch].float()
    print("relative RMS difference of the patches from fp32 eager's, same latents:")
    for name in runs:
        table[name]["batch"] = batch * next(spec[5] for spec in specs if spec[0] == name)
        table[name]["relative_rms_to_baseline"] = relative_rms(outputs[name], reference)
        print(f"  {name:40s} {table[name]['relative_rms_to_baseline']:.2e}")
    return {"variants": table, "chunks_per_run": chunks}


def projection(
    generated: dict[str, object], decoded: dict[str, object], steps: int, bundle_steps: int, cuda: bool
) -> dict[str, object]:
    """Print and return the projected time of the paper-size set, baseline and fast path."""
    generate: dict[str, dict[str, float]] = generated["variants"]  # type: ignore[assignment]
    decode: dict[str, dict[str, float]] = decoded["variants"]  # type: ignore[assignment]
    scale = bundle_steps / steps  # the cost of a Heun step does not depend on how many there are

    def seconds(table: dict[str, dict[str, float]], name: str, factor: float) -> float:
        return PAPER_LATENTS / table[name]["rate"] * factor + table[name].get("first_call_s", 0.0)

    # The fast path is the quickest over the whole set: compilation counts against a compiled variant.
    fast_generate = min(generate, key=lambda name: seconds(generate, name, scale))
    fast_decode = min(decode, key=lambda name: seconds(decode, name, 1.0))
    rows = {
        "baseline": ("fp32 eager", "fp32 eager"),
        "fast path": (fast_generate, fast_decode),
    }
    out: dict[str, object] = {
        "latents": PAPER_LATENTS,
        "solver": "heun",
        "steps": bundle_steps,
        "guidance_scale": GUIDANCE_SCALE,
        "guided_nfe_per_latent": 4 * bundle_steps,
        "measured_steps": steps,
        "target_s": GPU_TARGET_S if cuda else None,
    }
    print(
        f"\nprojection: {PAPER_LATENTS} latents, Heun {bundle_steps} steps (the bundle's), w={GUIDANCE_SCALE:g}, "
        f"{4 * bundle_steps} network evaluations per latent; generation measured at {steps} steps, scaled by "
        f"{scale:g}; a compiled variant's first call added once"
    )
    for row, (g, d) in rows.items():
        gen, dec = seconds(generate, g, scale), seconds(decode, d, 1.0)
        out[row] = {"generation": g, "decoding": d, "generation_s": gen, "decoding_s": dec, "total_s": gen + dec}
        print(f"  {row:9s}: generation {gen / 60:7.2f} min ({g}) + decoding {dec / 60:6.2f} min ({d}) "
              f"= {(gen + dec) / 60:7.2f} min")
    baseline_s = out["baseline"]["total_s"]  # type: ignore[index]
    fast_s = out["fast path"]["total_s"]  # type: ignore[index]
    out["ratio"] = baseline_s / fast_s
    print(f"  fast path / baseline: {baseline_s / fast_s:.2f}x faster")
    if cuda:
        met = fast_s < GPU_TARGET_S
        out["target_met"] = met
        print(f"  GPU target: under {GPU_TARGET_S / 60:.0f} min: {'met' if met else 'NOT met'} ({fast_s:.0f} s)")
    return out


def main(
    device: str = "cpu",
    profile: str | None = None,
    batch: int | None = None,
    steps: int | None = None,
    repeats: int | None = None,
    compile: bool | None = None,
    threads: int | str = "auto",
    quick: bool = False,
    json: str | None = None,
) -> None:
    """Print generation and decoding latents/s per variant with ratios, and the paper-size projection.

    Args:
        device: ``cpu`` or ``cuda``.
        profile: ``full`` (the bundles' defaults) or ``cpu`` (their ``configs/cpu.json``); by
            default ``full`` on CUDA and ``cpu`` on a CPU.
        batch: latents per sampling and decoding batch (default: the flow bundle's ``batch_size``
            of the profile, 256 or 16); guidance runs the network on twice as many.
        steps: Heun steps measured (default 4 on CUDA, 2 on a CPU); the projection scales to the
            bundle's 32.
        repeats: timed repeats per variant (default 3; the median is reported).
        compile: also time ``torch.compile`` (default: on CUDA only).
        threads: CPU threads, see :func:`monai_cmri.threads.resolve_threads`.
        quick: batch 2, one step, 2 repeats, no compile.
        json: also write the figures to this JSON file (atomically, after each part).

    Raises:
        RuntimeError: for ``device="cuda"`` without a CUDA device, or non-finite latents or patches.
        ValueError: for an unknown profile.
    """
    began = time.perf_counter()
    bench = setup(device, threads)
    profile = pick_profile(profile, bench, ("cpu", "full"))
    flow = bundle_settings("flow_stage1", "inference", profile)
    cvae = bundle_settings("cvae", "train", profile)
    bundle_steps = int(bundle_settings("flow_stage1", "inference", "full")["steps"])
    default_steps, default_repeats = MEASURED[bench.device.type]
    batch = batch or int(flow["batch_size"])
    steps, repeats = steps or default_steps, repeats or default_repeats
    compile = bench.device.type == "cuda" if compile is None else compile
    if quick:
        batch, steps, repeats, compile = 2, 1, 2, False
    flow_sizes = {key: flow[key] for key in FLOW_KEYS}
    cvae_sizes = {key: cvae[key] for key in CVAE_KEYS}
    flow_parameters = sum(p.numel() for p in FlowUNet(**flow_sizes).parameters())
    cvae_parameters = sum(p.numel() for p in ComplexCVAE(**cvae_sizes).parameters())
    print(
        f"torch {torch.__version__} on {bench.where}; profile {profile}: FlowUNet {flow_parameters / 1e6:.2f} M "
        f"parameters {flow_sizes}, ComplexCVAE {cvae_parameters / 1e6:.2f} M {cvae_sizes}; batch {batch}, Heun "
        f"{steps} steps, w={GUIDANCE_SCALE:g}, {repeats} repeats; load {load()} (1/5/15 min)",
        flush=True,
    )
    if not compile:
        print("torch.compile: skipped (--quick, --compile=False or a CPU without --compile)")
    report = header(
        bench,
        profile=profile,
        batch=batch,
        steps=steps,
        repeats=repeats,
        compile=compile,
        flow_parameters=flow_parameters,
        cvae_parameters=cvae_parameters,
    )
    report["generation"] = generation(bench, flow_sizes, batch, steps, repeats, compile)
    save(report, json)
    report["decoding"] = decoding(bench, cvae_sizes, batch, repeats, compile)
    report["projection"] = projection(
        report["generation"], report["decoding"], steps, bundle_steps, bench.device.type == "cuda"
    )
    finish(report, began, json)


if __name__ == "__main__":
    fire.Fire(main)
