"""Write simulated volumes as fastMRI brain HDF5 files plus fastMRI+ CSVs (README "The data it expects").

Files are byte-identical across runs with the same seed: datasets are written without
creation times and attributes in a fixed order. Every file is written under a temporary name
(:func:`monai_cmri.atomic.temporary_path`) and renamed, so an interrupted run leaves no
half-written file under a final name.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from monai_cmri.atomic import temporary_path, write_text
from monai_cmri.simulate.boxes import CSV_HEADER, Annotation
from monai_cmri.simulate.cohort import plan_volume
from monai_cmri.simulate.volume import SimulatedVolume, simulate_volume

__all__ = [
    "ANNOTATIONS_CSV",
    "FILE_LIST_CSV",
    "dataset_volume",
    "write_volume",
    "write_annotations",
    "simulate_dataset",
]

#: Names of the fastMRI+ files written next to the volumes.
ANNOTATIONS_CSV = "brain.csv"
FILE_LIST_CSV = "brain_file_list.csv"


def dataset_volume(
    index: int,
    seed: int,
    *,
    slices: int = 16,
    width: int = 320,
    readout: int = 640,
    coils: Sequence[int] | None = None,
) -> SimulatedVolume:
    """Volume ``index`` of the dataset drawn with ``seed``, exactly as :func:`simulate_dataset`
    writes it (its plan from ``(seed, index, 0)``, its simulation from ``(seed, index, 1)``).

    Lets a streaming consumer simulate, use and drop one volume at a time.
    """
    spec = plan_volume(index, seed, slices=slices, width=width, readout=readout, coils=coils)
    return simulate_volume(spec, np.random.default_rng([seed, index, 1]))


def write_volume(volume: SimulatedVolume, out_dir: str | Path, name: str | None = None) -> Path:
    """Write one volume as ``out_dir/{name}.h5`` in the fastMRI brain multi-coil layout.

    Datasets ``kspace`` (complex64), ``reconstruction_rss`` (float32), ``ismrmrd_header``
    (XML bytes); attributes ``acquisition``, ``max``, ``norm``, ``patient_id``.

    Args:
        volume: from :func:`~monai_cmri.simulate.volume.simulate_volume`.
        out_dir: an existing directory.
        name: the file stem; the volume's ``spec.name`` by default.

    Returns:
        the path of the file.

    Raises:
        OSError: when the directory does not exist or the file cannot be written.
    """
    directory = Path(out_dir)
    if not directory.is_dir():
        raise OSError(f"{directory}: output directory does not exist")
    path = directory / f"{name or volume.spec.name}.h5"
    tmp = temporary_path(path)
    try:
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as f:
            f.create_dataset("ismrmrd_header", data=np.bytes_(volume.header.to_xml()), track_times=False)
            f.create_dataset("kspace", data=volume.kspace, track_times=False)
            f.create_dataset("reconstruction_rss", data=volume.reconstruction_rss, track_times=False)
            for key, value in volume.attrs.items():
                f.attrs[key] = value
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _atomic_text(path: Path, text: str) -> None:
    write_text(path, text)


def write_annotations(
    out_dir: str | Path, annotations: Sequence[Annotation], files: Sequence[str]
) -> tuple[Path, Path]:
    """Write ``brain.csv`` and ``brain_file_list.csv`` in the fastMRI+ format.

    Args:
        out_dir: an existing directory.
        annotations: rows of every annotated volume, in order.
        files: stems of the annotated volumes (one line each, no header).

    Returns:
        the paths of the two files.
    """
    directory = Path(out_dir)
    if not directory.is_dir():
        raise OSError(f"{directory}: output directory does not exist")
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(row.csv_row() for row in annotations)
    boxes, listing = directory / ANNOTATIONS_CSV, directory / FILE_LIST_CSV
    _atomic_text(boxes, table.getvalue())
    _atomic_text(listing, "".join(f"{name}\n" for name in files))
    return boxes, listing


def simulate_dataset(
    out_dir: str | Path,
    volumes: int = 12,
    seed: int = 0,
    *,
    slices: int = 16,
    width: int = 320,
    readout: int = 640,
    coils: Sequence[int] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Simulate a fastMRI-like brain dataset with fastMRI+-style annotations (README "The simulated dataset").

    Writes ``out_dir/file_brain_{SEQ}_{site}_{id}.h5`` per volume, then ``brain.csv`` and
    ``brain_file_list.csv`` listing only the annotated volumes. Each volume is simulated,
    written and freed before the next, so memory holds one volume at a time.

    Args:
        out_dir: output directory (created if missing).
        volumes: number of volumes, >= 1.
        seed: dataset seed; volume ``i`` depends only on ``(seed, i)``.
        slices: slices per volume.
        width: phase-encode width of full-width volumes (320 in fastMRI).
        readout: oversampled readout, ``2 * width`` (640 in fastMRI); the readout field of view
            is 440 mm, so small matrices make large pixels and the head still fits.
        coils: channel counts to choose from; None draws 8-20 (mostly 16 and 20).
        progress: show a progress bar over volumes.

    Returns:
        paths of the HDF5 files, in volume order.

    Raises:
        ValueError: for ``volumes < 1``, ``slices < 1``, ``readout != 2 * width``, a width
            that is odd or below 16, or a channel count below 1.
        OSError: when ``out_dir`` exists and is not a directory.
    """
    if volumes < 1:
        raise ValueError(f"volumes must be >= 1, got {volumes}")
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    if width < 16 or width % 2:
        raise ValueError(f"width must be even and >= 16, got {width}")
    if readout != 2 * width:
        raise ValueError(f"readout must be 2 * width = {2 * width} (2x oversampling), got {readout}")
    if coils is not None and (len(coils) == 0 or min(coils) < 1):
        raise ValueError(f"coils must be a non-empty list of counts >= 1, got {list(coils)}")
    directory = Path(out_dir)
    if directory.exists() and not directory.is_dir():
        raise OSError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)

    paths, annotations, annotated = [], [], []
    for index in tqdm(range(volumes), desc="simulate", unit="volume", disable=not progress):
        volume = dataset_volume(index, seed, slices=slices, width=width, readout=readout, coils=coils)
        paths.append(write_volume(volume, directory))
        if volume.spec.annotated:
            annotated.append(volume.spec.name)
            annotations.extend(volume.annotations)
        del volume
    write_annotations(directory, annotations, annotated)
    return paths
