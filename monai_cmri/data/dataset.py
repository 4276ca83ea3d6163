"""The patch file and the dataset that reads it (SPEC 1.3, paper 2.1.3, 2.3 weighted sampling).

Layout of a patch file (HDF5, ``LAYOUT_VERSION`` 1):

* ``patches``: float32 ``(N, 2, P, P)``, channels (real, imag) of the complex patch, chunked one
  patch per chunk so that a random read touches one chunk;
* one 1D dataset of length ``N`` per metadata column: ``file`` (str, volume name), ``slice``,
  ``row``, ``col`` (int32, top-left corner on the unflipped image), ``sequence`` (str, one of
  :data:`~monai_cmri.data.sequences.SEQUENCES`), ``label`` (str, one of :data:`LABELS`),
  ``overlap`` (float32, fraction of the box area inside the patch, 0 without a box), and any extra
  columns the writer was given (e.g. ``box``, ``brain``, ``split``);
* attributes ``layout_version``, ``patch_size`` and ``parameters`` (a JSON object: how the patches
  were made).

Files are written under a temporary name in the same folder and renamed when complete, so a
crash never leaves a half-written file under the final name.

Patch classes are integers everywhere after this module: :data:`NORMAL` 0, :data:`ABNORMAL` 1,
:data:`UNLABELED` 2, the order of the stage-2 class embedding (normal, abnormal, unknown).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import h5py
import numpy as np
import torch
from monai.data import Dataset
from torch.utils.data import Subset

from monai_cmri.atomic import DiskFullError, disk_full_error, free_bytes, is_disk_full, temporary_path
from monai_cmri.data.sequences import SEQUENCES, normalize_sequence

__all__ = [
    "LABELS",
    "NORMAL",
    "ABNORMAL",
    "UNLABELED",
    "COLUMNS",
    "LAYOUT_VERSION",
    "ArrayWriter",
    "PatchWriter",
    "describe",
    "write_patches",
    "merge_patches",
    "check_space",
    "read_parameters",
    "ArrayFileDataset",
    "PatchDataset",
    "open_array_file",
    "check_array_file",
    "json_attribute",
    "sampling_weights",
]

#: Patch classes, indexed by their integer label.
LABELS: tuple[str, ...] = ("normal", "abnormal", "unlabeled")
#: Integer labels (index into :data:`LABELS`).
NORMAL, ABNORMAL, UNLABELED = 0, 1, 2
#: Metadata columns every patch file holds, with their kind: str, int or float.
COLUMNS: dict[str, str] = {
    "file": "str",
    "slice": "int",
    "row": "int",
    "col": "int",
    "sequence": "str",
    "label": "str",
    "overlap": "float",
}
#: Version of the file layout described in the module docstring.
LAYOUT_VERSION: int = 1

_STORED = {"str": h5py.string_dtype("utf-8"), "int": np.int32, "float": np.float32}
_KINDS = {"U": "str", "S": "str", "O": "str", "i": "int", "u": "int", "b": "int", "f": "float"}


class ArrayWriter:
    """Append real arrays and their metadata rows to a new HDF5 file; rename it into place on close.

    The shared writer of patch files (:class:`PatchWriter`) and latent files
    (:class:`monai_cmri.latents.LatentWriter`): one float32 dataset ``name`` of shape
    ``(N, *shape)``, one sample per chunk, and one 1D dataset per metadata column (see the module
    docstring). Use as a context manager: on an exception the temporary file is removed and nothing
    is left under ``path``.

    Args:
        path: the file to create (an existing one is replaced on close).
        name: the array dataset, e.g. ``"patches"``.
        shape: shape of one sample.
        attrs: file attributes written on close.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, name: str, shape: Sequence[int], attrs: Mapping[str, Any]
    ) -> None:
        self.path = Path(path)
        self.name = name
        self.shape = tuple(int(size) for size in shape)
        self._attrs = dict(attrs)
        self._temporary = temporary_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._kinds: dict[str, str] | None = None
        self._count = 0
        self._file: h5py.File | None = None
        self._datasets: dict[str, h5py.Dataset] = {}
        with self._guard():
            self._file = h5py.File(self._temporary, "w")
            # The datasets stay open while writing: each release of a dataset flushes its cache.
            self._datasets = {
                name: self._file.create_dataset(
                    name, shape=(0, *self.shape), maxshape=(None, *self.shape), dtype=np.float32,
                    chunks=(1, *self.shape),
                )
            }

    def __len__(self) -> int:
        return self._count

    def append(self, data: np.ndarray | torch.Tensor, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
        """Add ``n`` samples and one value per sample for every column.

        Args:
            data: real ``(n, *shape)``, stored as float32.
            columns: the :data:`COLUMNS` and any extra ones, each of length ``n``; the first call
                fixes the set of columns. Sequences are stored in canonical spelling.

        Raises:
            ValueError: for a wrong shape or length, a missing or unexpected column, an unknown
                sequence or label, or a value of the wrong kind; the message names the file.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        data = np.asarray(data)
        if data.ndim != 1 + len(self.shape) or data.shape[1:] != self.shape or np.iscomplexobj(data):
            raise ValueError(
                f"{self.path}: expected real {self.name} (n, {', '.join(map(str, self.shape))}), "
                f"got {data.dtype} {data.shape}"
            )
        with self._guard(needed=data.size * 4):
            values = self._columns(columns, len(data))
            start, stop = self._count, self._count + len(data)
            for name, value in [(self.name, data), *values.items()]:
                dataset = self._datasets[name]
                dataset.resize(stop, axis=0)
                dataset[start:stop] = value
            # Flushing now makes a full disk fail here, in this call, rather than later in a
            # dataset's release, where HDF5 can only print the error and drop the data.
            self._file.flush()
            self._count = stop

    def close(self) -> None:
        """Write the attributes, close the file and rename it to ``path``."""
        if self._file is None:
            return
        with self._guard():
            if self._kinds is None:
                self._columns({name: [] for name in COLUMNS}, 0)
            for key, value in self._attrs.items():
                self._file.attrs[key] = value
            self._datasets.clear()
            self._file.close()
            self._file = None
            os.replace(self._temporary, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file; ``path`` is left untouched.

        The file is emptied before it is closed: HDF5 flushes its caches on close, and on a full disk
        that flush fails, leaving handles whose later release crashes the interpreter. Emptying the
        file frees its space first, so the flush succeeds into a file about to be deleted.
        """
        file, self._file = self._file, None
        try:
            if file is not None:
                _discard(file, self._datasets)
        finally:
            self._temporary.unlink(missing_ok=True)

    @contextmanager
    def _guard(self, needed: int = 0) -> Iterator[None]:
        """On a full disk, abort and raise a :class:`~monai_cmri.atomic.DiskFullError` naming ``path``."""
        try:
            yield
        except Exception as error:
            if not is_disk_full(error):
                raise
            self.abort()
            written = self._count * int(np.prod(self.shape)) * 4
            raise disk_full_error(error, self.path, written + needed) from None

    def __enter__(self) -> ArrayWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _columns(self, columns: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
        """Checked and converted columns; creates the datasets on the first call."""
        missing = [name for name in COLUMNS if name not in columns]
        if missing:
            raise ValueError(f"{self.path}: missing metadata column(s) {', '.join(missing)}")
        if self._kinds is not None and set(columns) != set(self._kinds):
            first = sorted(self._kinds)
            raise ValueError(f"{self.path}: columns {sorted(columns)} differ from the first ones {first}")
        values, kinds = {}, {}
        for name, column in columns.items():
            array = np.asarray(column)
            if array.shape != (n,):
                raise ValueError(f"{self.path}: column {name!r} has shape {array.shape}, expected ({n},)")
            kind = COLUMNS.get(name) or (self._kinds or {}).get(name) or _KINDS.get(array.dtype.kind)
            if kind is None:
                raise ValueError(f"{self.path}: column {name!r} has unsupported dtype {array.dtype}")
            values[name], kinds[name] = self._convert(name, array, kind), kind
        if self._kinds is None:
            self._kinds = kinds
            for name, kind in kinds.items():
                dtype = _STORED[kind]
                self._datasets[name] = self._file.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,)
                )
        return values

    def _convert(self, name: str, array: np.ndarray, kind: str) -> np.ndarray:
        if kind == "str":
            if array.size and array.dtype.kind not in "USO":
                raise ValueError(f"{self.path}: column {name!r} must hold strings, got {array.dtype}")
            strings = [value.decode() if isinstance(value, bytes) else str(value) for value in array.tolist()]
            if name == "sequence":
                strings = [normalize_sequence(value, str(self.path)) for value in strings]
            if name == "label" and not set(strings) <= set(LABELS):
                unknown = sorted(set(strings) - set(LABELS))
                choices = ", ".join(LABELS)
                raise ValueError(f"{self.path}: unknown label(s) {unknown}; expected one of {choices}")
            return np.array(strings, dtype=object)
        if array.size and array.dtype.kind not in ("iub" if kind == "int" else "iubf"):
            raise ValueError(f"{self.path}: column {name!r} must hold {kind} values, got {array.dtype}")
        return array.astype(_STORED[kind])



class PatchWriter(ArrayWriter):
    """Append patches and their metadata to a new patch file; rename it into place on close.

    Use as a context manager: on an exception the temporary file is removed and nothing is left
    under ``path``.

    Args:
        path: the patch file to create (an existing one is replaced on close).
        size: patch side ``P``, pixels.
        parameters: JSON-serialisable description of how the patches were made.

    Raises:
        ValueError: if ``parameters`` is not JSON-serialisable.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, size: int = 96, parameters: Mapping[str, Any] | None = None
    ) -> None:
        self.size = int(size)
        attrs = {
            "layout_version": LAYOUT_VERSION,
            "patch_size": self.size,
            "parameters": describe(parameters, Path(path), "parameters"),
        }
        super().__init__(path, name="patches", shape=(2, self.size, self.size), attrs=attrs)


def describe(value: Mapping[str, Any] | None, path: Path, what: str = "description") -> str:
    """``value`` as sorted JSON for a file attribute; ValueError naming ``path`` if it cannot be."""
    try:
        return json.dumps(dict(value or {}), sort_keys=True)
    except TypeError as error:
        raise ValueError(f"{path}: {what} must be JSON-serialisable: {error}") from None


def write_patches(
    path: str | os.PathLike[str],
    patches: np.ndarray,
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    parameters: Mapping[str, Any] | None = None,
) -> None:
    """Write a whole patch file at once (see the module docstring for the layout).

    Args:
        path: file to create; replaced atomically if it exists.
        patches: real ``(N, 2, P, P)`` (real, imag).
        columns: metadata, :data:`COLUMNS` plus any extras, each of length ``N``.
        parameters: JSON-serialisable description of how the patches were made.

    Raises:
        ValueError: as :meth:`PatchWriter.append`.
    """
    patches = np.asarray(patches)
    if patches.ndim != 4:
        raise ValueError(f"{path}: expected patches (N, 2, P, P), got shape {patches.shape}")
    check_space(path, patches.size * 4)
    with PatchWriter(path, size=patches.shape[-1], parameters=parameters) as writer:
        writer.append(patches, columns)


def merge_patches(
    sources: Iterable[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    block: int = 1024,
) -> int:
    """Concatenate patch files (e.g. the shards of a preprocessing run) into one, in the given order.

    Args:
        sources: patch files with the same patch size and columns.
        path: merged file to create.
        parameters: attributes of the merged file; None keeps those of the first source.
        block: patches copied at a time (bounds the memory used).

    Returns:
        The number of patches written.

    Raises:
        ValueError: for no sources, or sources that differ in patch size or columns.
        OSError: for a missing or unreadable source.
    """
    sources = [Path(source) for source in sources]
    if not sources:
        raise ValueError(f"{path}: nothing to merge")
    size = _describe(sources[0])[1]
    check_space(path, sum(source.stat().st_size for source in sources if source.is_file()))
    if parameters is None:
        parameters = read_parameters(sources[0])
    with PatchWriter(path, size=size, parameters=parameters) as writer:
        for source in sources:
            if _describe(source)[1] != size:
                raise ValueError(f"{source}: patch size differs from {sources[0]} ({size})")
            with _open(source) as file:
                names = [name for name in file if name != "patches"]
                for start in range(0, file["patches"].shape[0], block):
                    stop = start + block
                    columns = {name: _plain(file[name][start:stop]) for name in names}
                    writer.append(file["patches"][start:stop], columns)
        return len(writer)


def check_space(path: str | os.PathLike[str], needed: int, margin: float = 1.1) -> None:
    """Raise :class:`~monai_cmri.atomic.DiskFullError` before writing when ``path`` cannot fit ``needed`` bytes.

    A run that would fill the disk stops before its first byte rather than half-way; the margin
    covers HDF5's metadata and chunk index.

    Args:
        path: the file about to be written.
        needed: bytes of array data it will hold.
        margin: factor on ``needed``.
    """
    free = free_bytes(Path(path).parent)
    estimate = int(needed * margin) + 2**16
    if free is not None and free < estimate:
        raise DiskFullError(path, estimate)


def read_parameters(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``parameters`` attribute of a patch file, decoded from JSON."""
    with _open(Path(path)) as file:
        return json_attribute(file, "parameters", Path(path))


class ArrayFileDataset(Dataset):
    """Rows of a file written by :class:`ArrayWriter` as MONAI dictionaries.

    The reader shared by :class:`PatchDataset` and :class:`monai_cmri.latents.LatentDataset`, as
    :class:`ArrayWriter` is their shared writer. Item ``i`` is ``{key: (*shape) float32 tensor,
    "sequence": int (index into SEQUENCES), "label": int (index into LABELS), "sequence_name": str,
    "label_name": str, ...every other metadata column}``, passed through ``transform``. The metadata
    is read once, up front; the arrays lazily, one per item, through a file handle that each process
    opens for itself (safe with DataLoader workers, forked or spawned), or all at once with
    ``in_memory``.

    A subclass sets :attr:`name` (the array dataset), :attr:`key` (its item key) and :attr:`kind`
    (the file's kind in messages), and checks the rest of its layout in :meth:`_read_header`.

    Args:
        path: the file.
        in_memory: read every array into memory now (``N * prod(shape) * 4`` bytes).
        transform: callable or sequence of callables applied to each item (MONAI ``Compose``).

    Attributes:
        parameters: the file's ``parameters`` attribute, decoded.
        columns: every metadata column, ``{name: (N,) array}`` (strings as ``str`` objects).
        sequences: ``(N,)`` int64 index into :data:`~monai_cmri.data.sequences.SEQUENCES`.
        labels: ``(N,)`` int64 index into :data:`LABELS`.

    Raises:
        OSError: if the file is missing or not HDF5.
        ValueError: if it lacks a dataset of the layout, or holds inconsistent shapes, unknown
            sequences or labels; the message names the file.
    """

    #: HDF5 dataset of the arrays, e.g. ``"patches"``.
    name: ClassVar[str]
    #: Item key of the array, e.g. ``"image"``.
    key: ClassVar[str]
    #: What the file is called in messages, e.g. ``"patch"``.
    kind: ClassVar[str]

    def __init__(
        self,
        path: str | os.PathLike[str],
        in_memory: bool = False,
        transform: Sequence[Callable] | Callable | None = None,
    ) -> None:
        self.path = Path(path)
        with open_array_file(self.path, self.kind) as file:
            count = self._read_header(file)
            self.parameters = json_attribute(file, "parameters", self.path)
            self.columns = {name: _plain(file[name][()]) for name in file if name != self.name}
            self._arrays = file[self.name][()] if in_memory else None
        self.sequences = _indices(self.columns["sequence"], SEQUENCES, "sequence", self.path)
        self.labels = _indices(self.columns["label"], LABELS, "label", self.path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        super().__init__(data=range(count), transform=transform)

    def _read_header(self, file: h5py.File) -> int:
        """Check the layout of the open file, set the subclass's attributes; return the row count."""
        raise NotImplementedError

    def _transform(self, index: int) -> Any:
        index = self.data[index]
        item: dict[str, Any] = {self.key: torch.from_numpy(self._read(index))}
        item["sequence"], item["label"] = int(self.sequences[index]), int(self.labels[index])
        item["sequence_name"], item["label_name"] = SEQUENCES[item["sequence"]], LABELS[item["label"]]
        for name, column in self.columns.items():
            if name not in ("sequence", "label"):
                item[name] = column[index].item() if isinstance(column[index], np.generic) else column[index]
        return self.transform(item)

    def _read(self, index: int) -> np.ndarray:
        if self._arrays is not None:
            return np.array(self._arrays[index], dtype=np.float32)
        # h5py handles must not cross a fork: each worker process opens its own.
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return np.asarray(self._file[self.name][index], dtype=np.float32)

    def close(self) -> None:
        """Close this process's file handle (reopened on the next lazy read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state

    def _mode(self) -> str:
        return "in memory" if self._arrays is not None else "lazy"


class PatchDataset(ArrayFileDataset):
    """Patches of a patch file as MONAI dictionaries (paper 2.1.3 data, 2.3 conditioning).

    Item ``i`` is ``{"image": (2, P, P) float32 tensor, "sequence": int (index into SEQUENCES),
    "label": int (index into LABELS), "sequence_name": str, "label_name": str, "file": str,
    "slice": int, "row": int, "col": int, "overlap": float, ...extra columns}``, passed through
    ``transform``; reading as :class:`ArrayFileDataset`.

    Args:
        path: the patch file.
        in_memory: read every patch into memory now (``N * 2 * P * P * 4`` bytes).
        transform: callable or sequence of callables applied to each item (MONAI ``Compose``).

    Attributes:
        size: patch side ``P``, pixels.
        parameters, columns, sequences, labels: as :class:`ArrayFileDataset`.

    Raises:
        OSError: if the file is missing or not HDF5.
        ValueError: if it lacks a dataset of the layout, or holds inconsistent shapes, unknown
            sequences or labels; the message names the file.
    """

    name, key, kind = "patches", "image", "patch"

    def _read_header(self, file: h5py.File) -> int:
        count, self.size = _describe(self.path, file)
        return count

    def __repr__(self) -> str:
        return f"PatchDataset({str(self.path)!r}, {len(self)} patches {self.size}x{self.size}, {self._mode()})"


def sampling_weights(dataset: ArrayFileDataset | Subset) -> torch.Tensor:
    """Per-item weights that give every non-empty (sequence, class) cell the same total weight (paper 2.3).

    Item ``i`` in a cell of ``n_c`` items gets ``1 / (K * n_c)`` for ``K`` non-empty cells, so the
    weights sum to 1 and each cell to ``1 / K``. Use them with
    ``torch.utils.data.WeightedRandomSampler`` or MONAI's ``DistributedWeightedRandomSampler``.

    Args:
        dataset: a :class:`PatchDataset` or a latent file's
            :class:`~monai_cmri.latents.LatentDataset` (any :class:`ArrayFileDataset`), or a
            ``Subset`` of one (e.g. ``dataset[indices]``).

    Returns:
        float64 tensor ``(len(dataset),)``.

    Raises:
        ValueError: for an empty dataset or one that is not (a subset of) an :class:`ArrayFileDataset`.
    """
    indices = np.arange(len(dataset))
    while isinstance(dataset, Subset):
        indices = np.asarray(dataset.indices)[indices]
        dataset = dataset.dataset
    if not isinstance(dataset, ArrayFileDataset):
        kind = type(dataset).__name__
        raise ValueError(f"sampling_weights expects a PatchDataset or LatentDataset (or a Subset of one), got {kind}")
    if indices.size == 0:
        raise ValueError(f"{dataset.path}: nothing to weight")
    cells = dataset.sequences[indices] * len(LABELS) + dataset.labels[indices]
    _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    return torch.from_numpy(1.0 / (counts.size * counts[inverse].astype(np.float64)))


def open_array_file(path: Path, kind: str) -> h5py.File:
    """Open an :class:`ArrayWriter` file for reading; errors name the file and its ``kind``.

    Raises:
        FileNotFoundError: if there is no such file.
        OSError: if it is not readable HDF5.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {kind} file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise OSError(f"{path}: not a readable HDF5 {kind} file ({error})") from None


def check_array_file(file: h5py.File, path: Path, name: str, kind: str) -> tuple[int, ...]:
    """Check the layout every :class:`ArrayWriter` file shares; return the shape of ``name``.

    That is a float32 ``(N, C, H, W)`` dataset ``name`` and a ``(N,)`` dataset for each metadata
    column, :data:`COLUMNS` included.

    Raises:
        ValueError: naming ``path`` and what is wrong.
    """
    if name not in file or not isinstance(file[name], h5py.Dataset):
        raise ValueError(f"{path}: no {name!r} dataset; not a {kind} file")
    shape, dtype = file[name].shape, file[name].dtype
    if len(shape) != 4 or dtype != np.float32:
        raise ValueError(f"{path}: {name!r} must be float32 (N, C, H, W), got {dtype} {shape}")
    for column in COLUMNS:
        if column not in file:
            raise ValueError(f"{path}: missing metadata dataset {column!r}")
    for column in file:
        if column != name and file[column].shape != (shape[0],):
            found = file[column].shape
            raise ValueError(f"{path}: metadata {column!r} has shape {found}, expected ({shape[0]},)")
    return tuple(shape)


def json_attribute(file: h5py.File, name: str, path: Path) -> dict[str, Any]:
    """A JSON object stored in the file attribute ``name`` (``{}`` when absent), decoded.

    Raises:
        ValueError: naming ``path`` if the attribute is not JSON.
    """
    text = file.attrs.get(name, "{}")
    try:
        return json.loads(text.decode() if isinstance(text, bytes) else str(text))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: attribute {name!r} is not JSON: {error}") from None


def _discard(file: h5py.File, datasets: dict[str, h5py.Dataset]) -> None:
    """Close an HDF5 file that is being thrown away, freeing its disk space before the final flush."""
    try:
        handle = file.id.get_vfd_handle()
        if isinstance(handle, int) and handle >= 0:
            os.ftruncate(handle, 0)
    except (OSError, ValueError, RuntimeError, TypeError):
        pass  # another driver or an already-broken file: close as it is
    datasets.clear()
    try:
        file.close()
    except (OSError, RuntimeError, ValueError):
        pass  # the caller is already handling the error that made it discard the file


def _open(path: Path) -> h5py.File:
    return open_array_file(path, "patch")


def _describe(path: Path, file: h5py.File | None = None) -> tuple[int, int]:
    """Check the layout of a patch file; return the number of patches and the patch side."""
    if file is None:
        with _open(path) as opened:
            return _describe(path, opened)
    shape = check_array_file(file, path, "patches", "patch")
    if shape[1] != 2 or shape[2] != shape[3]:
        raise ValueError(f"{path}: 'patches' must be float32 (N, 2, P, P), got {shape}")
    return shape[0], shape[2]


def _plain(values: np.ndarray) -> np.ndarray:
    """HDF5 strings (bytes) as an object array of ``str``; numbers unchanged."""
    if values.dtype.kind in "OS":
        strings = [value.decode() if isinstance(value, bytes) else str(value) for value in values.tolist()]
        return np.array(strings, dtype=object)
    return values


def _indices(values: np.ndarray, names: tuple[str, ...], column: str, path: Path) -> np.ndarray:
    lookup = {name: index for index, name in enumerate(names)}
    unknown = sorted(set(values.tolist()) - set(lookup))
    if unknown:
        raise ValueError(f"{path}: unknown {column}(s) {unknown}; expected one of {', '.join(names)}")
    return np.array([lookup[value] for value in values.tolist()], dtype=np.int64)
