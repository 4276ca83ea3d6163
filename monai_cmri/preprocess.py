"""From fastMRI k-space files to patch datasets (SPEC 1.3, paper 2.1.2-2.1.4).

One volume at a time: read k-space slice by slice, remove the readout oversampling, combine the
coils with ESPIRiT, normalise each slice's magnitude to [0, 1] (phase kept), compute the brain
mask, choose patches by the rules of :mod:`monai_cmri.data.patches`, cut them as two channels and
write ``<out>/volumes/<name>.h5``. A volume's file appears only when complete (temporary name,
then rename), so a rerun skips finished volumes and a killed run resumes where it stopped.
:func:`merge` then draws the volume-level splits and writes ``train.h5``, ``val.h5``,
``test.h5`` and ``manifest.json``.

Layout of ``<out>``::

    volumes/<name>.h5     patches of one volume (monai_cmri.data.dataset layout)
    failed.json           volumes that could not be read, with the reason (this run)
    splits.json           volume -> split
    train.h5 val.h5 test.h5
    manifest.json         parameters, seed, splits, patch counts (paper Table 1)

Random numbers of a volume come from ``(seed, crc32(name))``, so its patches do not depend on the
order, the number of workers or the shard that processed it.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from monai_cmri.data.annotations import Annotations, volume_name
from monai_cmri.data.dataset import LABELS, merge_patches, read_parameters, write_patches
from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.data.masks import brain_mask
from monai_cmri.data.patches import (
    PatchPlan,
    cut_patches,
    external_slices,
    plan_grid,
    plan_patches,
    volume_boxes,
)
from monai_cmri.data.reader import combine_volume
from monai_cmri.data.splits import SPLITS, split_volumes, write_splits
from monai_cmri.transforms import normalize_magnitude, resize_kspace

__all__ = [
    "VOLUMES_DIR",
    "PreprocessSummary",
    "combined_volume",
    "patch_volume",
    "preprocess_volume",
    "write_volume_patches",
    "preprocess",
    "preprocess_external",
    "read_external_labels",
    "merge",
    "patch_table",
    "format_table",
    "volume_rng",
]

#: Folder of the per-volume patch files inside the output folder.
VOLUMES_DIR = "volumes"
_PATCHED = ("abnormal", "normal", "unlabeled")


@dataclass
class PreprocessSummary:
    """What a preprocessing run did.

    Attributes:
        done: volumes processed in this run.
        skipped: volumes whose patch file existed already (resumed run).
        excluded: annotated volumes outside both classes, never patched.
        failed: ``{file: reason}`` for files that could not be processed.
        notes: shortfalls reported by the patch rules.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"{len(self.done)} volumes processed, {len(self.skipped)} already done, "
            f"{len(self.excluded)} excluded, {len(self.failed)} failed"
        ]
        lines += [f"  failed: {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def volume_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one volume: a function of the seed and the volume name only."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def combined_volume(
    path: str | Path,
    *,
    external: bool = False,
    size: int | None = None,
    backend: str = "torch",
    device: str | None = None,
    slices: Sequence[int] | None = None,
    sequence: str | None = None,
) -> tuple[np.ndarray, str]:
    """The coil-combined, slice-normalised complex volume of a fastMRI-format file (SPEC 1.3).

    Args:
        path: a ``.h5`` file in the fastMRI layout.
        external: external data (paper 2.1.4): k-space zero-filled or cropped symmetrically to
            ``size x size`` (:func:`~monai_cmri.transforms.resize_kspace`) instead of removing a 2x
            readout oversampling.
        size: image size; half the readout by default (320 for fastMRI), 320 for external data.
        backend: ESPIRiT backend, ``"torch"`` or ``"sigpy"``.
        device: torch device for ESPIRiT; CUDA when available by default.
        slices: slice indices; all by default.
        sequence: the sequence of a file that names none (external data).

    Returns:
        ``(volume, sequence)``: complex64 ``(slices, size, size)``, each slice's magnitude in
        [0, 1]; and the file's sequence.
    """
    with FastMRIFile(path, sequence=sequence) as volume:
        if size is None:
            size = 320 if external else volume.shape[2] // 2
        if external:
            from monai_cmri.data.espirit import espirit_combine

            indices = range(volume.num_slices) if slices is None else slices
            images = []
            for index in indices:
                kspace = resize_kspace(volume.kspace(index), (size, size))
                images.append(np.asarray(espirit_combine(kspace, backend=backend)))
            image = np.stack(images) if images else np.zeros((0, size, size), np.complex64)
        else:
            image = combine_volume(volume, size=size, backend=backend, device=device, slices=slices)
        sequence = volume.sequence
    return np.asarray(normalize_magnitude(image)), sequence


def patch_volume(
    image: np.ndarray,
    name: str,
    volume_class: str,
    seed: int,
    annotations: Annotations | None = None,
) -> tuple[np.ndarray, PatchPlan]:
    """Patches of a combined, normalised volume (paper 2.1.3).

    Args:
        image: complex ``(slices, 320, 320)`` from :func:`combined_volume`.
        name: the volume name (``file_brain_...`` without ``.h5``); seeds its random stream.
        volume_class: "abnormal", "normal" or "unlabeled".
        seed: run seed; the volume's stream is :func:`volume_rng` ``(seed, name)``.
        annotations: fastMRI+ annotations; the boxes of abnormal volumes come from here.

    Returns:
        ``(patches, plan)``: float32 ``(N, 2, 96, 96)`` (real, imag) and the plan with the
        per-patch records.
    """
    mask = brain_mask(np.abs(image))
    boxes = volume_boxes(annotations, name, image.shape[-1]) if annotations is not None else None
    plan = plan_patches(mask, volume_class, volume_rng(seed, name), boxes=boxes, source=name)
    return cut_patches(image, plan.records), plan


def preprocess_volume(
    path: str | Path,
    volume_class: str,
    seed: int,
    *,
    annotations: Annotations | None = None,
    backend: str = "torch",
    device: str | None = None,
) -> tuple[np.ndarray, PatchPlan, str]:
    """Patches of one fastMRI volume (SPEC 1.3, paper 2.1.2-2.1.3).

    Args:
        path: the volume's ``.h5`` file.
        volume_class: "abnormal", "normal" or "unlabeled".
        seed: run seed.
        annotations: fastMRI+ annotations.
        backend: ESPIRiT backend.
        device: torch device for ESPIRiT.

    Returns:
        ``(patches, plan, sequence)``, see :func:`patch_volume`.
    """
    image, sequence = combined_volume(path, backend=backend, device=device)
    patches, plan = patch_volume(image, volume_name(path), volume_class, seed, annotations)
    return patches, plan, sequence


def write_volume_patches(
    out: Path, path: str | Path, volume_class: str, patches: np.ndarray, plan: PatchPlan, sequence: str, seed: int
) -> Path:
    """Write one volume's patches to ``out/volumes/<name>.h5`` (temporary name, then rename)."""
    name = volume_name(path)
    target = Path(out) / VOLUMES_DIR / f"{name}.h5"
    parameters = {"volume": name, "volume_class": volume_class, "sequence": sequence, "seed": seed,
                  "requested": plan.requested, "notes": list(plan.notes)}
    write_patches(target, patches, plan.columns(name, sequence), parameters)
    return target


def _work(args: tuple) -> tuple[str, str | None, list[str]]:
    """Process one volume in a worker; returns (name, error or None, notes)."""
    out, path, volume_class, seed, annotations, backend, device, threads = args
    if threads:
        import torch

        torch.set_num_threads(threads)
    name = volume_name(path)
    try:
        patches, plan, sequence = preprocess_volume(
            path, volume_class, seed, annotations=annotations, backend=backend, device=device
        )
        write_volume_patches(out, path, volume_class, patches, plan, sequence, seed)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        return name, f"{type(err).__name__}: {err}", []
    return name, None, list(plan.notes)


def preprocess(
    data: str | Path,
    out: str | Path,
    *,
    annotations: str | Path | None = None,
    file_list: str | Path | None = None,
    seed: int = 0,
    workers: int = 1,
    shard: int = 0,
    num_shards: int = 1,
    backend: str = "torch",
    device: str | None = None,
    progress: bool = True,
    merge_splits: bool = True,
) -> PreprocessSummary:
    """Preprocess a folder of fastMRI brain files into patch datasets (SPEC 1.3).

    Args:
        data: folder of ``file_brain_*.h5`` files (searched recursively).
        out: output folder (layout in the module docstring).
        annotations: fastMRI+ ``brain.csv``; by default ``brain.csv`` in ``data`` if present
            (the simulator writes one), else the shipped fastMRI+ release.
        file_list: the reviewed-files list; by default ``brain_file_list.csv`` beside the CSV.
        seed: seed of the patch positions and of the splits.
        workers: volumes processed in parallel (processes); torch threads are shared among them.
        shard: this machine's shard index in ``[0, num_shards)``; volumes are dealt out by sorted
            name, ``shard::num_shards``.
        num_shards: number of machines sharing the work; with more than one, run :func:`merge`
            once all shards are done (``python -m monai_cmri merge``).
        backend: ESPIRiT backend, ``"torch"`` or ``"sigpy"`` (the slow reference).
        device: torch device for ESPIRiT.
        progress: show a progress bar.
        merge_splits: merge into split files at the end (single-shard runs only).

    Returns:
        The summary; broken files are listed there and in ``failed.json``, not raised.

    Raises:
        OSError: if ``data`` is not a folder or holds no ``.h5`` file.
        ValueError: for a bad shard specification.
    """
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise OSError(f"{data}: not a folder")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    files = sorted(data.rglob("*.h5"), key=lambda p: p.name)
    if not files:
        raise OSError(f"{data}: no .h5 files")
    labels = _annotations(data, annotations, file_list)
    classes = labels.volume_classes([volume_name(p) for p in files])
    summary = PreprocessSummary(excluded=[n for n, c in classes.items() if c == "excluded"])
    (out / VOLUMES_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (out / VOLUMES_DIR).glob(".*.tmp"):
        stale.unlink()  # left by a killed run; its volume is redone below

    todo = []
    for path in files[shard::num_shards]:
        name = volume_name(path)
        if classes[name] == "excluded":
            continue
        if (out / VOLUMES_DIR / f"{name}.h5").is_file():
            summary.skipped.append(name)
            continue
        todo.append(path)
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    jobs = [(out, p, classes[volume_name(p)], seed, labels, backend, device, threads if workers > 1 else 0)
            for p in todo]
    bar = tqdm(total=len(jobs), desc="preprocess", unit="volume", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results: Iterable = pool.map(_work, jobs)
            for result in results:
                _record(summary, result)
                bar.update()
    else:
        for job in jobs:
            _record(summary, _work(job))
            bar.update()
    bar.close()
    _write_json(out / ("failed.json" if num_shards == 1 else f"failed.shard{shard}.json"), summary.failed)
    if merge_splits and num_shards == 1:
        merge(out, seed=seed)
    return summary


def read_external_labels(path: str | Path) -> dict[str, tuple[str, str | None]]:
    """Volume labels of an external test set: a CSV ``file,label[,sequence]`` (paper 2.1.4).

    ``label`` is "normal" or "abnormal" (biopsy-confirmed healthy / metastasis in the paper);
    ``sequence`` is one of the fastMRI sequences, needed when the file does not name one.

    Returns:
        ``{volume name: (label, sequence or None)}``.

    Raises:
        ValueError: naming the file and line for a missing column or an unknown label.
    """
    import csv

    path = Path(path)
    labels: dict[str, tuple[str, str | None]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header with columns file,label[,sequence], got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip().lower()
            if label not in ("normal", "abnormal"):
                raise ValueError(f"{path}:{line}: label must be normal or abnormal, got {row['label']!r}")
            sequence = (row.get("sequence") or "").strip() or None
            labels[volume_name(row["file"].strip())] = (label, sequence)
    return labels


def preprocess_external(
    data: str | Path,
    out: str | Path,
    labels: str | Path,
    *,
    inferior: float = 0.25,
    superior: float = 0.0,
    backend: str = "torch",
    progress: bool = True,
) -> PreprocessSummary:
    """Cut an external test set into patches on a fixed grid (SPEC 1.3 last bullet, paper 2.1.4).

    Each volume's k-space is zero-filled or cropped symmetrically to 320 x 320, its coils are
    combined with ESPIRiT, facial slices are dropped (the lowest ``inferior`` and highest
    ``superior`` fraction, :func:`~monai_cmri.data.patches.external_slices`), and each kept
    slice gives the 4 centre patches of a 4 x 4 grid of 96 x 96 with stride 75 (last position
    clamped to 224, :func:`~monai_cmri.data.patches.grid_positions`). Patches carry their
    volume's label. Everything goes to ``out/external.h5``; per-volume files make it resumable.

    Args:
        data: folder of HDF5 files with ``kspace (slices, coils, H, W)`` and an ISMRMRD header.
        out: output folder.
        labels: CSV ``file,label[,sequence]`` (:func:`read_external_labels`).
        inferior: fraction of slices dropped at the inferior end (face, orbits, skull base).
        superior: fraction dropped at the vertex.
        backend: ESPIRiT backend.
        progress: show a progress bar.

    Returns:
        The summary; files without a label are listed as failed.
    """
    data, out = Path(data), Path(out)
    table = read_external_labels(labels)
    files = sorted(data.rglob("*.h5"), key=lambda p: p.name)
    if not files:
        raise OSError(f"{data}: no .h5 files")
    (out / VOLUMES_DIR).mkdir(parents=True, exist_ok=True)
    summary = PreprocessSummary()
    for path in tqdm(files, desc="external", unit="volume", disable=not progress):
        name = volume_name(path)
        target = out / VOLUMES_DIR / f"{name}.h5"
        if target.is_file():
            summary.skipped.append(name)
            continue
        if name not in table:
            summary.failed[name] = f"{path}: no label in {labels}"
            continue
        label, sequence = table[name]
        try:
            with FastMRIFile(path, sequence=sequence) as volume:
                kept = list(external_slices(volume.num_slices, inferior, superior))
            image, sequence = combined_volume(path, external=True, slices=kept, sequence=sequence, backend=backend)
            plan = plan_grid(range(len(kept)), label)
            patches = cut_patches(image, plan.records)
            columns = plan.columns(name, sequence)
            columns["slice"] = np.asarray(kept, dtype=np.int32)[columns["slice"]]
            write_patches(target, patches, columns, {"volume": name, "volume_class": label, "sequence": sequence,
                                                     "external": True, "slices": kept})
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            summary.failed[name] = f"{type(err).__name__}: {err}"
            continue
        summary.done.append(name)
    sources = sorted((out / VOLUMES_DIR).glob("*.h5"))
    if sources:
        merge_patches(sources, out / "external.h5", parameters={"external": True, "inferior": inferior,
                                                                 "superior": superior})
    _write_json(out / "failed.json", summary.failed)
    return summary


def _record(summary: PreprocessSummary, result: tuple[str, str | None, list[str]]) -> None:
    name, error, notes = result
    if error is None:
        summary.done.append(name)
        summary.notes.extend(notes)
    else:
        summary.failed[name] = error


def _annotations(data: Path, csv: str | Path | None, file_list: str | Path | None) -> Annotations:
    if csv is None and (data / "brain.csv").is_file():
        csv = data / "brain.csv"
    if csv is None:
        return Annotations.default()
    if file_list is None and (Path(csv).parent / "brain_file_list.csv").is_file():
        file_list = Path(csv).parent / "brain_file_list.csv"
    return Annotations.from_csv(csv, file_list)


def merge(out: str | Path, parts: Sequence[str | Path] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Draw the volume-level splits and write ``train.h5``, ``val.h5``, ``test.h5`` and the manifest.

    Args:
        out: output folder; its ``volumes/`` holds per-volume patch files.
        parts: further output folders of other shards whose ``volumes/`` are merged as well.
        seed: split seed; by default the seed recorded in the volume files.

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        OSError: when there is no volume file to merge.
    """
    out = Path(out)
    sources: dict[str, Path] = {}
    for folder in [out, *(Path(p) for p in parts or ())]:
        for path in sorted((folder / VOLUMES_DIR).glob("*.h5")):
            sources.setdefault(path.stem, path)
    if not sources:
        raise OSError(f"{out}: no per-volume patch files in {out / VOLUMES_DIR}")
    info = {name: read_parameters(path) for name, path in sources.items()}
    if seed is None:
        seed = int(next(iter(info.values()))["seed"])
    classes = {name: params["volume_class"] for name, params in info.items()}
    splits = split_volumes(classes, seed)
    write_splits(out / "splits.json", splits, seed=seed)
    counts: dict[str, int] = {}
    for split in SPLITS:
        members = [sources[name] for name in sorted(splits) if splits[name] == split]
        target = out / f"{split}.h5"
        if members:
            counts[split] = merge_patches(members, target, parameters={"split": split, "seed": seed})
        else:
            target.unlink(missing_ok=True)
            counts[split] = 0
    manifest = {
        "seed": seed,
        "volumes": {name: {"class": classes[name], "sequence": info[name]["sequence"], "split": splits[name]}
                    for name in sorted(splits)},
        "patches": counts,
        "table": patch_table(out),
        "rules": _rules(),
    }
    _write_json(out / "manifest.json", manifest)
    return manifest


def _rules() -> dict[str, Any]:
    from monai_cmri.data import patches

    return {name: getattr(patches, name) for name in (
        "PATCH_SIZE", "MIN_BRAIN", "MIN_OVERLAP", "MIN_PATCHES", "MAX_PATCHES", "AREA_PER_PATCH",
        "MAX_PER_BOX", "MAX_ABNORMAL", "NORMAL_RATIO", "PER_SLICE")}


def patch_table(out: str | Path) -> dict[str, dict[str, dict[str, int]]]:
    """Patches per class, sequence and split of a merged output (the layout of paper Table 1).

    Returns:
        ``{class: {sequence: {split: count, "total": count}}}``.
    """
    import h5py

    out = Path(out)
    table: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        path = out / f"{split}.h5"
        if not path.is_file():
            continue
        with h5py.File(path, "r") as file:
            labels = file["label"].asstr()[()]
            sequences = file["sequence"].asstr()[()]
        for label, sequence in zip(labels, sequences):
            row = table.setdefault(label, {}).setdefault(sequence, {**dict.fromkeys(SPLITS, 0), "total": 0})
            row[split] += 1
            row["total"] += 1
    return table


def format_table(table: Mapping[str, Mapping[str, Mapping[str, int]]]) -> str:
    """A fixed-width text rendering of :func:`patch_table` (paper Table 1)."""
    lines = [f"{'class':<10} {'sequence':<9} " + " ".join(f"{s:>7}" for s in (*SPLITS, "total"))]
    for label in LABELS:
        for sequence, row in sorted(table.get(label, {}).items()):
            lines.append(f"{label:<10} {sequence:<9} " + " ".join(f"{row[s]:>7}" for s in (*SPLITS, "total")))
    return "\n".join(lines)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
