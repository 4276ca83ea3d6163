"""How many CPU threads torch and BLAS use, and how many worker processes a pool gets.

On a CPU that other jobs share, a multi-threaded torch operation ends at an OpenMP barrier: every
thread waits for the slowest one, and a thread whose core was taken by another job holds up the
whole operation until the scheduler gives it a core again. One thread per process never waits at
a barrier. Parallelism then comes from worker processes of one thread each, which the scheduler
shares out like any other job.

Measured on the project's 2-core machine with ``scripts/bench/threads.py --quick`` (medians of 2,
2026-11-30, 1-minute load 1.5-1.7 before the competing process; the machine is shared):

========================================================  ===========  =====================
2 threads / 1 thread                                      quiet        beside one busy process
========================================================  ===========  =====================
ESPIRiT ``combine_volume``, 2 slices x 16 coils           0.64         7.8
``ComplexCVAE`` CPU profile, 2 steps of batch 16          0.58         3.6
========================================================  ===========  =====================

Two threads win at most 1.7x on an idle machine and lose several-fold as soon as one other
process wants a core; the main job took 58.5 min with torch's default threads under load 3-6
and 12.1 min with ``OMP_NUM_THREADS=1``. ``"auto"`` therefore means one thread unless the user
asks for more. Machines with many idle cores were not measured; there, ask for more threads
explicitly (``OMP_NUM_THREADS=8`` or ``threads=8``) or use more worker processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["THREAD_VARIABLES", "available_cpus", "resolve_threads", "apply_thread_policy", "pool_workers"]

#: Environment variables that set a thread count explicitly, read in this order.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: The cgroup v2 CPU quota of this process's container, ``"<quota> <period>"`` or ``"max <period>"``.
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota if one is set.

    ``os.cpu_count()`` counts the host's CPUs, which overstates what a container or a pinned job
    gets.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity mask is all there is
    return max(1, cpus)


def resolve_threads(threads: int | str | None = "auto", environ: Mapping[str, str] | None = None) -> int:
    """The thread count that :func:`apply_thread_policy` would set, without setting it.

    Args:
        threads: ``"auto"`` or None: the first of ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` that is
            set (the first number of an OpenMP list such as ``"4,2"``), else 1. ``"all"``: every
            CPU of :func:`available_cpus`. A positive int (or its decimal string): that many.
        environ: the environment to read; ``os.environ`` by default.

    Returns:
        The number of threads, at least 1.

    Raises:
        ValueError: naming the value, for anything else (zero, negative, a bool, an unknown word)
            or for a thread variable that does not hold a positive integer.
    """
    environ = os.environ if environ is None else environ
    if threads is None or threads == "auto":
        for name in THREAD_VARIABLES:
            value = environ.get(name, "").strip()
            if value:
                return _positive(value.split(",")[0].strip(), f"{name}={value!r}", "a positive integer")
        return 1
    if threads == "all":
        return available_cpus()
    return _positive(threads, f"threads={threads!r}", "'auto', 'all' or a positive integer")


def apply_thread_policy(threads: int | str | None = "auto", *, export: bool = True) -> int:
    """Set the CPU threads of torch and of the BLAS libraries loaded in this process.

    Sets ``torch.set_num_threads``, ``torch.set_num_interop_threads`` when torch still allows it
    (only before its first inter-op parallel work) and the OpenBLAS/MKL pools through
    ``threadpoolctl``. With ``export``, also writes the count to ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` so that child processes (worker pools, ``python -m monai.bundle``) start
    with the same count and resolve ``"auto"`` to it.

    Args:
        threads: see :func:`resolve_threads`; ``"auto"`` is one thread unless the environment
            names a count.
        export: write the count to the environment for child processes.

    Returns:
        The number of threads set.

    Raises:
        ValueError: for a value that :func:`resolve_threads` rejects.

    Example:
        >>> from monai_cmri.threads import apply_thread_policy
        >>> apply_thread_policy(2, export=False)
        2
    """
    import torch
    from threadpoolctl import threadpool_limits

    count = resolve_threads(threads)
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(count)
    except RuntimeError:
        pass  # torch refuses once inter-op work has run; intra-op threads are what matter here
    threadpool_limits(limits=count, user_api="blas")
    if export:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(count)
    return count


def pool_workers(workers: int | str | None = "auto", jobs: int | None = None) -> int:
    """Processes for a pool whose workers run one thread each.

    Args:
        workers: ``"auto"`` or None: one per CPU of :func:`available_cpus`; a positive int (or its
            decimal string): that many. Each worker holds its own data (a volume's k-space is
            about 400 MB), so lower it when memory is short.
        jobs: the number of tasks, if known; never more workers than tasks.

    Returns:
        The number of worker processes, at least 1.

    Raises:
        ValueError: naming the value, for anything else, or for a negative ``jobs``.
    """
    if workers is None or workers == "auto":
        count = available_cpus()
    else:
        count = _positive(workers, f"workers={workers!r}", "'auto' or a positive integer")
    if jobs is not None:
        if jobs < 0:
            raise ValueError(f"jobs must be >= 0, got {jobs!r}")
        count = min(count, max(jobs, 1))
    return count


def _positive(value: object, what: str, expected: str) -> int:
    """``value`` as an int >= 1, from an int (not a bool) or a decimal string.

    Raises:
        ValueError: ``"<what>: expected <expected>"`` for anything else.
    """
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what}: expected {expected}")
    return value
