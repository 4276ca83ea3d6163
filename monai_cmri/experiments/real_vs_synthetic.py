"""Data of the real-vs-synthetic latent classifier, one per sequence (paper 2.4.1, Table 4).

"The synthetic samples are split the same way in training, validation and test data": for a
sequence with ``n_train``, ``n_val`` and ``n_test`` real latents in the real split files, the
synthetic latents of that sequence are split into ``n_train`` for training, ``n_val`` for
validation and, for each of the independent test sets, ``n_test`` more. Every test set pairs the
same fixed real test latents (target 0) with its own synthetic ones (target 1).

Independent test sets: either disjoint draws from one synthetic pool (samples of one generator with
distinct seeds are independent, so disjoint subsets of a pool are independent sets), or one
synthetic file per test set (``synthetic_tests``). Rows are drawn from the front of a seeded order
per sequence (:func:`~monai_cmri.experiments.fractions.cell_order`, stream
``"real_vs_synthetic"``): train first, then val, then the test sets.

Every row of a sequence takes part, whatever its label: stage 1 does not condition on the class.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monai_cmri.data.sequences import SEQUENCES, normalize_sequence
from monai_cmri.experiments.fractions import cell_order
from monai_cmri.experiments.rows import Rows, read_rows
from monai_cmri.experiments.sources import Source, make_source

__all__ = ["REAL", "SYNTHETIC", "TEST_SETS", "SequenceSplit", "real_vs_synthetic"]

#: Targets of the real-vs-synthetic classifier.
REAL, SYNTHETIC = 0, 1
#: Independent synthetic test sets per sequence (paper 2.4.1).
TEST_SETS: int = 4


@dataclass(frozen=True)
class SequenceSplit:
    """Train, validation and test sources of the real-vs-synthetic classifier of one sequence.

    Attributes:
        sequence: the sequence name.
        train: real (target 0) and synthetic (target 1) training sources.
        val: the same for validation.
        tests: one source list per independent test set, each the fixed real test rows plus its own
            synthetic rows.
        summary: ``{"sequence", "real": {split: rows}, "synthetic": {"train", "val", "test", "test_sets"}}``.
    """

    sequence: str
    train: list[Source]
    val: list[Source]
    tests: list[list[Source]]
    summary: dict[str, Any] = field(default_factory=dict)


def real_vs_synthetic(
    real: Mapping[str, str | os.PathLike[str]],
    synthetic: str | os.PathLike[str],
    synthetic_tests: Sequence[str | os.PathLike[str]] | None = None,
    test_sets: int = TEST_SETS,
    sequences: Iterable[str] | None = None,
    seed: int = 0,
) -> dict[str, SequenceSplit]:
    """Per sequence, synthetic latents split like the real ones, with independent test sets (paper 2.4.1).

    Args:
        real: ``{"train": path, "val": path, "test": path}`` real latent (or patch) files.
        synthetic: synthetic latents (stage-1 samples); train and val rows, and the test rows
            unless ``synthetic_tests`` is given.
        synthetic_tests: one synthetic file per test set; overrides ``test_sets``.
        test_sets: disjoint test sets drawn from ``synthetic`` when ``synthetic_tests`` is None.
        sequences: the sequences to split; by default those with real rows in all three files.
        seed: draws the synthetic rows.

    Returns:
        ``{sequence: SequenceSplit}`` in :data:`~monai_cmri.data.sequences.SEQUENCES` order.

    Raises:
        ValueError: for missing split files, ``test_sets < 1``, no sequence in all three real files,
            or too few synthetic rows of a sequence (the message names it and the counts).
    """
    missing = [split for split in ("train", "val", "test") if split not in real]
    if missing:
        raise ValueError(f"real_vs_synthetic: no real file for split(s) {', '.join(missing)}")
    if synthetic_tests is None and test_sets < 1:
        raise ValueError(f"real_vs_synthetic: test_sets must be >= 1, got {test_sets}")
    files = {split: read_rows(real[split]) for split in ("train", "val", "test")}
    pool = read_rows(synthetic)
    extra = [read_rows(path) for path in synthetic_tests] if synthetic_tests is not None else None
    if sequences is None:
        # A classifier needs real rows to train, validate and test on: a sequence missing from a
        # split (a small cohort) is left out.
        present = set.intersection(*(set(rows.sequences.tolist()) for rows in files.values()))
        names = [name for name in SEQUENCES if name in present]
        if not names:
            paths = ", ".join(str(rows.path) for rows in files.values())
            raise ValueError(f"real_vs_synthetic: no sequence has real rows in train, val and test ({paths})")
    else:
        names = [normalize_sequence(name, "real_vs_synthetic") for name in sequences]
    order = _order(pool, seed)
    splits = {}
    for name in names:
        real_rows = {split: np.flatnonzero(rows.sequences == name) for split, rows in files.items()}
        n = {split: int(rows.size) for split, rows in real_rows.items()}
        count = len(extra) if extra is not None else test_sets
        needed = n["train"] + n["val"] + (0 if extra is not None else count * n["test"])
        mine = order.get(name, [])
        if needed > len(mine):
            raise ValueError(
                f"{pool.path}: sequence {name} needs {needed} synthetic rows (train {n['train']}, val {n['val']}"
                + ("" if extra is not None else f", {count} test sets of {n['test']}")
                + f"), only {len(mine)} available"
            )
        train, val = mine[: n["train"]], mine[n["train"] : n["train"] + n["val"]]
        tests = []
        for k in range(count):
            if extra is None:
                start = n["train"] + n["val"] + k * n["test"]
                file, chosen = pool, mine[start : start + n["test"]]
            else:
                file, own = extra[k], _order(extra[k], seed).get(name, [])
                if n["test"] > len(own):
                    raise ValueError(
                        f"{file.path}: sequence {name} needs {n['test']} synthetic test rows, only {len(own)} available"
                    )
                chosen = own[: n["test"]]
            tests.append(_pair(files["test"], real_rows["test"], file, chosen))
        splits[name] = SequenceSplit(
            sequence=name,
            train=_pair(files["train"], real_rows["train"], pool, train),
            val=_pair(files["val"], real_rows["val"], pool, val),
            tests=tests,
            summary={
                "sequence": name,
                "seed": int(seed),
                "real": n,
                "synthetic": {"train": len(train), "val": len(val), "test": n["test"], "test_sets": count},
            },
        )
    return splits


def _order(rows: Rows, seed: int) -> dict[str, list[int]]:
    """Every sequence's rows of a synthetic file in the seeded order of stream ``"real_vs_synthetic"``."""
    return cell_order(dict(enumerate(rows.sequences.tolist())), seed, "real_vs_synthetic")


def _pair(real: Rows, real_rows: np.ndarray, synthetic: Rows, synthetic_rows: Sequence[int]) -> list[Source]:
    sources = []
    if real_rows.size:
        sources.append(make_source(real.path, REAL, real_rows))
    if len(synthetic_rows):
        sources.append(make_source(synthetic.path, SYNTHETIC, synthetic_rows))
    return sources
