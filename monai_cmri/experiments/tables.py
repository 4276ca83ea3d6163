"""Mean +- standard deviation of a metric per configuration, as CSV and Markdown (paper Table 4, Figures 6-8).

A record's metric is either a number, or ``{test set: number}`` when one trained classifier is
scored on several test sets (the fastMRI and external test sets of paper 2.4.2, the four synthetic
test sets of paper 2.4.1). :func:`expand` gives one row per (record, test set); :func:`summarize`
groups the rows by their configuration without the replicate keys ``over`` and reports
``n``, ``mean`` and ``std`` of each group:

* downstream (Figures 6-8): ``over=("seed",)``, one value per test set and configuration;
* real vs synthetic (Table 4): ``over=("seed", "test_set")``, the five seeds x four test sets of
  a sequence pooled.

``std`` is the sample standard deviation (``ddof=1``), NaN for a single value.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_cmri.atomic import write_text

__all__ = ["SUMMARY_FIELDS", "expand", "summarize", "markdown_table", "write_table"]

#: Fields every :func:`summarize` row adds to its configuration columns.
SUMMARY_FIELDS: tuple[str, ...] = ("n", "mean", "std")


def expand(records: Iterable[Mapping[str, Any]], metric: str = "auroc") -> list[dict[str, Any]]:
    """One row ``{**config, "test_set", "value"}`` per record and test set.

    Args:
        records: records of :class:`~monai_cmri.experiments.results.ResultStore`.
        metric: the key in ``record["metrics"]``; a number, or ``{test set: number}``.

    Returns:
        Rows in record order; ``test_set`` is the metric's key, or the configuration's
        ``test_set`` (None without one) for a plain number.

    Raises:
        ValueError: for a record without the metric (named by its key).
    """
    rows = []
    for record in records:
        value = record["metrics"].get(metric)
        if value is None:
            raise ValueError(f"record {record.get('key')}: no metric {metric!r}")
        config = dict(record["config"])
        values = value.items() if isinstance(value, Mapping) else [(config.get("test_set"), value)]
        for test_set, number in values:
            rows.append({**config, "test_set": test_set, "value": float(number)})
    return rows


def summarize(
    records: Iterable[Mapping[str, Any]],
    metric: str = "auroc",
    over: Sequence[str] = ("seed",),
    experiment: str | None = None,
) -> list[dict[str, Any]]:
    """Mean and standard deviation of ``metric`` per configuration, over the keys ``over``.

    Args:
        records: records of a :class:`~monai_cmri.experiments.results.ResultStore`.
        metric: the metric (see :func:`expand`).
        over: the replicate keys pooled in a group (e.g. ``seed``, ``test_set``).
        experiment: keep only the records whose configuration has this ``experiment``.

    Returns:
        One row per group, in order of first appearance: the configuration without ``over``, then
        ``n``, ``mean`` and ``std`` (sample, NaN for one value).
    """
    if experiment is not None:
        records = [record for record in records if record["config"].get("experiment") == experiment]
    groups: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for row in expand(records, metric):
        value = row.pop("value")
        config = {key: item for key, item in row.items() if key not in over}
        name = json.dumps(config, sort_keys=True, default=str)
        groups.setdefault(name, (config, []))[1].append(value)
    summary = []
    for config, values in groups.values():
        array = np.asarray(values, dtype=np.float64)
        std = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
        summary.append({**config, "n": int(array.size), "mean": float(np.mean(array)), "std": std})
    return summary


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, metric: str = "AUROC", digits: int = 3
) -> str:
    """Rows of :func:`summarize` as a Markdown table: the columns, ``metric`` as ``mean ± std``, ``n``.

    Args:
        rows: summary rows.
        columns: configuration columns to show; by default every key holding a plain value
            (not a dict or list) that differs between rows, ``experiment`` always.
        metric: header of the value column.
        digits: decimals of mean and std.
    """
    columns = list(columns) if columns is not None else _columns(rows)
    lines = ["| " + " | ".join([*columns, metric, "n"]) + " |", "|" + "---|" * len(columns) + "---:|---:|"]
    for row in rows:
        std = row["std"]
        value = f"{row['mean']:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")
        cells = [_text(row.get(column)) for column in columns] + [value, str(row["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    rows: Sequence[Mapping[str, Any]],
    out_stem: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    metric: str = "AUROC",
) -> tuple[Path, Path]:
    """Write summary rows as ``<out_stem>.md`` (rounded) and ``<out_stem>.csv`` (full precision), atomically.

    The CSV has the columns (as :func:`markdown_table` chooses them), then ``n``, ``mean``, ``std``.

    Returns:
        ``(markdown path, csv path)``.
    """
    stem = Path(out_stem)
    columns = list(columns) if columns is not None else _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*columns, *SUMMARY_FIELDS])
    for row in rows:
        cells = [_text(row.get(column)) for column in columns]
        writer.writerow([*cells, row["n"], repr(row["mean"]), repr(row["std"])])
    stem.parent.mkdir(parents=True, exist_ok=True)
    markdown, table = Path(f"{stem}.md"), Path(f"{stem}.csv")
    write_text(table, buffer.getvalue())
    write_text(markdown, markdown_table(rows, columns, metric))
    return markdown, table


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Plain-valued configuration keys that differ between rows, ``experiment`` first if present."""
    names: list[str] = []
    for row in rows:
        names += [key for key in row if key not in names and key not in SUMMARY_FIELDS]
    chosen = []
    for name in names:
        values = [row.get(name) for row in rows]
        if any(isinstance(value, (dict, list)) for value in values):
            continue
        if name == "experiment" or len({json.dumps(value, default=str) for value in values}) > 1:
            chosen.append(name)
    return chosen


def _text(value: Any) -> str:
    return "" if value is None else str(value)
