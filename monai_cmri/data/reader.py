"""A MONAI ``ImageReader`` that turns a fastMRI brain file into an ESPIRiT-combined complex volume.

``LoadImage(reader=EspiritReader(), dtype=np.complex64)`` reads ``file_brain_*.h5`` and returns
the coil-combined complex volume ``(slices, 320, 320)`` with the ISMRMRD header, the file
attributes and the sequence in its metadata (SPEC 1.1, 1.3; paper 2.1.2). MONAI's
``FastMRIReader`` returns raw k-space; this reader adds the coil combination, slice by slice in
batches so that memory stays at a few slices' k-space.

After ``import monai_cmri`` MONAI's ``LoadImage`` also finds the reader by name,
``LoadImage(reader="EspiritReader", dtype=None)`` (``LoadImaged`` alike), and by suffix:
``LoadImage(dtype=None)`` gives ``.h5``/``.hdf5`` files to it and every other format to MONAI's
readers (:mod:`monai_cmri.data.registration` says how). Pass ``dtype=None`` or ``np.complex64``:
``LoadImage``'s default ``float32`` casts the complex volume to its real part and drops the
imaginary part. A ``.h5`` file that is not fastMRI k-space (a patch file, for example) is refused
with a ``ValueError`` naming the file; with a named reader ``LoadImage`` then tries its other
readers, as it does for any reader that fails, and raises the last one's error (the refusal is in
its ``LoadImage`` log).

MONAI 1.6.1's own ``FastMRIReader`` is not picked by name or by suffix (its ``verify_suffix``
compares ``"..h5"``); an instance is used without that check:
``LoadImage(reader=FastMRIReader(), dtype=None)`` returns the raw complex k-space
``(slices, coils, H, W)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np
import torch
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from monai_cmri.data.espirit import espirit_combine
from monai_cmri.data.fastmri import FastMRIFile
from monai_cmri.data.registration import register_espirit_reader
from monai_cmri.transforms import crop_oversampling, normalize_magnitude, resize_kspace

__all__ = ["EspiritReader", "combine_volume", "combined_volume"]


def combine_volume(
    volume: FastMRIFile,
    size: int = 320,
    batch: int = 4,
    backend: str = "torch",
    device: str | torch.device | None = None,
    slices: Sequence[int] | None = None,
) -> np.ndarray:
    """ESPIRiT-combine the slices of an open fastMRI file (SPEC 1.3).

    Each batch of slices is read, its readout oversampling removed (inverse FFT, centre rows, FFT
    back), its coils combined with ESPIRiT maps (sigpy's defaults: calib 24, kernel 6, thresh 0.02,
    crop 0.95, phase referenced to coil 0), and the image cropped or zero-padded to ``size``
    columns (narrow files: ``(size - W) // 2`` zero columns on the left).

    Args:
        volume: an open :class:`~monai_cmri.data.fastmri.FastMRIFile`.
        size: output image size; the readout must be ``2 * size`` (fastMRI: 640 -> 320).
        batch: slices combined at once (memory: about ``batch`` slices of k-space, twice).
        backend: ``"torch"`` (fast, batched) or ``"sigpy"`` (the reference, slow).
        device: torch device for the torch backend; CUDA when available by default.
        slices: slice indices to combine; all by default.

    Returns:
        complex64 ``(len(slices), size, size)``.
    """
    if volume.shape[2] != 2 * size:
        raise ValueError(
            f"{volume.path}: readout has {volume.shape[2]} samples, expected {2 * size} (2x oversampled {size})"
        )
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    indices = list(range(volume.num_slices)) if slices is None else [int(i) for i in slices]
    out = np.zeros((len(indices), size, size), dtype=np.complex64)
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        kspace = torch.from_numpy(np.stack([volume.kspace(i) for i in chunk]))
        if backend == "torch":
            kspace = kspace.to(device)
        try:
            image = espirit_combine(kspace, backend=backend, remove_oversampling=True)
        except ValueError as err:
            raise ValueError(f"{volume.path}: slices {chunk[0]}-{chunk[-1]}: {err}") from err
        out[start : start + len(chunk)] = crop_oversampling(image, size).cpu().numpy()
    return out


def combined_volume(
    path: str | Path,
    *,
    external: bool = False,
    size: int | None = None,
    backend: str = "torch",
    device: str | None = None,
    slices: Sequence[int] | None = None,
    sequence: str | None = None,
) -> tuple[np.ndarray, str]:
    """The coil-combined, slice-normalised complex volume of a fastMRI-format file (paper 2.1.2).

    Args:
        path: a ``.h5`` file in the fastMRI layout.
        external: external data (paper 2.1.4): k-space zero-filled or cropped symmetrically to
            ``size x size`` (:func:`~monai_cmri.transforms.resize_kspace`) instead of removing a 2x
            readout oversampling.
        size: image size; half the readout by default (320 for fastMRI), 320 for external data.
        backend: ESPIRiT backend, ``"torch"`` or ``"sigpy"``.
        device: torch device for ESPIRiT; CUDA when available by default.
        slices: slice indices; all by default.
        sequence: the sequence of a file that names none (external data).

    Returns:
        ``(volume, sequence)``: complex64 ``(slices, size, size)``, each slice's magnitude in
        [0, 1]; and the file's sequence.
    """
    with FastMRIFile(path, sequence=sequence) as volume:
        if size is None:
            size = 320 if external else volume.shape[2] // 2
        if external:
            indices = range(volume.num_slices) if slices is None else slices
            images = []
            for index in indices:
                kspace = resize_kspace(volume.kspace(index), (size, size))
                images.append(np.asarray(espirit_combine(kspace, backend=backend)))
            image = np.stack(images) if images else np.zeros((0, size, size), np.complex64)
        else:
            image = combine_volume(volume, size=size, backend=backend, device=device, slices=slices)
        sequence = volume.sequence
    return np.asarray(normalize_magnitude(image)), sequence


class EspiritReader(ImageReader):
    """Read fastMRI brain ``.h5`` files as ESPIRiT-combined complex volumes.

    The image is ``(slices, size, size)`` complex64, slices first as in fastMRI (no channel
    dimension). The metadata holds the parsed ISMRMRD header fields (``header_*`` keys), the file
    attributes (``acquisition``, ``max``, ``norm``, ``patient_id``), ``sequence``, ``filename``,
    ``spatial_shape`` and an ``affine`` with the in-plane pixel spacing and slice thickness in mm.

    Use ``dtype=np.complex64`` (or ``None``) in ``LoadImage``: its default float32 would drop the
    imaginary part.

    Example::

        from monai.transforms import LoadImage
        load = LoadImage(reader=EspiritReader(), dtype=np.complex64, image_only=True)
        volume = load("file_brain_AXFLAIR_200_6002425.h5")  # MetaTensor (slices, 320, 320)
        # after `import monai_cmri`: LoadImage(reader="EspiritReader", dtype=None) or LoadImage(dtype=None)

    Args:
        size: output image size; half the readout by default (320 for fastMRI brain).
        batch: slices combined at once.
        backend: ``"torch"`` (fast, batched, CPU or CUDA) or ``"sigpy"`` (the reference).
        device: torch device; CUDA when available by default.
    """

    def __init__(
        self,
        size: int | None = None,
        batch: int = 4,
        backend: str = "torch",
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if backend not in ("torch", "sigpy"):
            raise ValueError(f"backend must be 'torch' or 'sigpy', got {backend!r}")
        self.size = size
        self.batch = batch
        self.backend = backend
        self.device = device

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """Whether every file name ends in ``.h5`` or ``.hdf5`` (any case).

        Only the last suffix counts: MONAI's ``is_supported_format`` looks for the suffix anywhere
        in the name's suffixes, so it would also accept ``x.h5py`` or ``x.h5.part``.
        """
        names = ensure_tuple(filename)
        return bool(names) and all(PurePath(name).suffix.lower() in (".h5", ".hdf5") for name in names)

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> FastMRIFile | list[FastMRIFile]:
        """Open the file(s) lazily; k-space is read slice by slice in :meth:`get_data`.

        Raises:
            ValueError: a file is not fastMRI multi-coil k-space (no complex 4-D ``kspace``, no
                valid ``ismrmrd_header``, unknown sequence); the message starts with its path.
            OSError: a file is missing, not HDF5 or truncated.
        """
        files: list[FastMRIFile] = []
        try:
            for name in ensure_tuple(data):
                try:
                    files.append(FastMRIFile(name))
                except ValueError as err:
                    raise ValueError(f"{err} (EspiritReader reads fastMRI multi-coil k-space files)") from err
        except BaseException:
            for volume in files:
                volume.close()
            raise
        return files if len(files) > 1 else files[0]

    def get_data(self, img: FastMRIFile | Sequence[FastMRIFile]) -> tuple[np.ndarray, dict]:
        """Combine the coils of each opened file and collect the metadata.

        Several files are stacked along a new first dimension (MONAI's convention), using the
        first file's metadata; they must then have the same number of slices.

        Returns:
            ``(image, meta)``: complex64 ``(slices, size, size)`` (or ``(files, slices, size,
            size)``) and the metadata dictionary.
        """
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        for volume in ensure_tuple(img):
            try:
                size = self.size or volume.shape[2] // 2
                arrays.append(combine_volume(volume, size, self.batch, self.backend, self.device))
                _copy_compatible_dict(self._meta(volume, size), compatible)
            finally:
                volume.close()
        return _stack_images(arrays, compatible), compatible

    def _meta(self, volume: FastMRIFile, size: int) -> dict:
        header = volume.header
        thickness = header.recon_fov_mm[2] or header.encoded_fov_mm[2]
        row_mm = header.recon_fov_mm[0] / header.recon_matrix[0]
        col_mm = header.encoded_fov_mm[1] / header.encoded_matrix[1]
        meta: dict[str, Any] = {
            MetaKeys.SPATIAL_SHAPE: np.asarray((volume.num_slices, size, size)),
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.AFFINE: np.diag([thickness, row_mm, col_mm, 1.0]),
            MetaKeys.ORIGINAL_AFFINE: np.diag([thickness, row_mm, col_mm, 1.0]),
            "sequence": volume.sequence,
            "filename": str(volume.path),
            "num_coils": volume.num_coils,
            "kspace_shape": np.asarray(volume.shape),
        }
        for key, value in volume.attrs.items():
            meta[key] = value
        for field in dataclasses.fields(header):
            value = getattr(header, field.name)
            if dataclasses.is_dataclass(value):
                value = np.asarray(dataclasses.astuple(value))
            elif isinstance(value, tuple):
                value = np.asarray(value)
            elif value is None:
                value = float("nan")
            meta[f"header_{field.name}"] = value
        return meta


# MONAI's LoadImage: the class itself under "espiritreader" in SUPPORTED_READERS (it replaces the
# factory that `import monai_cmri` registers; see monai_cmri.data.registration).
register_espirit_reader(reader=EspiritReader)
