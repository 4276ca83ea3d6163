"""Figures: a fastMRI volume's slices as magnitude and phase, with its fastMRI+ boxes.

Magnitude is shown in grayscale and phase with a cyclic colormap from -pi to pi (paper Figure 2),
so that the phase wrap does not look like an edge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["combined_slice", "render_volume"]


def combined_slice(kspace: np.ndarray, size: int = 320) -> np.ndarray:
    """A quick phase-preserving coil combination of one fastMRI slice for display.

    The readout oversampling is removed first (SPEC 1.1), then the coils are combined with
    sensitivities from the k-space centre (:func:`monai_cmri.data.coils.direct_sensitivities`),
    and the magnitude is normalised to [0, 1].

    Args:
        kspace: one slice, complex ``(C, H, W)``.
        size: output image size.

    Returns:
        Complex ``(size, size)`` image, magnitude in [0, 1].
    """
    from monai_cmri.data.coils import combine_coils, direct_sensitivities
    from monai_cmri.transforms import crop_oversampling, fft2c, ifft2c, normalize_magnitude

    images = np.asarray(crop_oversampling(ifft2c(kspace), size))
    maps = direct_sensitivities(np.asarray(fft2c(images)))
    return np.asarray(normalize_magnitude(combine_coils(images, maps)))


def render_volume(
    path: str | Path,
    out: str | Path,
    slices: Sequence[int] | None = None,
    max_slices: int = 6,
    annotations: object | None = None,
) -> Path:
    """Render slices of a fastMRI brain file to a PNG: magnitude on top, phase below.

    Args:
        path: a fastMRI brain multi-coil ``.h5`` file.
        out: the PNG to write (written to a temporary name, then renamed).
        slices: slice indices to show; by default ``max_slices`` spread over the volume.
        max_slices: how many slices to pick when ``slices`` is None.
        annotations: a :class:`monai_cmri.data.annotations.Annotations`; its boxes for this file
            are drawn (abnormal findings in red, other labels in yellow).

    Returns:
        The path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from monai_cmri.data.annotations import ABNORMAL_LABELS
    from monai_cmri.data.fastmri import FastMRIFile

    path, out = Path(path), Path(out)
    with FastMRIFile(path) as volume:
        if slices is None:
            count = min(max_slices, volume.num_slices)
            slices = np.linspace(0, volume.num_slices - 1, count + 2)[1:-1].round().astype(int).tolist()
        images = [combined_slice(volume.kspace(i)) for i in slices]
        header, sequence = volume.header, volume.sequence
    name = path.name.removesuffix(".h5")
    status = annotations.volume_class(name) if annotations is not None else "unlabeled"

    fig, axes = plt.subplots(2, len(slices), figsize=(2.6 * len(slices), 5.6), squeeze=False)
    for column, (index, image) in enumerate(zip(slices, images)):
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(np.abs(image), cmap="gray", vmin=0.0, vmax=1.0)
        phase = bottom.imshow(np.angle(image), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        top.set_title(f"slice {index}", fontsize=9)
        if annotations is not None:
            for box in annotations.boxes(name, index):
                color = "red" if box.label in ABNORMAL_LABELS else "yellow"
                for axis in (top, bottom):
                    axis.add_patch(
                        Rectangle(
                            (box.col0 - 0.5, box.row0 - 0.5), box.col1 - box.col0, box.row1 - box.row0,
                            fill=False, edgecolor=color, linewidth=1.0,
                        )
                    )
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_ylabel("magnitude")
    axes[1, 0].set_ylabel("phase")
    fig.colorbar(phase, ax=axes[1, :].tolist(), fraction=0.02, ticks=[-np.pi, 0, np.pi]).ax.set_yticklabels(
        ["-\u03c0", "0", "\u03c0"]
    )
    fig.suptitle(
        f"{name}  |  {sequence}, {header.field_strength_t:.1f} T, {header.receiver_channels} coils  |  {status}",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, out)
    return out
