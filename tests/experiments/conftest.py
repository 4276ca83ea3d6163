"""Fixtures of the experiment tests: a tiny real training patch file and a synthetic one matched to it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from experiment_files import real_table, synthetic_rows, write_rows


@pytest.fixture
def real_file(tmp_path) -> Path:
    return write_rows(tmp_path / "train.h5", *real_table())


@pytest.fixture
def synthetic_file(tmp_path) -> Path:
    _, sequences, labels = real_table()
    counts = Counter((s, c) for s, c in zip(sequences, labels) if c != "unlabeled")
    return write_rows(tmp_path / "synthetic.h5", *synthetic_rows(counts))
