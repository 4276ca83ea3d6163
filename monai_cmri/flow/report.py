"""Files of the flow-matching evaluation: sample sheets (paper Figures 4 and 5) and latent statistics.

* :func:`sample_sheet`: Stage 1 samples beside real patches, one row pair (magnitude, phase) per
  sequence (paper 3.2, Figure 4).
* :func:`class_sheet`: Stage 2 samples per sequence, normal beside abnormal (paper 3.3, Figure 5).
* :func:`latent_statistics`, :func:`statistics_table`, :func:`write_statistics`: per sequence and
  latent channel, the mean and standard deviation of real and synthetic latents, and whether they
  agree within 10 % (a check of the generated latent distribution beside the real-vs-synthetic
  classifier of paper 2.4.2 and Table 4).

Every function takes file paths: patch files (:mod:`monai_cmri.data.dataset` layout) and latent
files (:mod:`monai_cmri.latents` layout); synthetic files use the same layouts and columns. Outputs
are written under a temporary name and renamed into place (:mod:`monai_cmri.atomic`).

Magnitude is drawn in grayscale on ``[0, 1]`` and phase with the cyclic ``twilight`` colormap on
``[-pi, pi]``, so that the phase wrap does not look like an edge (paper Figure 4 caption).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from monai_cmri.atomic import atomic_write, write_text
from monai_cmri.data.dataset import ABNORMAL, NORMAL, UNLABELED, PatchDataset
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.latents import LatentDataset
from monai_cmri.transforms.complex import channels_to_complex

__all__ = [
    "STATISTICS_COLUMNS",
    "TOLERANCE",
    "sample_sheet",
    "class_sheet",
    "latent_statistics",
    "statistics_table",
    "write_statistics",
]

#: Keys of a :func:`latent_statistics` row, and the CSV columns of :func:`write_statistics`, in order.
STATISTICS_COLUMNS: tuple[str, ...] = (
    "sequence",
    "channel",
    "n_real",
    "n_synthetic",
    "mean_real",
    "mean_synthetic",
    "std_real",
    "std_synthetic",
    "mean_offset",
    "std_error",
    "mean_offset_se",
    "within_10_percent",
)
#: Largest ``mean_offset`` and ``std_error`` counted as agreement.
TOLERANCE: float = 0.10

# Sheet geometry, inches: square cells, fixed margins, so that the PNG grows by exactly one cell
# per added row or column (the layout is not left to ``tight_layout``).
_CELL = 1.2
_GAP = 0.3  # between column blocks, in cells
_LEFT, _RIGHT, _TOP, _BOTTOM = 1.5, 0.9, 0.8, 0.1
_DPI = 100
_CLASS_NAMES = {NORMAL: "normal", ABNORMAL: "abnormal", UNLABELED: "unknown"}


def sample_sheet(
    synthetic: str | os.PathLike[str],
    real: str | os.PathLike[str],
    out: str | os.PathLike[str],
    per_sequence: int = 6,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Synthetic patches beside real ones, per sequence, as a PNG (paper 3.2, Figure 4).

    One block of two rows per sequence present in ``synthetic`` (in :data:`SEQUENCES` order):
    magnitude on top, phase below; ``per_sequence`` synthetic patches on the left, as many real
    patches of the same sequence on the right. Patches are drawn at random with ``seed``; a
    sequence with fewer patches shows all it has, and a sequence without real patches says so.

    Args:
        synthetic: decoded Stage 1 samples, a patch file of ``(N, 2, P, P)`` (real, imag).
        real: real patches (patch file) to compare with, e.g. the test split.
        out: the PNG to write.
        per_sequence: patches per sequence on each side.
        seed: which patches are drawn.
        title: figure title; by default names the two files.

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: if a file is missing (the message names it).
        ValueError: if a file holds no patches, is not a patch file, or ``per_sequence < 1``.
    """
    out = Path(out)
    _check_count(per_sequence, "per_sequence", out)
    rng = np.random.default_rng(seed)
    with _open_patches(synthetic) as fake, _open_patches(real) as true:
        rows: list[tuple[str, list[_Cell]]] = []
        for index in np.unique(fake.sequences):
            name = SEQUENCES[index]
            mine = _draw(fake, np.flatnonzero(fake.sequences == index), per_sequence, rng)
            theirs = _draw(true, np.flatnonzero(true.sequences == index), per_sequence, rng)
            rows.append((name, [_Cell(mine), _Cell(theirs, "no real patches")]))
        text = title if title is not None else f"Stage 1 samples: {fake.path.name} (synthetic) | {true.path.name} (real)"
        return _draw_sheet(rows, ("synthetic", "real"), per_sequence, text, out)


def class_sheet(
    synthetic: str | os.PathLike[str],
    out: str | os.PathLike[str],
    per_cell: int = 6,
    seed: int = 0,
    real: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Path:
    """Class-conditional samples per sequence, normal beside abnormal, as a PNG (paper 3.3, Figure 5).

    One block per sequence present in ``synthetic`` (in :data:`SEQUENCES` order): a magnitude and a
    phase row, ``per_cell`` patches of class normal on the left and abnormal on the right. Only
    three sequences carry fastMRI+ labels (paper 2.1.2); a sequence with no normal and no abnormal
    patch (AXT2, AXT1PRE) shows its unlabeled patches in a third column block, ``unknown``, so that
    every sequence appears. That block is drawn only when such a sequence exists; unlabeled patches
    of labeled sequences are not shown. An empty cell of a labeled sequence says ``none``.

    Args:
        synthetic: decoded Stage 2 samples, a patch file of ``(N, 2, P, P)`` (real, imag).
        out: the PNG to write.
        per_cell: patches per (sequence, class) cell.
        seed: which patches are drawn.
        real: optional real patches (patch file); when given, each sequence block has two more rows
            (magnitude, phase) of real patches of the same classes below the synthetic ones.
        title: figure title; by default names the file(s).

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: if a file is missing (the message names it).
        ValueError: if a file holds no patches, is not a patch file, or ``per_cell < 1``.
    """
    out = Path(out)
    _check_count(per_cell, "per_cell", out)
    rng = np.random.default_rng(seed)
    with _open_patches(synthetic) as fake, (_open_patches(real) if real is not None else nullcontext()) as true:
        plan = {}
        for index in np.unique(fake.sequences):
            present = set(fake.labels[fake.sequences == index].tolist())
            plan[index] = (NORMAL, ABNORMAL) if present & {NORMAL, ABNORMAL} else (UNLABELED,)
        classes = [NORMAL, ABNORMAL] + ([UNLABELED] if any(c == (UNLABELED,) for c in plan.values()) else [])
        rows: list[tuple[str, list[_Cell]]] = []
        for index, shown in plan.items():
            sources = [(fake, "synthetic")] + ([(true, "real")] if true is not None else [])
            for data, kind in sources:
                cells = []
                for label in classes:
                    if label in shown:
                        members = np.flatnonzero((data.sequences == index) & (data.labels == label))
                        cells.append(_Cell(_draw(data, members, per_cell, rng), "none"))
                    else:
                        cells.append(_Cell([]))
                prefix = SEQUENCES[index] if true is None else f"{SEQUENCES[index]} {kind}"
                rows.append((prefix, cells))
        if title is None:
            title = f"Stage 2 samples by class: {fake.path.name}" + (f" | real: {true.path.name}" if true is not None else "")
        headers = tuple(_CLASS_NAMES[label] for label in classes)
        return _draw_sheet(rows, headers, per_cell, title, out)


def latent_statistics(
    real: str | os.PathLike[str], synthetic: str | os.PathLike[str], chunk: int = 4096
) -> list[dict[str, Any]]:
    """Per sequence and latent channel, mean and standard deviation of real and synthetic latents.

    For every sequence present in both files (:data:`SEQUENCES` order) and every channel ``c``,
    the statistics run over all latents of the sequence and all ``h * w`` positions of the
    channel. The agreement measures are both in units of the real standard deviation::

        mean_offset = |mean_s - mean_r| / std_r
        std_error   = |std_s - std_r| / std_r

    The mean is not compared relative to itself: the latent means of a KL-regularised VAE sit
    near 0, where ``|mean_s - mean_r| / |mean_r|`` blows up for differences that do not matter;
    relative to the spread of the real latents it says how far the synthetic distribution is
    shifted. ``within_10_percent`` is ``mean_offset <= 0.10 and std_error <= 0.10``. With a real
    standard deviation of 0 both measures are 0 for an exact match and ``inf`` otherwise.

    ``mean_offset_se`` is the standard error of ``mean_offset`` from the finite sets, in the same
    units: latents vary far more from one to the next than their pixels within one, so the set
    means are only as precise as ``n`` whole latents allow::

        mean_offset_se = sqrt(var_r / n_r + var_s / n_s) / std_r

    where ``var`` is the sample variance (``ddof = 1``) of the per-latent channel means and ``n``
    the latents of the sequence (``inf`` for a set of one latent). With a few dozen latents per
    sequence it is often 0.05 or more, so an offset of 0.1 can be sampling error alone; an offset
    above about twice its standard error is a real shift.

    Standard deviations are population ones (``ddof = 0``). The files are read ``chunk`` latents
    at a time; each chunk's mean and sum of squared deviations are merged into float64 running
    values (Chan et al.'s pairwise update), which avoids the cancellation of a running sum of
    squares.

    Args:
        real: latent file of real data, ``latents`` ``(N, C, h, w)``.
        synthetic: latent file of flow-model samples, ``(M, C, h, w)``.
        chunk: latents read at a time (bounds memory: ``chunk * C * h * w * 8`` bytes).

    Returns:
        One dict per (sequence, channel), keys :data:`STATISTICS_COLUMNS`: ``sequence`` (name),
        ``channel`` (int), ``n_real``/``n_synthetic`` (latents of the sequence), means and stds
        (float), ``mean_offset``, ``std_error``, ``mean_offset_se`` (float),
        ``within_10_percent`` (bool).

    Raises:
        FileNotFoundError: if a file is missing (the message names it).
        ValueError: if a file holds no latents, the latent shapes differ, no sequence is in both
            files, or ``chunk < 1``.
    """
    real, synthetic = Path(real), Path(synthetic)
    _check_count(chunk, "chunk", synthetic)
    real_moments, real_shape = _moments(real, chunk)
    fake_moments, fake_shape = _moments(synthetic, chunk)
    if real_shape != fake_shape:
        raise ValueError(f"{synthetic}: latents are {fake_shape}, the real ones in {real} are {real_shape}")
    common = sorted(set(real_moments) & set(fake_moments))
    if not common:
        raise ValueError(
            f"{synthetic}: no sequence in common with {real} "
            f"({_names(fake_moments)} vs {_names(real_moments)})"
        )
    rows = []
    for index in common:
        (n_r, mean_r, m2_r, m2l_r), (n_s, mean_s, m2_s, m2l_s) = real_moments[index], fake_moments[index]
        pixels = int(np.prod(real_shape[1:]))
        std_r, std_s = np.sqrt(m2_r / (n_r * pixels)), np.sqrt(m2_s / (n_s * pixels))
        for channel in range(real_shape[0]):
            offset = _relative(abs(mean_s[channel] - mean_r[channel]), std_r[channel])
            error = _relative(abs(std_s[channel] - std_r[channel]), std_r[channel])
            noise = _relative(math.sqrt(_variance(m2l_r[channel], n_r) / n_r + _variance(m2l_s[channel], n_s) / n_s),
                              std_r[channel])
            rows.append(
                {
                    "sequence": SEQUENCES[index],
                    "channel": channel,
                    "n_real": int(n_r),
                    "n_synthetic": int(n_s),
                    "mean_real": float(mean_r[channel]),
                    "mean_synthetic": float(mean_s[channel]),
                    "std_real": float(std_r[channel]),
                    "std_synthetic": float(std_s[channel]),
                    "mean_offset": offset,
                    "std_error": error,
                    "mean_offset_se": noise,
                    "within_10_percent": bool(offset <= TOLERANCE and error <= TOLERANCE),
                }
            )
    return rows


def statistics_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`latent_statistics` as a Markdown table.

    Args:
        rows: dicts with the keys :data:`STATISTICS_COLUMNS`.

    Returns:
        Markdown text ending with a newline, rows in the given order.

    Raises:
        ValueError: if a row lacks a key.
    """
    lines = [
        "| Sequence | Channel | n real | n synthetic | Mean real | Mean synthetic | Std real | Std synthetic "
        "| Mean offset (std units) | Std error | Offset SE | Within 10% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        _check_row(row, "statistics table")
        cells = [str(row["sequence"]), str(int(row["channel"])), str(int(row["n_real"])), str(int(row["n_synthetic"]))]
        cells += [f"{float(row[key]):.4f}" for key in STATISTICS_COLUMNS[4:8]]
        cells += [f"{float(row[key]):.3f}" for key in ("mean_offset", "std_error", "mean_offset_se")]
        cells.append("yes" if row["within_10_percent"] else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_statistics(
    rows: Sequence[Mapping[str, Any]], out_stem: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Write the rows of :func:`latent_statistics` as ``<out_stem>.md`` and ``<out_stem>.csv``.

    The CSV holds full precision (columns :data:`STATISTICS_COLUMNS`), the Markdown the rounded
    table of :func:`statistics_table`; both are written atomically.

    Args:
        rows: dicts with the keys :data:`STATISTICS_COLUMNS`.
        out_stem: path without suffix; its folder is created if missing.

    Returns:
        ``(markdown path, csv path)``.

    Raises:
        ValueError: if a row lacks a key.
    """
    stem = Path(out_stem)
    markdown, table = Path(f"{stem}.md"), Path(f"{stem}.csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STATISTICS_COLUMNS)
    for row in rows:
        _check_row(row, table)
        writer.writerow([repr(float(row[key])) if isinstance(row[key], float) else row[key] for key in STATISTICS_COLUMNS])
    text = statistics_table(rows)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text(table, buffer.getvalue())
    write_text(markdown, text)
    return markdown, table


# -- latent moments -----------------------------------------------------------------------------


def _moments(
    path: Path, chunk: int
) -> tuple[dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray]], tuple[int, ...]]:
    """Per sequence index: ``(latents, mean (C,), sum of squared deviations (C,), the same of the
    per-latent means (C,))``, float64. Every latent has ``h * w`` pixels, so the mean of the
    per-latent means is the mean."""
    data = LatentDataset(path)
    if len(data) == 0:
        raise ValueError(f"{path}: no latents")
    moments: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {}
    with h5py.File(path, "r") as file:
        latents = file["latents"]
        for start in range(0, len(data), chunk):
            block = np.asarray(latents[start : start + chunk], dtype=np.float64)
            sequences = data.sequences[start : start + chunk]
            for index in np.unique(sequences).tolist():
                x = block[sequences == index]
                n_b, mean_b = len(x), x.mean(axis=(0, 2, 3))
                m2_b = ((x - mean_b[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
                m2l_b = ((x.mean(axis=(2, 3)) - mean_b) ** 2).sum(axis=0)
                if index not in moments:
                    moments[index] = (n_b, mean_b, m2_b, m2l_b)
                    continue
                n_a, mean_a, m2_a, m2l_a = moments[index]
                # Chan, Golub & LeVeque: merge two partial (count, mean, M2); counts per channel are
                # latents * h * w, the same factor on both sides, so latent counts suffice here.
                n = n_a + n_b
                delta = mean_b - mean_a
                moments[index] = (
                    n,
                    mean_a + delta * n_b / n,
                    m2_a + m2_b + delta**2 * n_a * n_b / n * _pixels(x),
                    m2l_a + m2l_b + delta**2 * n_a * n_b / n,
                )
    return moments, tuple(data.shape)


def _variance(m2: float, n: int) -> float:
    """Sample variance (``ddof = 1``) from a sum of squared deviations; ``inf`` for one value."""
    return float(m2 / (n - 1)) if n > 1 else math.inf


def _pixels(x: np.ndarray) -> int:
    return int(x.shape[2] * x.shape[3])


def _relative(difference: float, scale: float) -> float:
    if scale > 0:
        return float(difference / scale)
    return 0.0 if difference == 0 else math.inf


def _names(moments: Mapping[int, Any]) -> str:
    return ", ".join(SEQUENCES[index] for index in sorted(moments)) or "none"


def _check_row(row: Mapping[str, Any], where: object) -> None:
    missing = [key for key in STATISTICS_COLUMNS if key not in row]
    if missing:
        raise ValueError(f"{where}: row {dict(row).get('sequence')!r} lacks {', '.join(missing)}")


# -- sheets -------------------------------------------------------------------------------------


class _Cell:
    """Patches ``(k, P, P)`` complex of one (row block, column block), or the note shown when empty."""

    def __init__(self, patches: Sequence[np.ndarray], note: str = "") -> None:
        self.patches, self.note = list(patches), note


@contextmanager
def _open_patches(path: str | os.PathLike[str]) -> Iterator[PatchDataset]:
    """A :class:`PatchDataset` that must hold patches, closed when the block ends."""
    data = PatchDataset(path)
    try:
        if len(data) == 0:
            raise ValueError(f"{data.path}: no patches")
        yield data
    finally:
        data.close()


def _check_count(value: int, name: str, where: Path) -> None:
    if int(value) < 1:
        raise ValueError(f"{where}: {name} must be >= 1, got {value}")


def _draw(data: PatchDataset, members: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``count`` of ``members`` at random, as complex ``(P, P)`` patches."""
    if members.size == 0:
        return []
    chosen = rng.choice(members, size=min(count, members.size), replace=False)
    return [np.asarray(channels_to_complex(data[int(i)]["image"].numpy())) for i in chosen]


def _draw_sheet(
    rows: Sequence[tuple[str, Sequence[_Cell]]], headers: Sequence[str], per_block: int, title: str, out: Path
) -> Path:
    """Draw row blocks (magnitude row, phase row) by column blocks of ``per_block`` patches; save as PNG.

    Each (row, column block) is one image, its patches side by side with a thin blank gap (one axes
    per patch would make a large sheet slow to draw). The figure is ``_CELL`` inches per patch plus
    fixed margins, so its size is ``(blocks * per_block + (blocks - 1) * _GAP) * _CELL`` by
    ``2 * len(rows) * _CELL`` inches plus the margins.
    """
    # The object API draws without pyplot's global figure registry or backend switching.
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    blocks = len(headers)
    ratios = []
    for block in range(blocks):
        ratios += [float(per_block)] + ([_GAP] if block < blocks - 1 else [])
    grid_w, grid_h = sum(ratios) * _CELL, 2 * len(rows) * _CELL
    width, height = _LEFT + grid_w + _RIGHT, _TOP + grid_h + _BOTTOM
    fig = Figure(figsize=(width, height), dpi=_DPI)
    grid = fig.add_gridspec(
        2 * len(rows), len(ratios), width_ratios=ratios, wspace=0.0, hspace=0.06,
        left=_LEFT / width, right=(_LEFT + grid_w) / width, bottom=_BOTTOM / height, top=(_BOTTOM + grid_h) / height,
    )
    # Blank (NaN) gaps and missing patches are drawn white.
    gray, twilight = colormaps["gray"].with_extremes(bad="white"), colormaps["twilight"].with_extremes(bad="white")
    size = next((cell.patches[0].shape[-1] for _, cells in rows for cell in cells if cell.patches), 1)
    for r, (label, cells) in enumerate(rows):
        for b, cell in enumerate(cells):
            magnitude = _mosaic([np.abs(patch) for patch in cell.patches], per_block, size)
            phase = _mosaic([np.angle(patch) for patch in cell.patches], per_block, size)
            top, bottom = fig.add_subplot(grid[2 * r, 2 * b]), fig.add_subplot(grid[2 * r + 1, 2 * b])
            top.imshow(magnitude, cmap=gray, vmin=0.0, vmax=1.0, interpolation="nearest")
            bottom.imshow(phase, cmap=twilight, vmin=-np.pi, vmax=np.pi, interpolation="nearest")
            for axis in (top, bottom):
                axis.set_xticks([])
                axis.set_yticks([])
                for spine in axis.spines.values():
                    spine.set_visible(False)
            if not cell.patches and cell.note:
                top.text(0.5, 0.5, cell.note, transform=top.transAxes, ha="center", va="center", fontsize=9, color="0.3")
            if r == 0:
                top.set_title(headers[b], fontsize=11, weight="bold")
            if b == 0:
                for axis, kind in ((top, "magnitude"), (bottom, "phase")):
                    axis.set_ylabel(f"{label}\n{kind}", fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
    # Colour scales in the right margin: magnitude [0, 1] gray, phase [-pi, pi] cyclic.
    bar_h = min(grid_h / 2 - 0.2, 2.0)
    for k, (cmap, low, high, ticks, labels, name) in enumerate((
        ("gray", 0.0, 1.0, [0.0, 1.0], ["0", "1"], "magnitude"),
        ("twilight", -np.pi, np.pi, [-np.pi, 0.0, np.pi], ["-\u03c0", "0", "\u03c0"], "phase (rad)"),
    )):
        y = _BOTTOM + grid_h - (k + 1) * (grid_h / 2) + (grid_h / 2 - bar_h) / 2
        bar_axis = fig.add_axes([(_LEFT + grid_w + 0.15) / width, y / height, 0.12 / width, bar_h / height])
        bar = fig.colorbar(ScalarMappable(Normalize(low, high), cmap), cax=bar_axis, ticks=ticks)
        bar.ax.set_yticklabels(labels, fontsize=7)
        bar.set_label(name, fontsize=7)
    fig.suptitle(title, fontsize=10, y=1.0 - 0.15 / height, va="top")
    return _save_png(fig, out)


def _mosaic(images: Sequence[np.ndarray], count: int, size: int) -> np.ndarray:
    """``count`` slots of ``(size, size)`` images side by side, NaN in the gaps and empty slots.

    Returns:
        ``(size, count * size + (count - 1) * gap)`` float64, ``gap = max(1, size // 16)`` pixels.
    """
    gap = max(1, size // 16)
    mosaic = np.full((size, count * size + (count - 1) * gap), np.nan)
    for k, image in enumerate(images):
        if image.shape != (size, size):
            raise ValueError(f"patches of one sheet must all be ({size}, {size}), got {image.shape}")
        mosaic[:, k * (size + gap) : k * (size + gap) + size] = image
    return mosaic


def _save_png(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=_DPI)
    return out
