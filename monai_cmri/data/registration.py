"""``EspiritReader`` in MONAI's reader table, so that ``LoadImage`` picks it by name and by suffix.

MONAI 1.6.1's ``LoadImage`` resolves ``reader="SomeReader"`` as an attribute of ``monai.data``,
then as a dotted path (``reader="monai_cmri.data.reader.EspiritReader"`` works with no
registration at all), then as a lower-cased key of ``monai.transforms.io.array.SUPPORTED_READERS``;
with no reader it builds one reader per entry of that table and uses the last one whose
``verify_suffix`` accepts the file. The table is MONAI's public registration point (exported as
``monai.transforms.SUPPORTED_READERS``, "Users may add custom readers here"), so ``import
monai_cmri`` adds the entry ``"espiritreader"`` to it: ``LoadImage(reader="EspiritReader")`` and
``LoadImaged(keys, reader="EspiritReader")`` then work, and ``LoadImage()`` gives fastMRI ``.h5``
files to ``EspiritReader``. Added last, it is tried first, and it accepts only ``.h5`` and
``.hdf5`` names, so NIfTI, PNG, NumPy or DICOM files still go to MONAI's readers. Nothing else of
MONAI is changed, and an entry of that name registered by someone else is kept.

Importing MONAI takes seconds and most of the package (the command line, fastMRI file access, the
simulator) does not need it, so ``import monai_cmri`` does not import MONAI: when
``monai.transforms.io.array`` is already loaded the entry is added at once, otherwise a one-shot
import hook adds it right after that module has run, and removes itself. Until
:mod:`monai_cmri.data.reader` is imported the entry is :func:`espirit_reader`, a factory that
imports it; the reader module then puts the class itself in its place.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
from collections.abc import Callable, MutableMapping
from types import ModuleType
from typing import Any

__all__ = ["READER_NAME", "espirit_reader", "install", "register_espirit_reader"]

#: The key of ``EspiritReader`` in MONAI's ``SUPPORTED_READERS`` (MONAI looks names up lower-cased).
READER_NAME = "espiritreader"

#: The MONAI module that holds ``SUPPORTED_READERS`` (1.6.1).
_MONAI_MODULE = "monai.transforms.io.array"


def espirit_reader(*args: Any, **kwargs: Any) -> Any:
    """A new :class:`~monai_cmri.data.reader.EspiritReader` (the table entry before the reader
    module is imported; ``LoadImage`` calls it with its reader arguments)."""
    try:
        from monai_cmri.data.reader import EspiritReader
    except ImportError as err:  # LoadImage skips default readers that raise OptionalImportError
        from monai.utils import OptionalImportError

        raise OptionalImportError(f"monai_cmri's EspiritReader cannot be imported: {err}") from err
    return EspiritReader(*args, **kwargs)


def register_espirit_reader(
    table: MutableMapping[str, Any] | None = None, reader: Callable[..., Any] | None = None
) -> None:
    """Put ``reader`` (by default :func:`espirit_reader`) under :data:`READER_NAME` in ``table``.

    Idempotent; the class replaces the factory, and an entry that is neither is left alone.

    Args:
        table: MONAI's ``SUPPORTED_READERS`` (imported when None).
        reader: the class or factory to register.
    """
    if table is None:
        from monai.transforms.io.array import SUPPORTED_READERS as table
    current = table.get(READER_NAME)
    ours = current in (None, espirit_reader) or getattr(current, "__module__", "") == "monai_cmri.data.reader"
    if ours and (reader is not None or current is None):
        table[READER_NAME] = reader or espirit_reader


def install() -> None:
    """Register now if MONAI's reader table is loaded, else when it is (called by ``import monai_cmri``)."""
    module = sys.modules.get(_MONAI_MODULE)
    if module is not None and hasattr(module, "SUPPORTED_READERS"):
        _register(module)
    elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


def _register(module: ModuleType) -> None:
    try:
        register_espirit_reader(module.SUPPORTED_READERS)
    except Exception as err:  # never break MONAI's own import
        warnings.warn(f"monai_cmri: EspiritReader not registered with MONAI's LoadImage ({err})", stacklevel=2)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds ``monai.transforms.io.array`` with the other finders and registers once it has run."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if fullname != _MONAI_MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, puts it back on the module, then registers."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _register(module)
