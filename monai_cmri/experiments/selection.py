"""Model selection among the checkpoints a flow bundle keeps (paper 2.4.3).

The flow bundles keep the EMA weights of ``keep_checkpoints`` epochs spread over training
(:class:`monai_cmri.engines.EpochCheckpoints`, ``models/epoch_<epoch>.pt``). Each is judged on the
validation split, with the ``classifier`` bundle, by the criterion of its stage:

* **stage 1** (:func:`select_stage1`): the lowest real-vs-synthetic AUROC. Per checkpoint, a
  pool of synthetic latents (w = 1) is split like the real training and validation latents
  (:func:`~monai_cmri.experiments.real_vs_synthetic.real_vs_synthetic`); per sequence and seed a
  classifier learns real training latents against synthetic ones and is scored on the real
  validation latents against synthetic latents it has not seen (not those that picked its own
  best epoch). The criterion is the mean AUROC over sequences and seeds: the checkpoint whose
  samples are hardest to tell from real data.
* **stage 2** (:func:`select_stage2`): the highest downstream AUROC. Per checkpoint, a synthetic
  set with the class x sequence counts of the real training split is drawn (w of the bundle's
  inference config) and decoded; a normal-vs-abnormal classifier trained on these synthetic
  patches alone (the substitution experiment at 0 % real) is scored on the real validation
  patches. The synthetic-only set measures what the generated data carries by itself, without
  real patches that every checkpoint would share.

Each stage writes, beside the bundle's outputs (``flow_stageN/``)::

    selection/          the candidates' synthetic data, one record per (checkpoint, sequence,
                        seed) in results/, the classifier runs in runs/
    selection.json      criterion, every candidate (epoch, SHA-256, AUROC per sequence and seed,
                        mean) and the selected checkpoint
    selection.md        the same as a table

A rerun skips every finished classifier run and reuses every candidate's synthetic data that the
same checkpoint made. :func:`selected_checkpoint` is what the later stages read: the selected
weights while ``selection.json`` describes them, else ``models/model.pt`` (lowest validation loss).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monai_cmri.atomic import atomic_write, file_sha256, write_json, write_text
from monai_cmri.bundles import run_bundle
from monai_cmri.engines.checkpoint import epoch_checkpoints, read_record
from monai_cmri.experiments.classifier import BundleClassifier, ClassifierData, draw_stage1_pool, pool_counts
from monai_cmri.experiments.composition import REAL_SYNTHETIC, substitution
from monai_cmri.experiments.real_vs_synthetic import real_vs_synthetic
from monai_cmri.experiments.results import ResultStore
from monai_cmri.experiments.runner import run_grid
from monai_cmri.experiments.sources import make_source

__all__ = [
    "SELECTION_FILE",
    "VALIDATION",
    "POOL_SEED",
    "candidates",
    "selected_checkpoint",
    "select_stage1",
    "select_stage2",
    "adopt_selected_samples",
]

#: The selection record of a flow bundle's output folder.
SELECTION_FILE = "selection.json"
#: Name of the test set that a selection run scores: the real validation split.
VALIDATION = "validation"
#: First sample seed of the stage-1 selection pools: apart from the real-vs-synthetic experiment's
#: (:func:`~monai_cmri.experiments.classifier.draw_stage1_pool`, from 1,000,000) and the sheets'
#: (from 0), so that no synthetic latent that selected a checkpoint is drawn again to test it.
POOL_SEED = 2_000_000
_STAGE1, _STAGE2 = "selection_stage1", "selection_stage2"


def candidates(stage_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints to select from: the kept epochs of ``stage_dir/models`` in epoch order, or
    ``models/model.pt`` alone when the bundle kept none.

    Raises:
        FileNotFoundError: naming the folder, when it holds no weights at all.
    """
    models = Path(stage_dir) / "models"
    found = epoch_checkpoints(models)
    if not found and (models / "model.pt").is_file():
        found = [models / "model.pt"]
    if not found:
        raise FileNotFoundError(f"{models}: no checkpoint to select from (train the bundle first)")
    return found


def selected_checkpoint(stage_dir: str | os.PathLike[str]) -> Path:
    """The weights a flow stage's later steps use: the selected checkpoint while ``selection.json``
    names an existing file with the recorded SHA-256, else ``models/model.pt``."""
    import json

    stage_dir = Path(stage_dir)
    try:
        chosen = json.loads((stage_dir / SELECTION_FILE).read_text())["selected"]
        path = Path(chosen["path"])
        if path.is_file() and file_sha256(path) == chosen["sha256"]:
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return stage_dir / "models" / "model.pt"


def select_stage1(
    latent_dir: str | os.PathLike[str],
    stage1_dir: str | os.PathLike[str],
    seeds: Iterable[int] = (0,),
    data_seed: int = 0,
    profile: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    flow_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Select the stage-1 checkpoint with the lowest real-vs-synthetic validation AUROC (module docstring).

    Args:
        latent_dir: the cvae's real latents ``train.h5`` and ``val.h5``.
        stage1_dir: the ``flow_stage1`` output folder (``models/epoch_*.pt``).
        seeds: classifier seeds per checkpoint and sequence.
        data_seed: seed of the split of the synthetic pools.
        profile: the bundles' profile (``"cpu"`` or ``"full"``), that of the flow model.
        overrides: further ``classifier`` bundle variables.
        progress: a progress bar over the classifier runs.
        flow_overrides: further flow bundle variables of the sampling runs (the network sizes of a
            model trained with other settings than the profile's).

    Returns:
        The selection record written to ``stage1_dir/selection.json``.
    """
    latent_dir, stage1_dir = Path(latent_dir), Path(stage1_dir)
    out = stage1_dir / "selection"
    real = {"train": latent_dir / "train.h5", "val": latent_dir / "val.h5", "test": latent_dir / "val.h5"}
    needed = pool_counts(latent_dir, test_sets=1, test_split="val")
    grid, splits = [], {}
    for checkpoint in candidates(stage1_dir):
        pool = draw_stage1_pool(latent_dir, stage1_dir, out / f"{checkpoint.stem}_latents.h5", seed=POOL_SEED,
                                profile=profile, checkpoint=checkpoint, per_sequence=needed,
                                flow_overrides=flow_overrides)
        described = _describe_checkpoint(checkpoint)
        splits[described["sha256"]] = real_vs_synthetic(real, pool, test_sets=1, seed=data_seed)
        grid += [{"experiment": _STAGE1, "checkpoint": described, "sequence": sequence, "seed": int(seed),
                  "data_seed": int(data_seed), "real": _describe(real["train"]), "pool": _describe(pool)}
                 for sequence in splits[described["sha256"]] for seed in seeds]

    def data(config: Mapping[str, Any]) -> ClassifierData:
        split = splits[config["checkpoint"]["sha256"]][config["sequence"]]
        return ClassifierData(split.train, split.val, {VALIDATION: split.tests[0]}, augment=False)

    return _select(stage1_dir, grid, data, profile, overrides, progress, lowest=True,
                   criterion="lowest mean real-vs-synthetic AUROC on the validation latents (real against "
                             "unseen synthetic), over sequences and seeds")


def select_stage2(
    patch_dir: str | os.PathLike[str],
    latent_dir: str | os.PathLike[str],
    stage2_dir: str | os.PathLike[str],
    cvae_ckpt: str | os.PathLike[str],
    seeds: Iterable[int] = (0,),
    data_seed: int = 0,
    profile: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    flow_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Select the stage-2 checkpoint with the highest downstream validation AUROC (module docstring).

    Args:
        patch_dir: the real patch files ``train.h5`` (counts to match) and ``val.h5`` (scored).
        latent_dir: the cvae's latents (the training split's class x sequence counts).
        stage2_dir: the ``flow_stage2`` output folder (``models/epoch_*.pt``).
        cvae_ckpt: the cvae weights that decode the synthetic latents.
        seeds, data_seed, profile, overrides, progress, flow_overrides: as :func:`select_stage1`.

    Returns:
        The selection record written to ``stage2_dir/selection.json``.
    """
    patch_dir, stage2_dir = Path(patch_dir), Path(stage2_dir)
    out = stage2_dir / "selection"
    val = [make_source(patch_dir / "val.h5", "label")]
    grid, sets = [], {}
    for checkpoint in candidates(stage2_dir):
        synthetic = _draw_stage2(latent_dir, stage2_dir, Path(cvae_ckpt), out / checkpoint.stem, checkpoint, profile,
                                 flow_overrides)
        described = _describe_checkpoint(checkpoint)
        sets[described["sha256"]] = substitution(patch_dir / "train.h5", synthetic, [0.0], seed=data_seed)[0.0]
        grid += [{"experiment": _STAGE2, "checkpoint": described, "seed": int(seed), "data_seed": int(data_seed),
                  "real": _describe(patch_dir / "train.h5"), "val": _describe(patch_dir / "val.h5"),
                  "synthetic": _describe(synthetic)} for seed in seeds]

    def data(config: Mapping[str, Any]) -> ClassifierData:
        train = sets[config["checkpoint"]["sha256"]][REAL_SYNTHETIC].sources
        return ClassifierData(train, val, {VALIDATION: val}, augment=True)

    return _select(stage2_dir, grid, data, profile, overrides, progress, lowest=False,
                   criterion="highest normal-vs-abnormal AUROC on the real validation patches of a classifier "
                             "trained on the checkpoint's synthetic patches alone")


def adopt_selected_samples(stage2_dir: str | os.PathLike[str], synthetic_dir: str | os.PathLike[str]) -> bool:
    """Copy the selected stage-2 checkpoint's synthetic set, drawn during the selection, to
    ``synthetic_dir`` (``latents.h5``, ``patches.h5``, each written atomically).

    The selection draws with the bundle's ``inference.json`` as it is (seed ``sample_seed``,
    counts of ``match_split``), so the set equals what the ``run`` entry would draw from the
    selected weights; adopting it leaves the bundle's ``report`` entry (sheet, statistics) to run.

    Returns:
        False, copying nothing, when there is no selection or its set is missing or was drawn by
        other weights.
    """
    from monai_cmri.latents import LatentDataset

    stage2_dir, synthetic_dir = Path(stage2_dir), Path(synthetic_dir)
    if not (stage2_dir / SELECTION_FILE).is_file():
        return False
    checkpoint = selected_checkpoint(stage2_dir)
    source = stage2_dir / "selection" / checkpoint.stem
    files = [source / "latents.h5", source / "patches.h5"]
    if not all(path.is_file() for path in files):
        return False
    try:
        sampled = set(np.asarray(LatentDataset(files[0]).columns.get("checkpoint_sha256", [None])).tolist())
    except (OSError, ValueError):
        return False
    if sampled != {file_sha256(checkpoint)}:
        return False
    synthetic_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        with open(path, "rb") as reader, atomic_write(synthetic_dir / path.name, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    return True


def _draw_stage2(
    latent_dir: str | os.PathLike[str],
    stage2_dir: Path,
    cvae_ckpt: Path,
    out: Path,
    checkpoint: Path,
    profile: str,
    flow_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Sample (matched to the training split) and decode with one stage-2 checkpoint into ``out``;
    files that this checkpoint and cvae already made are reused."""
    from monai_cmri.data.dataset import PatchDataset
    from monai_cmri.latents import LatentDataset

    latents, patches = out / "latents.h5", out / "patches.h5"
    if latents.is_file() and patches.is_file():
        try:
            sampled = set(np.asarray(LatentDataset(latents).columns.get("checkpoint_sha256", [None])).tolist())
            decoder = (PatchDataset(patches).parameters.get("decoder") or {}).get("checkpoint_sha256")
        except (OSError, ValueError):
            sampled, decoder = set(), None
        if sampled == {file_sha256(checkpoint)} and decoder == file_sha256(cvae_ckpt):
            return patches
    run_bundle("flow_stage2", "generate", ["inference.json"], {
        "dataset_dir": str(latent_dir), "output_dir": str(stage2_dir), "ckpt_path": str(checkpoint),
        "cvae_ckpt": str(cvae_ckpt), "synthetic_latents": str(latents), "synthetic_patches": str(patches),
        "progress": False, **dict(flow_overrides or {}),
    }, profile)
    return patches


def _select(
    stage_dir: Path,
    grid: list[dict[str, Any]],
    data,
    profile: str,
    overrides: Mapping[str, Any] | None,
    progress: bool,
    lowest: bool,
    criterion: str,
) -> dict[str, Any]:
    """Run the grid, pick the checkpoint by its mean AUROC, write ``selection.json`` and ``.md``."""
    out = stage_dir / "selection"
    fixed = {"profile": profile, "overrides": dict(overrides or {})}
    grid = [{**config, **fixed} for config in grid]
    records = run_grid(grid, BundleClassifier(out, data, profile, overrides), ResultStore(out / "results"),
                       progress=progress)
    by_checkpoint: dict[str, dict[str, Any]] = {}
    for record in records:
        checkpoint = record["config"]["checkpoint"]
        entry = by_checkpoint.setdefault(checkpoint["sha256"], {**checkpoint, "runs": []})
        entry["runs"].append({"sequence": record["config"].get("sequence"), "seed": record["config"]["seed"],
                              "auroc": float(record["metrics"]["auroc"][VALIDATION])})
    entries = sorted(by_checkpoint.values(), key=lambda entry: entry["epoch"] if entry["epoch"] is not None else -1)
    for entry in entries:
        values = [run["auroc"] for run in entry["runs"]]
        entry["mean_auroc"], entry["std_auroc"] = float(np.mean(values)), float(np.std(values))
    # Ties go to the later epoch (the longer-trained model).
    key = (lambda e: (e["mean_auroc"], -(e["epoch"] or 0))) if lowest else (lambda e: (-e["mean_auroc"], -(e["epoch"] or 0)))
    chosen = min(entries, key=key)
    record = {"criterion": criterion, "candidates": entries,
              "selected": {key: chosen[key] for key in ("path", "sha256", "epoch", "mean_auroc")}}
    write_json(stage_dir / SELECTION_FILE, record)
    lines = ["| checkpoint | epoch | validation AUROC | runs | selected |", "|---|---:|---:|---:|---|"]
    lines += [f"| {Path(entry['path']).name} | {entry['epoch']} | {entry['mean_auroc']:.3f} ± {entry['std_auroc']:.3f} "
              f"| {len(entry['runs'])} | {'yes' if entry is chosen else ''} |" for entry in entries]
    write_text(stage_dir / "selection.md", f"Criterion: {criterion}.\n\n" + "\n".join(lines) + "\n")
    return record


def _describe_checkpoint(path: Path) -> dict[str, Any]:
    record = read_record(path) or {}
    epoch = record.get("epoch", (record.get("key_metric") or {}).get("epoch"))
    return {"path": str(path.resolve()), "sha256": file_sha256(path), "epoch": None if epoch is None else int(epoch)}


def _describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
