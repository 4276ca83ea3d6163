"""A resumable store of experiment results: one JSON file per finished configuration (STYLE 12).

A *configuration* is a JSON-serialisable dict of everything that determines a result: experiment,
condition, fraction, classifier seed, test set, the seeds of the data draws, the checkpoints'
SHA-256. Its *key* is ``<experiment>-<16 hex digits>``, the digits from the SHA-256 of the
configuration as canonical JSON (sorted keys, floats rounded to 12 significant digits, so that
``0.1 + 0.2`` and ``0.3`` name the same configuration): the same configuration always has the
same key, and any change to it gives another.

A *record* is ``{"key", "config", "metrics", "seed", "timing", ...}``. :meth:`ResultStore.write`
writes it to ``<folder>/<key>.json`` under a temporary name renamed into place the moment a
configuration finishes (:func:`monai_cmri.atomic.write_json`): a killed run loses only the
configuration it was running, and a rerun skips every key already present
(:func:`monai_cmri.experiments.runner.run_grid`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monai_cmri.atomic import remove_stale_temporaries, write_json

__all__ = ["config_key", "plain", "ResultStore"]

_SLUG = re.compile(r"[^A-Za-z0-9_+.-]+")


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and paths as plain JSON values.

    Raises:
        ValueError: for a value JSON cannot hold (e.g. an object), or a dict key that is not a string.
    """
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"keys of a configuration or record must be strings, got {key!r}")
            result[key] = plain(item)
        return result
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{type(value).__name__} is not JSON-serialisable: {value!r}")


def config_key(config: Mapping[str, Any]) -> str:
    """The stable key of a configuration (module docstring).

    Raises:
        ValueError: if the configuration is not JSON-serialisable.
    """
    text = json.dumps(_canonical(plain(config)), sort_keys=True, separators=(",", ":"))
    slug = _SLUG.sub("_", str(config.get("experiment", "run"))) or "run"
    return f"{slug}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


class ResultStore:
    """Records of finished configurations, one JSON file each in ``folder``.

    Args:
        folder: where the records live (created if missing); temporaries left by a dead writer on
            this host are removed.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)

    @staticmethod
    def key(config: Mapping[str, Any]) -> str:
        """:func:`config_key` of ``config``."""
        return config_key(config)

    def path(self, key: str | Mapping[str, Any]) -> Path:
        """The record file of a key (or of a configuration)."""
        return self.folder / f"{self._key(key)}.json"

    def done(self, key: str | Mapping[str, Any]) -> bool:
        """Whether a record of this key (or configuration) has been written."""
        return self.path(key).is_file()

    def write(self, record: Mapping[str, Any]) -> Path:
        """Write one finished configuration's record atomically; return its file.

        Args:
            record: at least ``"config"`` (the configuration) and ``"metrics"`` (a dict); any
                other JSON-serialisable entries (timing, sources, summaries) are kept. ``"key"``
                and ``"seed"`` (the configuration's, if any) are added.

        Raises:
            ValueError: without ``config`` or ``metrics``, with a key that is not the
                configuration's, or with a value that is not JSON-serialisable.
        """
        if not isinstance(record.get("config"), Mapping) or not isinstance(record.get("metrics"), Mapping):
            raise ValueError("a record needs a 'config' dict and a 'metrics' dict")
        content = plain(record)
        key = config_key(content["config"])
        if content.get("key", key) != key:
            raise ValueError(f"record key {content['key']!r} is not its configuration's key {key!r}")
        content["key"] = key
        content.setdefault("seed", content["config"].get("seed"))
        return write_json(self.path(key), content)

    def read(self, key: str | Mapping[str, Any]) -> dict[str, Any]:
        """The record of a key (or configuration).

        Raises:
            FileNotFoundError: if there is none.
            ValueError: if the file is not a record.
        """
        return self._load(self.path(key))

    def records(self) -> list[dict[str, Any]]:
        """Every record, in the order they finished (then by key)."""
        loaded = [self._load(path) for path in self.folder.glob("*.json") if not path.name.startswith(".")]
        return sorted(loaded, key=lambda record: (str(record.get("timing", {}).get("finished", "")), record["key"]))

    def __len__(self) -> int:
        return sum(1 for path in self.folder.glob("*.json") if not path.name.startswith("."))

    def _key(self, key: str | Mapping[str, Any]) -> str:
        return config_key(key) if isinstance(key, Mapping) else str(key)

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such record")
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a JSON record: {error}") from None
        if not isinstance(content, dict) or not {"key", "config", "metrics"} <= set(content):
            raise ValueError(f"{path}: not a record (needs key, config and metrics)")
        return content


def _canonical(value: Any) -> Any:
    """Floats rounded to 12 significant digits, recursively (keys are sorted by ``json.dumps``)."""
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value
