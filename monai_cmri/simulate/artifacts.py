"""Flow ghosting, the "Possible artifact" finding of excluded volumes (SPEC 1.2, 1.4).

Pulsatile flow in a vessel changes its signal from one phase-encode line to the next, which
replicates the vessel along the phase-encode axis (image columns) at a spacing set by the
pulse period. The ghost train is drawn in the image domain: a small bright disc at the vessel
and fading copies of it, left and right, at a fixed column spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FlowGhost", "draw_flow_ghost", "apply_flow_ghost"]


@dataclass(frozen=True)
class FlowGhost:
    """A vessel and its ghosts.

    Attributes:
        slices: slice indices that show the ghosts.
        row: vessel row on the ``(rows, W)`` image grid.
        column: vessel column.
        radius_px: vessel radius, pixels.
        spacing_px: column distance between ghosts.
        copies: ghosts on each side of the vessel.
        amplitude: vessel signal relative to the slice's peak magnitude; ghost ``k`` has
            ``amplitude * 0.55**k``.
    """

    slices: tuple[int, ...]
    row: int
    column: int
    radius_px: float
    spacing_px: int
    copies: int
    amplitude: float


def draw_flow_ghost(rng: np.random.Generator, brain: np.ndarray, pixel_mm: float) -> FlowGhost:
    """Place a vessel in the brain of one or two middle slices with ghosts inside the image.

    Args:
        rng: random generator of this volume.
        brain: ``(S, rows, W)`` brain fraction (grey + white matter + CSF).
        pixel_mm: pixel size (vessel radius ~2.5 mm).
    """
    slices, rows, width = brain.shape
    first = int(rng.integers(slices // 3, max(slices // 3 + 1, 2 * slices // 3)))
    chosen = tuple(range(first, min(slices, first + int(rng.integers(1, 3)))))
    radius = max(2.5 / pixel_mm, 1.0)
    spacing = int(max(rng.uniform(0.12, 0.2) * width, 4 * radius))
    copies = 2
    margin = copies * spacing + int(np.ceil(radius)) + 1
    candidates = np.argwhere(brain[first] > 0.9)
    inside = candidates[(candidates[:, 1] >= margin) & (candidates[:, 1] < width - margin)]
    if len(inside) == 0:
        copies, inside = 1, candidates[(candidates[:, 1] >= spacing + 2) & (candidates[:, 1] < width - spacing - 2)]
    if len(inside) == 0:
        inside = np.array([[rows // 2, width // 2]])
    row, column = inside[rng.integers(len(inside))]
    return FlowGhost(chosen, int(row), int(column), float(radius), spacing, copies, float(rng.uniform(0.6, 0.9)))


def apply_flow_ghost(image: np.ndarray, ghost: FlowGhost) -> np.ndarray:
    """Add the vessel and its ghosts to a complex image, in place.

    Args:
        image: ``(S, rows, W)`` complex64 coil-combined image.
        ghost: from :func:`draw_flow_ghost`.

    Returns:
        ``(S, rows, W)`` bool mask of the ghosts (not the vessel itself).
    """
    slices, rows, width = image.shape
    mask = np.zeros(image.shape, bool)
    r, c = np.mgrid[:rows, :width]
    for s in ghost.slices:
        peak = float(np.abs(image[s]).max())
        phase = np.exp(1j * np.angle(image[s, ghost.row, ghost.column]))
        for k in range(-ghost.copies, ghost.copies + 1):
            centre = ghost.column + k * ghost.spacing_px
            disc = np.clip(ghost.radius_px + 0.5 - np.hypot(r - ghost.row, c - centre), 0, 1)
            image[s] += (ghost.amplitude * 0.55 ** abs(k) * peak * phase * disc).astype(np.complex64)
            if k:
                mask[s] |= disc > 0.5
    return mask
