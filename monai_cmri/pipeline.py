"""The main job: the whole pipeline on the simulated dataset (SPEC 1.4, 1.3, 5).

Volumes are streamed: each is simulated and written in the fastMRI format, ESPIRiT-combined,
drawn (the first volume of every sequence), cut into patches, and its k-space deleted unless
kept, so that the disk holds one volume's k-space at a time (a full-size volume is several
hundred MB; the demo stays under 2 GB).

Layout of the output folder::

    kspace/       brain.csv, brain_file_list.csv (+ the fastMRI files with keep_kspace)
    figures/      <SEQUENCE>.png: magnitude, phase and boxes of one volume per sequence;
                  patches.png: training patches, normal and abnormal (paper Figure 2)
    patches/      volumes/*.h5, train.h5, val.h5, test.h5, splits.json, manifest.json
    cvae/         the cvae bundle's outputs (CPU profile): model.pt, TensorBoard logs, the
                  per-sequence evaluation table (CSV, Markdown) and figure, latents/{split}.h5
    summary.md    what was made
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from monai_cmri.data.annotations import Annotations, volume_name
from monai_cmri.figures import pick_slices, render_patches, render_slices
from monai_cmri.preprocess import (
    VOLUMES_DIR,
    combined_volume,
    format_table,
    merge,
    patch_volume,
    write_volume_patches,
)
from monai_cmri.simulate import dataset_volume, write_annotations, write_volume

__all__ = ["BUNDLES", "run_cvae", "run_pipeline"]

#: The bundles of the repository (configuration only; run with ``python -m monai.bundle``).
BUNDLES = Path(__file__).resolve().parent.parent / "bundles"


def run_cvae(dataset_dir: Path, output_dir: Path, profile: str = "cpu") -> Path:
    """Train, evaluate and encode with the ``cvae`` bundle, as ``python -m monai.bundle run`` would.

    Args:
        dataset_dir: a folder with ``train.h5``, ``val.h5`` and ``test.h5`` patch files.
        output_dir: the bundle's output folder (``model.pt`` is written to ``output_dir/models``).
        profile: ``"cpu"`` merges ``configs/cpu.json`` (small model, short schedule) on top of the
            full-size defaults; ``"full"`` uses the defaults.

    Returns:
        The Markdown evaluation table (per sequence, paper Table 3 layout).

    Raises:
        OSError: when the bundles are not beside the package (a non-editable install).
    """
    from monai.bundle import run

    configs = BUNDLES / "cvae" / "configs"
    if not configs.is_dir():
        raise OSError(f"{configs}: bundle not found; install the package from a clone with pip install -e .")
    extra = [str(configs / "cpu.json")] if profile == "cpu" else []
    overrides = {"dataset_dir": str(dataset_dir), "output_dir": str(output_dir), "ckpt_dir": str(output_dir / "models"),
                 "bundle_root": str(BUNDLES / "cvae")}
    logging_file = str(configs / "logging.conf")
    run("training", config_file=[str(configs / "train.json"), *extra], logging_file=logging_file, **overrides)
    run("run", config_file=[str(configs / "train.json"), *extra, str(configs / "evaluate.json")],
        logging_file=logging_file, **overrides)
    run("encode", config_file=[str(configs / "inference.json"), *extra], logging_file=logging_file, **overrides)
    table = output_dir / "reconstruction.md"
    if not table.is_file():
        raise OSError(f"{table}: the evaluation wrote no table")
    return table


def run_pipeline(
    out: str | Path,
    volumes: int = 16,
    seed: int = 0,
    *,
    slices: int = 16,
    coils: Sequence[int] | None = None,
    keep_kspace: bool = False,
    train: bool = True,
    progress: bool = True,
) -> Path:
    """Simulate, combine, draw and patch a dataset; print and write what was made.

    Args:
        out: output folder (layout in the module docstring); earlier patch files are replaced.
        volumes: number of simulated volumes.
        seed: seed of the simulation, the patch positions and the splits.
        slices: slices per volume.
        coils: receive coil counts to draw from; the simulator's fastMRI-like mix (8-20) by default.
        keep_kspace: keep the simulated fastMRI files (100-500 MB each).
        train: run the cvae bundle (CPU profile): train, evaluate, encode the splits to latents.
        progress: show a progress bar.

    Returns:
        The path of ``summary.md``.
    """
    from monai_cmri.commands import format_rows, volume_row

    out = Path(out)
    kspace_dir, figures_dir, patches_dir = out / "kspace", out / "figures", out / "patches"
    shutil.rmtree(patches_dir / VOLUMES_DIR, ignore_errors=True)
    for folder in (kspace_dir, figures_dir, patches_dir / VOLUMES_DIR):
        folder.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    rows, findings, annotated, drawn = [], [], [], set()
    for index in tqdm(range(volumes), desc="pipeline", unit="volume", disable=not progress):
        volume = dataset_volume(index, seed, slices=slices, coils=coils)
        path = write_volume(volume, kspace_dir)
        if volume.spec.annotated:
            annotated.append(volume.spec.name)
            findings.extend(volume.annotations)
        del volume
        # The annotation files grow with the dataset, so that a stopped run leaves a consistent pair.
        write_annotations(kspace_dir, findings, annotated)
        labels = Annotations.from_csv(kspace_dir / "brain.csv", kspace_dir / "brain_file_list.csv")
        name, volume_class = volume_name(path), labels.volume_class(volume_name(path))
        rows.append(volume_row(path, labels))

        image, sequence = combined_volume(path)
        if sequence not in drawn:
            shown = pick_slices(image.shape[0])
            render_slices(
                image, figures_dir / f"{sequence}.png", shown,
                {index: labels.boxes(name, index) for index in shown},
                f"{name}  |  {sequence}  |  {volume_class}",
            )
            drawn.add(sequence)
        if volume_class != "excluded":
            patches, plan = patch_volume(image, name, volume_class, seed, labels)
            write_volume_patches(patches_dir, path, volume_class, patches, plan, sequence, seed)
        if not keep_kspace:
            os.remove(path)

    manifest = merge(patches_dir, seed=seed)
    render_patches(patches_dir / "train.h5", figures_dir / "patches.png", seed=seed)
    table = run_cvae(patches_dir, out / "cvae") if train else None
    minutes = (time.monotonic() - start) / 60
    text = "\n".join(
        [
            f"# monai_cmri pipeline: {volumes} simulated volumes, seed {seed} ({minutes:.1f} min)",
            "",
            "## Volumes",
            "",
            "```",
            format_rows(rows),
            "```",
            "",
            "## Patches per class, sequence and split",
            "",
            "```",
            format_table(manifest["table"]),
            "```",
            "",
            f"Figures: {figures_dir}/<SEQUENCE>.png, {figures_dir}/patches.png. "
            f"Patch datasets: {patches_dir}/{{train,val,test}}.h5.",
            "",
        ]
    )
    if table is not None:
        text += "\n".join(
            [
                "",
                "## cvae (CPU profile), test split",
                "",
                table.read_text().strip(),
                "",
                f"Model, logs, figure and latents: {out / 'cvae'}.",
                "",
            ]
        )
    summary = out / "summary.md"
    tmp = summary.with_name(summary.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, summary)
    print(text)
    return summary
