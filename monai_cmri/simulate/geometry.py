"""The acquisition grid of a simulated fastMRI brain volume (SPEC 1.1, 1.4).

Scanner coordinates are millimetres with the isocentre at the origin: ``x`` runs left-right
along the phase-encode axis (image columns), ``y`` posterior-anterior along the readout axis
(image rows, anterior at high row index, so that the fastMRI+ up/down flip shows the face at
the top) and ``z`` inferior-superior along the main field, across slices.

The k-space readout is 2x oversampled: ``readout`` samples span ``440 mm`` so the pixel is
``440 / readout`` mm (0.6875 mm at 640) and the object lives in the central ``readout // 2``
rows of the image. The phase-encode field of view is ``width`` pixels of the same size, so a
narrow volume (``width < readout // 2``) sees a smaller left-right field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["READOUT_FOV_MM", "SliceGeometry"]

#: Readout field of view of the fastMRI brain acquisitions, 2x oversampled (SPEC 1.4).
READOUT_FOV_MM = 440.0


@dataclass(frozen=True)
class SliceGeometry:
    """Pixel and slice positions of one volume.

    Attributes:
        slices: number of axial slices ``S``.
        readout: k-space readout samples (2x oversampled), even.
        width: phase-encode lines ``W`` (image columns); at most ``readout // 2``.
        thickness_mm: slice thickness; the slice profile is a box of this width.
        spacing_mm: centre-to-centre slice distance (thickness plus gap).
        centre_z_mm: scanner ``z`` of the middle of the slab.
        subslices: points per slice used to integrate the slice profile.
    """

    slices: int
    readout: int
    width: int
    thickness_mm: float = 5.0
    spacing_mm: float = 7.5
    centre_z_mm: float = 0.0
    subslices: int = 3

    def __post_init__(self) -> None:
        if self.slices < 1:
            raise ValueError(f"slices must be >= 1, got {self.slices}")
        if self.readout < 32 or self.readout % 4:
            raise ValueError(f"readout must be a multiple of 4 and >= 32, got {self.readout}")
        if not 8 <= self.width <= self.readout // 2 or self.width % 2:
            raise ValueError(
                f"width must be even and within [8, readout // 2 = {self.readout // 2}], got {self.width}"
            )

    @property
    def pixel_mm(self) -> float:
        """In-plane pixel size (square pixels), mm."""
        return READOUT_FOV_MM / self.readout

    @property
    def rows(self) -> int:
        """Rows of the cropped image, ``readout // 2`` (320 for fastMRI)."""
        return self.readout // 2

    @property
    def pad_left(self) -> int:
        """Columns of zeros left of a narrow image when padded to ``rows`` columns."""
        return (self.rows - self.width) // 2

    def row_mm(self) -> np.ndarray:
        """Scanner ``y`` of each cropped-image row, ``(rows,)`` mm (FFT centre at ``rows // 2``)."""
        return ((np.arange(self.rows) - self.rows // 2) * self.pixel_mm).astype(np.float32)

    def column_mm(self) -> np.ndarray:
        """Scanner ``x`` of each image column, ``(width,)`` mm (FFT centre at ``width // 2``)."""
        return ((np.arange(self.width) - self.width // 2) * self.pixel_mm).astype(np.float32)

    def slice_mm(self) -> np.ndarray:
        """Scanner ``z`` of each slice centre, ``(slices,)`` mm, inferior first."""
        offsets = (np.arange(self.slices) - (self.slices - 1) / 2) * self.spacing_mm
        return (self.centre_z_mm + offsets).astype(np.float32)

    def subslice_offsets_mm(self) -> np.ndarray:
        """Offsets of the points that integrate the box slice profile, ``(subslices,)`` mm."""
        step = self.thickness_mm / self.subslices
        return ((np.arange(self.subslices) + 0.5) * step - self.thickness_mm / 2).astype(np.float32)

    def points(self, subslices: bool = True) -> np.ndarray:
        """Scanner coordinates of every sample point.

        Args:
            subslices: integrate the slice profile (``J = subslices`` points per slice) or
                sample each slice at its centre only (``J = 1``).

        Returns:
            ``(S, J, rows, width, 3)`` float32 array of ``(x, y, z)`` in mm.
        """
        offsets = self.subslice_offsets_mm() if subslices else np.zeros(1, np.float32)
        z = self.slice_mm()[:, None] + offsets[None, :]
        shape = (self.slices, offsets.size, self.rows, self.width)
        out = np.empty(shape + (3,), np.float32)
        out[..., 0] = self.column_mm()[None, None, None, :]
        out[..., 1] = self.row_mm()[None, None, :, None]
        out[..., 2] = z[:, :, None, None]
        return out
