"""The paper's classifier experiments run with the ``classifier`` bundle (paper 2.4, 3.2-3.3).

:class:`BundleClassifier` is the ``train_and_score`` of :func:`~monai_cmri.experiments.runner.run_grid`:
it trains the ``classifier`` bundle on one configuration's sources, through MONAI's bundle API
(:func:`monai_cmri.bundles.run_bundle`), then scores every test set of the configuration with the
bundle's ``inference.json`` and computes each AUROC from the scores file. The three experiments
(:func:`run_substitution`, :func:`run_additive`, :func:`run_real_vs_synthetic`) build the grid,
run it into a :class:`~monai_cmri.experiments.results.ResultStore` (so a killed run resumes with
the configurations it had not finished) and write their tables and figures.

Layout of an experiment folder::

    results/       one JSON record per finished configuration (parameters, seed, metrics, timing)
    runs/<key>/    the bundle's outputs of that configuration: sources.json (what it read),
                   metrics.json, scores_<test set>.csv
                   (the model weights are removed once scored unless ``keep_models``)
    summary.csv, summary.md    mean +- std per configuration (and test set)
    <experiment>.png           Figures 6/7 (substitution) or 8 (additive)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_cmri.atomic import file_sha256, write_json
from monai_cmri.bundles import run_bundle
from monai_cmri.experiments.aggregate import auroc, volume_auroc
from monai_cmri.experiments.composition import ADDITIVE_FRACTIONS, SUBSTITUTION_FRACTIONS, additive, substitution
from monai_cmri.experiments.grids import (
    ADDITIVE_EXPERIMENT,
    REAL_VS_SYNTHETIC,
    SEEDS,
    SUBSTITUTION,
    additive_grid,
    real_vs_synthetic_grid,
    substitution_grid,
)
from monai_cmri.experiments.plots import additive_figure, substitution_figure
from monai_cmri.experiments.real_vs_synthetic import TEST_SETS, real_vs_synthetic
from monai_cmri.experiments.results import ResultStore, config_key
from monai_cmri.experiments.rows import read_rows
from monai_cmri.experiments.runner import run_grid
from monai_cmri.experiments.sources import Source, make_source
from monai_cmri.experiments.tables import summarize, write_table

__all__ = [
    "ClassifierData",
    "BundleClassifier",
    "run_substitution",
    "run_additive",
    "run_real_vs_synthetic",
    "read_scores",
    "pool_counts",
    "draw_stage1_pool",
    "EXPERIMENTS",
    "run_experiments",
]

#: Names of the real test split's and the external set's test sets in the downstream metrics.
REAL_TEST, EXTERNAL_TEST = "test", "external"


@dataclass(frozen=True)
class ClassifierData:
    """What one configuration's classifier trains, validates and is tested on.

    Attributes:
        train: training sources.
        val: validation sources (model selection by AUROC; both targets needed).
        tests: ``{test set name: sources}``; each is scored by the trained model.
        augment: the bundle's ``augment`` (true for patches, false for latents).
        volume_level: test sets scored per volume: the mean of the top 5 % patch probabilities of
            each volume against its label (paper 2.4.2, the external test set).
    """

    train: list[Source]
    val: list[Source]
    tests: dict[str, list[Source]]
    augment: bool
    volume_level: frozenset[str] = field(default_factory=frozenset)


class BundleClassifier:
    """Train the ``classifier`` bundle on a configuration and return its AUROC per test set.

    Args:
        out_dir: the experiment folder; configuration ``c`` runs in ``out_dir/runs/<key of c>``.
        data: gives a configuration's :class:`ClassifierData`.
        profile: ``"cpu"`` (the bundle's ``configs/cpu.json``) or ``"full"``.
        overrides: further bundle variables for every run (e.g. ``{"epochs": 5}``).
        keep_models: keep each configuration's ``models/`` folder (weights and trainer state).

    Returns (when called):
        ``{"auroc": {test set: AUROC}, "val_auroc", "best_epoch", "counts": {test set: {target:
        n}}}``; the bundle's own ``metrics.json`` stays in the configuration's folder.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        data: Callable[[Mapping[str, Any]], ClassifierData],
        profile: str = "cpu",
        overrides: Mapping[str, Any] | None = None,
        keep_models: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.data = data
        self.profile = profile
        self.overrides = dict(overrides or {})
        self.keep_models = keep_models

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any]:
        data = self.data(config)
        folder = self.out_dir / "runs" / config_key(config)
        models = folder / "models"
        folder.mkdir(parents=True, exist_ok=True)
        # The sources (thousands of row indices) go to a file that the bundle reads, which keeps
        # them out of the bundle's log of its overrides and beside the run's outputs.
        sources = folder / "sources.json"
        write_json(sources, {"train": data.train, "val": data.val, "tests": data.tests})

        def read(*keys: str) -> str:
            path = json.dumps(str(sources))
            return f"$__import__('json').loads(open({path}).read())" + "".join(f"[{json.dumps(k)}]" for k in keys)

        first = next(iter(data.tests))
        common = {"output_dir": str(folder), "ckpt_dir": str(models), **self.overrides}
        # A configuration either finished (its record exists) or starts over: no half-state is reused.
        run_bundle("classifier", "training", ["train.json"], {
            **common, "train_sources": read("train"), "val_sources": read("val"), "test_sources": read("tests", first),
            "augment": data.augment, "seed": int(config["seed"]), "resume": False, "progress": False,
        }, self.profile)
        summary = json.loads((folder / "metrics.json").read_text())
        result: dict[str, Any] = {"auroc": {}, "counts": {}, "val_auroc": summary.get("val_auroc"),
                                  "best_epoch": summary.get("best_epoch")}
        for name in data.tests:
            scores = folder / f"scores_{name}.csv"
            run_bundle("classifier", "run", ["inference.json"], {**common, "sources": read("tests", name),
                                                                  "scores_path": str(scores)}, self.profile)
            targets, probabilities, files = read_scores(scores, volumes=True)
            result["auroc"][name] = (volume_auroc(files, probabilities, targets.astype(int))
                                     if name in data.volume_level else auroc(targets, probabilities))
            result["counts"][name] = {str(int(t)): int((targets == t).sum()) for t in np.unique(targets)}
        if not self.keep_models:
            shutil.rmtree(models, ignore_errors=True)
        return result


def read_scores(path: str | os.PathLike[str], volumes: bool = False) -> tuple[np.ndarray, ...]:
    """Targets and probabilities (and, with ``volumes``, volume names) of a ``classifier`` scores file.

    Raises:
        ValueError: naming the file, when it has no rows or lacks a column.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"target", "probability", "file"} <= set(rows[0]):
        raise ValueError(f"{path}: expected rows with file, target and probability columns")
    targets = np.array([float(row["target"]) for row in rows])
    probabilities = np.array([float(row["probability"]) for row in rows])
    return (targets, probabilities, np.array([row["file"] for row in rows])) if volumes else (targets, probabilities)


def run_substitution(
    patch_dir: str | os.PathLike[str],
    synthetic: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fractions: Iterable[float] = SUBSTITUTION_FRACTIONS,
    seeds: Iterable[int] = SEEDS,
    data_seed: int = 0,
    profile: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    external: str | os.PathLike[str] | None = None,
) -> Path:
    """The substitution experiment (paper 2.4.2, Figures 6-7): real-only and real + synthetic.

    Args:
        patch_dir: real patch files ``train.h5`` (the set reduced), ``val.h5`` and ``test.h5``.
        synthetic: stage-2 samples decoded to patches (at least the real training counts per cell).
        out_dir: the experiment folder (module docstring).
        fractions: real fractions; 1.0 is the baseline.
        seeds: classifier seeds per configuration.
        data_seed: seed of the nested fractions and the synthetic draws.
        profile, overrides: as :class:`BundleClassifier`.
        progress: a progress bar over the configurations.
        external: an external patch file (``preprocess --external``: patches labeled by their
            volume); each classifier is also scored on it per volume (test set ``external``).

    Returns:
        The Markdown summary table.
    """
    patch_dir, out_dir = Path(patch_dir), Path(out_dir)
    sets = substitution(patch_dir / "train.h5", synthetic, fractions, seed=data_seed)
    grid = substitution_grid(_describe(patch_dir / "train.h5"), _describe(synthetic), sets.keys(), seeds, data_seed)
    data = _downstream(patch_dir, lambda config: sets[config["fraction"]][config["condition"]].sources, external)
    return _run(SUBSTITUTION, grid, data, out_dir, profile, overrides, progress, ("seed",), external)


def run_additive(
    patch_dir: str | os.PathLike[str],
    synthetic: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fractions: Iterable[float] = (0.0, *ADDITIVE_FRACTIONS),
    seeds: Iterable[int] = SEEDS,
    data_seed: int = 0,
    profile: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    external: str | os.PathLike[str] | None = None,
) -> Path:
    """The additive experiment (paper 2.4.2, Figure 8): all real data plus 10-100 % synthetic.

    Arguments as :func:`run_substitution`; ``fractions`` are the added synthetic data as a fraction
    of the real training set (0 is the all-real baseline).

    Returns:
        The Markdown summary table.
    """
    patch_dir, out_dir = Path(patch_dir), Path(out_dir)
    sets = additive(patch_dir / "train.h5", synthetic, fractions, seed=data_seed)
    grid = additive_grid(_describe(patch_dir / "train.h5"), _describe(synthetic), sets.keys(), seeds, data_seed)
    data = _downstream(patch_dir, lambda config: sets[config["fraction"]].sources, external)
    return _run(ADDITIVE_EXPERIMENT, grid, data, out_dir, profile, overrides, progress, ("seed",), external)


def run_real_vs_synthetic(
    latent_dir: str | os.PathLike[str],
    synthetic: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sequences: Iterable[str] | None = None,
    seeds: Iterable[int] = SEEDS,
    test_sets: int = TEST_SETS,
    data_seed: int = 0,
    profile: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Real against synthetic latents per sequence (paper 2.4.1, Table 4).

    Args:
        latent_dir: the cvae's real latents ``train.h5``, ``val.h5``, ``test.h5``.
        synthetic: stage-1 samples (w = 1), at least train + val + ``test_sets`` x test latents per
            sequence.
        out_dir: the experiment folder (module docstring).
        sequences: the sequences; by default those of the real training file.
        seeds: classifier seeds per sequence.
        test_sets: independent synthetic test sets, each beside the same real test latents.
        data_seed, profile, overrides, progress: as :func:`run_substitution`.

    Returns:
        The Markdown summary table (mean +- std over seeds and test sets, per sequence).
    """
    latent_dir, out_dir = Path(latent_dir), Path(out_dir)
    real = {split: latent_dir / f"{split}.h5" for split in ("train", "val", "test")}
    splits = real_vs_synthetic(real, synthetic, test_sets=test_sets, sequences=sequences, seed=data_seed)
    grid = real_vs_synthetic_grid(splits.keys(), _describe(real["train"]), _describe(synthetic), seeds, data_seed)

    def data(config: Mapping[str, Any]) -> ClassifierData:
        split = splits[config["sequence"]]
        return ClassifierData(split.train, split.val, {f"synthetic{k}": test for k, test in enumerate(split.tests)},
                              augment=False)

    return _run(REAL_VS_SYNTHETIC, grid, data, out_dir, profile, overrides, progress, ("seed", "test_set"))


#: The experiments :func:`run_experiments` knows, in the order it runs them.
EXPERIMENTS: tuple[str, ...] = (REAL_VS_SYNTHETIC, SUBSTITUTION, ADDITIVE_EXPERIMENT)


def run_experiments(
    run_dir: str | os.PathLike[str],
    which: Sequence[str] = EXPERIMENTS,
    seeds: Iterable[int] = SEEDS,
    substitution_fractions: Iterable[float] = SUBSTITUTION_FRACTIONS,
    additive_fractions: Iterable[float] = (0.0, *ADDITIVE_FRACTIONS),
    test_sets: int = TEST_SETS,
    external: str | os.PathLike[str] | None = None,
    profile: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_experiment: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """The classifier experiments on a main-job folder (paper 2.4, Table 4, Figures 6-8).

    Reads ``RUN/patches``, ``RUN/cvae/latents``, ``RUN/flow_stage1`` (whose selected checkpoint
    draws the real-vs-synthetic pool, :func:`draw_stage1_pool`) and ``RUN/flow_stage2/synthetic/patches.h5``;
    writes ``RUN/experiments/<experiment>/`` (module docstring). Substitution always includes its
    100 %-real baseline and additive its nothing-added one.

    Args:
        run_dir: the main job's output folder.
        which: experiments among :data:`EXPERIMENTS`.
        seeds: classifier seeds per configuration.
        substitution_fractions: real fractions of the substitution experiment.
        additive_fractions: added synthetic fractions of the additive experiment.
        test_sets: synthetic test sets of the real-vs-synthetic experiment.
        external: an external patch file scored per volume by the downstream classifiers.
        profile, overrides, progress: as :class:`BundleClassifier`.
        on_experiment: called with each experiment's name as it starts.

    Returns:
        ``{experiment: its Markdown summary table}``.

    Raises:
        ValueError: for an unknown experiment.
        FileNotFoundError: naming the first input that is missing.
    """
    from monai_cmri.experiments.selection import selected_checkpoint

    root = Path(run_dir)
    unknown = sorted(set(which) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; expected some of {', '.join(EXPERIMENTS)}")
    latents, patches = root / "cvae" / "latents", root / "patches"
    synthetic = root / "flow_stage2" / "synthetic" / "patches.h5"
    needed = {REAL_VS_SYNTHETIC: [latents / "train.h5", selected_checkpoint(root / "flow_stage1")],
              SUBSTITUTION: [patches / "train.h5", synthetic], ADDITIVE_EXPERIMENT: [patches / "train.h5", synthetic]}
    missing = [path for name in which for path in needed[name] if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: not found; the experiments read the main job's outputs in {root}")
    out = root / "experiments"
    common = {"seeds": list(seeds), "profile": profile, "overrides": overrides, "progress": progress}
    tables = {}
    for name in [name for name in EXPERIMENTS if name in which]:
        if on_experiment is not None:
            on_experiment(name)
        if name == REAL_VS_SYNTHETIC:
            pool = draw_stage1_pool(latents, root / "flow_stage1", out / "real_vs_synthetic_pool.h5",
                                    test_sets=test_sets, profile=profile)
            tables[name] = run_real_vs_synthetic(latents, pool, out / name, test_sets=test_sets, **common)
        elif name == SUBSTITUTION:
            tables[name] = run_substitution(patches, synthetic, out / name, external=external,
                                            fractions=sorted({1.0, *map(float, substitution_fractions)}), **common)
        else:
            tables[name] = run_additive(patches, synthetic, out / name, external=external,
                                        fractions=sorted({0.0, *map(float, additive_fractions)}), **common)
    return tables


def pool_counts(latent_dir: str | os.PathLike[str], test_sets: int = TEST_SETS, test_split: str = "test") -> dict[str, int]:
    """Synthetic latents per sequence that :func:`run_real_vs_synthetic` needs: ``train + val +
    test_sets * test`` real latents of that sequence (``test_split`` names the file of the test
    rows: ``"val"`` for the model selection, which scores on the validation split)."""
    counts: dict[str, int] = {}
    for split, times in (("train", 1), ("val", 1), (test_split, test_sets)):
        rows = read_rows(Path(latent_dir) / f"{split}.h5")
        for name in set(rows.sequences.tolist()):
            counts[name] = counts.get(name, 0) + times * int((rows.sequences == name).sum())
    return counts


def draw_stage1_pool(
    latent_dir: str | os.PathLike[str],
    stage1_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    test_sets: int = TEST_SETS,
    seed: int = 1_000_000,
    profile: str = "cpu",
    checkpoint: str | os.PathLike[str] | None = None,
    per_sequence: int | Mapping[str, int] | None = None,
    flow_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Draw the synthetic latents of the real-vs-synthetic experiment with the ``flow_stage1`` bundle.

    Runs the bundle's ``sample`` entry (``inference.json``: EMA weights, w = 1, Heun) for
    :func:`pool_counts` latents of each sequence, seeds from ``seed`` on (apart from the sheet's),
    into ``out``; an existing file with as many made from the same checkpoint is reused.

    Args:
        latent_dir: the real latents (the cvae's ``latents`` folder).
        stage1_dir: the ``flow_stage1`` output folder.
        out: the synthetic latent file to write.
        test_sets, profile: as :func:`run_real_vs_synthetic`; the profile must be the model's.
        seed: the first sample seed.
        checkpoint: the weights to sample; by default the selected ones
            (:func:`monai_cmri.experiments.selection.selected_checkpoint`).
        per_sequence: ``{sequence: count}`` (or one count for every sequence), if not
            :func:`pool_counts` of ``latent_dir`` and ``test_sets``.
        flow_overrides: further ``flow_stage1`` variables (e.g. the network sizes of a model
            trained with other settings than the profile's).

    Returns:
        ``out``.
    """
    from monai_cmri.data.sequences import SEQUENCES
    from monai_cmri.experiments.selection import selected_checkpoint
    from monai_cmri.flow.sampling import counts_per_sequence
    from monai_cmri.latents import LatentDataset

    out, stage1_dir = Path(out), Path(stage1_dir)
    counts = pool_counts(latent_dir, test_sets) if per_sequence is None else per_sequence
    if not isinstance(counts, Mapping):
        counts = {name: int(counts) for name in SEQUENCES}
    counts = {name: counts[name] for name in SEQUENCES if counts.get(name, 0) > 0}
    checkpoint = Path(checkpoint) if checkpoint is not None else selected_checkpoint(stage1_dir)
    if out.is_file():
        existing = LatentDataset(out)
        made_by = set(np.asarray(existing.columns.get("checkpoint_sha256", [None])).tolist())
        have = np.bincount(existing.sequences, minlength=len(SEQUENCES))
        if made_by == {file_sha256(checkpoint)} and all(have[SEQUENCES.index(name)] >= n for name, n in counts.items()):
            return out
    cells = [list(cell) for name, n in counts.items() for cell in counts_per_sequence(n, [name])]
    run_bundle("flow_stage1", "sample", ["inference.json"], {
        "dataset_dir": str(latent_dir), "output_dir": str(stage1_dir), "ckpt_path": str(checkpoint),
        "cells": cells, "synthetic_latents": str(out), "sample_seed": seed,
        "progress": False, **dict(flow_overrides or {}),
    }, profile)
    return out


def _downstream(
    patch_dir: Path, train: Callable[[Mapping[str, Any]], list[Source]], external: str | os.PathLike[str] | None
) -> Callable[..., ClassifierData]:
    """Downstream data: a configuration's training sources, the real val and test splits (and the
    external set, scored per volume), augmented."""
    val = [make_source(patch_dir / "val.h5", "label")]
    test = {REAL_TEST: [make_source(patch_dir / "test.h5", "label")]}
    if external is not None:
        test[EXTERNAL_TEST] = [make_source(external, "label")]
    level = frozenset({EXTERNAL_TEST} if external is not None else ())
    return lambda config: ClassifierData(train(config), val, test, augment=True, volume_level=level)


def _describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a configuration records of an input file: its path and SHA-256 (a changed file reruns)."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def _run(
    experiment: str,
    grid: Sequence[dict[str, Any]],
    data: Callable[[Mapping[str, Any]], ClassifierData],
    out_dir: Path,
    profile: str,
    overrides: Mapping[str, Any] | None,
    progress: bool,
    over: Sequence[str],
    external: str | os.PathLike[str] | None = None,
) -> Path:
    fixed = {"profile": profile, "overrides": dict(overrides or {})}
    if external is not None:  # a classifier scored on the external set is another result
        fixed["external"] = _describe(external)
    grid = [{**config, **fixed} for config in grid]
    store = ResultStore(out_dir / "results")
    records = run_grid(grid, BundleClassifier(out_dir, data, profile, overrides), store, progress=progress)
    rows = summarize(records, over=over, experiment=experiment)
    hidden = ("real", "synthetic", "data_seed", "profile", "overrides", "experiment", "external")
    shown = [{key: value for key, value in row.items() if key not in hidden} for row in rows]
    markdown, _ = write_table(shown, out_dir / "summary")
    if experiment == SUBSTITUTION:
        substitution_figure(rows, out_dir / f"{experiment}.png", title="substitution: real fraction replaced by synthetic")
    elif experiment == ADDITIVE_EXPERIMENT:
        additive_figure(rows, out_dir / f"{experiment}.png", title="additive: synthetic data added to all real data")
    return markdown
