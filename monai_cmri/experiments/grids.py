"""The configurations of the paper's three classifier experiments, for :func:`~monai_cmri.experiments.runner.run_grid`.

A configuration holds what determines its result and nothing more, so that its key
(:func:`~monai_cmri.experiments.results.config_key`) changes exactly when the result would:

* ``experiment``, ``condition``, ``fraction`` (or ``sequence``), the classifier ``seed``;
* ``data_seed``: the seed of the nested fractions and synthetic draws
  (:mod:`~monai_cmri.experiments.composition`);
* ``real``: a JSON description of the real inputs (e.g. the patch file's SHA-256, the split seed);
* ``synthetic``: the same of the synthetic inputs (the generator's checkpoint SHA-256, guidance
  scale, sampling seed), only in configurations that train on synthetic data: a real-only
  classifier does not change when the generator does, and is not rerun;
* any ``fixed`` entries (e.g. the classifier recipe's hash), in every configuration.

The test sets are not part of a configuration: one trained classifier is scored on all of them, and
``train_and_score`` returns ``{"auroc": {test set: value}}`` (:mod:`~monai_cmri.experiments.tables`).

At 100 % real data both substitution conditions are the same training set; the grid trains it once,
as real only, and the figures use it for both curves and as the baseline (paper Figure 6) and as the
additive experiment's baseline (Figure 8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from monai_cmri.data.sequences import normalize_sequence
from monai_cmri.experiments.composition import (
    ADDITIVE,
    ADDITIVE_FRACTIONS,
    REAL_ONLY,
    REAL_SYNTHETIC,
    SUBSTITUTION_FRACTIONS,
)

__all__ = ["SEEDS", "SUBSTITUTION", "ADDITIVE_EXPERIMENT", "REAL_VS_SYNTHETIC", "substitution_grid",
           "additive_grid", "real_vs_synthetic_grid"]

#: Classifier seeds per configuration (paper 2.4.1, 2.4.2: five).
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: Experiment names.
SUBSTITUTION, ADDITIVE_EXPERIMENT, REAL_VS_SYNTHETIC = "substitution", "additive", "real_vs_synthetic"


def substitution_grid(
    real: Mapping[str, Any],
    synthetic: Mapping[str, Any],
    fractions: Iterable[float] = SUBSTITUTION_FRACTIONS,
    seeds: Iterable[int] = SEEDS,
    data_seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Configurations of the substitution experiment, largest real fraction first (paper Figures 6, 7).

    Real only at every fraction above 0; real + synthetic at every fraction below 1.
    """
    configs = []
    for f in sorted((float(value) for value in fractions), reverse=True):
        for condition in (REAL_ONLY, REAL_SYNTHETIC):
            if (condition == REAL_ONLY and f == 0.0) or (condition == REAL_SYNTHETIC and f == 1.0):
                continue
            for seed in seeds:
                uses = synthetic if condition == REAL_SYNTHETIC else None
                configs.append(_config(SUBSTITUTION, condition, real, uses, seed, data_seed, fixed, fraction=f))
    return configs


def additive_grid(
    real: Mapping[str, Any],
    synthetic: Mapping[str, Any],
    fractions: Iterable[float] = ADDITIVE_FRACTIONS,
    seeds: Iterable[int] = SEEDS,
    data_seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Configurations of the additive experiment, in ascending added fraction (paper Figure 8)."""
    return [
        _config(ADDITIVE_EXPERIMENT, ADDITIVE, real, synthetic, seed, data_seed, fixed, fraction=float(g))
        for g in sorted(float(value) for value in fractions)
        for seed in seeds
    ]


def real_vs_synthetic_grid(
    sequences: Iterable[str],
    real: Mapping[str, Any],
    synthetic: Mapping[str, Any],
    seeds: Iterable[int] = SEEDS,
    data_seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Configurations of the real-vs-synthetic latent classifier, per sequence (paper Table 4)."""
    return [
        _config(REAL_VS_SYNTHETIC, REAL_VS_SYNTHETIC, real, synthetic, seed, data_seed, fixed,
                sequence=normalize_sequence(name, "real_vs_synthetic_grid"))
        for name in sequences
        for seed in seeds
    ]


def _config(
    experiment: str,
    condition: str,
    real: Mapping[str, Any],
    synthetic: Mapping[str, Any] | None,
    seed: int,
    data_seed: int,
    fixed: Mapping[str, Any] | None,
    **where: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {"experiment": experiment, "condition": condition, **where, "seed": int(seed),
                              "data_seed": int(data_seed), "real": dict(real)}
    if synthetic is not None:
        config["synthetic"] = dict(synthetic)
    clash = sorted(set(fixed or {}) & set(config))
    if clash:
        raise ValueError(f"fixed entries {clash} would replace the grid's own")
    return {**config, **dict(fixed or {})}
