"""Running the repository's MONAI bundles in-process, as ``python -m monai.bundle run`` would.

The main job (:mod:`monai_cmri.pipeline`) and the classifier experiments
(:mod:`monai_cmri.experiments.classifier`) drive the bundles through MONAI's bundle API, so that
each stage has one implementation: its bundle configuration.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUNDLES", "bundle_configs", "run_bundle"]

#: The bundles of the repository (configuration only; run with ``python -m monai.bundle``).
BUNDLES = Path(__file__).resolve().parent.parent / "bundles"


def bundle_configs(bundle: str) -> Path:
    """The ``configs`` folder of one of :data:`BUNDLES`.

    Raises:
        OSError: when the bundle is not beside the package (a non-editable install).
    """
    configs = BUNDLES / bundle / "configs"
    if not configs.is_dir():
        raise OSError(f"{configs}: bundle not found; install the package from a clone with pip install -e .")
    return configs


def run_bundle(
    bundle: str, run_id: str, files: Sequence[str], overrides: Mapping[str, Any], profile: str = "cpu"
) -> None:
    """Run one entry of a bundle with its logging configuration and ``bundle_root`` set.

    Args:
        bundle: folder name under :data:`BUNDLES`.
        run_id: the config entry to run (``"training"``, ``"run"``, ...).
        files: config file names in the bundle's ``configs`` folder, merged in order.
        overrides: config ids to replace (MONAI's ``--id value`` arguments).
        profile: ``"cpu"`` merges ``configs/cpu.json`` after ``files``; ``"full"`` does not.

    Raises:
        OSError: when the bundle is not beside the package.
        ValueError: for an unknown profile.
    """
    from monai.bundle import run

    if profile not in ("cpu", "full"):
        raise ValueError(f"profile must be 'cpu' or 'full', got {profile!r}")
    configs = bundle_configs(bundle)
    extra = [str(configs / "cpu.json")] if profile == "cpu" else []
    with warnings.catch_warnings():
        # MONAI warns once per config file that it parses one; these are the repository's own.
        warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
        run(run_id, config_file=[str(configs / name) for name in files] + extra,
            logging_file=str(configs / "logging.conf"), bundle_root=str(BUNDLES / bundle), **dict(overrides))
