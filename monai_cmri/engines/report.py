"""Files of the VAE evaluation: the per-sequence table (paper Table 3) and example reconstructions (Figure 3).

Both are written under a temporary name in the target folder and renamed when complete.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from monai_cmri.atomic import temporary_path, write_text
from monai_cmri.transforms.complex import channels_to_complex

__all__ = ["TABLE_COLUMNS", "markdown_table", "write_reconstruction_table", "reconstruction_figure"]

#: Columns of the CSV table, in order: one row per sequence.
TABLE_COLUMNS: tuple[str, ...] = (
    "sequence",
    "n",
    "coherence",
    "coherence_std",
    "ssim",
    "ssim_std",
    "psnr",
    "psnr_std",
)


def markdown_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """The per-sequence table as Markdown, laid out as paper Table 3 (mean +- standard deviation).

    Args:
        table: ``{sequence: {"coherence", "coherence_std", "ssim", "ssim_std", "psnr",
            "psnr_std", "n"}}`` as :meth:`monai_cmri.metrics.PerSequenceMetrics.aggregate` returns.

    Returns:
        Markdown text ending with a newline; rows in the order of ``table``.
    """
    lines = [
        "| Sequence | n | Phase coherence | Mag. SSIM | Mag. PSNR (dB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for sequence, row in table.items():
        lines.append(
            f"| {sequence} | {int(row['n'])} | {_pm(row['coherence'], row['coherence_std'], 4)} | "
            f"{_pm(row['ssim'], row['ssim_std'], 3)} | {_pm(row['psnr'], row['psnr_std'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def write_reconstruction_table(
    table: Mapping[str, Mapping[str, float]],
    csv_path: str | os.PathLike[str],
    markdown_path: str | os.PathLike[str],
) -> None:
    """Write the per-sequence reconstruction table as CSV (full precision) and Markdown (paper Table 3).

    Args:
        table: ``{sequence: row}`` as :meth:`monai_cmri.metrics.PerSequenceMetrics.aggregate`
            returns; PSNR in dB.
        csv_path: CSV file, columns :data:`TABLE_COLUMNS`, one row per sequence.
        markdown_path: Markdown file.

    Raises:
        ValueError: if a row lacks a column.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for sequence, row in table.items():
        missing = [name for name in TABLE_COLUMNS[1:] if name not in row]
        if missing:
            raise ValueError(f"{csv_path}: row {sequence!r} lacks {', '.join(missing)}")
        writer.writerow([sequence, int(row["n"]), *(repr(float(row[name])) for name in TABLE_COLUMNS[2:])])
    _replace_text(Path(csv_path), buffer.getvalue())
    _replace_text(Path(markdown_path), markdown_table(table))


def reconstruction_figure(
    examples: Sequence[tuple[str, torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    path: str | os.PathLike[str],
    diff_max: float = 0.1,
) -> Path:
    """Original, reconstruction and absolute difference of magnitude and phase (paper Figure 3).

    Each example takes two rows: magnitude (grey, [0, 1]; difference ``|abs(xhat) - abs(x)|`` on
    ``[0, diff_max]``) and phase (cyclic colormap on ``[-pi, pi]``, so that the wrap is not an
    edge; difference ``|angle(xhat * conj(x))|``, the wrapped phase error, on ``[0, pi]``).

    Args:
        examples: ``(title, original, reconstruction)`` per example, images ``(2, H, W)`` (real, imag).
        path: PNG file to write.
        diff_max: upper end of the magnitude difference scale.

    Returns:
        ``path``.

    Raises:
        ValueError: for no examples or an image that is not ``(2, H, W)``.
    """
    # The object API draws without pyplot's global figure registry or backend switching.
    from matplotlib.figure import Figure

    path = Path(path)
    if not examples:
        raise ValueError(f"{path}: no examples to draw")
    fig = Figure(figsize=(7.5, 5.0 * len(examples)))
    axes = fig.subplots(2 * len(examples), 3, squeeze=False)
    for k, (title, original, recon) in enumerate(examples):
        x, xhat = _complex(original, path), _complex(recon, path)
        if x.shape != xhat.shape:
            raise ValueError(f"{path}: example {title!r} has original {x.shape} and reconstruction {xhat.shape}")
        rows = (
            ("magnitude", np.abs(x), np.abs(xhat), np.abs(np.abs(xhat) - np.abs(x)), "gray", (0.0, 1.0), diff_max),
            (
                "phase",
                np.angle(x),
                np.angle(xhat),
                np.abs(np.angle(xhat * np.conj(x))),
                "twilight",
                (-np.pi, np.pi),
                np.pi,
            ),
        )
        for r, (kind, a, b, diff, cmap, limits, top) in enumerate(rows):
            panels = (
                (a, cmap, limits, f"{title}\n{kind}: original"),
                (b, cmap, limits, f"{kind}: reconstruction"),
                (diff, "inferno", (0.0, top), f"{kind}: |difference|"),
            )
            for ax, (image, colormap, (low, high), label) in zip(axes[2 * k + r], panels):
                shown = ax.imshow(image, cmap=colormap, vmin=low, vmax=high)
                ax.set_title(label, fontsize=7)
                ax.set_axis_off()
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    fig.tight_layout()
    temporary = temporary_path(path)
    try:
        fig.savefig(temporary, format="png", dpi=100)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _complex(image: torch.Tensor | np.ndarray, path: Path) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 2:
        raise ValueError(f"{path}: example images must be (2, H, W) (real, imag), got {array.shape}")
    return np.asarray(channels_to_complex(array.astype(np.float64)))


def _pm(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _replace_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
