"""The command-line commands: thin wrappers that parse arguments and call the package.

Each function here is one ``python -m monai_cmri <command>``; fire maps its keyword arguments to
``--flags``. Heavy imports happen inside the functions so that ``--help`` stays fast. Arguments
are checked before any work starts: a bad one raises :class:`UsageError`, which the command line
reports in one line with exit status 2 (``monai_cmri.__main__``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

__all__ = ["UsageError", "experiments", "export", "figure", "labels", "merge", "pipeline", "preprocess", "sheet",
           "simulate", "report"]


class UsageError(ValueError):
    """A command was given arguments it cannot run with; the message says what it needs."""


def simulate(
    out: str,
    volumes: int = 12,
    seed: int = 0,
    slices: int = 16,
    width: int = 320,
    readout: int | None = None,
    coils: Sequence[int] | int | None = None,
    external: bool = False,
    matrix: Sequence[int] | int | None = None,
    quiet: bool = False,
) -> None:
    """Write a simulated fastMRI-format brain dataset with fastMRI+-style annotations, or with
    ``--external`` an external test set of another site with volume labels (paper 2.1.4).

    What is simulated: README "The simulated dataset"; the file format: README "The data it expects";
    the external site: :mod:`monai_cmri.simulate.external`.

    Each volume's k-space is stored uncompressed, ``slices x coils x readout x width x 8`` bytes:
    at the default size 16 x 16 x 640 x 320 x 8 B = 420 MB (200-530 MB with 8-20 coils), so the
    default 12 volumes take about 5.2 GB. An external volume holds ``slices x coils x N x N x 8``
    bytes without readout oversampling: 270-600 MB at 16 slices and 32 coils (N = 256-384), so
    ``--external --volumes 8`` writes about 3.5 GB.

    Args:
        out: output folder; receives ``file_brain_*.h5``, ``brain.csv`` and ``brain_file_list.csv``,
            or with ``external`` ``ext_brain_*.h5`` and ``labels.csv``.
        volumes: number of volumes, at least 1.
        seed: random seed, at least 0; the same seed writes identical files.
        slices: slices per volume, at least 1.
        width: phase-encode matrix size of full-width volumes (320 in fastMRI); even and at least
            16. Narrow AXFLAIR volumes get 264/320 or 288/320 of it, like fastMRI. Not with
            ``external`` (use ``matrix``).
        readout: readout matrix size; must be 2 x width (fastMRI's 2x readout oversampling), which
            is also the default. Not with ``external``.
        coils: receive coil counts to draw from (one number or a list, each at least 1); default 8-20,
            32 with ``external``.
        external: write an external test set instead: another site's scanners, 32-channel coil,
            noise and matrices, T1-TSE / T2-TIRM volumes read as AXT1 / AXFLAIR, alternately
            abnormal (metastases) and normal, labelled in ``labels.csv`` (``file,label,sequence``)
            for ``preprocess --external --labels``.
        matrix: with ``external``, square in-plane matrix sizes to draw from (one number or a list,
            each even and at least 16); default 256, 320 and 384.
        quiet: no progress bar and no summary.
    """
    out = _path("out", out)
    volumes, seed, slices = _integer("volumes", volumes, 1), _integer("seed", seed, 0), _integer("slices", slices, 1)
    if isinstance(width, bool) or not isinstance(width, int) or width < 16 or width % 2:
        raise UsageError(f"--width must be an even integer of at least 16 (320 in fastMRI), got {width!r}")
    coils = _counts("coils", coils)
    if external:
        if width != 320 or readout is not None:
            raise UsageError(
                f"--width and --readout do not apply with --external (got --width {width}, --readout {readout}); "
                "the external site's square matrix is --matrix"
            )
        matrix = _counts("matrix", matrix, 16)
        if matrix is not None and any(size % 2 for size in matrix):
            raise UsageError(f"--matrix sizes must be even integers of at least 16, got {matrix}")
        from collections import Counter

        from monai_cmri.preprocess import read_external_labels
        from monai_cmri.simulate import simulate_external

        labels_csv = simulate_external(
            out, volumes=volumes, seed=seed, slices=slices, matrix=matrix, coils=coils, progress=not quiet
        )
        if not quiet:
            volume_labels = read_external_labels(labels_csv)
            counts = Counter((sequence, label) for label, sequence in volume_labels.values())
            cells = ", ".join(f"{sequence} {label} {n}" for (sequence, label), n in sorted(counts.items()))
            print(f"{labels_csv}: {len(volume_labels)} volumes ({cells})")
        return
    if matrix is not None:
        raise UsageError(f"--matrix applies only with --external (got --matrix {matrix!r}); use --width")
    readout = 2 * width if readout is None else _integer("readout", readout, 32)
    if readout != 2 * width:
        raise UsageError(
            f"--readout must be 2 x --width = {2 * width} (fastMRI's 2x readout oversampling), got {readout}; "
            "leave --readout out to get it"
        )
    # Imported once the arguments are known to be good: a bad one fails at once.
    from monai_cmri.data.summary import dataset_summary
    from monai_cmri.simulate import simulate_dataset

    paths = simulate_dataset(
        out, volumes=volumes, seed=seed, slices=slices, width=width, readout=readout,
        coils=coils, progress=not quiet,
    )
    if not quiet:
        print(dataset_summary(out, paths))


def labels(csv: str | None = None, file_list: str | None = None, data: str | None = None) -> None:
    """Print volume class counts per sequence for the "lenient" and "strict" rules (paper 2.1.1).

    The first line of the output names the annotation file used.

    Args:
        csv: a fastMRI+ ``brain.csv``; by default ``brain.csv`` in ``data`` if present (as
            ``simulate`` writes it), else the shipped fastMRI+ release.
        file_list: its ``brain_file_list.csv``; by default the one beside the ``brain.csv`` found in
            ``data``, else the shipped one.
        data: a folder of ``.h5`` files to classify as well (files not annotated are unlabeled).
    """
    from monai_cmri.data import annotations

    csv, file_list, data = _path("csv", csv, True), _path("file_list", file_list, True), _path("data", data, True)
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
    from monai_cmri.data.annotations import find_annotations
    from monai_cmri.figures import render_volume

    path = Path(_path("file", file))
    slices = _counts("slices", slices, minimum=0)
    target = render_volume(
        path, Path(_path("out", out)) if out else path.with_suffix(".png"), slices=slices,
        annotations=find_annotations(path.parent, _path("csv", csv, True), _path("file_list", file_list, True)),
    )
    print(target)


def pipeline(
    out: str = "runs/demo",
    profile: str = "demo",
    volumes: int | None = None,
    seed: int = 0,
    slices: int | None = None,
    keep_kspace: bool = False,
    train: bool = True,
    workers: str = "auto",
    threads: str = "all",
) -> None:
    """The main job on the simulated dataset (README "What this is"; paper 2.1-2.4).

    Simulates fastMRI-format volumes with fastMRI+-style annotations, combines their coils with
    ESPIRiT, draws one volume per sequence, cuts patch datasets with volume-level splits, trains,
    evaluates and encodes with the ``cvae`` bundle, trains, selects and samples both flow stages
    with the ``flow_stage1`` and ``flow_stage2`` bundles, runs the classifier experiments, and
    writes ``out/summary.md`` and the report (``out/report.md``, ``out/report.html``). Each
    volume's k-space is deleted once processed unless ``keep_kspace`` (a full-size volume is
    several hundred MB). Run again with the same arguments, it resumes where it stopped.

    Args:
        out: output folder.
        profile: ``demo`` (the README's: CPU profiles, reduced grid), ``gpu`` (one H100/H200:
            full-size networks, short schedules) or ``paper`` (the paper's settings; hours on a
            GPU); :mod:`monai_cmri.profiles`.
        volumes: number of simulated volumes (the profile's by default: demo 27, gpu 96, paper
            1000); training needs at least 24, so that the volume-level splits leave normal and
            abnormal volumes to validate and test on (fewer work with ``--notrain``).
        seed: random seed, at least 0.
        slices: slices per volume, at least 1 (the profile's by default: demo 8, gpu 8, paper 16).
        keep_kspace: keep the simulated ``.h5`` files in ``out/kspace``.
        train: run the bundles; ``--notrain`` stops after the patch datasets.
        workers: processes that simulate and preprocess the volumes, one thread each; ``auto`` is
            one per CPU. The outputs do not depend on it beyond float32 rounding.
        threads: CPU threads of the bundle stages (training, sampling, classifiers): ``all`` (every
            CPU, the fastest on a machine of one's own), ``auto`` (``OMP_NUM_THREADS``, else 1:
            the choice on a machine shared with other jobs) or a number.
    """
    from monai_cmri.pipeline import check_size, run_pipeline
    from monai_cmri.profiles import profile as get_profile
    from monai_cmri.threads import pool_workers, resolve_threads

    out = _path("out", out)
    try:
        chosen = get_profile(str(profile))
    except ValueError as error:
        raise UsageError(f"--profile: {error}") from None
    volumes = chosen.volumes if volumes is None else _integer("volumes", volumes, 1)
    slices = chosen.slices if slices is None else _integer("slices", slices, 1)
    seed = _integer("seed", seed, 0)
    try:
        check_size(volumes, slices, train=bool(train))
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        workers = pool_workers(workers)
    except ValueError as error:
        raise UsageError(f"--workers: {error}") from None
    try:
        resolve_threads(threads)
    except ValueError as error:
        raise UsageError(f"--threads: {error}") from None
    run_pipeline(Path(out), volumes=volumes, seed=seed, profile=chosen, slices=slices, keep_kspace=bool(keep_kspace),
                 train=bool(train), workers=workers, threads=threads)


def experiments(
    run: str = "runs/demo",
    which: str | Sequence[str] = "real_vs_synthetic,substitution,additive",
    seeds: int = 5,
    fractions: str | Sequence[float] | None = None,
    test_sets: int = 4,
    epochs: int | None = None,
    profile: str = "cpu",
    external: str | None = None,
    progress: bool = True,
) -> None:
    """The paper's classifier experiments on a main-job folder (paper 2.4, Table 4, Figures 6-8).

    Reads ``RUN/patches`` (real patches), ``RUN/cvae/latents`` (real latents),
    ``RUN/flow_stage1`` (its model draws the real-vs-synthetic pool) and
    ``RUN/flow_stage2/synthetic/patches.h5`` (the class-matched synthetic patches), and writes
    ``RUN/experiments/<experiment>/`` (results, tables, figures). A rerun skips every finished
    configuration.

    Args:
        run: the main job's output folder.
        which: comma-separated experiments: ``real_vs_synthetic``, ``substitution``, ``additive``.
        seeds: classifier seeds per configuration (the paper's 5).
        fractions: comma-separated fractions for substitution (real) and additive (added
            synthetic); by default 0.0-1.0 in steps of 0.1.
        test_sets: synthetic test sets of the real-vs-synthetic experiment (the paper's 4).
        epochs: classifier epochs, if not the profile's.
        profile: ``cpu`` (the bundles' CPU profiles, as the main job trains them) or ``full``.
        external: an external patch file (``preprocess --external`` output, ``external.h5``): the
            downstream classifiers are also scored on it per volume (top-5 % mean); by default
            ``RUN/external/external.h5`` when it exists.
        progress: progress bars over the configurations.
    """
    from monai_cmri.experiments.classifier import EXPERIMENTS, run_experiments
    from monai_cmri.experiments.composition import SUBSTITUTION_FRACTIONS

    root = Path(_path("run", run))
    names = [name.strip() for name in (which.split(",") if isinstance(which, str) else which) if name.strip()]
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown or not names:
        raise UsageError(f"--which: unknown experiment(s) {unknown or names}; expected {', '.join(EXPERIMENTS)}")
    if profile not in ("cpu", "full"):
        raise UsageError(f"--profile: expected cpu or full, got {profile!r}")
    seeds, test_sets = _integer("seeds", seeds, 1), _integer("test_sets", test_sets, 1)
    try:
        chosen = SUBSTITUTION_FRACTIONS if fractions is None else [
            float(value) for value in (fractions.split(",") if isinstance(fractions, str) else fractions)]
    except ValueError:
        raise UsageError(f"--fractions: expected comma-separated numbers in [0, 1], got {fractions!r}") from None
    if not chosen or any(not 0.0 <= value <= 1.0 for value in chosen):
        raise UsageError(f"--fractions: expected numbers in [0, 1], got {fractions!r}")
    if external is None:
        external = root / "external" / "external.h5" if (root / "external" / "external.h5").is_file() else None
    elif not Path(external).is_file():
        raise UsageError(f"--external: {external}: not found")
    overrides = {} if epochs is None else {"epochs": _integer("epochs", epochs, 1)}
    try:
        tables = run_experiments(root, names, seeds=range(seeds), substitution_fractions=chosen,
                                 additive_fractions=chosen, test_sets=test_sets, external=external, profile=profile,
                                 overrides=overrides, progress=bool(progress))
    except FileNotFoundError as error:
        raise UsageError(f"{error}; run the main job (pipeline --out {root}) first") from None
    for name, table in tables.items():
        print(f"## {name}\n\n{table.read_text().strip()}\n")


def select(run: str = "runs/demo", stage: int = 1, seeds: int = 1, epochs: int | None = None, profile: str = "cpu",
           progress: bool = True) -> None:
    """Select a flow stage's checkpoint among those its bundle kept (paper 2.4.3).

    Stage 1: the lowest real-vs-synthetic AUROC on the validation latents; stage 2: the highest
    downstream AUROC on the real validation patches of a classifier trained on the checkpoint's
    synthetic patches alone (:mod:`monai_cmri.experiments.selection`). Writes
    ``RUN/flow_stageN/selection.json`` and ``selection.md``; a rerun skips finished classifier runs.

    Args:
        run: the main job's output folder (``cvae/``, ``patches/``, ``flow_stage1/``, ``flow_stage2/``).
        stage: 1 or 2.
        seeds: classifier seeds per checkpoint (and sequence, for stage 1).
        epochs: classifier epochs, if not the profile's.
        profile: ``cpu`` or ``full``, the flow model's profile (the classifier runs with the same).
        progress: a progress bar over the classifier runs.
    """
    from monai_cmri.experiments.selection import select_stage1, select_stage2

    root = Path(_path("run", run))
    if stage not in (1, 2):
        raise UsageError(f"--stage: expected 1 or 2, got {stage!r}")
    if profile not in ("cpu", "full"):
        raise UsageError(f"--profile: expected cpu or full, got {profile!r}")
    overrides = {} if epochs is None else {"epochs": _integer("epochs", epochs, 1)}
    common = {"seeds": range(_integer("seeds", seeds, 1)), "profile": profile, "overrides": overrides,
              "progress": bool(progress)}
    latents, folder = root / "cvae" / "latents", root / f"flow_stage{stage}"
    try:
        if stage == 1:
            select_stage1(latents, folder, **common)
        else:
            select_stage2(root / "patches", latents, folder, root / "cvae" / "models" / "model.pt", **common)
    except FileNotFoundError as error:
        raise UsageError(f"{error}; run the main job (pipeline --out {root}) first") from None
    print((folder / "selection.md").read_text().strip())


def real_vs_synthetic(run: str = "runs/demo", seeds: int = 5, test_sets: int = 4, epochs: int | None = None,
                      profile: str = "cpu", progress: bool = True) -> None:
    """Real against synthetic latents per sequence (paper 2.4.1, Table 4): ``experiments --which
    real_vs_synthetic``; arguments as :func:`experiments`."""
    experiments(run, "real_vs_synthetic", seeds=seeds, test_sets=test_sets, epochs=epochs, profile=profile,
                progress=progress)


def substitution(run: str = "runs/demo", seeds: int = 5, fractions: str | Sequence[float] | None = None,
                 epochs: int | None = None, profile: str = "cpu", external: str | None = None,
                 progress: bool = True) -> None:
    """Real patches replaced by synthetic ones (paper 2.4.2, Figures 6-7): ``experiments --which
    substitution``; arguments as :func:`experiments`."""
    experiments(run, "substitution", seeds=seeds, fractions=fractions, epochs=epochs, profile=profile,
                external=external, progress=progress)


def additive(run: str = "runs/demo", seeds: int = 5, fractions: str | Sequence[float] | None = None,
             epochs: int | None = None, profile: str = "cpu", external: str | None = None,
             progress: bool = True) -> None:
    """Synthetic patches added to all real ones (paper 2.4.2, Figure 8): ``experiments --which
    additive``; arguments as :func:`experiments`."""
    experiments(run, "additive", seeds=seeds, fractions=fractions, epochs=epochs, profile=profile,
                external=external, progress=progress)


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
    overwrite: bool = False,
    quiet: bool = False,
) -> None:
    """Preprocess fastMRI brain files into patch datasets (paper 2.1.2-2.1.4, README "Preprocessing").

    ESPIRiT coil combination, slice-wise normalisation, brain mask, patch rules, volume-level
    splits. Resumable: a rerun reuses a finished volume only when its data file, annotations, seed
    and settings are unchanged, and otherwise stops and says what changed (``--overwrite`` redoes
    such volumes). Broken input files are reported and skipped; a failure to write (a full disk)
    stops the run with one error, keeping every finished file. Two runs on one folder refuse to
    collide (shards of one ``--num-shards`` may share it). Exits with status 1 when no patch was made.

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
        overwrite: redo volumes made with other data, annotations or settings, and drop volume files
            of volumes no longer in ``data``, instead of stopping.
        quiet: no progress bar.
    """
    data, out = _path("data", data), _path("out", out)
    workers, shard, num_shards = _integer("workers", workers, 1), _integer("shard", shard, 0), _integer(
        "num_shards", num_shards, 1
    )
    if shard >= num_shards:
        raise UsageError(f"--shard must be in [0, --num_shards) = [0, {num_shards}), got {shard}")
    if backend not in ("torch", "sigpy"):
        raise UsageError(f"--backend must be torch or sigpy, got {backend!r}")
    if not Path(data).is_dir():
        raise UsageError(f"--data {data}: not a folder")
    from monai_cmri.preprocess import format_table, patch_table, preprocess_external
    from monai_cmri.preprocess import preprocess as run

    if external:
        if labels is None:
            raise UsageError("--external needs --labels CSV (columns file,label[,sequence])")
        summary = preprocess_external(data, out, labels, inferior=inferior, superior=superior, backend=backend,
                                      progress=not quiet, overwrite=bool(overwrite))
        print(summary)
        if not summary.ok:
            raise SystemExit(1)
        return

    summary = run(
        data, out, annotations=annotations, file_list=file_list, seed=seed, workers=workers, shard=shard,
        num_shards=num_shards, backend=backend, device=device, progress=not quiet, overwrite=bool(overwrite),
    )
    print(summary)
    if num_shards == 1 and summary.ok:
        print(format_table(patch_table(out)))
    if not summary.ok:
        raise SystemExit(1)


def merge(out: str, parts: Sequence[str] | str | None = None, seed: int | None = None) -> None:
    """Merge per-volume patch files (of one or several shards) into split datasets.

    Every shard of the run must have finished: the run records the shards leave
    (``run.shard-<i>-of-<n>.json``) say which volumes belong to the run, and a missing shard is an
    error.

    Args:
        out: output folder of shard 0 (receives the split files and manifest).
        parts: output folders of the other shards (a list, or one string separated by commas).
        seed: split seed; by default the one the volumes were processed with.
    """
    from monai_cmri.preprocess import format_table
    from monai_cmri.preprocess import merge as run

    if isinstance(parts, str):
        parts = [part for part in parts.split(",") if part]
    manifest = run(_path("out", out), parts=parts, seed=seed)
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

    path = Path(_path("file", file))
    per_class, seed = _integer("per_class", per_class, 1), _integer("seed", seed, 0)
    print(render_patches(path, Path(_path("out", out)) if out else path.with_suffix(".png"), per_class=per_class,
                         seed=seed))


def export(file: str, out: str | None = None) -> None:
    """Write a fastMRI file's ESPIRiT-combined volume as NIfTI (magnitude and phase) for viewers.

    Args:
        file: a fastMRI brain ``.h5`` file.
        out: output prefix; ``<file>`` without ``.h5`` by default. Writes ``<out>_magnitude.nii.gz``
            and ``<out>_phase.nii.gz`` (radians).
    """
    from monai_cmri.data.nifti import export_nifti

    for path in export_nifti(_path("file", file), _path("out", out) if out else None):
        print(path)


def bundle(name: str | None = None, copy: str | None = None) -> None:
    """Print the folders of the MONAI bundles, or copy them out (README "Install as a package").

    A clone has the bundles in its ``bundles/`` folder; an installed wheel or sdist ships them as
    the data package ``monai_cmri_bundles``. Either way a bundle runs from any working folder with
    ``python -m monai.bundle run <entry> --config_file <bundle>/configs/<config>.json ...``.

    Args:
        name: one bundle (``cvae``, ``flow_stage1``, ``flow_stage2``, ``classifier``); all by default.
        copy: a folder to copy the bundle (or all of them) into, each as ``COPY/<name>``, as a
            model-zoo download places it; prints the copies. ``--copy bundles`` lets the bundles'
            README commands (``--config_file bundles/<name>/configs/...``) run as written from the
            current folder.
    """
    from monai_cmri.bundles import bundle_configs, bundle_names, copy_bundle

    known = bundle_names()
    if not known:
        bundle_configs("cvae")  # no bundles at all: an OSError that says where it looked
    if name is not None and (not isinstance(name, str) or name not in known):
        raise UsageError(f"unknown bundle {name!r}; the bundles are {', '.join(known)}")
    names = [name] if name is not None else known
    if copy is None:
        for each in names:
            print(bundle_configs(each).parent)
        return
    folder = Path(_path("copy", copy))
    existing = [str(folder / each) for each in names if (folder / each).exists()]
    if existing:
        raise UsageError(f"--copy {folder}: {', '.join(existing)} already exist(s); remove or copy elsewhere")
    for each in names:
        print(copy_bundle(each, folder))


def report(run: str = "runs/demo", screenshot: str | None = None) -> None:
    """Write the main job's report, ``RUN/report.md`` and a self-contained ``RUN/report.html``.

    The tables and figures of the run beside the paper's (Tables 1, 3, 4; Figures 2-8), the model
    selection, and the run's arguments, stage timings, hardware and package versions
    (:mod:`monai_cmri.report`); sections the run did not reach say "not run". Prints the paths.

    Args:
        run: the main job's output folder.
        screenshot: a PNG to render ``report.html`` into with headless Chromium (the whole page,
            1200 pixels wide).
    """
    from monai_cmri.report import screenshot as render
    from monai_cmri.report import write_report

    root = Path(_path("run", run))
    if not root.is_dir():
        raise UsageError(f"--run {root}: not a folder; run the main job (pipeline --out {root}) first")
    target = Path(_path("screenshot", screenshot, True)) if screenshot is not None else None
    for path in write_report(root):
        print(path)
    if target is not None:
        print(render(root / "report.html", target))

def _integer(name: str, value: Any, minimum: int) -> int:
    """``value`` as an integer of at least ``minimum``, else a :class:`UsageError` naming ``--name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"--{name} must be an integer of at least {minimum}, got {value!r}")
    return value


def _counts(name: str, value: Any, minimum: int = 1) -> list[int] | None:
    """One integer or a list of them (fire reads ``4``, ``4,8`` and ``[4,8]``) as a list, or None."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise UsageError(f"--{name} needs at least one number")
    return [_integer(name, item, minimum) for item in values]


def _path(name: str, value: Any, optional: bool = False) -> str | None:
    """A file or folder argument as text; fire reads ``--out 12`` as a number and a bare ``--out`` as True."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise UsageError(f"--{name} needs a path, got {value!r}")
    return str(value)
