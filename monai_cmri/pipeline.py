"""The main job: the whole pipeline on the simulated dataset (paper 2.1-2.2; README "What this is").

Volumes are streamed: each is simulated and written in the fastMRI format, ESPIRiT-combined,
drawn (the first volume of every sequence), cut into patches, and its k-space deleted unless
kept, so that the disk holds one volume's k-space at a time (a full-size volume is several
hundred MB; the demo stays under 2 GB).

Stages, each announced with one line as it starts: simulate + preprocess (per volume: simulate,
ESPIRiT, figure, patches; in worker processes of one thread each), merge (volume-level splits),
the ``cvae`` bundle's train, evaluate and encode, the ``flow_stage1`` and ``flow_stage2``
bundles' train, model selection (:mod:`monai_cmri.experiments.selection`) and sample (paper 2.3,
2.4.3), then the classifier experiments on a reduced grid
(:data:`DEMO_EXPERIMENTS`, paper 2.4) with the ``classifier`` bundle. Every bundle runs through MONAI's bundle API with its CPU
profile (``configs/cpu.json``). Training needs volumes in train, val and test, so it needs at
least :func:`minimum_volumes` volumes (13); ``train=False`` runs with any number.

Layout of the output folder::

    kspace/       brain.csv, brain_file_list.csv (+ the fastMRI files with keep_kspace)
    figures/      <SEQUENCE>.png: magnitude, phase and boxes of one volume per sequence;
                  patches.png: training patches, normal and abnormal (paper Figure 2)
    patches/      volumes/*.h5, train.h5, val.h5, test.h5, splits.json, manifest.json
    cvae/         the cvae bundle's outputs (CPU profile): model.pt, TensorBoard logs, the
                  per-sequence evaluation table (CSV, Markdown) and figure, latents/{split}.h5
    flow_stage1/  the flow_stage1 bundle's outputs: models/model.pt and the kept
                  models/epoch_*.pt, selection.{json,md} and selection/ (paper 2.4.3: which kept
                  checkpoint samples), synthetic/latents.h5 and patches.h5 (the same number per
                  sequence), samples.png (paper Figure 4), latent_statistics.{csv,md}
    flow_stage2/  the same for flow_stage2, its counts matched to the training split per class and
                  sequence, samples.png normal against abnormal (paper Figure 5)
    experiments/  real_vs_synthetic/, substitution/, additive/: one record per configuration,
                  summary.{csv,md} and the figures (monai_cmri.experiments.classifier)
    summary.md    what was made, with the sheets, the latent statistics and the experiments' tables
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

from tqdm.auto import tqdm

from monai_cmri.atomic import write_text
from monai_cmri.bundles import BUNDLES, bundle_configs, run_bundle
from monai_cmri.data.annotations import Annotations, volume_name
from monai_cmri.data.splits import SPLITS, split_volumes
from monai_cmri.data.summary import format_rows, volume_row
from monai_cmri.experiments.classifier import run_experiments
from monai_cmri.experiments.selection import (
    SELECTION_FILE,
    adopt_selected_samples,
    select_stage1,
    select_stage2,
    selected_checkpoint,
)
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
from monai_cmri.threads import apply_thread_policy, pool_workers, resolve_threads

__all__ = ["BUNDLES", "CVAE_STAGES", "FLOW_STAGES", "EXPERIMENT_STAGES", "DEMO_EXPERIMENTS", "minimum_volumes", "check_size",
           "run_cvae", "run_flow", "run_pipeline"]

#: The runs of the ``cvae`` bundle, in order, and what each does.
CVAE_STAGES: dict[str, str] = {
    "train": "cvae train (CPU profile)",
    "evaluate": "cvae evaluate on the test split",
    "encode": "cvae encode the splits to latents",
}
#: The runs of the two flow bundles, in order, and what each does.
FLOW_STAGES: dict[str, str] = {
    "stage1 train": "flow_stage1 train (CPU profile)",
    "stage1 select": "flow_stage1 select the kept checkpoint with the lowest real-vs-synthetic validation AUROC",
    "stage1 sample": "flow_stage1 sample per sequence, decode, sheet, statistics",
    "stage2 train": "flow_stage2 train from the selected stage 1 (CPU profile)",
    "stage2 select": "flow_stage2 select the kept checkpoint with the highest downstream validation AUROC",
    "stage2 sample": "flow_stage2 sample matched to the training split, decode, sheet, statistics",
}
#: The classifier experiments of the main job, in order, and what each does.
EXPERIMENT_STAGES: dict[str, str] = {
    "real_vs_synthetic": "classifier: real vs synthetic latents per sequence (Table 4)",
    "substitution": "classifier: substitution, real patches replaced by synthetic (Figures 6-7)",
    "additive": "classifier: additive, synthetic patches added to all real ones (Figure 8)",
}
#: The main job's reduced grid of the experiments (the paper's: 5 seeds, 4 synthetic test sets,
#: fractions 0-100 % in steps of 10 %). The classifier's stem halves the input (``stem_stride``
#: 2): a quarter of the work per patch of the CPU profile's network.
DEMO_EXPERIMENTS: dict = {
    "seeds": (0,),
    "test_sets": 1,
    "substitution_fractions": (0.0, 1.0),
    "additive_fractions": (0.0, 1.0),
    "overrides": {"stem_stride": 2},
}
_FLOW_TITLES = {
    "flow_stage1": "synthetic and real patches per sequence (paper Figure 4)",
    "flow_stage2": "synthetic normal and abnormal patches per sequence (paper Figure 5)",
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


def _run_bundle(
    bundle: str,
    runs: dict[str, tuple[str, list[str], dict]],
    overrides: dict,
    profile: str,
    on_stage: Callable[[str], None] | None,
) -> None:
    """Run ``{stage: (run id, config file names, overrides of this run)}`` of one bundle, in order,
    calling ``on_stage`` as each starts (:func:`monai_cmri.bundles.run_bundle`)."""
    bundle_configs(bundle)  # a missing bundle stops before any run
    for stage, (run_id, files, own) in runs.items():
        if on_stage is not None:
            on_stage(stage)
        run_bundle(bundle, run_id, files, {**overrides, **own}, profile)


def run_cvae(
    dataset_dir: Path, output_dir: Path, profile: str = "cpu", on_stage: Callable[[str], None] | None = None
) -> Path:
    """Train, evaluate and encode with the ``cvae`` bundle, as ``python -m monai.bundle run`` would.

    Args:
        dataset_dir: a folder with ``train.h5``, ``val.h5`` and ``test.h5`` patch files.
        output_dir: the bundle's output folder (``model.pt`` is written to ``output_dir/models``,
            the latents to ``output_dir/latents``).
        profile: ``"cpu"`` merges ``configs/cpu.json`` (small model, short schedule) on top of the
            full-size defaults; ``"full"`` uses the defaults.
        on_stage: called with each key of :data:`CVAE_STAGES` as that run starts.

    Returns:
        The Markdown evaluation table (per sequence, paper Table 3 layout).

    Raises:
        OSError: when the bundles are not found (:func:`monai_cmri.bundles.bundle_configs`), or the
            evaluation wrote no table.
    """
    overrides = {"dataset_dir": str(dataset_dir), "output_dir": str(output_dir), "ckpt_dir": str(output_dir / "models")}
    # The main job has just remade the patch files, so its training starts afresh rather than
    # resuming a state made from the previous patches; the bundle run alone resumes by default.
    runs = {
        "train": ("training", ["train.json"], {"resume": False}),
        "evaluate": ("run", ["train.json", "evaluate.json"], {}),
        "encode": ("encode", ["inference.json"], {}),
    }
    _run_bundle("cvae", runs, overrides, profile, on_stage)
    table = output_dir / "reconstruction.md"
    if not table.is_file():
        raise OSError(f"{table}: the evaluation wrote no table")
    return table


def run_flow(
    latents_dir: Path,
    patch_dir: Path,
    cvae_ckpt: Path,
    output_dir: Path,
    profile: str = "cpu",
    on_stage: Callable[[str], None] | None = None,
    selection_overrides: dict | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Train, select and sample both flow stages (paper 2.3, 2.4.3) with the ``flow_stage1`` and
    ``flow_stage2`` bundles.

    Stage 1 trains on the training latents conditioned on the sequence; among the checkpoints it
    keeps, the one with the lowest real-vs-synthetic validation AUROC is selected
    (:func:`monai_cmri.experiments.selection.select_stage1`) and draws the same number of latents
    per sequence. Stage 2 starts from the selected stage-1 weights, adds the class, selects the
    checkpoint with the highest downstream validation AUROC
    (:func:`~monai_cmri.experiments.selection.select_stage2`) and draws a class- and
    sequence-matched set with the counts of the training split. Each sampling run decodes its
    latents through the cvae, draws its sheet and writes the latent statistics.

    Args:
        latents_dir: the cvae's latent files (``train.h5``, ``val.h5``).
        patch_dir: the real patch files, shown beside the synthetic ones in stage 1's sheet.
        cvae_ckpt: the cvae's ``model.pt`` (its ``model.json`` beside it) to decode with.
        output_dir: the parent of the two bundle output folders ``flow_stage1`` and ``flow_stage2``.
        profile: ``"cpu"`` merges each bundle's ``configs/cpu.json``; ``"full"`` does not.
        on_stage: called with each key of :data:`FLOW_STAGES` as that run starts.
        selection_overrides: ``classifier`` bundle variables of the selection runs.
        progress: progress bars over the selection's classifier runs.

    Returns:
        ``{"flow_stage1": folder, "flow_stage2": folder}``.

    Raises:
        OSError: when the bundles are not found, or a run wrote no statistics.
    """
    folders = {bundle: output_dir / bundle for bundle in ("flow_stage1", "flow_stage2")}
    for bundle, folder in folders.items():
        overrides = {"dataset_dir": str(latents_dir), "output_dir": str(folder), "ckpt_dir": str(folder / "models")}
        train = {"resume": False}  # the latents were just remade, as for the cvae
        if bundle == "flow_stage2":
            train["stage1_ckpt"] = str(selected_checkpoint(folders["flow_stage1"]))
        stage = bundle.replace("flow_", "")
        _run_bundle(bundle, {f"{stage} train": ("training", ["train.json"], train)}, overrides, profile, on_stage)
        if on_stage is not None:
            on_stage(f"{stage} select")
        # A selection of an earlier training must not outlive it: the new one replaces it.
        (folder / SELECTION_FILE).unlink(missing_ok=True)
        if bundle == "flow_stage1":
            select_stage1(latents_dir, folder, profile=profile, overrides=selection_overrides, progress=progress)
        else:
            select_stage2(patch_dir, latents_dir, folder, cvae_ckpt, profile=profile, overrides=selection_overrides,
                          progress=progress)
        sample = {"patch_dir": str(patch_dir), "cvae_ckpt": str(cvae_ckpt), "ckpt_path": str(selected_checkpoint(folder))}
        # Stage 2's selection drew the selected weights' set exactly as the run entry would: it is
        # adopted, and only the sheet and statistics are made.
        entry = "report" if bundle == "flow_stage2" and adopt_selected_samples(folder, folder / "synthetic") else "run"
        _run_bundle(bundle, {f"{stage} sample": (entry, ["inference.json"], sample)}, overrides, profile, on_stage)
        statistics = folder / "latent_statistics.md"
        if not statistics.is_file():
            raise OSError(f"{statistics}: the {bundle} inference wrote no latent statistics")
    return folders


def _process_volume(job: tuple) -> dict:
    """Simulate, write, combine, draw (if asked) and patch one volume; the k-space file is removed
    unless kept. Runs in the main process or in a worker of one thread.

    Returns:
        ``name``, ``sequence``, ``class``, ``row`` (:func:`volume_row`), ``annotations`` (the
        volume's annotation rows), ``annotated`` and ``figure`` (a path or None).
    """
    index, seed, slices, coils, kspace_dir, figures_dir, patches_dir, draw, keep_kspace, step = job
    step = step or (lambda text: None)
    step("simulate")
    volume = dataset_volume(index, seed, slices=slices, coils=coils)
    path = write_volume(volume, kspace_dir)
    name = volume_name(path)
    rows, annotated = list(volume.annotations), volume.spec.annotated
    del volume
    # The volume's own rows are all that its class and boxes depend on; they are read as the
    # brain.csv that the main process writes would give them.
    labels = Annotations.from_records(
        [row.csv_row() for row in rows], [name] if annotated else [], source=str(kspace_dir / "brain.csv")
    )
    volume_class = labels.volume_class(name)
    result = {"name": name, "class": volume_class, "row": volume_row(path, labels), "annotations": rows,
              "annotated": annotated, "figure": None}
    step("ESPIRiT")
    image, result["sequence"] = combined_volume(path)
    if draw:
        step("figure")
        shown = pick_slices(image.shape[0])
        result["figure"] = render_slices(
            image, figures_dir / f"{result['sequence']}.png", shown,
            {index: labels.boxes(name, index) for index in shown}, f"{name}  |  {result['sequence']}  |  {volume_class}",
        )
    if volume_class != "excluded":
        step("patches")
        patches, plan = patch_volume(image, name, volume_class, seed, labels)
        write_volume_patches(patches_dir, path, volume_class, patches, plan, result["sequence"], seed)
    if not keep_kspace:
        path.unlink()
    return result


def _one_thread() -> None:
    """Initializer of the volume workers: one thread each (:mod:`monai_cmri.threads`)."""
    apply_thread_policy(1)


def run_pipeline(
    out: str | Path,
    volumes: int = DEMO_VOLUMES,
    seed: int = 0,
    *,
    slices: int = 8,
    coils: Sequence[int] | None = None,
    keep_kspace: bool = False,
    train: bool = True,
    workers: int | str = "auto",
    threads: int | str = "all",
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
        train: run the bundles (CPU profile): the cvae (train, evaluate, encode the splits to
            latents), flow stage 1 and stage 2 (train, sample, decode, sheets, statistics), then the
            classifier experiments on :data:`DEMO_EXPERIMENTS`.
        workers: processes that simulate and preprocess volumes, one thread each
            (:func:`monai_cmri.threads.pool_workers`; ``"auto"`` is one per CPU). The outputs do
            not depend on it beyond float32 rounding (a thread count changes the order of sums). With 1, the volumes are processed in this process and the progress
            bar shows the step of the current one.
        threads: CPU threads of this process for the bundle stages
            (:func:`monai_cmri.threads.apply_thread_policy`, exported so that every bundle's
            ``threads: auto`` resolves to it): ``"all"`` uses every CPU; on two idle cores the cvae
            trains 1.8x and the flow samples 1.9x as fast as with one thread. On a machine shared
            with other jobs ``1`` (or ``"auto"``) avoids the stalls of threads that lose their core.
        progress: show a progress bar over the volumes, and announce each stage.

    Returns:
        The path of ``summary.md``, which ends with the list of the files written.

    Raises:
        ValueError: for a dataset too small to run (:func:`check_size`), or a bad ``workers``,
            before anything runs.
        RuntimeError: when, with ``train``, a split holds no patch (the summary is written first).
    """
    check_size(volumes, slices, train=train, seed=seed)
    workers = pool_workers(workers, jobs=volumes)
    resolve_threads(threads)  # a bad value stops before anything runs
    out = Path(out)
    kspace_dir, figures_dir, patches_dir = out / "kspace", out / "figures", out / "patches"
    shutil.rmtree(patches_dir / VOLUMES_DIR, ignore_errors=True)
    for folder in (kspace_dir, figures_dir, patches_dir / VOLUMES_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    stages = ["simulate + preprocess", "merge",
              *((*CVAE_STAGES.values(), *FLOW_STAGES.values(), *EXPERIMENT_STAGES.values()) if train else ())]

    def announce(stage: str, detail: str) -> None:
        if progress:
            tqdm.write(f"[{stages.index(stage) + 1}/{len(stages)}] {stage}: {detail}")

    start = time.monotonic()
    rows, findings, annotated, figures = [], [], [], []
    # The first volume of each sequence is drawn; the plan says which without simulating anything.
    first: dict[str, int] = {}
    for index in range(volumes):
        first.setdefault(plan_volume(index, seed, slices=slices, coils=coils).sequence, index)
    announce("simulate + preprocess", f"{volumes} volumes of {slices} slices, {workers} worker(s) -> "
             f"{patches_dir / VOLUMES_DIR}")
    bar = tqdm(total=volumes, desc="volumes", unit="volume", disable=not progress)
    step = bar.set_postfix_str if workers == 1 else None
    jobs = [(index, seed, slices, coils, kspace_dir, figures_dir, patches_dir, index in first.values(), keep_kspace,
             step) for index in range(volumes)]
    if workers == 1:
        results = map(_process_volume, jobs)
    else:
        bar.set_postfix_str(f"{workers} workers")
        pool = ProcessPoolExecutor(workers, initializer=_one_thread)
        results = pool.map(_process_volume, jobs)
    try:
        for result in results:
            rows.append(result["row"])
            if result["annotated"]:
                annotated.append(result["name"])
                findings.extend(result["annotations"])
            if result["figure"] is not None:
                figures.append(result["figure"])
            # The annotation files grow in volume order, so that a stopped run leaves a consistent pair.
            write_annotations(kspace_dir, findings, annotated)
            bar.update()
    finally:
        if workers > 1:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.set_postfix_str("done")
    bar.close()

    announce("merge", f"volume-level splits -> {patches_dir}")
    manifest = merge(patches_dir, seed=seed)
    if (patches_dir / "train.h5").is_file():
        figures.append(render_patches(patches_dir / "train.h5", figures_dir / "patches.png", seed=seed))
    empty = [split for split in SPLITS if not manifest["patches"].get(split)]
    table, flows, experiments, problem = None, {}, {}, None
    if train and empty:
        problem = (
            f"the {' and '.join(empty)} split(s) hold no patch ({volumes} volumes of {slices} slices), so the cvae "
            f"bundle cannot run; more slices or volumes (--slices, --volumes) give every split patches, "
            f"or skip training (--notrain)"
        )
    elif train:
        count = apply_thread_policy(threads)
        if progress:
            tqdm.write(f"bundle stages: {count} CPU thread(s)")
        cvae_dir = out / "cvae"
        targets = {"train": cvae_dir / "models" / "model.pt", "evaluate": cvae_dir / "reconstruction.md",
                   "encode": cvae_dir / "latents"}
        table = run_cvae(
            patches_dir, cvae_dir, on_stage=lambda stage: announce(CVAE_STAGES[stage], f"-> {targets[stage]}")
        )
        flows = run_flow(
            cvae_dir / "latents", patches_dir, cvae_dir / "models" / "model.pt", out,
            on_stage=lambda stage: announce(FLOW_STAGES[stage], f"-> {out / ('flow_' + stage.split()[0])}"),
            selection_overrides=DEMO_EXPERIMENTS["overrides"], progress=progress,
        )
        experiments = run_experiments(
            out, progress=progress, **DEMO_EXPERIMENTS,
            on_experiment=lambda name: announce(EXPERIMENT_STAGES[name], f"-> {out / 'experiments' / name}"),
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
    for bundle, folder in flows.items():
        sections += [f"## {bundle} (CPU profile): {_FLOW_TITLES[bundle]}", "",
                     f"Model selection ({(folder / SELECTION_FILE).relative_to(out)}): "
                     + (folder / "selection.md").read_text().strip(), "",
                     f"![{bundle} samples]({(folder / 'samples.png').relative_to(out)})", "",
                     "Latent statistics, synthetic against the real training latents, per sequence and channel:", "",
                     (folder / "latent_statistics.md").read_text().strip(), ""]
    if experiments:
        grid = DEMO_EXPERIMENTS
        sections += [
            "## Classifier experiments (CPU profile, reduced grid)", "",
            f"Seeds {list(grid['seeds'])}; {grid['test_sets']} synthetic test set(s) per sequence; substitution at "
            f"{', '.join(f'{100 * f:.0f} %' for f in grid['substitution_fractions'])} real; additive with "
            f"{', '.join(f'{100 * f:.0f} %' for f in grid['additive_fractions'])} synthetic added. AUROC on the "
            "real test split (downstream) or on real against synthetic test latents; the demo's training split "
            "holds one volume per labeled class and sequence, so these show the code path, not the method.", "",
        ]
        for name, summary_table in experiments.items():
            sections += [f"### {name}", "", summary_table.read_text().strip(), ""]
            figure = summary_table.parent / f"{name}.png"
            if figure.is_file():
                sections += [f"![{name}]({figure.relative_to(out)})", ""]
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
        for bundle in ("flow_stage1", "flow_stage2"):
            folder = out / bundle
            groups += [
                (f"{bundle} model", [folder / "models" / "model.pt"]),
                (f"{bundle} kept checkpoints", sorted((folder / "models").glob("epoch_*.pt"))),
                (f"{bundle} selection", [folder / SELECTION_FILE, folder / "selection.md"]),
                (f"{bundle} synthetic set", [folder / "synthetic" / "latents.h5", folder / "synthetic" / "patches.h5"]),
                (f"{bundle} sheet and statistics", [folder / "samples.png", *sorted(folder.glob("latent_statistics.*"))]),
                (f"{bundle} TensorBoard logs", sorted(folder.glob("events.out.tfevents.*"))[-1:]),
            ]
    if trained:
        for name in EXPERIMENT_STAGES:
            folder = out / "experiments" / name
            groups.append((f"{name} results", [*sorted(folder.glob("summary.*")), *sorted(folder.glob("*.png"))]))
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
