"""Running the repository's MONAI bundles in-process, as ``python -m monai.bundle run`` would.

The main job (:mod:`monai_cmri.pipeline`) and the classifier experiments
(:mod:`monai_cmri.experiments.classifier`) drive the bundles through MONAI's bundle API, so that
each stage has one implementation: its bundle configuration.

Where the bundles are: in a clone of the repository (an editable install), its ``bundles/`` folder;
in an installed wheel or sdist, the data package ``monai_cmri_bundles`` that ships the same
folder (setup.py). ``python -m monai_cmri bundle`` prints their paths or copies them out.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUNDLES", "BUNDLES_PACKAGE", "as_flag", "bundle_configs", "bundle_names", "copy_bundle", "run_bundle"]

#: The data package that ships the ``bundles/`` folder in a wheel or sdist install.
BUNDLES_PACKAGE = "monai_cmri_bundles"
#: The ``bundles/`` folder of a clone: beside the package's folder.
_CLONE = Path(__file__).resolve().parent.parent / "bundles"


def _holds_bundles(folder: Path) -> bool:
    """Whether ``folder`` holds at least one bundle (a ``<name>/configs/metadata.json``)."""
    return folder.is_dir() and any(folder.glob("*/configs/metadata.json"))


def _installed() -> Path | None:
    """The folder of the installed :data:`BUNDLES_PACKAGE`, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(BUNDLES_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if _holds_bundles(Path(location)):
            return Path(location).resolve()
    return None


def _find_bundles() -> Path:
    """The clone's ``bundles/`` folder when the package runs from a clone, else the installed copy
    (else the clone's path, which :func:`bundle_configs` reports as missing)."""
    if _holds_bundles(_CLONE):
        return _CLONE
    return _installed() or _CLONE


#: The folder of the bundles (configuration only; run with ``python -m monai.bundle``): the
#: repository's ``bundles/`` in a clone, else the installed copy of it (:data:`BUNDLES_PACKAGE`).
BUNDLES = _find_bundles()


#: How the command line may spell a yes or a no (any case).
_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})


def as_flag(value: Any, name: str) -> bool:
    """A bundle variable read as a yes or no.

    ``python -m monai.bundle run ... --resume false`` hands the variable over as the string
    ``"false"`` (MONAI's command line parses ``False`` but not JSON's ``false``), which ``bool``
    would read as true; the usual spellings are accepted here, in any case.

    Args:
        value: a bool, an int 0/1, or a string such as ``"false"``, ``"True"``, ``"no"``, ``"1"``.
        name: the variable's name, for the error message.

    Raises:
        ValueError: for anything else, naming the variable and the value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}")


def bundle_names() -> list[str]:
    """The names of the bundles in :data:`BUNDLES` (``classifier``, ``cvae``, ...), sorted."""
    return sorted(path.parent.parent.name for path in BUNDLES.glob("*/configs/metadata.json"))


def bundle_configs(bundle: str) -> Path:
    """The ``configs`` folder of one of :data:`BUNDLES`.

    Raises:
        OSError: when no bundles were found (neither a clone's ``bundles/`` folder nor the installed
            data package), or when ``bundle`` is not one of them; the message says where it looked.
    """
    configs = BUNDLES / bundle / "configs"
    if configs.is_dir():
        return configs
    if not _holds_bundles(BUNDLES):
        raise OSError(
            f"bundle {bundle!r} not found: no bundles in {_CLONE} (a clone of the repository) and no installed "
            f"package {BUNDLES_PACKAGE} holding them; reinstall monai_cmri (pip install . or its wheel)"
        )
    raise OSError(f"{BUNDLES / bundle}: no such bundle; the bundles are {', '.join(bundle_names())}")


def copy_bundle(bundle: str, folder: str | Path) -> Path:
    """Copy one of :data:`BUNDLES` to ``folder/<bundle>``, as a model-zoo download would place it.

    The copy's configs run from any working folder (``python -m monai.bundle run training
    --config_file <copy>/configs/train.json ...``); copies into a folder named ``bundles`` let the
    bundles' README commands (``--config_file bundles/<bundle>/configs/...``) run as written from
    that folder's parent.

    Args:
        bundle: the bundle's name (:func:`bundle_names`).
        folder: where to put the copy; made if missing.

    Returns:
        The copy, ``folder/<bundle>``.

    Raises:
        OSError: for an unknown bundle, or when ``folder/<bundle>`` already exists.
    """
    source = bundle_configs(bundle).parent
    target = Path(folder) / bundle
    if target.exists():
        raise FileExistsError(f"{target}: already exists; remove it or copy to another folder")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


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
        OSError: when the bundle is not found (:func:`bundle_configs`).
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
