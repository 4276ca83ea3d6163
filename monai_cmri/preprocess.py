"""From fastMRI k-space files to patch datasets (paper 2.1.2-2.1.4).

One volume at a time: read k-space slice by slice, remove the readout oversampling, combine the
coils with ESPIRiT, normalise each slice's magnitude to [0, 1] (phase kept), compute the brain
mask, choose patches by the rules of :mod:`monai_cmri.data.patches`, cut them as two channels and
write ``<out>/volumes/<name>.h5``. :func:`merge` then draws the volume-level splits and writes
``train.h5``, ``val.h5``, ``test.h5`` and ``manifest.json``.

Layout of ``<out>``::

    volumes/<name>.h5     patches of one volume (monai_cmri.data.dataset layout), with its provenance
    failed.json           volumes that could not be read, with the reason (this run)
    run.json              what this run covered: settings and the key of every volume
                          (run.shard-<i>-of-<n>.json and failed.shard<i>.json for shards)
    splits.json           volume -> split
    train.h5 val.h5 test.h5
    manifest.json         parameters, seed, splits, patch counts (paper Table 1)

Resuming and safety:

* A volume's file appears only when complete (temporary name, then rename), so a killed run resumes
  where it stopped. A volume file is reused only when everything that made it is unchanged: the
  data file (name, size and a digest of its first and last 64 KiB), the volume's class and
  annotation rows, the seed, the patch rules, the ESPIRiT backend and :data:`PREPROCESS_VERSION`,
  all hashed into the file's ``key``. A file made otherwise stops the run with
  :class:`StaleOutputError` naming what changed, unless ``overwrite`` asks to redo it.
* Two runs never write the same outputs: a run holds a :class:`~monai_cmri.atomic.FolderLock` on
  the folder (one per shard, so shards of one run may share a folder) and removes only the
  temporary files of writers that died (:func:`~monai_cmri.atomic.remove_stale_temporaries`).
* An input file that cannot be read is skipped and named in ``failed.json``; an output that cannot
  be written (a full disk above all) stops the run at once with one error that names the file
  (:class:`~monai_cmri.atomic.DiskFullError`), leaving every finished file as it was.
* The merge writes the split files into a staging folder and renames them into place together.

Random numbers of a volume come from ``(seed, crc32(name))``, so its patches do not depend on the
order, the number of workers or the shard that processed it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from monai_cmri.atomic import (
    FolderLock,
    is_disk_full,
    disk_full_error,
    remove_stale_temporaries,
    temporary_path,
    write_json,
)
from monai_cmri.data.annotations import Annotations, find_annotations, volume_name
from monai_cmri.data.dataset import (
    LABELS,
    LAYOUT_VERSION,
    check_space,
    merge_patches,
    read_parameters,
    write_patches,
)
from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.data.masks import brain_mask
from monai_cmri.data.patches import (
    MIN_BRAIN,
    PATCH_SIZE,
    PatchPlan,
    cut_patches,
    external_slices,
    plan_grid,
    plan_patches,
    volume_boxes,
)
from monai_cmri.data.reader import combined_volume
from monai_cmri.data.splits import SPLITS, split_volumes, write_splits

__all__ = [
    "VOLUMES_DIR",
    "PREPROCESS_VERSION",
    "PreprocessSummary",
    "StaleOutputError",
    "combined_volume",
    "patch_volume",
    "preprocess_volume",
    "volume_provenance",
    "provenance_key",
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
#: Version of what this module makes of a volume; a change makes earlier volume files stale.
PREPROCESS_VERSION: int = 2
_PATCHED = ("abnormal", "normal", "unlabeled")
_SAMPLE = 1 << 16


class StaleOutputError(RuntimeError):
    """Outputs in the folder were made with other inputs or settings than this run's."""


@dataclass
class PreprocessSummary:
    """What a preprocessing run did.

    Attributes:
        done: volumes processed in this run.
        skipped: volumes whose patch file existed already with the same key (resumed run).
        excluded: annotated volumes outside both classes, never patched.
        failed: ``{file: reason}`` for input files that could not be processed.
        patches: ``{volume: patch count}`` of every volume done or skipped.
        empty: ``{volume: reason}`` for volumes that gave no patch.
        notes: shortfalls reported by the patch rules and anomalies of the inputs.
        report: lines about the run as a whole (annotations used, files left out, empty splits).
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    patches: dict[str, int] = field(default_factory=dict)
    empty: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)

    @property
    def volumes(self) -> list[str]:
        """Volumes with a patch file after this run (done or skipped), sorted."""
        return sorted(self.done + self.skipped)

    @property
    def ok(self) -> bool:
        """Whether the run gave at least one patch (else there is no dataset to use)."""
        return any(count > 0 for count in self.patches.values())

    def __str__(self) -> str:
        lines = [
            f"{len(self.done)} volumes processed, {len(self.skipped)} already done, "
            f"{len(self.excluded)} excluded, {len(self.failed)} failed, "
            f"{sum(self.patches.values())} patches"
        ]
        lines += [f"  failed: {name}: {reason}" for name, reason in sorted(self.failed.items())]
        lines += [f"  no patches: {name}: {reason}" for name, reason in sorted(self.empty.items())]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  {line}" for line in self.report]
        if not self.ok:
            lines.append("  no patches were made: nothing to train on (see the reasons above)")
        return "\n".join(lines)


def volume_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one volume: a function of the seed and the volume name only."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


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
    """Patches of one fastMRI volume (paper 2.1.2-2.1.3).

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


def source_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a data file cheaply: its name, size and a digest of its first and last 64 KiB.

    The HDF5 superblock and object headers sit at the start and the last written chunks at the end,
    so another file, or the same file rewritten, changes the digest; reading 128 KiB keeps this
    fast for 500 MB volumes.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_SAMPLE))
        if size > _SAMPLE:
            handle.seek(max(size - _SAMPLE, _SAMPLE))
            digest.update(handle.read(_SAMPLE))
    return {"file": path.name, "bytes": size, "sha256_ends": digest.hexdigest()}


def volume_provenance(
    path: str | Path, volume_class: str, seed: int, annotations: Annotations | None, backend: str = "torch"
) -> dict[str, Any]:
    """Everything that decides a volume's patch file, as a JSON-ready dict (see the module docstring).

    Args:
        path: the data file.
        volume_class: its class under the annotations.
        seed: run seed.
        annotations: the annotations; the volume's own rows are recorded, not the whole CSV, so
            editing another volume's rows keeps this one's file valid.
        backend: ESPIRiT backend.
    """
    name = volume_name(path)
    rows = annotations.rows.get(name) if annotations is not None else None
    return {
        "version": PREPROCESS_VERSION,
        "layout_version": LAYOUT_VERSION,
        "source": source_identity(path),
        "volume_class": volume_class,
        "annotations": None if rows is None else sorted(
            [row.slice, row.study, row.label, row.x, row.y, row.width, row.height] for row in rows
        ),
        "seed": int(seed),
        "rules": _rules(),
        "backend": backend,
    }


def provenance_key(provenance: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a provenance dict: equal keys, identical inputs and settings."""
    text = json.dumps(dict(provenance), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_volume_patches(
    out: Path,
    path: str | Path,
    volume_class: str,
    patches: np.ndarray,
    plan: PatchPlan,
    sequence: str,
    seed: int,
    provenance: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write one volume's patches to ``out/volumes/<name>.h5`` (temporary name, then rename).

    Args:
        out: output folder.
        path: the data file.
        volume_class: its class.
        patches: ``(N, 2, 96, 96)``.
        plan: the plan the patches were cut by.
        sequence: the volume's sequence.
        seed: run seed.
        provenance: :func:`volume_provenance` of the volume, recorded with its :func:`provenance_key`.
        notes: anomalies of the input to record beside the plan's notes.

    Raises:
        DiskFullError: when the disk cannot hold the file (nothing is left under its name).
    """
    name = volume_name(path)
    target = Path(out) / VOLUMES_DIR / f"{name}.h5"
    parameters = {"volume": name, "volume_class": volume_class, "sequence": sequence, "seed": seed,
                  "requested": plan.requested, "notes": [*notes, *plan.notes]}
    if provenance is not None:
        parameters.update(provenance=dict(provenance), key=provenance_key(provenance))
    write_patches(target, patches, plan.columns(name, sequence), parameters)
    return target


def _work(args: tuple) -> tuple[str, str | None, list[str], int]:
    """Process one volume in a worker; returns (name, input error or None, notes, patch count).

    An unreadable input is returned as an error; a failure to write the output is raised, so that
    it stops the run.
    """
    out, path, volume_class, seed, annotations, backend, device, threads, provenance = args
    if threads:
        import torch

        torch.set_num_threads(threads)
    name = volume_name(path)
    notes: list[str] = []
    try:
        with FastMRIFile(path) as volume:
            notes += volume.notes
        patches, plan, sequence = preprocess_volume(
            path, volume_class, seed, annotations=annotations, backend=backend, device=device
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        return name, f"{type(err).__name__}: {err}", [], 0
    write_volume_patches(out, path, volume_class, patches, plan, sequence, seed, provenance, notes)
    return name, None, [*notes, *plan.notes], len(plan)


def _lock_name(shard: int, num_shards: int) -> str:
    return f"preprocess-shard-{shard}-of-{num_shards}"


def _conflicts(shard: int, num_shards: int):
    """Which other locks of a folder a preprocessing shard cannot run beside."""

    def conflicts(other: str) -> bool:
        if other == "merge":
            return True
        parts = other.split("-")
        if len(parts) != 5 or parts[:2] != ["preprocess", "shard"]:
            return False
        # Shards of one split (same count, other index) write disjoint volumes; anything else overlaps.
        return int(parts[4]) != num_shards or int(parts[2]) == shard

    return conflicts


def _record_name(shard: int, num_shards: int) -> str:
    return "run.json" if num_shards == 1 else f"run.shard-{shard}-of-{num_shards}.json"


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two provenance dicts, in words."""
    if not old:
        return "made by an earlier version without a provenance record"
    said = []
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if key == "source":
            said.append("another data file")
        elif key == "annotations":
            said.append("other annotation rows")
        elif key in ("rules", "version", "layout_version"):
            said.append("other patch rules or code version")
        elif key == "volume_class":
            said.append(f"class {before} -> {value}")
        else:
            said.append(f"{key} {before} -> {value}")
    return ", ".join(dict.fromkeys(said)) or "another key"


def _staleness(target: Path, provenance: Mapping[str, Any]) -> str | None:
    """Why an existing volume file cannot be reused for ``provenance``, in words; None when it can."""
    try:
        parameters = read_parameters(target)
    except (OSError, ValueError):
        parameters = {}
    if parameters.get("key") == provenance_key(provenance):
        return None
    return _changes(parameters.get("provenance") or {}, provenance)


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
    overwrite: bool = False,
) -> PreprocessSummary:
    """Preprocess a folder of fastMRI brain files into patch datasets (paper 2.1.2-2.1.4).

    Args:
        data: folder of ``file_brain_*.h5`` files (searched recursively).
        out: output folder (layout in the module docstring).
        annotations: fastMRI+ ``brain.csv``; by default ``brain.csv`` in ``data`` if present
            (the simulator writes one), else the shipped fastMRI+ release.
        file_list: the reviewed-files list; by default ``brain_file_list.csv`` beside the CSV.
        seed: seed of the patch positions and of the splits.
        workers: volumes processed in parallel, by processes of one torch thread each.
        shard: this machine's shard index in ``[0, num_shards)``; volumes are dealt out by sorted
            name, ``shard::num_shards``.
        num_shards: number of machines sharing the work; with more than one, run :func:`merge`
            once all shards are done (``python -m monai_cmri merge``). Shards may share ``out``.
        backend: ESPIRiT backend, ``"torch"`` or ``"sigpy"`` (the slow reference).
        device: torch device for ESPIRiT.
        progress: show a progress bar.
        merge_splits: merge into split files at the end (single-shard runs only).
        overwrite: redo volumes whose files were made with other inputs or settings, and drop
            volume files of volumes no longer in ``data``, instead of stopping.

    Returns:
        The summary; broken input files are listed there and in ``failed.json``, not raised.

    Raises:
        OSError: if ``data`` is not a folder or holds no ``.h5`` file.
        ValueError: for a bad shard specification, or two data files of one name.
        StaleOutputError: when ``out`` holds volume files made otherwise and ``overwrite`` is off.
        FolderLockedError: when another live run writes the same outputs of ``out``.
        DiskFullError: when an output cannot be written for lack of space (finished files stay).
    """
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise OSError(f"{data}: not a folder")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    files = sorted(data.rglob("*.h5"), key=lambda p: p.name)
    if not files:
        raise OSError(f"{data}: no .h5 files")
    names = [volume_name(p) for p in files]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise ValueError(f"{data}: several files named {twins[0]}.h5 in its subfolders; volume names must be unique")
    labels = _annotations(data, annotations, file_list)
    classes = labels.volume_classes(names)
    summary = PreprocessSummary(excluded=[n for n, c in classes.items() if c == "excluded"])
    missing = sorted(set(labels.files) - set(names))
    summary.report.append(
        f"annotations: {labels.source}: {len(labels.files) - len(missing)} of {len(labels.files)} annotated "
        f"volumes found in {data}" + (f" ({len(missing)} named there are not in the data)" if missing else "")
    )

    with FolderLock(out, _lock_name(shard, num_shards), conflicts=_conflicts(shard, num_shards)):
        volumes_dir = out / VOLUMES_DIR
        volumes_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(volumes_dir)
        remove_stale_temporaries(out)
        # Records of an earlier run split another way would make the merge mix two runs.
        for record in [*out.glob("run.json"), *out.glob("run.shard-*-of-*.json")]:
            if record.name != _record_name(shard, num_shards) and (
                num_shards == 1 or not record.name.endswith(f"-of-{num_shards}.json")
            ):
                record.unlink()

        keys: dict[str, str] = {}
        jobs, stale = [], []
        # Worker processes of one thread each: no OpenMP barrier waits on a shared CPU (monai_cmri.threads).
        threads = 1 if workers > 1 else 0
        for path in files[shard::num_shards]:
            name = volume_name(path)
            if classes[name] == "excluded":
                continue
            try:
                provenance = volume_provenance(path, classes[name], seed, labels, backend)
            except OSError as err:
                summary.failed[name] = f"{type(err).__name__}: {err}"
                continue
            keys[name] = provenance_key(provenance)
            target = volumes_dir / f"{name}.h5"
            if target.is_file():
                why = _staleness(target, provenance)
                if why is None:
                    summary.skipped.append(name)
                    summary.patches[name] = _count(target)
                    continue
                stale.append(f"{name}: {why}")
            jobs.append((out, path, classes[name], seed, labels, backend, device, threads, provenance))
        if stale and not overwrite:
            raise StaleOutputError(
                f"{volumes_dir}: {len(stale)} volume file(s) were made with other inputs or settings "
                f"({stale[0]}{'; ...' if len(stale) > 1 else ''}); rerun with --overwrite to redo them, "
                "or choose another --out"
            )
        extra = sorted(p for p in volumes_dir.glob("*.h5") if p.stem not in classes or classes[p.stem] == "excluded")
        if extra and overwrite and num_shards == 1:
            for path in extra:
                path.unlink()
            summary.report.append(f"removed {len(extra)} volume file(s) of volumes not in {data} (--overwrite)")
        elif extra:
            summary.report.append(
                f"{len(extra)} volume file(s) in {volumes_dir} are not volumes of {data} to patch "
                f"(e.g. {extra[0].name}); they are left out of the split files"
            )

        bar = tqdm(total=len(jobs), desc="preprocess", unit="volume", disable=not progress)
        try:
            if workers > 1 and len(jobs) > 1:
                pool = ProcessPoolExecutor(workers)
                try:
                    for result in pool.map(_work, jobs):
                        _record(summary, result)
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                pool.shutdown()
            else:
                for job in jobs:
                    _record(summary, _work(job))
                    bar.update()
        finally:
            bar.close()
            # What failed is worth keeping even when the run stops; a full disk may refuse it too.
            try:
                write_json(out / ("failed.json" if num_shards == 1 else f"failed.shard{shard}.json"), summary.failed)
            except OSError as error:
                if not is_disk_full(error):
                    raise
        record = {
            "shard": shard, "num_shards": num_shards, "seed": seed, "data": str(data.resolve()),
            "annotations": labels.source, "backend": backend, "version": PREPROCESS_VERSION,
            "volumes": {name: keys[name] for name in summary.volumes}, "failed": summary.failed,
            "excluded": sorted(summary.excluded),
        }
        write_json(out / _record_name(shard, num_shards), record)
        if merge_splits and num_shards == 1:
            if summary.volumes:
                manifest = merge(out, seed=seed, lock=False)
                empty = [split for split in SPLITS if not manifest["patches"].get(split)]
                if empty:
                    summary.report.append(
                        f"no patches in {', '.join(empty)}: {len(summary.volumes)} volumes are too few to fill "
                        "every split (each sequence x class cell needs 3 volumes to reach every split)"
                    )
            else:
                summary.report.append("no volume to merge: no split files were written")
    return summary


def _count(target: Path) -> int:
    import h5py

    with h5py.File(target, "r") as file:
        return int(file["patches"].shape[0])


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
    overwrite: bool = False,
) -> PreprocessSummary:
    """Cut an external test set into patches on a fixed grid (paper 2.1.4).

    Each volume's k-space is zero-filled or cropped symmetrically to 320 x 320, its coils are
    combined with ESPIRiT, facial slices are dropped (the lowest ``inferior`` and highest
    ``superior`` fraction, :func:`~monai_cmri.data.patches.external_slices`), and each kept
    slice gives the 4 centre patches of a 4 x 4 grid of 96 x 96 with stride 75 (last position
    clamped to 224, :func:`~monai_cmri.data.patches.grid_positions`). Patches carry their
    volume's label. Everything goes to ``out/external.h5``; per-volume files make it resumable,
    reused only when their key (data file, label, sequence, slice fractions, backend) matches, as
    in :func:`preprocess`.

    Args:
        data: folder of HDF5 files with ``kspace (slices, coils, H, W)`` and an ISMRMRD header.
        out: output folder.
        labels: CSV ``file,label[,sequence]`` (:func:`read_external_labels`).
        inferior: fraction of slices dropped at the inferior end (face, orbits, skull base).
        superior: fraction dropped at the vertex.
        backend: ESPIRiT backend.
        progress: show a progress bar.
        overwrite: redo volume files made with other inputs or settings instead of stopping.

    Returns:
        The summary; files without a label are listed as failed.

    Raises:
        StaleOutputError, FolderLockedError, DiskFullError: as :func:`preprocess`.
    """
    data, out = Path(data), Path(out)
    table = read_external_labels(labels)
    files = sorted(data.rglob("*.h5"), key=lambda p: p.name)
    if not files:
        raise OSError(f"{data}: no .h5 files")
    summary = PreprocessSummary()
    unknown = sorted(set(table) - {volume_name(p) for p in files})
    if unknown:
        summary.report.append(f"{labels}: {len(unknown)} labelled file(s) are not in {data} (e.g. {unknown[0]})")
    with FolderLock(out, "preprocess-external"):
        volumes_dir = out / VOLUMES_DIR
        volumes_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(volumes_dir)
        remove_stale_temporaries(out)
        wanted = []
        for path in tqdm(files, desc="external", unit="volume", disable=not progress):
            name = volume_name(path)
            target = volumes_dir / f"{name}.h5"
            if name not in table:
                summary.failed[name] = f"{path}: no label in {labels}"
                continue
            label, sequence = table[name]
            provenance = {
                "version": PREPROCESS_VERSION, "layout_version": LAYOUT_VERSION, "source": source_identity(path),
                "label": label, "sequence": sequence, "inferior": inferior, "superior": superior, "backend": backend,
            }
            if target.is_file():
                why = _staleness(target, provenance)
                if why is None:
                    summary.skipped.append(name)
                    summary.patches[name] = _count(target)
                    wanted.append(target)
                    continue
                if not overwrite:
                    raise StaleOutputError(
                        f"{target}: made with other inputs or settings ({why}); "
                        "rerun with --overwrite to redo it, or choose another --out"
                    )
            try:
                with FastMRIFile(path, sequence=sequence) as volume:
                    kept = list(external_slices(volume.num_slices, inferior, superior))
                image, sequence = combined_volume(path, external=True, slices=kept, sequence=sequence, backend=backend)
                plan = plan_grid(range(len(kept)), label)
                patches = cut_patches(image, plan.records)
            except (OSError, ValueError, KeyError, RuntimeError) as err:
                summary.failed[name] = f"{type(err).__name__}: {err}"
                continue
            columns = plan.columns(name, sequence)
            columns["slice"] = np.asarray(kept, dtype=np.int32)[columns["slice"]]
            write_patches(target, patches, columns, {"volume": name, "volume_class": label, "sequence": sequence,
                                                     "external": True, "slices": kept,
                                                     "provenance": provenance, "key": provenance_key(provenance)})
            summary.done.append(name)
            summary.patches[name] = len(plan)
            wanted.append(target)
        try:
            write_json(out / "failed.json", summary.failed)
        except OSError as error:
            if not is_disk_full(error):
                raise
        if wanted:
            merge_patches(sorted(wanted), out / "external.h5", parameters={"external": True, "inferior": inferior,
                                                                          "superior": superior})
    return summary


def _record(summary: PreprocessSummary, result: tuple[str, str | None, list[str], int]) -> None:
    name, error, notes, count = result
    if error is not None:
        summary.failed[name] = error
        return
    summary.done.append(name)
    summary.patches[name] = count
    summary.notes.extend(notes)
    if count == 0:
        summary.empty[name] = (
            f"brain too small: no {PATCH_SIZE} x {PATCH_SIZE} position is {MIN_BRAIN:.0%} brain in any slice"
        )


def _annotations(data: Path, csv: str | Path | None, file_list: str | Path | None) -> Annotations:
    """The annotations as every command finds them; a given CSV also brings the file list beside it."""
    if csv is not None and file_list is None and (Path(csv).parent / "brain_file_list.csv").is_file():
        file_list = Path(csv).parent / "brain_file_list.csv"
    return find_annotations(data, csv, file_list)


def _run_records(folders: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """The run records (``run.json``, ``run.shard-*.json``) in the folders, read."""
    found = []
    for folder in folders:
        for path in sorted([*folder.glob("run.json"), *folder.glob("run.shard-*-of-*.json")]):
            try:
                found.append((path, json.loads(path.read_text())))
            except (OSError, ValueError) as error:
                raise ValueError(f"{path}: unreadable run record ({error})") from None
    return found


def _expected_volumes(records: list[tuple[Path, dict[str, Any]]], folders: Sequence[Path]) -> dict[str, str]:
    """``{volume: key}`` the run records promise; checks that they form one complete run."""
    counts = {int(record.get("num_shards", 1)) for _, record in records}
    if len(counts) != 1:
        raise ValueError(f"run records of different shard counts {sorted(counts)}: {[str(p) for p, _ in records]}")
    num_shards = counts.pop()
    shards = {int(record.get("shard", 0)) for _, record in records}
    missing = sorted(set(range(num_shards)) - shards)
    if missing:
        where = ", ".join(str(folder) for folder in folders)
        raise ValueError(
            f"shard(s) {missing} of {num_shards} have no run record in {where}: finish them, or pass their "
            "output folders with --parts"
        )
    seeds = {record.get("seed") for _, record in records}
    if len(seeds) != 1:
        raise ValueError(f"the shards were run with different seeds {sorted(map(str, seeds))}; rerun them alike")
    expected: dict[str, str] = {}
    for _, record in records:
        expected.update(record.get("volumes", {}))
    return expected


def merge(
    out: str | Path,
    parts: Sequence[str | Path] | None = None,
    seed: int | None = None,
    *,
    volumes: Mapping[str, str | None] | None = None,
    lock: bool = True,
) -> dict[str, Any]:
    """Draw the volume-level splits and write ``train.h5``, ``val.h5``, ``test.h5`` and the manifest.

    The volumes merged are those the run records of the folders list (``run.json``, or one
    ``run.shard-<i>-of-<n>.json`` per shard, all of which must be present), each checked against
    the key its record holds; without any record, every volume file of the folders. The split files
    are written into a staging folder and renamed into place together, after the old manifest is
    removed, so a stopped merge leaves either the old outputs or no manifest, never a mix.

    Args:
        out: output folder; its ``volumes/`` holds per-volume patch files.
        parts: further output folders of other shards whose ``volumes/`` are merged as well.
        seed: split seed; by default the seed recorded in the run records or volume files.
        volumes: ``{volume: key or None}`` to merge instead of what the records list.
        lock: hold the folder's lock (off when called by a run that holds it already).

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        OSError: when there is no volume file to merge, or a listed one is missing.
        ValueError: for incomplete or inconsistent run records, or volume files that disagree
            with them or with each other (seed).
        FolderLockedError: while a preprocessing run writes into ``out``.
        DiskFullError: when the split files do not fit (the outputs are left as they were).
    """
    out = Path(out)
    folders = [out, *(Path(p) for p in parts or ())]
    if lock:
        with FolderLock(out, "merge", conflicts=lambda other: other.startswith("preprocess")):
            return merge(out, parts, seed, volumes=volumes, lock=False)
    remove_stale_temporaries(out)
    if volumes is None:
        records = _run_records(folders)
        volumes = _expected_volumes(records, folders) if records else None
    sources: dict[str, Path] = {}
    for folder in folders:
        for path in sorted((folder / VOLUMES_DIR).glob("*.h5")):
            sources.setdefault(path.stem, path)
    if volumes is not None:
        absent = sorted(set(volumes) - set(sources))
        if absent:
            raise OSError(f"{absent[0]}: listed in the run record but no file in {[str(f / VOLUMES_DIR) for f in folders]}")
        sources = {name: sources[name] for name in volumes}
    if not sources:
        raise OSError(f"{out}: no per-volume patch files in {out / VOLUMES_DIR}")
    info = {name: read_parameters(path) for name, path in sources.items()}
    for name, key in (volumes or {}).items():
        if key is not None and info[name].get("key") != key:
            raise ValueError(f"{sources[name]}: changed since its run recorded it (another run wrote it); rerun preprocess")
    seeds = {int(params["seed"]) for params in info.values() if "seed" in params}
    if len(seeds) > 1:
        raise ValueError(f"{out}: volume files made with different seeds {sorted(seeds)}; rerun preprocess with --overwrite")
    if seed is None:
        seed = seeds.pop() if seeds else 0
    classes = {name: params["volume_class"] for name, params in info.items()}
    splits = split_volumes(classes, seed)

    staging = temporary_path(out / "merge")
    staging.mkdir(parents=True)
    try:
        check_space(staging / "all", sum(path.stat().st_size for path in sources.values()))
        counts: dict[str, int] = {}
        for split in SPLITS:
            members = [sources[name] for name in sorted(splits) if splits[name] == split]
            counts[split] = len(members) and merge_patches(
                members, staging / f"{split}.h5", parameters={"split": split, "seed": seed}
            )
        (out / "manifest.json").unlink(missing_ok=True)
        for split in SPLITS:
            if counts[split]:
                os.replace(staging / f"{split}.h5", out / f"{split}.h5")
            else:
                (out / f"{split}.h5").unlink(missing_ok=True)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(error):
            raise disk_full_error(error, out / "train.h5") from None
        raise
    shutil.rmtree(staging, ignore_errors=True)
    write_splits(out / "splits.json", splits, seed=seed)
    manifest = {
        "seed": seed,
        "volumes": {name: {"class": classes[name], "sequence": info[name]["sequence"], "split": splits[name],
                           "key": info[name].get("key")}
                    for name in sorted(splits)},
        "patches": counts,
        "table": patch_table(out),
        "rules": _rules(),
        "version": PREPROCESS_VERSION,
        "sources": [str(folder) for folder in folders],
    }
    write_json(out / "manifest.json", manifest)
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
