"""The main job: the whole pipeline on the simulated dataset (paper 2.1-2.4; README "What this is").

``python -m monai_cmri pipeline --profile demo|gpu|paper --out DIR`` (:func:`run_pipeline`).
Volumes are streamed: each is simulated and written in the fastMRI format, ESPIRiT-combined,
drawn (the first volume of every sequence), cut into patches, and its k-space deleted unless
kept, so that the disk holds one volume's k-space at a time per worker (a full-size volume is
several hundred MB; the demo stays under 2 GB).

Stages, each announced with one line as it starts: simulate + preprocess (per volume, in worker
processes of one thread each), merge (volume-level splits), the ``cvae`` bundle's train, evaluate
and encode, the ``flow_stage1`` and ``flow_stage2`` bundles' train, model selection
(:mod:`monai_cmri.experiments.selection`, paper 2.4.3) and sample, the classifier experiments
(paper 2.4) with the ``classifier`` bundle, and the report (:mod:`monai_cmri.report`). Every
bundle runs through MONAI's bundle API with the profile's settings (:mod:`monai_cmri.profiles`).
Training needs volumes in train, val and test, so it needs at least :func:`minimum_volumes`
volumes (24); ``train=False`` runs with any number.

The run resumes: ``run.json`` records every finished stage, ``progress/volumes/`` every finished
volume; a killed run started again with the same arguments skips what was finished, continues
training from its last epoch (the bundles' trainer state) and the selection and experiments from
their records, and ends with the outputs of an uninterrupted run. Every file is written under a
temporary name and renamed, so a kill leaves no half-written output.

Layout of the output folder::

    run.json      arguments, profile, finished stages with their times, hardware and versions
    progress/     volumes/<index>.json: each finished volume (name, class, table row, annotations)
    kspace/       brain.csv, brain_file_list.csv (+ the fastMRI files with keep_kspace)
    figures/      <SEQUENCE>.png: magnitude, phase and boxes of one volume per sequence;
                  patches.png: training patches, normal and abnormal (paper Figure 2)
    patches/      volumes/*.h5, train.h5, val.h5, test.h5, splits.json, manifest.json
    cvae/         the cvae bundle's outputs: model.pt, TensorBoard logs, the per-sequence
                  evaluation table (CSV, Markdown) and figure, latents/{split}.h5
    flow_stage1/  the flow_stage1 bundle's outputs: models/model.pt and the kept
                  models/epoch_*.pt, selection.{json,md} and selection/ (paper 2.4.3: which kept
                  checkpoint samples), synthetic/latents.h5 and patches.h5 (the same number per
                  sequence), samples.png (paper Figure 4), latent_statistics.{csv,md}
    flow_stage2/  the same for flow_stage2, its counts matched to the training split per class and
                  sequence, samples.png normal against abnormal (paper Figure 5)
    experiments/  real_vs_synthetic/, substitution/, additive/: one record per configuration,
                  summary.{csv,md} and the figures (monai_cmri.experiments.classifier)
    summary.md    what was made, with the sheets, the latent statistics and the experiments' tables
    report.md, report.html   the report (paper tables and figures beside ours, run details)
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from monai_cmri.atomic import FolderLock, remove_stale_temporaries, write_json, write_text
from monai_cmri.bundles import run_bundle
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
from monai_cmri.profiles import Profile
from monai_cmri.profiles import profile as get_profile
from monai_cmri.simulate import dataset_volume, plan_volume, write_annotations, write_volume
from monai_cmri.simulate.boxes import Annotation
from monai_cmri.threads import apply_thread_policy, pool_workers, resolve_threads

__all__ = ["CVAE_STAGES", "FLOW_STAGES", "EXPERIMENT_STAGES", "RUN_RECORD", "PROGRESS_DIR", "RunRecord",
           "minimum_volumes", "check_size", "run_pipeline"]

#: The runs of the ``cvae`` bundle, in order, and what each does.
CVAE_STAGES: dict[str, str] = {
    "cvae train": "cvae train",
    "cvae evaluate": "cvae evaluate on the test split",
    "cvae encode": "cvae encode the splits to latents",
}
#: The runs of the two flow bundles, in order, and what each does.
FLOW_STAGES: dict[str, str] = {
    "stage1 train": "flow_stage1 train",
    "stage1 select": "flow_stage1 select the kept checkpoint with the lowest real-vs-synthetic validation AUROC",
    "stage1 sample": "flow_stage1 sample per sequence, decode, sheet, statistics",
    "stage2 train": "flow_stage2 train from the selected stage 1",
    "stage2 select": "flow_stage2 select the kept checkpoint with the highest downstream validation AUROC",
    "stage2 sample": "flow_stage2 sample matched to the training split, decode, sheet, statistics",
}
#: The classifier experiments of the main job, in order, and what each does.
EXPERIMENT_STAGES: dict[str, str] = {
    "real_vs_synthetic": "classifier: real vs synthetic latents per sequence (Table 4)",
    "substitution": "classifier: substitution, real patches replaced by synthetic (Figures 6-7)",
    "additive": "classifier: additive, synthetic patches added to all real ones (Figure 8)",
}
#: The main job's record of what it has done (:class:`RunRecord`), in its output folder.
RUN_RECORD = "run.json"
#: Where the main job records each finished volume (``volumes/<index>.json``), in its output folder.
PROGRESS_DIR = "progress"
_FLOW_TITLES = {
    "flow_stage1": "synthetic and real patches per sequence (paper Figure 4)",
    "flow_stage2": "synthetic normal and abnormal patches per sequence (paper Figure 5)",
}
# Volumes past which minimum_volumes stops looking (the simulator's schedule is 27 volumes long).
_SEARCH_LIMIT = 1000


@lru_cache(maxsize=None)
def minimum_volumes(seed: int = 0) -> int:
    """Fewest simulated volumes whose volume-level split gives train, val and test normal and
    abnormal volumes.

    Every stage after the patches needs them: the cvae validates and tests on val and test, stage
    2's model selection scores a normal-vs-abnormal classifier on val, and the experiments score
    theirs on test. The classes of the first volumes follow the simulator's fixed schedule
    (:data:`monai_cmri.simulate.cohort.SCHEDULE`), and each (class, sequence) cell is split on its
    own (:func:`monai_cmri.data.splits.split_volumes`): a cell needs 3 volumes before it gives one
    to val and one to test, which happens for a normal and an abnormal cell first at the 24th volume.

    Args:
        seed: dataset seed (the answer is the same for every seed; it is kept for volumes past the
            schedule, whose classes are drawn).

    Raises:
        RuntimeError: when no dataset size up to 1000 volumes gives every split both classes.
    """
    classes: dict[str, str] = {}
    for index in range(_SEARCH_LIMIT):
        spec = plan_volume(index, seed, slices=1, width=16, readout=32, coils=[1])
        classes[spec.name] = spec.volume_class
        splits = split_volumes(classes, seed)
        if all({"normal", "abnormal"} <= {classes[name] for name, split in splits.items() if split == wanted}
               for wanted in SPLITS):
            return index + 1
    raise RuntimeError(
        f"no simulated dataset of up to {_SEARCH_LIMIT} volumes gives train, val and test normal and abnormal volumes"
    )


def check_size(volumes: int, slices: int, train: bool = True, seed: int = 0) -> None:
    """Check, before anything runs, that the main job can run on a dataset of this size.

    Args:
        volumes: simulated volumes.
        slices: slices per volume.
        train: whether the bundles run (they need normal and abnormal volumes in train, val and test).
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
            f"(70/15/15 per class, paper 2.1.3) leave no normal and abnormal volumes to validate and test on; "
            f"use {needed} volumes or more (--volumes), or stop after the patch datasets (--notrain)"
        )


class RunRecord:
    """``run.json``: what a main-job folder holds, rewritten (atomically) as each stage starts and ends.

    It records the arguments and profile that define the run, the stages finished (with their
    time and whether they continued an interrupted attempt), the stage running now, and the
    hardware and package versions of the latest attempt. A rerun with the same arguments skips the
    finished stages and continues the one that was running; a rerun with other arguments is refused,
    so that one folder never mixes two runs.

    Args:
        out: the main job's output folder.
        arguments: the settings that define the outputs (profile, volumes, seed, ...).
        environment: hardware and package versions of this attempt.

    Raises:
        ValueError: when ``out`` holds a run made with other arguments.
    """

    def __init__(self, out: Path, arguments: dict[str, Any], environment: dict[str, Any]) -> None:
        self.path = out / RUN_RECORD
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            earlier = json.loads(self.path.read_text())
        except FileNotFoundError:
            earlier = None
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.path}: unreadable run record ({error}); choose another --out") from None
        if earlier is not None and earlier.get("arguments") != arguments:
            theirs = earlier.get("arguments") or {}
            changed = sorted(key for key in {*theirs, *arguments} if theirs.get(key) != arguments.get(key))
            differences = ", ".join(f"{key}: {theirs.get(key)!r} there, {arguments.get(key)!r} now" for key in changed)
            raise ValueError(
                f"{out}: holds a run made with other settings ({differences}); rerun with the same arguments "
                "to resume it, or choose another --out"
            )
        self.fresh = earlier is None
        self.record: dict[str, Any] = earlier or {"format": 1, "arguments": arguments, "started": now, "stages": []}
        #: The stage an earlier attempt was running when it stopped (it continues where it was).
        self.interrupted: str | None = self.record.get("running")
        self.record.update(environment=environment, finished=None, attempts=self.record.get("attempts", 0) + 1)
        self.save()

    def done(self, stage: str) -> bool:
        """Whether ``stage`` has finished in this folder."""
        return any(entry["name"] == stage for entry in self.record["stages"])

    def start(self, stage: str) -> bool:
        """Record that ``stage`` runs; return whether it continues an interrupted attempt."""
        self.record["running"] = stage
        self.save()
        return stage == self.interrupted

    def finish(self, stage: str, seconds: float, resumed: bool) -> None:
        """Record that ``stage`` finished after ``seconds`` (of this attempt)."""
        self.record["stages"].append({"name": stage, "seconds": round(seconds, 2), "resumed": resumed})
        self.record["running"] = None
        self.save()

    def close(self) -> None:
        """Record the end of the run."""
        self.record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.save()

    def seconds(self) -> float:
        """Time of the finished stages, summed."""
        return sum(entry["seconds"] for entry in self.record["stages"])

    def save(self) -> None:
        write_json(self.path, self.record)


def _stage_runs(out: Path, profile: Profile, progress: bool = True) -> dict[str, Callable[[bool], None]]:
    """The bundle stages of the main job in order: ``{stage: run(resume)}``, each through MONAI's
    bundle API (:func:`monai_cmri.bundles.run_bundle`) with the profile's settings. ``resume``
    says whether the stage continues an interrupted attempt: training then resumes from its
    trainer state (the next epoch), and the selection and experiments from their records."""
    patches_dir, cvae_dir = out / "patches", out / "cvae"
    cvae_ckpt, latents_dir = cvae_dir / "models" / "model.pt", cvae_dir / "latents"
    bundle_profile = profile.bundle_profile

    def bundle(name: str, folder: Path, **own: Any) -> dict[str, Any]:
        return {"dataset_dir": str(latents_dir if name.startswith("flow") else patches_dir),
                "output_dir": str(folder), "ckpt_dir": str(folder / "models"), **profile.overrides(name), **own}

    cvae = bundle("cvae", cvae_dir)
    runs: dict[str, Callable[[bool], None]] = {
        # Training starts afresh unless it continues an interrupted attempt of this run: a trainer
        # state left by another run was made from other data.
        "cvae train": lambda resume: run_bundle("cvae", "training", ["train.json"], {**cvae, "resume": resume},
                                                bundle_profile),
        "cvae evaluate": lambda resume: run_bundle("cvae", "run", ["train.json", "evaluate.json"], cvae, bundle_profile),
        "cvae encode": lambda resume: run_bundle("cvae", "encode", ["inference.json"], cvae, bundle_profile),
    }
    folders = {name: out / name for name in ("flow_stage1", "flow_stage2")}
    for name, folder in folders.items():
        stage = name.replace("flow_", "")

        def train(resume: bool, name: str = name, folder: Path = folder) -> None:
            own: dict[str, Any] = {"resume": resume}
            if name == "flow_stage2":
                own["stage1_ckpt"] = str(selected_checkpoint(folders["flow_stage1"]))
            run_bundle(name, "training", ["train.json"], bundle(name, folder, **own), bundle_profile)

        def select(resume: bool, name: str = name, folder: Path = folder) -> None:
            # A selection of an earlier training must not outlive it; the classifiers' records of
            # an interrupted selection are kept and reused (their checkpoint hashes are checked).
            (folder / SELECTION_FILE).unlink(missing_ok=True)
            common = {"profile": bundle_profile, "overrides": profile.grid()["overrides"], "progress": progress,
                      "flow_overrides": profile.overrides(name)}
            if name == "flow_stage1":
                select_stage1(latents_dir, folder, **common)
            else:
                select_stage2(patches_dir, latents_dir, folder, cvae_ckpt, **common)

        def sample(resume: bool, name: str = name, folder: Path = folder) -> None:
            own = {"patch_dir": str(patches_dir), "cvae_ckpt": str(cvae_ckpt),
                   "ckpt_path": str(selected_checkpoint(folder))}
            # Stage 2's selection drew the selected weights' set exactly as the run entry would:
            # it is adopted, and only the sheet and statistics are made.
            entry = "report" if name == "flow_stage2" and adopt_selected_samples(folder, folder / "synthetic") else "run"
            run_bundle(name, entry, ["inference.json"], bundle(name, folder, **own), bundle_profile)
            statistics = folder / "latent_statistics.md"
            if not statistics.is_file():
                raise OSError(f"{statistics}: the {name} inference wrote no latent statistics")

        runs.update({f"{stage} train": train, f"{stage} select": select, f"{stage} sample": sample})
    for experiment in EXPERIMENT_STAGES:
        runs[experiment] = lambda resume, experiment=experiment: run_experiments(
            out, which=[experiment], profile=bundle_profile, progress=False, **profile.grid())
    return runs


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


def _worker_context() -> multiprocessing.context.BaseContext | None:
    """How the volume workers start: spawned where there is a CUDA device (their ESPIRiT runs on it,
    and CUDA cannot be used in a process forked from one that has touched it); forked otherwise,
    which starts faster."""
    import torch

    return multiprocessing.get_context("spawn") if torch.cuda.is_available() else None


def _one_thread() -> None:
    """Initializer of the volume workers: one thread each (:mod:`monai_cmri.threads`)."""
    apply_thread_policy(1)


def run_pipeline(
    out: str | Path,
    volumes: int | None = None,
    seed: int = 0,
    *,
    profile: str | Profile = "demo",
    slices: int | None = None,
    coils: Sequence[int] | None = None,
    keep_kspace: bool = False,
    train: bool = True,
    workers: int | str = "auto",
    threads: int | str = "all",
    progress: bool = True,
) -> Path:
    """Simulate, combine, draw and patch a dataset, train, select, sample and evaluate on it, and
    report; resume what an earlier attempt in ``out`` left unfinished.

    Every stage is recorded in ``out/run.json`` (:class:`RunRecord`) when it finishes; a rerun with
    the same arguments skips the finished stages, continues the one that was running (volumes
    already patched, training from its last epoch, selection and experiment configurations already
    scored) and ends with the outputs an uninterrupted run would have written. One run at a time
    may use a folder (:class:`~monai_cmri.atomic.FolderLock`).

    Args:
        out: output folder (layout in the module docstring).
        volumes: number of simulated volumes (the profile's by default); with ``train``, at least
            :func:`minimum_volumes`.
        seed: seed of the simulation, the patch positions and the splits.
        profile: a name in :data:`monai_cmri.profiles.PROFILES` (``demo``, ``gpu``, ``paper``) or a
            :class:`~monai_cmri.profiles.Profile`: bundle settings and experiment grid.
        slices: slices per volume (the profile's by default).
        coils: receive coil counts to draw from; the simulator's fastMRI-like mix (8-20) by default.
        keep_kspace: keep the simulated fastMRI files (100-500 MB each).
        train: run the bundles: the cvae (train, evaluate, encode the splits to latents), flow
            stage 1 and stage 2 (train, select, sample, decode, sheets, statistics), then the
            classifier experiments on the profile's grid.
        workers: processes that simulate and preprocess volumes, one thread each
            (:func:`monai_cmri.threads.pool_workers`; ``"auto"`` is one per CPU). The outputs do
            not depend on it beyond float32 rounding (a thread count changes the order of sums).
            With 1, the volumes are processed in this process and the progress bar shows the step
            of the current one.
        threads: CPU threads of this process for the bundle stages
            (:func:`monai_cmri.threads.apply_thread_policy`, exported so that every bundle's
            ``threads: auto`` resolves to it): ``"all"`` uses every CPU; on two idle cores the cvae
            trains 1.8x and the flow samples 1.9x as fast as with one thread. On a machine shared
            with other jobs ``1`` (or ``"auto"``) avoids the stalls of threads that lose their core.
        progress: show a progress bar over the volumes, and announce each stage.

    Returns:
        The path of ``summary.md``, which ends with the list of the files written.

    Raises:
        ValueError: for a dataset too small to run (:func:`check_size`), a bad ``workers`` or
            profile, or a folder that holds a run with other arguments, before anything runs.
        FolderLockedError: while another run uses ``out``.
        RuntimeError: when, with ``train``, a split holds no patch (the summary is written first).
    """
    chosen = profile if isinstance(profile, Profile) else get_profile(profile)
    volumes = chosen.volumes if volumes is None else volumes
    slices = chosen.slices if slices is None else slices
    check_size(volumes, slices, train=train, seed=seed)
    workers = pool_workers(workers, jobs=volumes)
    resolve_threads(threads)  # a bad value stops before anything runs
    out = Path(out)
    arguments = {"profile": chosen.describe(), "volumes": volumes, "seed": seed, "slices": slices,
                 "coils": None if coils is None else [int(count) for count in coils],
                 "keep_kspace": bool(keep_kspace), "train": bool(train)}
    from monai_cmri.report import environment

    with FolderLock(out, "pipeline"):
        record = RunRecord(out, arguments, environment())
        return _run(out, record, chosen, volumes, seed, slices, coils, keep_kspace, train, workers, threads, progress)


def _run(
    out: Path, record: RunRecord, profile: Profile, volumes: int, seed: int, slices: int,
    coils: Sequence[int] | None, keep_kspace: bool, train: bool, workers: int, threads: int | str, progress: bool,
) -> Path:
    """The stages of :func:`run_pipeline`, in order, each skipped when ``record`` says it finished."""
    kspace_dir, figures_dir, patches_dir = out / "kspace", out / "figures", out / "patches"
    volume_records = out / PROGRESS_DIR / "volumes"
    if record.fresh:
        # Patch files and volume records of some other run in this folder would be mixed in.
        shutil.rmtree(patches_dir / VOLUMES_DIR, ignore_errors=True)
        shutil.rmtree(volume_records, ignore_errors=True)
    for folder in (kspace_dir, figures_dir, patches_dir / VOLUMES_DIR, volume_records):
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
    remove_stale_temporaries(patches_dir)
    stages = {
        "simulate + preprocess": f"{volumes} volumes of {slices} slices, {workers} worker(s) -> {patches_dir / VOLUMES_DIR}",
        "merge": f"volume-level splits -> {patches_dir}",
    }
    tag = f"{profile.bundle_profile} profile"
    if train:
        stages.update({stage: f"({tag}) -> {out / 'cvae'}" for stage in CVAE_STAGES})
        stages.update({stage: f"({tag}) -> {out / ('flow_' + stage.split()[0])}" for stage in FLOW_STAGES})
        stages.update({stage: f"({tag}) -> {out / 'experiments' / stage}" for stage in EXPERIMENT_STAGES})
    stages["report"] = f"-> {out / 'report.md'}, {out / 'report.html'}"
    descriptions = {**CVAE_STAGES, **FLOW_STAGES, **EXPERIMENT_STAGES}
    names = list(stages)

    def run_stage(stage: str, work: Callable[[bool], Any]) -> None:
        number = f"[{names.index(stage) + 1}/{len(names)}] {descriptions.get(stage, stage)}"
        if record.done(stage):
            if progress:
                tqdm.write(f"{number}: finished earlier, skipped")
            return
        resumed = record.start(stage)
        if progress:
            tqdm.write(f"{number}: {'resumed ' if resumed else ''}{stages[stage]}")
        begin = time.monotonic()
        work(resumed)
        record.finish(stage, time.monotonic() - begin, resumed)

    results: dict[int, dict] = {}

    def preprocess_stage(resumed: bool) -> None:
        results.update(_preprocess_volumes(out, volumes, seed, slices, coils, keep_kspace, workers, progress))

    run_stage("simulate + preprocess", preprocess_stage)
    if not results:
        results.update(_read_volume_records(volume_records, volumes))

    def merge_stage(resumed: bool) -> None:
        merge(patches_dir, seed=seed)
        if (patches_dir / "train.h5").is_file():
            render_patches(patches_dir / "train.h5", figures_dir / "patches.png", seed=seed)

    run_stage("merge", merge_stage)
    manifest = json.loads((patches_dir / "manifest.json").read_text())
    empty = [split for split in SPLITS if not manifest["patches"].get(split)]
    problem = None
    if train and empty:
        problem = (
            f"the {' and '.join(empty)} split(s) hold no patch ({volumes} volumes of {slices} slices), so the cvae "
            f"bundle cannot run; more slices or volumes (--slices, --volumes) give every split patches, "
            f"or skip training (--notrain)"
        )
    elif train:
        pending = [stage for stage in (*CVAE_STAGES, *FLOW_STAGES, *EXPERIMENT_STAGES) if not record.done(stage)]
        if pending:
            count = apply_thread_policy(threads)
            if progress:
                tqdm.write(f"bundle stages: {count} CPU thread(s)")
        for stage, work in _stage_runs(out, profile, progress).items():
            run_stage(stage, work)
    figures = [Path(result["figure"]) for _, result in sorted(results.items()) if result["figure"]]
    if (figures_dir / "patches.png").is_file():
        figures.append(figures_dir / "patches.png")
    summary = out / "summary.md"
    text = _summary(out, profile, record, results, manifest, figures, keep_kspace, train and problem is None, problem,
                    summary)
    write_text(summary, text)

    def report_stage(resumed: bool) -> None:
        from monai_cmri.report import write_report

        write_report(out)

    # The run is complete once the summary is written; the report then shows its end and timings.
    record.close()
    run_stage("report", report_stage)
    print(text)
    if problem is not None:
        raise RuntimeError(problem)
    return summary


def _preprocess_volumes(
    out: Path, volumes: int, seed: int, slices: int, coils: Sequence[int] | None, keep_kspace: bool, workers: int,
    progress: bool,
) -> dict[int, dict]:
    """Simulate and preprocess the volumes that no earlier attempt finished (in worker processes
    with ``workers`` > 1); record each volume as it finishes; write the annotation files.

    Returns:
        ``{index: result}`` of every volume (:func:`_process_volume`).
    """
    kspace_dir, figures_dir, patches_dir = out / "kspace", out / "figures", out / "patches"
    volume_records = out / PROGRESS_DIR / "volumes"
    results = _read_volume_records(volume_records, volumes, complete=False)
    # The first volume of each sequence is drawn; the plan says which without simulating anything.
    first: dict[str, int] = {}
    for index in range(volumes):
        first.setdefault(plan_volume(index, seed, slices=slices, coils=coils).sequence, index)
    bar = tqdm(total=volumes, initial=len(results), desc="volumes", unit="volume", disable=not progress)
    step = bar.set_postfix_str if workers == 1 else None
    jobs = [(index, seed, slices, coils, kspace_dir, figures_dir, patches_dir, index in first.values(), keep_kspace,
             step) for index in range(volumes) if index not in results]
    if workers == 1 or not jobs:
        done = map(_process_volume, jobs)
    else:
        bar.set_postfix_str(f"{workers} workers")
        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=_worker_context(), initializer=_one_thread)
        done = pool.map(_process_volume, jobs)
    try:
        for job, result in zip(jobs, done):
            results[job[0]] = result
            write_json(volume_records / f"{job[0]:05d}.json", _plain_result(result))
            # The annotation files grow in volume order, so that a stopped run leaves a consistent pair.
            _write_annotations(kspace_dir, results)
            bar.update()
    finally:
        if workers > 1 and jobs:
            pool.shutdown(wait=True, cancel_futures=True)
    _write_annotations(kspace_dir, results)
    bar.set_postfix_str("done")
    bar.close()
    return results


def _write_annotations(kspace_dir: Path, results: dict[int, dict]) -> None:
    """``brain.csv`` and ``brain_file_list.csv`` of the volumes in ``results``, in volume order."""
    annotated = [results[index] for index in sorted(results) if results[index]["annotated"]]
    write_annotations(kspace_dir, [row for result in annotated for row in result["annotations"]],
                      [result["name"] for result in annotated])


def _plain_result(result: dict) -> dict:
    """A volume's result as JSON values (its annotation rows as dictionaries)."""
    return {**result, "annotations": [asdict(row) for row in result["annotations"]],
            "figure": None if result["figure"] is None else str(result["figure"]), "row": list(result["row"])}


def _read_volume_records(folder: Path, volumes: int, complete: bool = True) -> dict[int, dict]:
    """The volume results recorded in ``folder`` for indices below ``volumes``.

    Raises:
        RuntimeError: with ``complete``, when a volume has no record (the preprocessing stage is
            recorded as finished, so something removed them).
    """
    results = {}
    for index in range(volumes):
        path = folder / f"{index:05d}.json"
        try:
            result = json.loads(path.read_text())
        except FileNotFoundError:
            if complete:
                raise RuntimeError(f"{path}: missing, though run.json records the volumes as processed; "
                                   "rerun in a new folder") from None
            continue
        result["annotations"] = [Annotation(**row) for row in result["annotations"]]
        result["row"] = tuple(result["row"])
        results[index] = result
    return results


def _summary(
    out: Path, profile: Profile, record: RunRecord, results: dict[int, dict], manifest: dict, figures: list[Path],
    keep_kspace: bool, trained: bool, problem: str | None, summary: Path,
) -> str:
    """The text of ``summary.md``, read from what the stages wrote."""
    volumes = len(results)
    seed = record.record["arguments"]["seed"]
    tag = f"{profile.bundle_profile} profile"
    sections = [
        f"# monai_cmri pipeline ({profile.name} profile): {volumes} simulated volumes, seed {seed} "
        f"({record.seconds() / 60:.1f} min)",
        "",
        "## Volumes",
        "",
        "```",
        format_rows([results[index]["row"] for index in sorted(results)]),
        "```",
        "",
        "## Patches per class, sequence and split",
        "",
        "```",
        format_table(manifest["table"]),
        "```",
        "",
    ]
    if trained:
        table = out / "cvae" / "reconstruction.md"
        sections += [f"## cvae ({tag}), test split", "", table.read_text().strip(), ""]
        for bundle in ("flow_stage1", "flow_stage2"):
            folder = out / bundle
            sections += [f"## {bundle} ({tag}): {_FLOW_TITLES[bundle]}", "",
                         f"Model selection ({(folder / SELECTION_FILE).relative_to(out)}): "
                         + (folder / "selection.md").read_text().strip(), "",
                         f"![{bundle} samples]({(folder / 'samples.png').relative_to(out)})", "",
                         "Latent statistics, synthetic against the real training latents, per sequence and channel:",
                         "", (folder / "latent_statistics.md").read_text().strip(), ""]
        grid = profile.grid()
        sections += [
            f"## Classifier experiments ({tag})", "",
            f"Seeds {list(grid['seeds'])}; {grid['test_sets']} synthetic test set(s) per sequence; substitution at "
            f"{', '.join(f'{100 * f:.0f} %' for f in grid['substitution_fractions'])} real; additive with "
            f"{', '.join(f'{100 * f:.0f} %' for f in grid['additive_fractions'])} synthetic added. AUROC on the "
            "real test split (downstream) or on real against synthetic test latents.", "",
        ]
        if profile.name == "demo":
            sections += ["The demo's training split holds one volume per labeled class and sequence, so these show "
                         "the code path, not the method.", ""]
        for name in EXPERIMENT_STAGES:
            folder = out / "experiments" / name
            sections += [f"### {name}", "", (folder / "summary.md").read_text().strip(), ""]
            if (folder / f"{name}.png").is_file():
                sections += [f"![{name}]({(folder / f'{name}.png').relative_to(out)})", ""]
    if problem is not None:
        sections += ["## cvae: not run", "", problem, ""]
    sections += ["## Files written", "", *_written(out, figures, manifest, keep_kspace, trained, summary), ""]
    return "\n".join(sections)


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
    groups.append(("run record", [out / RUN_RECORD]))
    groups.append(("report", [out / "report.md", out / "report.html"]))
    groups.append(("this summary", [summary]))
    lines = []
    for what, paths in groups:
        paths = [path for path in paths if path in (summary, out / "report.md", out / "report.html") or path.is_file()]
        if len(paths) > 6:
            lines.append(f"- {what}: {len(paths)} files in {paths[0].parent}")
        elif paths:
            counts = manifest["patches"] if what == "patch datasets" else {}
            lines.append(f"- {what}: " + ", ".join(
                f"{path} ({counts[path.stem]} patches)" if path.stem in counts else str(path) for path in paths))
    return lines
