"""Sampling latents from a trained flow model into a latent file (paper 2.3, 2.4; SPEC 2; STYLE 10).

:class:`FlowSampler` is a MONAI ``Inferer``: given starting noise and the conditions, it integrates
the guided velocity of a network from ``t = 0`` to ``t = 1`` with one of the solvers of
:mod:`monai_cmri.flow.solvers`. :func:`sample_latents` draws a whole synthetic set, one seed per
sample (so a sample depends on its seed alone, not on the batch it fell into), and writes it in the
latent-file layout of :mod:`monai_cmri.latents`, where
:func:`~monai_cmri.latents.decode_latents` decodes it into patches.

Several processes (``torchrun``, the flow bundles' ``multi_gpu_inference.json``) share one set:
the batches of the set (``batch_size`` samples each, from the first) are dealt out in contiguous
blocks, :func:`shard_range`; each process writes its block to a shard file, and after a barrier
process 0 concatenates the shards in rank order into the set's file. Sample ``i`` keeps its seed
``seed + i`` and the batch it is solved in, so the merged file holds the same samples, in the same
order, as one process writes, whatever the number of processes (on one kind of device, with one
thread count: floating-point sums are not bitwise equal across those).

Every synthetic latent file records what made it (STYLE 10): per sample the columns ``seed``,
``guidance_scale``, ``t_lo``/``t_hi`` (the guidance interval; 0 and 1 when guidance applies at every
time), ``solver``, ``steps``, ``nfe`` (network evaluations per sample, both halves of a guided call
counted) and ``checkpoint_sha256``; the file attribute ``encoder`` names the generator, its
checkpoint and the EMA weights. The layout's own columns are ``file`` ``"synthetic"``, ``slice``,
``row``, ``col`` ``-1``, ``overlap`` 0, and ``sequence`` and ``label`` the conditions (``label``
``"unlabeled"`` for a stage-1 sample, which has no class).

Conditions and guidance. Stage 1 guides the sequence: the null branch has the null sequence token.
Stage 2 guides the class only: the null branch keeps the sequence and has the null class token.
With ``guidance_scale == 1`` the guided velocity equals the conditional one, so the null branch is
not evaluated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.distributed as dist
from monai.inferers import Inferer
from torch import nn
from tqdm.auto import tqdm

from monai_cmri.atomic import file_sha256
from monai_cmri.data.dataset import LABELS
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.flow.guidance import ClassifierFreeGuidance
from monai_cmri.flow.solvers import euler, heun, midpoint, time_grid

__all__ = [
    "SOLVERS",
    "GUIDED",
    "FlowSampler",
    "sample_latents",
    "counts_per_sequence",
    "matched_counts",
    "read_counts",
    "shard_range",
    "shard_path",
]

#: The ODE solvers by name; Heun is the paper's.
SOLVERS = {"euler": euler, "midpoint": midpoint, "heun": heun}
#: What classifier-free guidance may act on: the sequence (stage 1) or the class (stage 2).
GUIDED: tuple[str, ...] = ("sequence", "class")

# Conditions of one synthetic sample: (sequence index, label index, count).
Cell = tuple[int, int, int]


class FlowSampler(Inferer):
    """Integrate a guided flow from noise at ``t = 0`` to latents at ``t = 1`` (MONAI ``Inferer``).

    Call as ``sampler(noise, network, sequence, label)``; the network must take
    ``(x, t, sequence, label)`` (:class:`~monai_cmri.networks.nets.flow_unet.FlowUNet`; ``label`` is
    passed only to a network with a class embedding). The solver state and ``t`` are fp32; with
    ``amp`` the network alone runs under autocast. After a call, :attr:`nfe` holds the network
    evaluations spent per sample.

    Args:
        solver: ``"heun"`` (the paper's), ``"midpoint"`` or ``"euler"``.
        steps: intervals of the uniform time grid.
        guidance_scale: ``w`` of ``v = v_null + w (v_cond - v_null)``.
        guidance_interval: ``(t_lo, t_hi)``: guide only there (the conditional velocity elsewhere);
            ``None`` guides at every time.
        guide: ``"sequence"`` (stage 1) or ``"class"`` (stage 2: sequence fixed, class nulled).
        amp: run the network under bf16 autocast (on CUDA and CPU alike; bf16 needs no loss scaling
            and keeps fp32's range, so a long ODE integration cannot overflow).

    Raises:
        ValueError: for an unknown solver or ``guide``, fewer than one step, or a bad interval.
    """

    def __init__(
        self,
        solver: str = "heun",
        steps: int = 32,
        guidance_scale: float = 1.0,
        guidance_interval: Sequence[float] | None = None,
        guide: str = "sequence",
        amp: bool = False,
    ) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"FlowSampler: unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
        if guide not in GUIDED:
            raise ValueError(f"FlowSampler: guide must be one of {GUIDED}, got {guide!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"FlowSampler: steps must be a positive integer, got {steps!r}")
        interval = None if guidance_interval is None else (float(guidance_interval[0]), float(guidance_interval[1]))
        if interval is not None and not 0.0 <= interval[0] <= interval[1] <= 1.0:
            raise ValueError(f"FlowSampler: expected a guidance interval 0 <= t_lo <= t_hi <= 1, got {interval}")
        self.solver = solver
        self.steps = steps
        self.guidance_scale = float(guidance_scale)
        self.guidance_interval = interval
        self.guide = guide
        self.amp = bool(amp)
        self.nfe = 0

    def settings(self) -> dict[str, Any]:
        """What a sampling run records: solver, steps, guidance scale, interval, what is guided."""
        t_lo, t_hi = self.guidance_interval or (0.0, 1.0)
        return {"solver": self.solver, "steps": self.steps, "guidance_scale": self.guidance_scale,
                "t_lo": t_lo, "t_hi": t_hi, "guide": self.guide}

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: nn.Module,
        sequence: torch.Tensor,
        label: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` fp32 from the noise ``inputs`` ``(B, C, h, w)``.

        Args:
            inputs: noise at ``t = 0``.
            network: the velocity network (EMA weights), run in eval mode and restored after.
            sequence: sequence tokens ``(B,)`` long.
            label: class tokens ``(B,)`` long; required for ``guide="class"``.

        Raises:
            ValueError: if ``guide="class"`` and the network has no class embedding or no label is given.
        """
        core = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
        class_conditioned = getattr(core, "class_embedding", None) is not None
        if self.guide == "class" and (not class_conditioned or label is None):
            raise ValueError("FlowSampler(guide='class') needs a stage-2 network and class tokens")
        x = inputs.float()
        device_type = x.device.type

        def model(z: torch.Tensor, t: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.amp):
                velocity = network(z, t, cond["sequence"], cond.get("label"))
            return velocity.float()

        cond = {"sequence": sequence.long()}
        if class_conditioned:
            if label is None:
                raise ValueError("FlowSampler: this network is class-conditioned; pass the class tokens")
            cond["label"] = label.long()
        null = dict(cond)
        if self.guide == "sequence":
            null["sequence"] = torch.full_like(cond["sequence"], core.sequence_null)
        else:
            null["label"] = torch.full_like(cond["label"], core.class_null)
        if self.guidance_scale == 1.0:
            guided: _Conditional | ClassifierFreeGuidance = _Conditional(model, cond)
        else:
            guided = ClassifierFreeGuidance(model, cond, null, self.guidance_scale, self.guidance_interval)
        was_training = network.training
        network.eval()
        try:
            with torch.inference_mode():
                times = time_grid(self.steps, device=x.device)
                x, _ = SOLVERS[self.solver](guided, x, times)
        finally:
            network.train(was_training)
        self.nfe = guided.nfe
        return x


def counts_per_sequence(count: int, sequences: Iterable[str] = SEQUENCES, label: str = "unlabeled") -> list[Cell]:
    """``count`` samples of every sequence with one label: the cells of a stage-1 synthetic set.

    Raises:
        ValueError: for a negative count or an unknown sequence or label.
    """
    if count < 0:
        raise ValueError(f"counts_per_sequence: count must be >= 0, got {count}")
    return [(_index(SEQUENCES, name, "sequence"), _index(LABELS, label, "label"), int(count)) for name in sequences]


def matched_counts(path: str | os.PathLike[str], by_class: bool = True) -> list[Cell]:
    """Cells of a real split's latent (or patch) file: a synthetic set matched to it (paper 2.4).

    Args:
        path: the real file (only its ``sequence`` and ``label`` columns are read).
        by_class: count per sequence and class (stage 2); False: per sequence, label "unlabeled" (stage 1).

    Returns:
        ``[(sequence index, label index, count), ...]`` in SEQUENCES then LABELS order, non-empty cells only.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it lacks the columns or holds unknown names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file to match the synthetic counts to")
    with h5py.File(path, "r") as file:
        for column in ("sequence", "label"):
            if column not in file:
                raise ValueError(f"{path}: no {column!r} column to count")
        sequences = [_text(value) for value in file["sequence"][()]]
        labels = [_text(value) for value in file["label"][()]] if by_class else ["unlabeled"] * len(sequences)
    cells: dict[tuple[int, int], int] = {}
    for sequence, label in zip(sequences, labels):
        key = (_index(SEQUENCES, sequence, f"{path}: sequence"), _index(LABELS, label, f"{path}: label"))
        cells[key] = cells.get(key, 0) + 1
    return [(s, c, n) for (s, c), n in sorted(cells.items())]


def read_counts(cells: Sequence[Cell]) -> dict[str, int]:
    """``{"SEQUENCE/label": count}`` of some cells, for messages and records."""
    return {f"{SEQUENCES[s]}/{LABELS[c]}": int(n) for s, c, n in cells}


def sample_latents(
    network: nn.Module,
    cells: Sequence[Cell],
    path: str | os.PathLike[str],
    sampler: FlowSampler,
    *,
    shape: Sequence[int] = (2, 48, 48),
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    generator_name: str = "flow",
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> Path:
    """Draw a synthetic set and write it as a latent file (module docstring layout).

    Sample ``i`` (in cell order) starts from noise drawn by a CPU generator seeded with ``seed + i``,
    so the set is reproducible and does not depend on ``batch_size`` or the device's generator.

    With ``world_size > 1`` this is one of several processes that share the set (module
    docstring): every process calls it with the same arguments, draws the batches of
    :func:`shard_range`, writes them to :func:`shard_path`, and waits at a barrier of the default
    process group; process 0 then writes ``path`` from the shards in rank order, and after a second
    barrier each process removes its own shard. Every process returns once ``path`` is complete.

    Args:
        network: the velocity network with EMA weights.
        cells: ``[(sequence index, label index, count), ...]`` (:func:`counts_per_sequence`,
            :func:`matched_counts`).
        path: the latent file to write (temporary name, renamed when complete).
        sampler: solver, steps and guidance.
        shape: ``(C, h, w)`` of a latent.
        seed: seed of the first sample.
        batch_size: samples per solver run.
        device: where to sample; the network's device if None.
        checkpoint: the weights file, recorded with its SHA-256.
        parameters: the ``parameters`` attribute (the real latent file's, so decoding knows the patches).
        generator_name: what made the samples, e.g. ``"flow_stage1"``; recorded in ``encoder``.
        progress: show a tqdm progress bar (process 0's alone when several share the set).
        rank: this process's rank in ``[0, world_size)``; by default that of the default process
            group of ``torch.distributed`` when one is initialized, else 0.
        world_size: processes sharing the set; by default the default process group's size when
            one is initialized, else 1 (one process writes ``path`` itself).

    Returns:
        ``path``.

    Raises:
        ValueError: for ``batch_size < 1``, a cell with an unknown index, or a rank outside
            ``[0, world_size)``.
    """
    path = Path(path)
    if batch_size < 1:
        raise ValueError(f"{path}: batch_size must be >= 1, got {batch_size}")
    rank, world_size = _process(rank, world_size, path)
    for s, c, n in cells:
        if not (0 <= s < len(SEQUENCES) and 0 <= c < len(LABELS) and n >= 0):
            raise ValueError(f"{path}: invalid cell (sequence {s}, label {c}, count {n})")
    if not any(n > 0 for _, _, n in cells):
        raise ValueError(f"{path}: nothing to sample (every count is 0)")
    device = torch.device(device) if device is not None else next(network.parameters()).device
    sha = file_sha256(checkpoint) if checkpoint is not None else ""
    sequence_all = np.concatenate([np.full(n, s, np.int64) for s, _, n in cells]) if cells else np.zeros(0, np.int64)
    label_all = np.concatenate([np.full(n, c, np.int64) for _, c, n in cells]) if cells else np.zeros(0, np.int64)
    total = int(sequence_all.size)
    settings = sampler.settings()
    encoder = {
        "generator": generator_name,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": sha or None,
        "weights": "EMA",
        "network": type(network).__name__,
        "seed": int(seed),
        "counts": read_counts(cells),
        **settings,
    }
    shape = tuple(int(size) for size in shape)
    first, last = shard_range(total, batch_size, rank, world_size)
    target = path if world_size == 1 else shard_path(path, rank, world_size)
    if last > first:
        _draw(network, sampler, target, shape, parameters, encoder, sequence_all, label_all, range(first, last),
              seed=seed, batch_size=batch_size, device=device, sha=sha, progress=progress and rank == 0)
    if world_size == 1:
        return path
    dist.barrier()
    if rank == 0:
        spans = [shard_range(total, batch_size, r, world_size) for r in range(world_size)]
        shards = [shard_path(path, r, world_size) for r, span in enumerate(spans) if span[1] > span[0]]
        _concatenate(shards, path, shape, parameters, encoder, batch_size)
        logging.getLogger(__name__).info(
            "%s: %d latents from %d processes, samples by rank %s", path, total, world_size,
            ", ".join(f"[{first}, {last})" for first, last in spans),
        )
    dist.barrier()
    if last > first:
        target.unlink()
    return path


def shard_range(total: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """The samples ``[first, last)`` of process ``rank`` of ``world_size`` sharing a set of ``total``.

    The set's batches (``batch_size`` samples each, starting at sample 0; the last may be shorter)
    are dealt out in contiguous blocks, the first ``n_batches % world_size`` processes taking one
    more; a process may get none (``first == last``). The blocks, in rank order, cover the set
    once, and every batch is the one a single process solves.

    Raises:
        ValueError: for a negative total, ``batch_size < 1`` or a rank outside ``[0, world_size)``.
    """
    if total < 0 or batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"shard_range: expected total >= 0, batch_size >= 1 and 0 <= rank < world_size, got "
            f"total {total}, batch_size {batch_size}, rank {rank}, world_size {world_size}"
        )
    batches = -(-total // batch_size)
    share, extra = divmod(batches, world_size)
    start = rank * share + min(rank, extra)
    stop = start + share + (rank < extra)
    return min(start * batch_size, total), min(stop * batch_size, total)


def shard_path(path: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """Where process ``rank`` of ``world_size`` writes its share of ``path``: ``<stem>.rank-<r>-of-<n><suffix>``.

    The name holds the number of processes, so the shards of a run split another way never mix
    with this run's; each process removes its own shard once ``path`` is written.
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.rank-{rank}-of-{world_size}{path.suffix}")


def _process(rank: int | None, world_size: int | None, path: Path) -> tuple[int, int]:
    """``(rank, world_size)``, each from the default process group when not given and one is initialized."""
    grouped = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if grouped else 1
    if rank is None:
        rank = dist.get_rank() if grouped else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"{path}: rank must be in [0, world_size) = [0, {world_size}), got {rank}")
    if world_size > 1 and not grouped:
        raise ValueError(f"{path}: {world_size} processes share the set, but no process group is initialized")
    return int(rank), int(world_size)


def _draw(
    network: nn.Module,
    sampler: FlowSampler,
    path: Path,
    shape: tuple[int, ...],
    parameters: Mapping[str, Any] | None,
    encoder: Mapping[str, Any],
    sequence_all: np.ndarray,
    label_all: np.ndarray,
    samples: range,
    *,
    seed: int,
    batch_size: int,
    device: torch.device,
    sha: str,
    progress: bool,
) -> None:
    """Solve ``samples`` (whole batches of the set, from a multiple of ``batch_size``) into ``path``."""
    from monai_cmri.latents import LatentWriter

    settings = sampler.settings()
    with LatentWriter(path, shape, parameters=parameters, encoder=encoder) as writer, tqdm(
        total=len(samples), unit="latent", desc=f"sample {path.name}", disable=not progress
    ) as bar:
        for start in range(samples.start, samples.stop, batch_size):
            stop = min(start + batch_size, samples.stop)
            noise = torch.stack(
                [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(start, stop)]
            ).to(device)
            sequence = torch.from_numpy(sequence_all[start:stop]).to(device)
            label = torch.from_numpy(label_all[start:stop]).to(device)
            latents = sampler(noise, network, sequence, label)
            n = stop - start
            writer.append(latents.cpu().numpy(), {
                "file": ["synthetic"] * n,
                "slice": np.full(n, -1), "row": np.full(n, -1), "col": np.full(n, -1),
                "sequence": [SEQUENCES[s] for s in sequence_all[start:stop]],
                "label": [LABELS[c] for c in label_all[start:stop]],
                "overlap": np.zeros(n, np.float32),
                "seed": np.arange(seed + start, seed + stop),
                "guidance_scale": np.full(n, settings["guidance_scale"], np.float32),
                "t_lo": np.full(n, settings["t_lo"], np.float32),
                "t_hi": np.full(n, settings["t_hi"], np.float32),
                "solver": [settings["solver"]] * n,
                "steps": np.full(n, settings["steps"]),
                "nfe": np.full(n, sampler.nfe),
                "checkpoint_sha256": [sha] * n,
            })
            bar.update(n)


def _concatenate(
    shards: Sequence[Path],
    path: Path,
    shape: tuple[int, ...],
    parameters: Mapping[str, Any] | None,
    encoder: Mapping[str, Any],
    chunk: int,
) -> None:
    """Write ``path`` from the shard files in order, ``chunk`` latents at a time (temporary name, then rename)."""
    from monai_cmri.latents import LatentWriter

    with LatentWriter(path, shape, parameters=parameters, encoder=encoder) as writer:
        for shard in shards:
            with h5py.File(shard, "r") as file:
                columns = [name for name in file if name != "latents"]
                count = file["latents"].shape[0]
                for start in range(0, count, chunk):
                    stop = min(start + chunk, count)
                    writer.append(file["latents"][start:stop], {name: file[name][start:stop] for name in columns})


class _Conditional:
    """The conditional velocity alone, counting one network evaluation per call (guidance with w = 1)."""

    def __init__(self, model: Any, cond: Mapping[str, torch.Tensor]) -> None:
        self.model, self.cond, self.nfe = model, cond, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.model(x, t, self.cond)


def _index(names: Sequence[str], name: str, what: str) -> int:
    try:
        return list(names).index(name)
    except ValueError:
        raise ValueError(f"{what} {name!r} unknown; expected one of {', '.join(names)}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
