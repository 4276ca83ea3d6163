"""Lazy access to fastMRI brain multi-coil HDF5 files (SPEC 1.1).

A fastMRI volume holds ``kspace`` complex64 ``(slices, coils, H, W)`` (H the 2x oversampled
readout), optionally ``reconstruction_rss`` float32 ``(slices, 320, 320)``, the XML
``ismrmrd_header`` and the attributes ``acquisition``, ``max``, ``norm``, ``patient_id``. A full
volume is hundreds of megabytes, so :class:`FastMRIFile` checks the structure when it opens and
reads k-space one slice at a time.

MONAI's ``monai.apps.reconstruction.fastmri_reader.FastMRIReader`` loads every dataset of the file
into memory at once and does not check it; the pipeline needs slice-wise reads, the sequence name
and the parsed header, and clear errors on broken downloads, hence this reader.
"""

from __future__ import annotations

import operator
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from monai_cmri.data.header import IsmrmrdHeader
from monai_cmri.data.sequences import SEQUENCES, normalize_sequence, sequence_from_name

__all__ = ["FastMRIFile", "read_header", "validate_file"]


class FastMRIFile:
    """A fastMRI brain multi-coil HDF5 file, opened read-only and read slice by slice.

    Opening checks the structure (an HDF5 file with a complex 4-D ``kspace``, a parseable
    ``ismrmrd_header``, a known sequence) without reading k-space; :meth:`kspace` reads one slice
    and, with ``check_finite``, rejects NaN or Inf values. Use as a context manager or call
    :meth:`close`.

    Example::

        with FastMRIFile("file_brain_AXT2_200_2000019.h5") as f:
            coil_images = monai_cmri.transforms.ifft2c(f.kspace(0))  # (coils, 640, 320) complex64

    Args:
        path: the ``.h5`` file.
        check_finite: reject slices that contain NaN or Inf when they are read.
        sequence: the sequence, for files that name none (external data); overrides the
            ``acquisition`` attribute and the file name.

    Attributes:
        path: the file path.
        shape: k-space shape ``(slices, coils, H, W)``.
        num_slices: number of slices.
        num_coils: number of receive coils.
        sequence: one of :data:`monai_cmri.data.sequences.SEQUENCES`, from the ``acquisition``
            attribute, else from the file name ``file_brain_{SEQUENCE}_{site}_{id}.h5``.
        attrs: the HDF5 root attributes as plain Python values (str, int, float, list).
        header: the parsed ``ismrmrd_header``.
        notes: anomalies found while opening, e.g. an ``acquisition`` attribute that disagrees
            with the file name (each also issued as a ``UserWarning``).

    Raises:
        OSError: the file is missing, not HDF5, or truncated.
        ValueError: ``kspace`` is missing, not 4-D or not complex; the header is missing or
            invalid; the sequence is unknown. Every message starts with the file path.
    """

    def __init__(self, path: str | Path, *, check_finite: bool = True, sequence: str | None = None) -> None:
        self.path = Path(path)
        self.check_finite = check_finite
        self._file = _open(self.path)
        try:
            self._kspace = _kspace_dataset(self._file, self.path)
            slices, coils, rows, cols = (int(n) for n in self._kspace.shape)
            self.shape: tuple[int, int, int, int] = (slices, coils, rows, cols)
            self.attrs: dict[str, Any] = {key: _plain(value) for key, value in self._file.attrs.items()}
            self.notes: list[str] = []
            if sequence is not None:
                self.sequence: str = normalize_sequence(sequence, str(self.path))
            else:
                self.sequence, note = _sequence(self.attrs.get("acquisition"), self.path)
                if note:
                    self.notes.append(note)
                    warnings.warn(note, stacklevel=2)
            self.header: IsmrmrdHeader = _header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise

    @property
    def num_slices(self) -> int:
        """Number of slices (first k-space axis)."""
        return self.shape[0]

    @property
    def num_coils(self) -> int:
        """Number of receive coils (second k-space axis)."""
        return self.shape[1]

    @property
    def has_reconstruction(self) -> bool:
        """Whether the file holds ``reconstruction_rss`` (train and validation files do)."""
        return "reconstruction_rss" in self._file

    def __len__(self) -> int:
        return self.num_slices

    def kspace(self, index: int) -> np.ndarray:
        """Read the k-space of one slice.

        Args:
            index: slice index in ``[0, num_slices)``.

        Returns:
            complex64 ``(coils, H, W)``.

        Raises:
            IndexError: ``index`` is out of range.
            OSError: the slice cannot be read (truncated or corrupt file).
            ValueError: with ``check_finite``, the slice contains NaN or Inf.
        """
        index = self._check_index(index)
        data = self._read(self._kspace, index, "kspace").astype(np.complex64, copy=False)
        if self.check_finite and not np.isfinite(data).all():
            raise ValueError(f"{self.path}: kspace slice {index} contains NaN or Inf values")
        return data

    def reconstruction_rss(self, index: int) -> np.ndarray | None:
        """Read fastMRI's root-sum-of-squares reconstruction of one slice, if the file has one.

        Args:
            index: slice index in ``[0, num_slices)``.

        Returns:
            float32 ``(320, 320)`` (generally ``(H // 2, H // 2)``), or None for files without
            ``reconstruction_rss`` (the fastMRI test split).

        Raises:
            IndexError: ``index`` is out of range.
            OSError: the slice cannot be read.
            ValueError: the dataset is not real 3-D with one image per k-space slice, or (with
                ``check_finite``) the slice contains NaN or Inf.
        """
        index = self._check_index(index)
        if not self.has_reconstruction:
            return None
        dataset = self._file["reconstruction_rss"]
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 3 or dataset.shape[0] != self.num_slices:
            shape = getattr(dataset, "shape", None)
            raise ValueError(
                f"{self.path}: reconstruction_rss must be (slices, H, W) with {self.num_slices} slices, "
                f"got shape {shape}"
            )
        if not np.issubdtype(dataset.dtype, np.floating):
            raise ValueError(f"{self.path}: reconstruction_rss must be real, got dtype {dataset.dtype}")
        data = self._read(dataset, index, "reconstruction_rss").astype(np.float32, copy=False)
        if self.check_finite and not np.isfinite(data).all():
            raise ValueError(f"{self.path}: reconstruction_rss slice {index} contains NaN or Inf values")
        return data

    def close(self) -> None:
        """Close the HDF5 file; reading afterwards raises."""
        self._file.close()

    def __enter__(self) -> FastMRIFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FastMRIFile({str(self.path)!r}, sequence={self.sequence!r}, shape={self.shape})"

    def _check_index(self, index: int) -> int:
        try:
            index = operator.index(index)
        except TypeError as err:
            raise IndexError(f"{self.path}: slice index must be an integer, got {index!r}") from err
        if not 0 <= index < self.num_slices:
            raise IndexError(f"{self.path}: slice index {index} is out of range [0, {self.num_slices})")
        return index

    def _read(self, dataset: h5py.Dataset, index: int, name: str) -> np.ndarray:
        if not self._file.id.valid:
            raise ValueError(f"{self.path}: the file is closed")
        try:
            # Indexing an h5py dataset reads only that hyperslab, never the whole volume.
            return dataset[index]
        except (OSError, RuntimeError) as err:
            raise OSError(f"{self.path}: cannot read {name} slice {index} ({err})") from err


def read_header(path: str | Path) -> IsmrmrdHeader:
    """Parse the ``ismrmrd_header`` of a fastMRI file without touching its k-space.

    Args:
        path: the ``.h5`` file.

    Raises:
        OSError: the file is missing, not HDF5, or truncated.
        ValueError: the header is missing or invalid; the message starts with the file path.
    """
    path = Path(path)
    with _open(path) as file:
        return _header(file, path)


def validate_file(path: str | Path) -> None:
    """Check a fastMRI file completely, reading one slice at a time; raise on the first problem.

    Checks the structure (as :class:`FastMRIFile` does on opening), then every k-space slice and,
    if present, every ``reconstruction_rss`` slice for readability and NaN/Inf values. Peak memory
    is one slice.

    Args:
        path: the ``.h5`` file.

    Raises:
        OSError: the file is missing, not HDF5, truncated or unreadable.
        ValueError: any structural or value problem; the message starts with the file path.
    """
    with FastMRIFile(path, check_finite=True) as file:
        for index in range(file.num_slices):
            file.kspace(index)
            file.reconstruction_rss(index)


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise OSError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise OSError(f"{path}: cannot open the HDF5 file, it may be truncated or corrupt ({err})") from err


def _kspace_dataset(file: h5py.File, path: Path) -> h5py.Dataset:
    dataset = file.get("kspace")
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"{path}: no 'kspace' dataset (found {sorted(file.keys())})")
    if dataset.ndim != 4:
        raise ValueError(f"{path}: kspace must be 4-D (slices, coils, H, W), got shape {dataset.shape}")
    if not np.issubdtype(dataset.dtype, np.complexfloating):
        raise ValueError(f"{path}: kspace must be complex, got dtype {dataset.dtype}")
    if 0 in dataset.shape:
        raise ValueError(f"{path}: kspace is empty, shape {dataset.shape}")
    return dataset


def _header(file: h5py.File, path: Path) -> IsmrmrdHeader:
    dataset = file.get("ismrmrd_header")
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"{path}: no 'ismrmrd_header' dataset")
    try:
        raw = dataset[()]
    except (OSError, RuntimeError) as err:
        raise OSError(f"{path}: cannot read ismrmrd_header ({err})") from err
    # fastMRI stores a scalar bytes string; other writers use a uint8 array or a 1-element array.
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8:
        raw = raw.tobytes()
    elif isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.reshape(-1)[0]
    if not isinstance(raw, (bytes, str)):
        raise ValueError(f"{path}: ismrmrd_header must hold XML text, got {type(raw).__name__}")
    return IsmrmrdHeader.from_xml(raw, source=str(path))


def _sequence(acquisition: Any, path: Path) -> tuple[str, str | None]:
    """The file's sequence and, when the attribute and the file name disagree, a note saying so.

    A known ``acquisition`` attribute wins over the name; an unknown one falls back to the name.
    """
    from_name = sequence_from_name(path)
    if acquisition is not None:
        try:
            found = normalize_sequence(acquisition, source=str(path))
        except ValueError:
            if from_name is not None:
                return from_name, (
                    f"{path}: attribute 'acquisition' is {acquisition!r}, not a known sequence; "
                    f"using {from_name} from the file name"
                )
        else:
            if from_name is not None and from_name != found:
                return found, (
                    f"{path}: attribute 'acquisition' is {found} but the file name says {from_name}; "
                    f"using {found} from the attribute"
                )
            return found, None
    if from_name is not None:
        return from_name, None
    raise ValueError(
        f"{path}: unknown sequence: attribute 'acquisition' is {acquisition!r} and the file name does not "
        f"match file_brain_{{SEQUENCE}}_{{site}}_{{id}}.h5 (SEQUENCE one of {', '.join(SEQUENCES)})"
    )


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value
