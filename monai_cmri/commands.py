"""The command-line commands: thin wrappers that parse arguments and call the package.

Each function here is one ``python -m monai_cmri <command>``; fire maps its keyword arguments to
``--flags``. Heavy imports happen inside the functions so that ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["figure", "labels", "pipeline", "simulate"]


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


def pipeline(out: str = "runs/demo", volumes: int = 12, seed: int = 0, keep_kspace: bool = False) -> None:
    """The main job on the simulated dataset.

    Simulates ``volumes`` fastMRI-format volumes with annotations, prints what was made (files,
    sequences, field strengths, coils, classes under both rules) and renders a figure of every
    sequence. Each volume's k-space is deleted once summarised unless ``keep_kspace`` (a
    full-size volume is several hundred MB).

    Args:
        out: output folder.
        volumes: number of simulated volumes.
        seed: random seed.
        keep_kspace: keep the simulated ``.h5`` files.
    """
    from monai_cmri.pipeline import run_pipeline

    run_pipeline(Path(out), volumes=volumes, seed=seed, keep_kspace=keep_kspace)


def _annotations_for(folder: Path, csv: str | None, file_list: str | None):
    from monai_cmri.data.annotations import Annotations

    if csv is None and (folder / "brain.csv").is_file():
        csv, file_list = str(folder / "brain.csv"), str(folder / "brain_file_list.csv")
    if csv is None:
        return Annotations.default()
    return Annotations.from_csv(csv, file_list)


def dataset_summary(folder: Path, paths: Sequence[Path]) -> str:
    """A table of the files of a simulated or real dataset folder: sequence, field, coils, class."""
    from monai_cmri.data.fastmri import FastMRIFile

    annotations = _annotations_for(folder, None, None)
    rows = [("file", "sequence", "field", "coils", "shape", "class (lenient/strict)", "MB")]
    for path in paths:
        with FastMRIFile(path) as volume:
            name = path.name.removesuffix(".h5")
            classes = f"{annotations.volume_class(name)}/{annotations.volume_class(name, rule='strict')}"
            rows.append(
                (
                    path.name, volume.sequence, f"{volume.header.field_strength_t:.1f} T", str(volume.num_coils),
                    "x".join(map(str, volume.shape)), classes, f"{path.stat().st_size / 2**20:.0f}",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)
