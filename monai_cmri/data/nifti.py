"""NIfTI export of a combined fastMRI volume, for 3D Slicer, ITK-SNAP and other viewers.

Viewers do not display complex NIfTI, so the magnitude (normalised slice-wise to [0, 1], as the
pipeline uses it) and the phase (radians, -pi..pi) are written as two float32 files.

Orientation: fastMRI arrays are ``(slice, row, column)``, rows running anterior to posterior and
columns from the patient's right to left (radiological display), slices inferior to superior.
The NIfTI array is ``(column, row, slice)`` with the RAS affine
``diag(-dx, -dy, dz)``, so that viewers show the head upright with anterior at the top.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["volume_affine", "save_nifti", "export_nifti"]


def volume_affine(pixel_mm: float, thickness_mm: float) -> np.ndarray:
    """The RAS affine of a ``(column, row, slice)`` array (module docstring)."""
    return np.diag([-pixel_mm, -pixel_mm, thickness_mm, 1.0])


def save_nifti(array: np.ndarray, path: str | Path, pixel_mm: float, thickness_mm: float) -> Path:
    """Write a real ``(slices, rows, columns)`` volume as NIfTI (temporary name, then rename).

    Args:
        array: real ``(S, H, W)`` volume.
        path: a ``.nii`` or ``.nii.gz`` file.
        pixel_mm: in-plane pixel size.
        thickness_mm: slice spacing.

    Returns:
        The path written.
    """
    array = np.asarray(array)
    if array.ndim != 3 or np.iscomplexobj(array):
        raise ValueError(f"{path}: expected a real (slices, rows, columns) volume, got {array.dtype} {array.shape}")
    path = Path(path)
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0), dtype=np.float32),
                            volume_affine(pixel_mm, thickness_mm))
    image.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    tmp = path.with_name(path.name[: -len(suffix)] + ".tmp" + suffix)
    try:
        nib.save(image, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_nifti(file: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """ESPIRiT-combine a fastMRI file and write ``<out>_magnitude.nii.gz`` and ``<out>_phase.nii.gz``.

    Args:
        file: a fastMRI brain ``.h5`` file.
        out: output prefix; the input path without ``.h5`` by default.

    Returns:
        The magnitude and phase paths.
    """
    from monai_cmri.data.fastmri import read_header
    from monai_cmri.data.reader import combined_volume

    file = Path(file)
    prefix = Path(out) if out is not None else file.with_suffix("")
    header = read_header(file)
    image, _ = combined_volume(file)
    pixel = header.recon_fov_mm[0] / header.recon_matrix[0]
    thickness = header.recon_fov_mm[2] or header.encoded_fov_mm[2]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    magnitude = save_nifti(np.abs(image), f"{prefix}_magnitude.nii.gz", pixel, thickness)
    phase = save_nifti(np.angle(image), f"{prefix}_phase.nii.gz", pixel, thickness)
    return magnitude, phase
