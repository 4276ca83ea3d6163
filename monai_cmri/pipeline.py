"""The main job: the whole pipeline on the simulated dataset (paper 2.1-2.2; README "What this is").

Volumes are streamed: each is simulated and written in the fastMRI format, ESPIRiT-combined,
drawn (the first volume of every sequence), cut into patches, and its k-space deleted unless
kept, so that the disk holds one volume's k-space at a time (a full-size volume is several
hundred MB; the demo stays under 2 GB).

Stages, each announced with one line as it starts: simulate + preprocess (per volume: simulate,
ESPIRiT, figure, patches, shown beside the progress bar), merge (volume-level splits), then the
``cvae`` bundle's train, evaluate and encode. Training needs volumes in train, val and test, so it
needs at least :func:`minimum_volumes` volumes (13); ``train=False`` runs with any number.

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

import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm

from monai_cmri.atomic import write_text
from monai_cmri.data.annotations import Annotations, volume_name
from monai_cmri.data.splits import SPLITS, split_volumes
from monai_cmri.data.summary import format_rows, volume_row
from monai_cmri.figures import pick_slices, render_patches, render_slices
from monai_cmri.preprocess import (
    VOLUMES_DIR,
    combined_volume,
    format_table,
    merge,
    patch_volume,
    write_volume_patches,
)
from monai_cmri.simulate import DEMO_VOLUMES, dataset_volume, plan_volume, write_annotations, write_volume

__all__ = ["BUNDLES", "CVAE_STAGES", "minimum_volumes", "check_size", "run_cvae", "run_pipeline"]

#: The bundles of the repository (configuration only; run with ``python -m monai.bundle``).
BUNDLES = Path(__file__).resolve().parent.parent / "bundles"
#: The runs of the ``cvae`` bundle, in order, and what each does.
CVAE_STAGES: dict[str, str] = {
    "train": "cvae train (CPU profile)",
    "evaluate": "cvae evaluate on the test split",
    "encode": "cvae encode the splits to latents",
}
# Volumes past which minimum_volumes stops looking (the simulator's schedule is 27 volumes long).
_SEARCH_LIMIT = 1000


@lru_cache(maxsize=None)
def minimum_volumes(seed: int = 0) -> int:
    """Fewest simulated volumes whose volume-level split leaves train, val and test non-empty.

    The classes of the first volumes follow the simulator's fixed schedule
    (:data:`monai_cmri.simulate.cohort.SCHEDULE`), and each (class, sequence) cell is split on its
    own (:func:`monai_cmri.data.splits.split_volumes`): a cell needs 3 volumes before it gives one
    to val and one to test, which first happens at the 13th volume (the third AXT2 one).

    Args:
        seed: dataset seed (the answer is the same for every seed; it is kept for volumes past the
            schedule, whose classes are drawn).

    Raises:
        RuntimeError: when no dataset size up to 1000 volumes fills every split.
    """
    classes: dict[str, str] = {}
    for index in range(_SEARCH_LIMIT):
        spec = plan_volume(index, seed, slices=1, width=16, readout=32, coils=[1])
        classes[spec.name] = spec.volume_class
        if set(split_volumes(classes, seed).values()) == set(SPLITS):
            return index + 1
    raise RuntimeError(f"no simulated dataset of up to {_SEARCH_LIMIT} volumes fills the train, val and test splits")


def check_size(volumes: int, slices: int, train: bool = True, seed: int = 0) -> None:
    """Check, before anything runs, that the main job can run on a dataset of this size.

    Args:
        volumes: simulated volumes.
        slices: slices per volume.
        train: whether the ``cvae`` bundle runs (it needs volumes in train, val and test).
        seed: dataset seed.

    Raises:
        ValueError: for fewer than 1 volume or slice, or, with ``train``, fewer volumes than
            :func:`minimum_volumes`; the message says the minimum.
    """
    if volumes < 1 or slices < 1:
        raise ValueError(f"the main job needs at least 1 volume and 1 slice, got {volumes} volumes, {slices} slices")
    needed = minimum_volumes(seed)
    if train and volumes < needed:
        raise ValueError(
            f"training needs at least {needed} volumes, got {volumes}: with fewer, the volume-level splits "
            f"(70/15/15 per class, paper 2.1.3) leave no volume to validate and test on; "
            f"use {needed} volumes or more (--volumes), or stop after the patch datasets (--notrain)"
        )


def run_cvae(
    dataset_dir: Path, output_dir: Path, profile: str = "cpu", on_stage: Callable[[str], None] | None = None
) -> Path:
    """Train, evaluate and encode with the ``cvae`` bundle, as ``python -m monai.bundle run`` would.

    Args:
        dataset_dir: a folder with ``train.h5``, ``val.h5`` and ``test.h5`` patch files.
        output_dir: the bundle's output folder (``model.pt`` is written to ``output_dir/models``).
        profile: ``"cpu"`` merges ``configs/cpu.json`` (small model, short schedule) on top of the
            full-size defaults; ``"full"`` uses the defaults.
        on_stage: called with each key of :data:`CVAE_STAGES` as that run starts.

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
    runs = {
        "train": ("training", [str(configs / "train.json"), *extra]),
        "evaluate": ("run", [str(configs / "train.json"), *extra, str(configs / "evaluate.json")]),
        "encode": ("encode", [str(configs / "inference.json"), *extra]),
    }
    for stage, (run_id, config_file) in runs.items():
        if on_stage is not None:
            on_stage(stage)
        # The main job has just remade the patch files, so its training starts afresh rather than
        # resuming a state made from the previous patches; the bundle run alone resumes by default.
        extra_overrides = {"resume": False} if stage == "train" else {}
        with warnings.catch_warnings():
            # MONAI warns once per config file that it parses one; these are the repository's own.
            warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
            run(run_id, config_file=config_file, logging_file=logging_file, **overrides, **extra_overrides)
    table = output_dir / "reconstruction.md"
    if not table.is_file():
        raise OSError(f"{table}: the evaluation wrote no table")
    return table


def run_pipeline(
    out: str | Path,
    volumes: int = DEMO_VOLUMES,
    seed: int = 0,
    *,
    slices: int = 8,
    coils: Sequence[int] | None = None,
    keep_kspace: bool = False,
    train: bool = True,
    progress: bool = True,
) -> Path:
    """Simulate, combine, draw and patch a dataset, train on it; print and write what was made.

    Args:
        out: output folder (layout in the module docstring); earlier patch files are replaced.
        volumes: number of simulated volumes; with ``train``, at least :func:`minimum_volumes`.
        seed: seed of the simulation, the patch positions and the splits.
        slices: slices per volume.
        coils: receive coil counts to draw from; the simulator's fastMRI-like mix (8-20) by default.
        keep_kspace: keep the simulated fastMRI files (100-500 MB each).
        train: run the cvae bundle (CPU profile): train, evaluate, encode the splits to latents.
        progress: show a progress bar with the step of the current volume, and announce each stage.

    Returns:
        The path of ``summary.md``, which ends with the list of the files written.

    Raises:
        ValueError: for a dataset too small to run (:func:`check_size`), before anything runs.
        RuntimeError: when, with ``train``, a split holds no patch (the summary is written first).
    """
    check_size(volumes, slices, train=train, seed=seed)
    out = Path(out)
    kspace_dir, figures_dir, patches_dir = out / "kspace", out / "figures", out / "patches"
    shutil.rmtree(patches_dir / VOLUMES_DIR, ignore_errors=True)
    for folder in (kspace_dir, figures_dir, patches_dir / VOLUMES_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    stages = ["simulate + preprocess", "merge", *(CVAE_STAGES.values() if train else ())]

    def announce(stage: str, detail: str) -> None:
        if progress:
            tqdm.write(f"[{stages.index(stage) + 1}/{len(stages)}] {stage}: {detail}")

    start = time.monotonic()
    rows, findings, annotated, drawn, figures = [], [], [], set(), []
    announce("simulate + preprocess", f"{volumes} volumes of {slices} slices -> {patches_dir / VOLUMES_DIR}")
    bar = tqdm(range(volumes), desc="volumes", unit="volume", disable=not progress)
    for index in bar:
        bar.set_postfix_str("simulate")
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

        bar.set_postfix_str("ESPIRiT")
        image, sequence = combined_volume(path)
        if sequence not in drawn:
            bar.set_postfix_str("figure")
            shown = pick_slices(image.shape[0])
            figures.append(render_slices(
                image, figures_dir / f"{sequence}.png", shown,
                {index: labels.boxes(name, index) for index in shown},
                f"{name}  |  {sequence}  |  {volume_class}",
            ))
            drawn.add(sequence)
        if volume_class != "excluded":
            bar.set_postfix_str("patches")
            patches, plan = patch_volume(image, name, volume_class, seed, labels)
            write_volume_patches(patches_dir, path, volume_class, patches, plan, sequence, seed)
        if not keep_kspace:
            path.unlink()
    bar.set_postfix_str("done")
    bar.close()

    announce("merge", f"volume-level splits -> {patches_dir}")
    manifest = merge(patches_dir, seed=seed)
    if (patches_dir / "train.h5").is_file():
        figures.append(render_patches(patches_dir / "train.h5", figures_dir / "patches.png", seed=seed))
    empty = [split for split in SPLITS if not manifest["patches"].get(split)]
    table, problem = None, None
    if train and empty:
        problem = (
            f"the {' and '.join(empty)} split(s) hold no patch ({volumes} volumes of {slices} slices), so the cvae "
            f"bundle cannot run; more slices or volumes (--slices, --volumes) give every split patches, "
            f"or skip training (--notrain)"
        )
    elif train:
        cvae_dir = out / "cvae"
        targets = {"train": cvae_dir / "models" / "model.pt", "evaluate": cvae_dir / "reconstruction.md",
                   "encode": cvae_dir / "latents"}
        table = run_cvae(
            patches_dir, cvae_dir, on_stage=lambda stage: announce(CVAE_STAGES[stage], f"-> {targets[stage]}")
        )
    minutes = (time.monotonic() - start) / 60
    summary = out / "summary.md"
    sections = [
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
    ]
    if table is not None:
        sections += ["## cvae (CPU profile), test split", "", table.read_text().strip(), ""]
    if problem is not None:
        sections += ["## cvae: not run", "", problem, ""]
    sections += ["## Files written", "", *_written(out, figures, manifest, keep_kspace, table is not None, summary), ""]
    text = "\n".join(sections)
    write_text(summary, text)
    print(text)
    if problem is not None:
        raise RuntimeError(problem)
    return summary


def _written(
    out: Path, figures: Sequence[Path], manifest: dict, keep_kspace: bool, trained: bool, summary: Path
) -> list[str]:
    """Markdown list items of the files this run wrote, grouped by what they are; only files that exist."""
    patches_dir, kspace_dir, cvae_dir = out / "patches", out / "kspace", out / "cvae"
    groups = [
        ("figures", list(figures)),
        ("patch datasets", [patches_dir / f"{split}.h5" for split in SPLITS]),
        ("splits and manifest", [patches_dir / "splits.json", patches_dir / "manifest.json"]),
        ("per-volume patch files", sorted((patches_dir / VOLUMES_DIR).glob("*.h5"))),
        ("annotations", [kspace_dir / "brain.csv", kspace_dir / "brain_file_list.csv"]),
        ("k-space", sorted(kspace_dir.glob("*.h5")) if keep_kspace else []),
    ]
    if trained:
        groups += [
            ("cvae model", [cvae_dir / "models" / "model.pt"]),
            ("cvae evaluation", sorted(cvae_dir.glob("reconstruction.*"))),
            ("cvae latents", [cvae_dir / "latents" / f"{split}.h5" for split in SPLITS]),
            ("cvae TensorBoard logs", sorted(cvae_dir.glob("events.out.tfevents.*"))[-1:]),
        ]
    groups.append(("this summary", [summary]))
    lines = []
    for what, paths in groups:
        paths = [path for path in paths if path == summary or path.is_file()]
        if len(paths) > 6:
            lines.append(f"- {what}: {len(paths)} files in {paths[0].parent}")
        elif paths:
            counts = manifest["patches"] if what == "patch datasets" else {}
            lines.append(f"- {what}: " + ", ".join(
                f"{path} ({counts[path.stem]} patches)" if path.stem in counts else str(path) for path in paths))
    return lines
