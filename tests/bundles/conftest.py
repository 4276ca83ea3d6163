"""Fixtures of the bundle tests: tiny patch files, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from cvae_data import write_patch_folder


@pytest.fixture(scope="session")
def patches(tmp_path_factory) -> Path:
    """A patch folder (``train.h5``, ``val.h5``, ``test.h5``) of 32 x 32 complex blobs."""
    return write_patch_folder(tmp_path_factory.mktemp("patches"))
