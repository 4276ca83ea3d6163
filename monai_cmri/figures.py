"""Figures: a fastMRI volume's slices as magnitude and phase, with its fastMRI+ boxes.

Magnitude is shown in grayscale and phase with a cyclic colormap from -pi to pi (paper Figure 2),
so that the phase wrap does not look like an edge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from monai_cmri.atomic import temporary_path
from monai_cmri.data.summary import nominal_field

if TYPE_CHECKING:
    from monai_cmri.data.annotations import Annotations, Box

__all__ = ["nominal_field", "pick_slices", "render_patches", "render_slices", "render_volume"]


def render_slices(
    image: np.ndarray,
    out: str | Path,
    slices: Sequence[int],
    boxes: Mapping[int, Sequence[Box]] | None = None,
    title: str = "",
    numbers: Sequence[int] | None = None,
) -> Path:
    """Draw slices of a complex volume to a PNG: magnitude on top, phase below (paper Figure 2).

    Args:
        image: complex ``(S, H, W)``; magnitude shown from 0 to its slice maximum.
        out: the PNG to write (written to a temporary name, then renamed).
        slices: indices into ``image`` to draw, one column each.
        boxes: boxes per slice index, on the unflipped image; abnormal findings in red, other
            labels in yellow.
        title: figure title.
        numbers: slice numbers shown above the columns; ``slices`` by default (differs when
            ``image`` holds a subset of a volume's slices).

    Returns:
        The path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from monai_cmri.data.annotations import ABNORMAL_LABELS

    out = Path(out)
    slices = list(slices)
    if not slices:
        raise ValueError(f"{out}: no slices to draw")
    fig, axes = plt.subplots(2, len(slices), figsize=(2.6 * len(slices), 5.6), squeeze=False)
    for column, index in enumerate(slices):
        top, bottom = axes[0, column], axes[1, column]
        magnitude = np.abs(image[index])
        top.imshow(magnitude, cmap="gray", vmin=0.0, vmax=float(magnitude.max()) or 1.0)
        phase = bottom.imshow(np.angle(image[index]), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        top.set_title(f"slice {index if numbers is None else numbers[column]}", fontsize=9)
        for box in (boxes or {}).get(index, ()):
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
    colorbar = fig.colorbar(phase, ax=axes.ravel().tolist(), fraction=0.015, pad=0.01, ticks=[-np.pi, 0, np.pi])
    colorbar.ax.set_yticklabels(["-\u03c0", "0", "\u03c0"])
    colorbar.set_label("phase (rad)")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def pick_slices(num_slices: int, count: int = 6) -> list[int]:
    """``count`` slice indices spread over a volume, away from its first and last slice."""
    if num_slices <= count:
        return list(range(num_slices))
    return np.linspace(0, num_slices - 1, count + 2)[1:-1].round().astype(int).tolist()


def render_volume(
    path: str | Path,
    out: str | Path,
    slices: Sequence[int] | None = None,
    max_slices: int = 6,
    annotations: Annotations | None = None,
) -> Path:
    """Render slices of a fastMRI brain file to a PNG, ESPIRiT-combined as in preprocessing.

    Args:
        path: a fastMRI brain multi-coil ``.h5`` file.
        out: the PNG to write.
        slices: slice indices to show; by default ``max_slices`` spread over the volume.
        max_slices: how many slices to pick when ``slices`` is None.
        annotations: fastMRI+ annotations whose boxes for this file are drawn.

    Returns:
        The path of the PNG.
    """
    from monai_cmri.data.annotations import volume_name
    from monai_cmri.data.fastmri import read_header
    from monai_cmri.data.reader import combined_volume

    path = Path(path)
    header = read_header(path)
    if slices is None:
        slices = pick_slices(_num_slices(path), max_slices)
    image, sequence = combined_volume(path, slices=slices)
    name = volume_name(path)
    status = annotations.volume_class(name) if annotations is not None else "unlabeled"
    boxes = {index: annotations.boxes(name, index) for index in slices} if annotations is not None else None
    field = nominal_field(header.field_strength_t)
    title = f"{name}  |  {sequence}, {field}, {header.receiver_channels} coils  |  {status}"
    # combined_volume returns only the requested slices, in order.
    return render_slices(image, out, range(len(slices)), _reindex(boxes, slices), title, numbers=slices)


def _num_slices(path: Path) -> int:
    from monai_cmri.data.fastmri import FastMRIFile

    with FastMRIFile(path) as volume:
        return volume.num_slices


def _reindex(boxes: Mapping[int, Sequence[Box]] | None, slices: Sequence[int]) -> dict[int, Sequence[Box]] | None:
    return None if boxes is None else {column: boxes[index] for column, index in enumerate(slices)}


def render_patches(
    path: str | Path,
    out: str | Path,
    per_class: int = 4,
    classes: Sequence[str] = ("normal", "abnormal"),
    seed: int = 0,
) -> Path:
    """A sheet of patches from a patch file, as in paper Figure 2.

    For each class, ``per_class`` random patches: magnitude (gray) in one row, phase (cyclic
    colormap, -pi..pi) below. The title of each patch names its sequence and source volume.

    Args:
        path: a patch file (:mod:`monai_cmri.data.dataset` layout).
        out: the PNG to write.
        per_class: patches shown per class.
        classes: classes to show, one pair of rows each; classes absent from the file are skipped.
        seed: which patches are picked.

    Returns:
        The path of the PNG.

    Raises:
        ValueError: when the file holds none of ``classes``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_cmri.data.dataset import PatchDataset
    from monai_cmri.transforms import channels_to_complex

    data = PatchDataset(path)
    labels = np.asarray(data.columns["label"]).astype(str)
    rng = np.random.default_rng(seed)
    chosen = {}
    for name in classes:
        members = np.flatnonzero(labels == name)
        if members.size:
            chosen[name] = rng.choice(members, size=min(per_class, members.size), replace=False)
    if not chosen:
        raise ValueError(f"{path}: holds no patch of class {', '.join(classes)}")
    fig, axes = plt.subplots(2 * len(chosen), per_class, figsize=(2.0 * per_class, 4.2 * len(chosen)), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for block, (name, indices) in enumerate(chosen.items()):
        for column, index in enumerate(indices):
            item = data[int(index)]
            patch = np.asarray(channels_to_complex(item["image"].numpy()))
            top, bottom = axes[2 * block, column], axes[2 * block + 1, column]
            top.imshow(np.abs(patch), cmap="gray", vmin=0.0, vmax=1.0)
            phase = bottom.imshow(np.angle(patch), cmap="twilight", vmin=-np.pi, vmax=np.pi)
            top.set_title(f"{name} | {item['sequence_name']}", fontsize=8)
        axes[2 * block, 0].text(-0.1, 0.5, f"magnitude ({name})", transform=axes[2 * block, 0].transAxes,
                                rotation=90, va="center", ha="right", fontsize=8)
        axes[2 * block + 1, 0].text(-0.1, 0.5, f"phase ({name})", transform=axes[2 * block + 1, 0].transAxes,
                                    rotation=90, va="center", ha="right", fontsize=8)
    colorbar = fig.colorbar(phase, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, ticks=[-np.pi, 0, np.pi])
    colorbar.ax.set_yticklabels(["-\u03c0", "0", "\u03c0"])
    return _save(fig, Path(out))


def _save(fig, out: Path) -> Path:
    """Write a figure as PNG under a temporary name, then rename it into place, and close it."""
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(out)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
