"""What the benchmark scripts share: device and threads, variants timed in turn, medians and ratios, the figures.

The scripts of ``scripts/bench`` are run as ``python scripts/bench/NAME.py`` from the repository
root. Python then puts ``scripts/bench`` first on ``sys.path``, so ``from common import ...`` finds
this module without installing anything; the package itself comes from the virtual environment or
``PYTHONPATH=.``.

How a script measures (the conventions of ``docs/performance.md``):

- :func:`setup` checks the device (a ``--device=cuda`` without CUDA is an error, not a CPU run),
  applies :func:`monai_cmri.threads.apply_thread_policy` (one thread unless ``OMP_NUM_THREADS``
  says otherwise) and names the machine;
- :func:`warm_variants` builds every variant of one workload and runs each twice before anything is
  timed (the first call, compilation included for a compiled variant, is kept apart);
  :func:`time_in_turn` then times the variants one after the other within every repeat, so a
  shared machine slows all of them alike; :func:`rate_table` prints and returns the median rate of
  each, its range and its ratio to the baseline of the same run;
- :func:`header` and :func:`finish` make the ``--json`` figures: torch and CUDA versions, device,
  threads, date, load average at the start and the end, the total time. :func:`save` writes them
  atomically, also part way, so a run stopped by a time limit still leaves what it measured.
"""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from monai_cmri.atomic import write_json
from monai_cmri.threads import apply_thread_policy

__all__ = [
    "BUNDLES",
    "Bench",
    "bundle_settings",
    "finish",
    "header",
    "inductor_cache",
    "load",
    "pick_profile",
    "rate_table",
    "save",
    "setup",
    "time_in_turn",
    "warm_variants",
]

#: The bundles of the repository, whose configs give the networks' sizes.
BUNDLES = Path(__file__).resolve().parents[2] / "bundles"

#: A variant to warm up and time: ``(name, compiled, build)``; ``build()`` returns ``(first, run)``,
#: ``first`` the call timed alone (twice: compile, then warm-up), ``run`` the call timed per repeat.
Variant = tuple[str, bool, Callable[[], tuple[Callable[[], object], Callable[[], object]]]]


@dataclass(frozen=True)
class Bench:
    """Where a benchmark runs.

    Attributes:
        device: the torch device.
        threads: CPU threads set by the thread policy.
        where: the GPU's name, or ``"N thread(s), M CPUs"``.
    """

    device: torch.device
    threads: int
    where: str

    def sync(self) -> None:
        """Wait for queued device work, so the clock reads what the device did."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def setup(device: str = "cpu", threads: int | str = "auto") -> Bench:
    """Check the device, apply the thread policy and name the machine.

    Raises:
        RuntimeError: for a CUDA device when torch sees none.
    """
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device={device}: torch {torch.__version__} sees no CUDA device")
    count = apply_thread_policy(threads, export=False)
    if target.type == "cuda":
        where = torch.cuda.get_device_name(target)
    else:
        where = f"{count} thread(s), {os.cpu_count()} CPUs"
    return Bench(target, count, where)


def pick_profile(profile: str | None, bench: Bench, known: Iterable[str], gpu: str = "full") -> str:
    """``profile``, or by default ``gpu`` on CUDA and ``"cpu"`` on a CPU.

    Raises:
        ValueError: for a profile not in ``known``.
    """
    name = profile or (gpu if bench.device.type == "cuda" else "cpu")
    if name not in set(known):
        raise ValueError(f"--profile: expected one of {sorted(known)}, got {name!r}")
    return name


def bundle_settings(bundle: str, config: str, profile: str) -> dict[str, Any]:
    """The variables of ``bundles/<bundle>/configs/<config>.json``, with ``cpu.json`` on top for ``profile="cpu"``.

    Raises:
        FileNotFoundError: if the config is missing.
    """
    folder = BUNDLES / bundle / "configs"
    settings: dict[str, Any] = jsonlib.loads((folder / f"{config}.json").read_text())
    if profile == "cpu":
        settings.update(jsonlib.loads((folder / "cpu.json").read_text()))
    return settings


def load() -> str:
    """The 1-, 5- and 15-minute load averages, ``"a/b/c"``."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def header(bench: Bench, **fields: Any) -> dict[str, Any]:
    """The start of a figures file: versions, device, threads, date and load, then ``fields``."""
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": bench.where,
        "device_type": bench.device.type,
        "threads": bench.threads,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "load_start": os.getloadavg(),
        **fields,
    }


def save(report: Mapping[str, Any], json: str | None) -> None:
    """Write the figures to ``json`` (atomically) if a path is given."""
    if json:
        write_json(json, report)


def finish(report: dict[str, Any], began: float, json: str | None) -> None:
    """Add the total time and the final load, print them and write the figures."""
    report["total_s"], report["load_end"] = time.perf_counter() - began, os.getloadavg()
    print(f"\ntotal {report['total_s']:.0f} s, load {load()} at the end")
    if json:
        save(report, json)
        print(f"figures written to {json}")


def warm_variants(
    variants: Iterable[Variant], bench: Bench, label: str = ""
) -> tuple[dict[str, Callable[[], object]], dict[str, float]]:
    """Build every variant and call its ``first`` twice; return the timed calls and the first calls' seconds.

    A compiled variant that fails to build or compile is reported and left out (the compiler
    toolchain is optional); any other failure is raised.
    """
    from torch._dynamo.utils import counters

    runs: dict[str, Callable[[], object]] = {}
    first_call: dict[str, float] = {}
    prefix = f"{label}, " if label else ""
    for name, compiled, build in variants:
        try:
            first, run = build()
            start = time.perf_counter()
            first()
            bench.sync()
            first_call[name] = time.perf_counter() - start
            first()
            bench.sync()
        except Exception as error:
            if not compiled:
                raise
            print(f"{prefix}{name}: torch.compile failed, skipped: {type(error).__name__}: {error}", flush=True)
            continue
        runs[name] = run
        if compiled:
            breaks = sum(counters["graph_break"].values())
            print(
                f"{prefix}{name}: first call, compilation included, {first_call[name]:.1f} s; "
                f"{breaks} graph break(s) so far in this run",
                flush=True,
            )
    return runs, first_call


def time_in_turn(
    runs: Mapping[str, Callable[[], object]], repeats: int, bench: Bench, work: float | Mapping[str, float]
) -> dict[str, list[float]]:
    """Rates ``work / seconds`` of every run, all timed in turn within each of ``repeats`` repeats."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            bench.sync()
            amount = work[name] if isinstance(work, Mapping) else work
            rates[name].append(amount / (time.perf_counter() - start))
    return rates


def rate_table(
    title: str,
    rates: Mapping[str, list[float]],
    unit: str = "samples/s",
    baseline: str = "fp32 eager",
    first_call: Mapping[str, float] | None = None,
    digits: int = 2,
) -> dict[str, dict[str, Any]]:
    """Print the median rate, ratio to ``baseline`` and range of every variant; return them.

    Returns:
        ``{variant: {"rate": median, "ratio": median / baseline median, "repeats": [...]}}``, with
        ``"first_call_s"`` for compiled variants.
    """
    reference = statistics.median(rates[baseline])
    repeats = len(rates[baseline])
    print(f"\n{title}, {unit}, median of {repeats} (ratio: to {baseline} in this run)")
    print(f"{'variant':40s} {unit:>12s} {'ratio':>7s} {'range':>19s}")
    table: dict[str, dict[str, Any]] = {}
    for name, values in rates.items():
        median = statistics.median(values)
        spread = f"{min(values):.{digits}f}-{max(values):.{digits}f}"
        print(f"{name:40s} {median:12.{digits}f} {median / reference:6.2f}x {spread:>19s}", flush=True)
        table[name] = {"rate": median, "ratio": median / reference, "repeats": values}
        if first_call and "compile" in name and name in first_call:
            table[name]["first_call_s"] = first_call[name]
    return table


@contextmanager
def inductor_cache(cold: bool) -> Iterator[str | None]:
    """With ``cold``, compile into a fresh, empty Inductor and Triton cache, removed at the end.

    The variables are read when the first kernel is compiled, not at import, so setting them here
    is enough; the first compiled call then shows the cold compile time.
    """
    if not cold:
        yield None
        return
    cache = tempfile.mkdtemp(prefix="bench-inductor-")
    saved = {key: os.environ.get(key) for key in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    os.environ["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")
    try:
        yield cache
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(cache, ignore_errors=True)
