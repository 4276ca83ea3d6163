"""How many CPU threads torch and BLAS use, and how many worker processes a pool gets.

On a CPU that other jobs share, a multi-threaded torch operation ends at an OpenMP barrier: every
thread waits for the slowest one, and a thread whose core was taken by another job holds up the
whole operation until the scheduler gives it a core again. One thread per process never waits at
a barrier. Parallelism then comes from worker processes of one thread each, which the scheduler
shares out like any other job.

Measured with ``scripts/bench/threads.py`` on the project's 2-core machine, 2026-11-30, while other
jobs shared it (``docs/performance.md`` has the output). Ratio of the median time with 2 threads to
the median with 1 thread; "quiet" starts no competitor, "+1 busy" runs one Python busy loop beside:

=========================  ============  ==============  ============  ==============  ==========
run (1-minute load)        ESPIRiT       ESPIRiT         cvae quiet    cvae +1 busy    total
                           quiet         +1 busy
=========================  ============  ==============  ============  ==============  ==========
``--quick`` (1.5-4.6)      0.64          7.8             0.58          3.6             2.6 min
``--quick`` (1.4-3.2)      2.5           5.2             0.63          2.1             1.8 min
default (2.3-3.2)          0.60          1.7             1.4           2.9             4.7 min
default (3.7-6.9)          6.1           7.0             3.8           2.9             16.5 min
=========================  ============  ==============  ============  ==============  ==========

ESPIRiT is ``combine_volume`` of a simulated 16-coil 640 x 320 volume (2 slices for ``--quick``,
4 by default); cvae is 2 or 3 training steps of :class:`~monai_cmri.networks.ComplexCVAE` at the
CPU profile, batch 16, 96 x 96. Two threads win at most 1.7x (0.58-0.64), and only while nothing
else runs; as soon as one other process wants a core they lose 1.7x to 7.8x, single runs up to 9x
(ESPIRiT 110 s against 12 s). The main job took 58.5 min with torch's default threads under load
3-6 and 12.1 min with ``OMP_NUM_THREADS=1``. ``"auto"`` therefore means one thread unless the user
asks for more. It does not switch to more threads when the load average is low: a job outlasts
any reading of it (the same 2-thread ESPIRiT took 1.25 s and, a minute later, 12.5 s, at a load
of 1.4-2.1). Machines with many idle cores were not measured; there, ask for more threads
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

    On the shared 2-core machine (``scripts/bench/threads.py``), two one-thread processes combining
    a volume each took 0.79-0.83 of the time per volume of one process beside a busy process, and
    1.10-1.29 of it when other jobs already filled both cores (load 2.3-6.9): a pool takes a larger
    share of a contended CPU but cannot add cores that others use. An idle machine was not measured.

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
