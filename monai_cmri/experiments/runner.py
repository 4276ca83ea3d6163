"""Run a grid of experiment configurations, resumably (STYLE 12).

:func:`run_grid` knows nothing of classifiers: it calls ``train_and_score(config)`` for every
configuration whose record is not yet in the store, and writes each record the moment its
configuration finishes. Killing the run loses only the configuration in progress; running the same
grid again skips every finished one and continues with the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from tqdm.auto import tqdm

from monai_cmri.experiments.results import ResultStore, config_key, plain

__all__ = ["run_grid"]

#: Configuration keys shown in the progress bar, when present.
_SHOWN = ("experiment", "condition", "sequence", "fraction", "seed")


def run_grid(
    configurations: Iterable[Mapping[str, Any]],
    train_and_score: Callable[[dict[str, Any]], Mapping[str, Any]],
    store: ResultStore,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the unfinished configurations in order; return every configuration's record.

    Each record holds the configuration, the metrics ``train_and_score`` returned, the seed and
    ``timing`` (``started`` and ``finished`` as UTC ISO 8601, ``seconds`` of wall time). A
    configuration listed twice runs once.

    Args:
        configurations: JSON-serialisable dicts (:mod:`monai_cmri.experiments.results`).
        train_and_score: trains and evaluates one configuration (it gets a copy), returning a dict
            of JSON-serialisable metrics.
        store: where records are read and written.
        progress: show a tqdm bar over the configurations (finished ones counted at the start).

    Returns:
        The records in configuration order, those of earlier runs included.

    Raises:
        ValueError: for a configuration that is not JSON-serialisable (before anything runs), or
            metrics that are not a dict of JSON values (nothing is written for that configuration).
        Exception: whatever ``train_and_score`` raises; the records written so far stay.
    """
    grid: dict[str, dict[str, Any]] = {}
    for config in configurations:
        config = plain(config)
        grid.setdefault(config_key(config), config)
    finished = sum(store.done(key) for key in grid)
    with tqdm(total=len(grid), initial=finished, unit="config", desc="experiments", disable=not progress) as bar:
        for key, config in grid.items():
            if store.done(key):
                continue
            bar.set_postfix_str(", ".join(f"{name}={config[name]}" for name in _SHOWN if name in config))
            started, clock = datetime.now(timezone.utc), time.perf_counter()
            metrics = train_and_score(dict(config))
            seconds = time.perf_counter() - clock
            if not isinstance(metrics, Mapping):
                raise ValueError(f"configuration {key}: train_and_score returned {type(metrics).__name__}, not a dict")
            store.write({
                "config": config,
                "metrics": dict(metrics),
                "timing": {
                    "started": started.isoformat(timespec="milliseconds"),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "seconds": seconds,
                },
            })
            bar.update(1)
    return [store.read(key) for key in grid]
