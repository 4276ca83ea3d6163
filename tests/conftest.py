"""Shared fixtures: a small simulated fastMRI dataset at the real matrix size, made once."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_cmri.simulate import simulate_dataset

#: Four volumes of the simulator's schedule (AXFLAIR abnormal, AXT1POST abnormal, AXT2 unlabeled,
#: AXT1 ...), 3 slices and 4 coils each, at fastMRI's 640 x 320 matrix so that 96 x 96 patches fit
#: the brain as they do in real data.
SMALL = dict(volumes=4, seed=0, slices=3, coils=[4])


@pytest.fixture(scope="session")
def fastmri_dir(tmp_path_factory) -> Path:
    """A folder of simulated fastMRI brain files with brain.csv and brain_file_list.csv."""
    out = tmp_path_factory.mktemp("fastmri")
    simulate_dataset(out, progress=False, **SMALL)
    return out
