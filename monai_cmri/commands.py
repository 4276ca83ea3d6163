"""The command-line commands: thin wrappers that parse arguments and call the package.

Each function here is one ``python -m monai_cmri <command>``; fire maps its keyword arguments to
``--flags``. Heavy imports happen inside the functions so that ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["export", "figure", "labels", "merge", "pipeline", "preprocess", "sheet", "simulate"]


def simulate(
    out: str,
    volumes: int = 12,
    seed: int = 0,
    slices: int = 16,
    width: int = 320,
    readout: int = 640,
    coils: Sequence[int] | int | None = None,
    quiet: bool = False,
) -> None:
    """Write a simulated fastMRI-format brain dataset with fastMRI+-style annotations (SPEC 1.4).

    Args:
        out: output folder; receives ``file_brain_*.h5``, ``brain.csv`` and ``brain_file_list.csv``.
        volumes: number of volumes.
        seed: random seed; the same seed writes identical files.
        slices: slices per volume.
        width: phase-encode matrix size (narrow AXFLAIR files use less, like fastMRI).
        readout: readout matrix size, 2x oversampled.
        coils: receive coil counts to draw from (one number or a list); default 8-20.
        quiet: no progress bar and no summary.
    """
    from monai_cmri.simulate import simulate_dataset

    if isinstance(coils, int):
        coils = [coils]
    paths = simulate_dataset(
        out, volumes=volumes, seed=seed, slices=slices, width=width, readout=readout,
        coils=coils, progress=not quiet,
    )
    if not quiet:
        print(dataset_summary(Path(out), paths))


def labels(csv: str | None = None, file_list: str | None = None, data: str | None = None) -> None:
    """Print volume class counts per sequence for the "lenient" and "strict" rules (SPEC 1.2).

    Args:
        csv: a fastMRI+ ``brain.csv``; the shipped fastMRI+ release by default.
        file_list: its ``brain_file_list.csv``; the shipped one by default.
        data: a folder of ``.h5`` files to classify as well (files not annotated are unlabeled).
    """
    from monai_cmri.data import annotations

    print(annotations.labels(csv=csv, file_list=file_list, data=data))


def figure(
    file: str,
    out: str | None = None,
    slices: Sequence[int] | int | None = None,
    csv: str | None = None,
    file_list: str | None = None,
) -> None:
    """Render a fastMRI file's slices to PNG: magnitude (gray), phase (cyclic, -pi..pi), boxes.

    Args:
        file: a fastMRI brain ``.h5`` file.
        out: the PNG path; ``<file>.png`` beside the input by default.
        slices: slice indices; six spread over the volume by default.
        csv: fastMRI+ annotations; ``brain.csv`` beside the file if present, else the shipped one.
        file_list: the matching file list (found the same way).
    """
    from monai_cmri.figures import render_volume

    path = Path(file)
    if isinstance(slices, int):
        slices = [slices]
    target = render_volume(
        path, Path(out) if out else path.with_suffix(".png"), slices=slices,
        annotations=_annotations_for(path.parent, csv, file_list),
    )
    print(target)


def pipeline(
    out: str = "runs/demo",
    volumes: int = 16,
    seed: int = 0,
    slices: int = 16,
    keep_kspace: bool = False,
    train: bool = True,
) -> None:
    """The main job on the simulated dataset.

    Simulates fastMRI-format volumes with fastMRI+-style annotations, combines their coils with
    ESPIRiT, draws one volume per sequence, cuts patch datasets with volume-level splits, trains,
    evaluates and encodes with the ``cvae`` bundle (CPU profile), and prints what was made
    (``out/summary.md``). Each volume's k-space is deleted once processed
    unless ``keep_kspace`` (a full-size volume is several hundred MB).

    Args:
        out: output folder.
        volumes: number of simulated volumes.
        seed: random seed.
        slices: slices per volume.
        keep_kspace: keep the simulated ``.h5`` files in ``out/kspace``.
        train: run the cvae bundle; ``--notrain`` stops after the patch datasets.
    """
    from monai_cmri.pipeline import run_pipeline

    run_pipeline(Path(out), volumes=volumes, seed=seed, slices=slices, keep_kspace=keep_kspace, train=train)


def preprocess(
    data: str,
    out: str,
    annotations: str | None = None,
    file_list: str | None = None,
    seed: int = 0,
    workers: int = 1,
    shard: int = 0,
    num_shards: int = 1,
    backend: str = "torch",
    device: str | None = None,
    external: bool = False,
    labels: str | None = None,
    inferior: float = 0.25,
    superior: float = 0.0,
    quiet: bool = False,
) -> None:
    """Preprocess fastMRI brain files into patch datasets (SPEC 1.3, paper 2.1.2-2.1.4).

    ESPIRiT coil combination, slice-wise normalisation, brain mask, patch rules, volume-level
    splits. Resumable: a rerun skips finished volumes. Broken files are reported and skipped.

    Args:
        data: folder of ``file_brain_*.h5`` files.
        out: output folder (``train.h5``, ``val.h5``, ``test.h5``, ``manifest.json``, ...).
        annotations: fastMRI+ ``brain.csv``; ``data/brain.csv`` if present, else the shipped one.
        file_list: its ``brain_file_list.csv``; found beside the CSV by default.
        seed: seed of the patch positions and splits.
        workers: volumes processed in parallel.
        shard: this machine's shard in ``[0, num_shards)``.
        num_shards: machines sharing the work; merge with ``python -m monai_cmri merge`` after.
        backend: ESPIRiT backend, "torch" or "sigpy" (the slow reference).
        device: torch device; CUDA when available by default.
        external: external test data (paper 2.1.4): k-space resized to 320 x 320, facial slices
            dropped, the 4 centre patches of a 4 x 4 grid (stride 75) per slice, volume labels
            from ``labels``; writes ``out/external.h5``.
        labels: with ``external``, a CSV ``file,label[,sequence]`` (label normal or abnormal).
        inferior: with ``external``, fraction of the slices dropped at the inferior end.
        superior: with ``external``, fraction of the slices dropped at the vertex.
        quiet: no progress bar.
    """
    from monai_cmri.preprocess import format_table, patch_table, preprocess_external
    from monai_cmri.preprocess import preprocess as run

    if external:
        if labels is None:
            raise ValueError("--external needs --labels CSV (columns file,label[,sequence])")
        print(preprocess_external(data, out, labels, inferior=inferior, superior=superior, backend=backend,
                                  progress=not quiet))
        return

    summary = run(
        data, out, annotations=annotations, file_list=file_list, seed=seed, workers=workers, shard=shard,
        num_shards=num_shards, backend=backend, device=device, progress=not quiet,
    )
    print(summary)
    if num_shards == 1:
        print(format_table(patch_table(out)))


def merge(out: str, parts: Sequence[str] | str | None = None, seed: int | None = None) -> None:
    """Merge per-volume patch files (of one or several shards) into split datasets.

    Args:
        out: output folder of shard 0 (receives the split files and manifest).
        parts: output folders of the other shards (a list, or one string separated by commas).
        seed: split seed; by default the one the volumes were processed with.
    """
    from monai_cmri.preprocess import format_table
    from monai_cmri.preprocess import merge as run

    if isinstance(parts, str):
        parts = [part for part in parts.split(",") if part]
    manifest = run(out, parts=parts, seed=seed)
    print(format_table(manifest["table"]))


def sheet(file: str, out: str | None = None, per_class: int = 4, seed: int = 0) -> None:
    """Render a sheet of patches from a patch file: magnitude and phase, normal vs abnormal.

    Args:
        file: a patch file (``train.h5``, ``val.h5``, ``test.h5`` of ``preprocess``).
        out: the PNG; ``<file>.png`` beside the input by default.
        per_class: patches per class.
        seed: which patches are shown.
    """
    from monai_cmri.figures import render_patches

    path = Path(file)
    print(render_patches(path, Path(out) if out else path.with_suffix(".png"), per_class=per_class, seed=seed))


def export(file: str, out: str | None = None) -> None:
    """Write a fastMRI file's ESPIRiT-combined volume as NIfTI (magnitude and phase) for viewers.

    Args:
        file: a fastMRI brain ``.h5`` file.
        out: output prefix; ``<file>`` without ``.h5`` by default. Writes ``<out>_magnitude.nii.gz``
            and ``<out>_phase.nii.gz`` (radians).
    """
    from monai_cmri.data.nifti import export_nifti

    for path in export_nifti(file, out):
        print(path)


def _annotations_for(folder: Path, csv: str | None, file_list: str | None):
    from monai_cmri.data.annotations import Annotations

    if csv is None and (folder / "brain.csv").is_file():
        csv, file_list = str(folder / "brain.csv"), str(folder / "brain_file_list.csv")
    if csv is None:
        return Annotations.default()
    return Annotations.from_csv(csv, file_list)


def volume_row(path: Path, annotations) -> tuple[str, ...]:
    """One row of a dataset summary: file, sequence, field, coils, k-space shape, classes, size."""
    from monai_cmri.data.annotations import volume_name
    from monai_cmri.data.fastmri import FastMRIFile
    from monai_cmri.figures import nominal_field

    name = volume_name(path)
    with FastMRIFile(path) as volume:
        return (
            path.name, volume.sequence, nominal_field(volume.header.field_strength_t), str(volume.num_coils),
            "x".join(map(str, volume.shape)),
            f"{annotations.volume_class(name)}/{annotations.volume_class(name, rule='strict')}",
            f"{path.stat().st_size / 2**20:.0f}",
        )


def format_rows(rows: Sequence[tuple[str, ...]]) -> str:
    """A fixed-width table of :func:`volume_row` rows, with a header."""
    rows = [("file", "sequence", "field", "coils", "k-space shape", "class (lenient/strict)", "MB"), *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def dataset_summary(folder: Path, paths: Sequence[Path]) -> str:
    """A table of the files of a dataset folder: sequence, field, coils, shape, class, size."""
    annotations = _annotations_for(folder, None, None)
    return format_rows([volume_row(path, annotations) for path in paths])
