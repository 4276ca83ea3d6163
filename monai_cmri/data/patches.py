"""Where to cut 96 x 96 patches from a volume, and cutting them (SPEC 1.3, paper 2.1.3-2.1.4).

The rules of the paper, with the constants it leaves open written down here:

* A patch is kept only if at least ``min_brain`` (80%) of its pixels lie in the brain mask
  (:func:`monai_cmri.data.masks.brain_mask`).
* Abnormal volumes: around each abnormal box, patches at random shifts, drawn uniformly among the
  positions where the box overlaps the patch by at least ``min_overlap`` (25%) of the box area.
  The count per box grows with the lesion: ``clip(round(area / AREA_PER_PATCH), 1, MAX_PER_BOX)``
  (one patch per 16 x 16 pixels of box, so a 48 x 48 mass gets 9 and a 10 x 10 lesion 1); when
  a volume asks for more than ``MAX_ABNORMAL`` in all, that total is shared among the boxes in
  proportion to their counts. Then normal patches from the same volume, at positions that overlap
  no box of their slice (boxes of every label):
  ``clip(max(MIN_PATCHES - a, round(NORMAL_RATIO * a)), 0, MAX_PATCHES - a)`` for ``a`` abnormal
  patches found, so the volume gives between 10 and 40 patches.
* Normal and unlabeled volumes: ``clip(round(PER_SLICE * s), MIN_PATCHES, MAX_PATCHES)`` patches for
  ``s`` brain-containing slices (slices with at least one valid position), drawn uniformly among
  all valid positions of the volume. Slices thus count in proportion to their brain area: the
  large central slices, where the mask is most reliable, give most patches, and the vertex and
  skull base, where a 2D mask is least sure (:mod:`monai_cmri.data.masks`), give few.
* Positions are drawn without replacement from the explicit list of valid ones, so a small brain
  gives fewer patches and a note in the returned :class:`PatchPlan`, never an endless retry loop.
  Everything random comes from the ``numpy.random.Generator`` passed in.

External data (paper 2.1.4) is cut on a fixed grid instead: :func:`grid_positions`,
:func:`centre_grid`, :func:`external_slices` and :func:`plan_grid`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monai_cmri.data.annotations import ABNORMAL_LABELS, IMAGE_SIZE, Annotations, Box
from monai_cmri.data.dataset import LABELS
from monai_cmri.transforms import complex_to_channels

__all__ = [
    "PATCH_SIZE",
    "MIN_BRAIN",
    "MIN_OVERLAP",
    "MIN_PATCHES",
    "MAX_PATCHES",
    "AREA_PER_PATCH",
    "MAX_PER_BOX",
    "MAX_ABNORMAL",
    "NORMAL_RATIO",
    "PER_SLICE",
    "PatchRecord",
    "PatchPlan",
    "brain_fraction",
    "box_overlap",
    "box_patches",
    "volume_patches",
    "volume_boxes",
    "plan_patches",
    "cut_patches",
    "grid_positions",
    "centre_grid",
    "external_slices",
    "plan_grid",
]

#: Side of a square patch, pixels (paper 2.1.3).
PATCH_SIZE: int = 96
#: Least fraction of a patch's pixels inside the brain mask (paper 2.1.3).
MIN_BRAIN: float = 0.8
#: Least part of a box's area that an abnormal patch must cover (paper 2.1.3).
MIN_OVERLAP: float = 0.25
#: Fewest and most patches per volume (paper 2.1.3: "between 10 and 40").
MIN_PATCHES: int = 10
MAX_PATCHES: int = 40
#: Box area, pixels, worth one abnormal patch (16 x 16).
AREA_PER_PATCH: int = 256
#: Most abnormal patches drawn around one box.
MAX_PER_BOX: int = 20
#: Most abnormal patches per volume; the rest of :data:`MAX_PATCHES` is left to normal tissue.
MAX_ABNORMAL: int = 30
#: Normal patches per abnormal patch in an abnormal volume.
NORMAL_RATIO: float = 0.5
#: Patches per brain-containing slice of a normal or unlabeled volume.
PER_SLICE: float = 2.0

_PATCHED = ("abnormal", "normal", "unlabeled")


@dataclass(frozen=True)
class PatchRecord:
    """One patch of a volume: where it is and why it was taken.

    Attributes:
        slice: slice index.
        row: first row of the patch (top), pixels on the unflipped image.
        col: first column of the patch (left), pixels.
        label: patch class, one of :data:`monai_cmri.data.dataset.LABELS`: "abnormal" around a
            box, "normal" in a normal volume or away from the boxes of an abnormal one,
            "unlabeled" in an unlabeled volume (external patches carry their volume's label).
        overlap: fraction of the box's area inside the patch, in ``[0, 1]``; 0 without a box.
        box: index of the box in the list of boxes of its slice, -1 without a box.
        brain: fraction of the patch's pixels inside the brain mask, NaN where no mask was used.
    """

    slice: int
    row: int
    col: int
    label: str
    overlap: float = 0.0
    box: int = -1
    brain: float = float("nan")


@dataclass(frozen=True)
class PatchPlan:
    """The patches chosen in one volume.

    Attributes:
        volume_class: class of the volume: "abnormal", "normal" or "unlabeled" (or the external
            volume's label).
        records: the patches, abnormal ones first, in drawing order.
        requested: how many the rules asked for; more than ``len(records)`` when the brain had too
            few valid positions.
        notes: one line per shortfall, naming the volume, slice and box.
    """

    volume_class: str
    records: tuple[PatchRecord, ...]
    requested: int
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def shortfall(self) -> int:
        """Patches asked for but not found."""
        return max(self.requested - len(self.records), 0)

    def columns(self, file: str, sequence: str) -> dict[str, np.ndarray]:
        """Metadata columns of the records, as :func:`monai_cmri.data.dataset.write_patches` takes them.

        Args:
            file: volume name written to every row.
            sequence: the volume's sequence, one of :data:`monai_cmri.data.sequences.SEQUENCES`.

        Returns:
            ``file``, ``sequence``, ``slice``, ``row``, ``col``, ``label``, ``overlap``, ``box`` and
            ``brain``, each an array of length ``len(self)``.
        """
        n = len(self.records)
        return {
            "file": np.array([file] * n, dtype=object),
            "sequence": np.array([sequence] * n, dtype=object),
            "slice": np.array([r.slice for r in self.records], dtype=np.int32),
            "row": np.array([r.row for r in self.records], dtype=np.int32),
            "col": np.array([r.col for r in self.records], dtype=np.int32),
            "label": np.array([r.label for r in self.records], dtype=object),
            "overlap": np.array([r.overlap for r in self.records], dtype=np.float32),
            "box": np.array([r.box for r in self.records], dtype=np.int32),
            "brain": np.array([r.brain for r in self.records], dtype=np.float32),
        }


def brain_fraction(mask: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """Fraction of brain pixels in the patch at every top-left position, by summed-area tables.

    Args:
        mask: boolean brain mask ``(S, H, W)``.
        size: patch side, pixels.

    Returns:
        ``(S, H - size + 1, W - size + 1)`` float64 in ``[0, 1]``; entry ``[s, r, c]`` is the mean
        of ``mask[s, r:r + size, c:c + size]``.

    Raises:
        ValueError: if ``mask`` is not 3D or smaller than ``size``.
    """
    mask = np.asarray(mask)
    _check_mask(mask, size)
    table = np.zeros((mask.shape[0], mask.shape[1] + 1, mask.shape[2] + 1), dtype=np.int64)
    table[:, 1:, 1:] = mask.astype(np.int64).cumsum(axis=1).cumsum(axis=2)
    inner, upper, left = table[:, size:, size:], table[:, :-size, size:], table[:, size:, :-size]
    count = inner - upper - left + table[:, :-size, :-size]
    return count / float(size * size)


def box_overlap(box: Box, shape: tuple[int, int], size: int = PATCH_SIZE) -> np.ndarray:
    """Fraction of a box's area inside the patch at every top-left position.

    The overlap of two axis-aligned rectangles is the product of their row and column overlaps,
    so the map is an outer product of two 1D overlaps.

    Args:
        box: half-open box on the unflipped image, of positive area.
        shape: image shape ``(H, W)``, pixels.
        size: patch side, pixels.

    Returns:
        ``(H - size + 1, W - size + 1)`` float64 in ``[0, 1]``.

    Raises:
        ValueError: for an empty box.
    """
    if box.area <= 0:
        raise ValueError(f"box_overlap needs a box of positive area, got {box}")
    rows = _overlap_1d(box.row0, box.row1, shape[0], size)
    cols = _overlap_1d(box.col0, box.col1, shape[1], size)
    return np.outer(rows, cols) / float(box.area)


def box_patches(area: int, area_per_patch: int = AREA_PER_PATCH, most: int = MAX_PER_BOX) -> int:
    """Abnormal patches asked for around one box: ``clip(round(area / area_per_patch), 1, most)``.

    Halves round up, so a box of 1.5 ``area_per_patch`` asks for 2 patches.

    Args:
        area: box area, pixels.
        area_per_patch: box area worth one patch, pixels.
        most: cap per box.
    """
    return int(np.clip(_round(area / area_per_patch), 1, most))


def volume_patches(
    brain_slices: int, per_slice: float = PER_SLICE, least: int = MIN_PATCHES, most: int = MAX_PATCHES
) -> int:
    """Patches asked for in a normal or unlabeled volume: ``clip(round(per_slice * s), least, most)``.

    Args:
        brain_slices: slices ``s`` with at least one valid patch position.
        per_slice: patches per such slice.
        least: floor per volume.
        most: cap per volume.
    """
    return int(np.clip(_round(per_slice * brain_slices), least, most))


def volume_boxes(
    annotations: Annotations, name: str | os.PathLike[str], size: int = IMAGE_SIZE
) -> dict[int, list[Box]]:
    """All boxes of a volume, every label, by slice, as :func:`plan_patches` takes them.

    Args:
        annotations: the fastMRI+ annotations.
        name: volume name or path.
        size: side of the image the boxes refer to, pixels.
    """
    return {index: annotations.boxes(name, index, size) for index in annotations.slices(name)}


def plan_patches(
    mask: np.ndarray,
    volume_class: str,
    rng: np.random.Generator,
    *,
    boxes: Mapping[int, Sequence[Box]] | None = None,
    size: int = PATCH_SIZE,
    min_brain: float = MIN_BRAIN,
    min_overlap: float = MIN_OVERLAP,
    source: str = "<volume>",
) -> PatchPlan:
    """Choose the patches of one volume by the rules of paper 2.1.3 (see the module docstring).

    Args:
        mask: boolean brain mask ``(S, H, W)`` (:func:`monai_cmri.data.masks.brain_mask`).
        volume_class: "abnormal", "normal" or "unlabeled"; excluded volumes are never patched.
        rng: the only source of randomness; the same generator state gives the same plan.
        boxes: boxes of every label by slice index, half-open on the unflipped image
            (:func:`volume_boxes`); abnormal ones are those labelled in
            :data:`monai_cmri.data.annotations.ABNORMAL_LABELS`. Used for abnormal volumes only.
        size: patch side, pixels.
        min_brain: least fraction of a patch inside the mask.
        min_overlap: least fraction of a box's area inside one of its abnormal patches.
        source: volume name for notes and error messages.

    Returns:
        The plan: records, the count asked for, and notes on any shortfall.

    Raises:
        ValueError: for an excluded or unknown class, a mask that is not ``(S, H, W)`` boolean of
            at least ``size`` pixels, a fraction outside ``(0, 1]``, or a box on a slice or at a
            place outside the volume; the message names ``source``.
    """
    if volume_class == "excluded":
        raise ValueError(f"{source}: excluded volumes are never patched")
    if volume_class not in _PATCHED:
        choices = ", ".join(_PATCHED)
        raise ValueError(f"{source}: unknown volume class {volume_class!r}; expected one of {choices}")
    for name, value in (("min_brain", min_brain), ("min_overlap", min_overlap)):
        if not 0 < value <= 1:
            raise ValueError(f"{source}: {name} must be in (0, 1], got {value}")
    mask = np.asarray(mask)
    _check_mask(mask, size, source)
    fraction = brain_fraction(mask, size)
    valid = fraction >= min_brain
    if volume_class != "abnormal":
        wanted = volume_patches(int(valid.any(axis=(1, 2)).sum()))
        chosen = _anywhere(valid, wanted, rng)
        records = [_record(position, volume_class, fraction) for position in chosen]
        short = len(chosen) < wanted
        notes = (f"{source}: {len(chosen)} of {wanted} patches: brain too small",) if short else ()
        return PatchPlan(volume_class, tuple(records), wanted, notes)

    boxes = _check_boxes(boxes or {}, mask.shape, source)
    shape = mask.shape[1:]
    records, notes, asked = _around_boxes(boxes, shape, fraction, valid, rng, size, min_overlap, source)
    found = len(records)
    # At least MIN_PATCHES in all, at most MAX_PATCHES, about NORMAL_RATIO normal per abnormal patch.
    wanted = int(np.clip(max(MIN_PATCHES - found, _round(NORMAL_RATIO * found)), 0, MAX_PATCHES - found))
    chosen = _anywhere(valid & ~_touched(boxes, mask.shape, size), wanted, rng)
    records += [_record(position, "normal", fraction) for position in chosen]
    if len(chosen) < wanted:
        notes.append(f"{source}: {len(chosen)} of {wanted} normal patches away from the boxes fit")
    return PatchPlan(volume_class, tuple(records), asked + wanted, tuple(notes))


def cut_patches(volume: np.ndarray, records: Iterable[PatchRecord], size: int = PATCH_SIZE) -> np.ndarray:
    """Cut patches out of a complex volume as two channels (real, imag) (paper 2.1.3).

    Args:
        volume: complex ``(S, H, W)``, the coil-combined, slice-normalised volume.
        records: patch positions (:attr:`PatchPlan.records`).
        size: patch side, pixels.

    Returns:
        float32 ``(N, 2, size, size)``: channel 0 the real part, channel 1 the imaginary part
        (:func:`monai_cmri.transforms.complex_to_channels`).

    Raises:
        ValueError: if ``volume`` is not complex ``(S, H, W)`` or a record lies outside it.
    """
    volume = np.asarray(volume)
    if not np.iscomplexobj(volume) or volume.ndim != 3:
        raise ValueError(f"cut_patches expects a complex (S, H, W) volume, got {volume.dtype} {volume.shape}")
    records = list(records)
    cuts = np.empty((len(records), size, size), dtype=np.complex64)
    for i, record in enumerate(records):
        inside = 0 <= record.slice < volume.shape[0] and 0 <= record.row <= volume.shape[1] - size
        if not (inside and 0 <= record.col <= volume.shape[2] - size):
            raise ValueError(f"cut_patches: {record} lies outside the volume {volume.shape} (patch {size})")
        cuts[i] = volume[record.slice, record.row : record.row + size, record.col : record.col + size]
    return complex_to_channels(cuts)


def grid_positions(
    image: int = IMAGE_SIZE, size: int = PATCH_SIZE, stride: int = 75, steps: int = 4
) -> tuple[int, ...]:
    """Start positions of a regular grid of patches along one axis (paper 2.1.4).

    ``steps`` patches start every ``stride`` pixels; the last one is CLAMPED to ``image - size`` when
    it would pass the edge. The paper's 4 x 75 grid on 320 pixels ends at 96 + 3 x 75 = 321, one pixel
    too far: the positions are (0, 75, 150, 224) rather than padding the image by a pixel, so every
    patch holds only measured pixels.

    Args:
        image: image side, pixels.
        size: patch side, pixels.
        stride: distance between patch starts, pixels.
        steps: number of patches along the axis.

    Raises:
        ValueError: if the patch is larger than the image or an argument is not positive.
    """
    if min(image, size, stride, steps) < 1 or size > image:
        raise ValueError(
            f"grid_positions needs positive arguments and size <= image, got image {image}, size {size}, "
            f"stride {stride}, steps {steps}"
        )
    return tuple(min(step * stride, image - size) for step in range(steps))


def centre_grid(
    image: int = IMAGE_SIZE, size: int = PATCH_SIZE, stride: int = 75, steps: int = 4, keep: int = 2
) -> list[tuple[int, int]]:
    """Top-left ``(row, col)`` of the central ``keep x keep`` patches of a square grid (paper 2.1.4).

    The default gives rows and columns in {75, 150}: the four centre patches of the 4 x 4 grid,
    away from skull and background.

    Args:
        image: image side, pixels.
        size: patch side, pixels.
        stride: distance between patch starts, pixels (:func:`grid_positions`).
        steps: grid patches along each axis.
        keep: central patches kept along each axis.

    Raises:
        ValueError: if ``keep`` is not in ``[1, steps]`` or has a different parity than ``steps``.
    """
    if not 1 <= keep <= steps or (steps - keep) % 2:
        raise ValueError(f"centre_grid needs 1 <= keep <= steps, same parity; got keep {keep}, steps {steps}")
    first = (steps - keep) // 2
    centre = grid_positions(image, size, stride, steps)[first : first + keep]
    return [(row, col) for row in centre for col in centre]


def external_slices(
    num_slices: int, inferior: float = 0.25, superior: float = 0.0, inferior_first: bool = True
) -> range:
    """Slices of an external axial volume kept after dropping the facial ones (paper 2.1.4).

    The inferior ``round(inferior * num_slices)`` slices hold the face, orbits and skull base rather
    than brain; ``superior`` drops slices at the vertex the same way. Halves round up. The paper
    gives no number: the default drops the lowest quarter, which in a 20-slice axial brain volume
    with 5-6 mm spacing is the 25-30 mm below the skull base; set it per external protocol.

    Args:
        num_slices: slices in the volume.
        inferior: fraction dropped at the inferior end.
        superior: fraction dropped at the superior end.
        inferior_first: True when slice 0 is the most inferior one.

    Raises:
        ValueError: for fractions outside ``[0, 1)`` or summing to 1 or more.
    """
    if not (0 <= inferior < 1 and 0 <= superior < 1 and inferior + superior < 1) or num_slices < 0:
        raise ValueError(f"external_slices: fractions {inferior}, {superior} must be in [0, 1), sum below 1")
    low, high = _round(inferior * num_slices), _round(superior * num_slices)
    if not inferior_first:
        low, high = high, low
    return range(low, num_slices - high)


def plan_grid(
    slices: Iterable[int],
    label: str,
    *,
    image: int = IMAGE_SIZE,
    size: int = PATCH_SIZE,
    stride: int = 75,
    steps: int = 4,
    keep: int = 2,
) -> PatchPlan:
    """The centre grid patches of every given slice, all with the volume's label (paper 2.1.4).

    Args:
        slices: slice indices to cut (:func:`external_slices`).
        label: the volume label, one of :data:`monai_cmri.data.dataset.LABELS`.
        image: image side, pixels (320 after resizing k-space, SPEC 1.3).
        size: patch side, pixels.
        stride: distance between patch starts, pixels.
        steps: grid patches along each axis.
        keep: central patches kept along each axis.

    Raises:
        ValueError: for an unknown label.
    """
    if label not in LABELS:
        raise ValueError(f"plan_grid: unknown label {label!r}; expected one of {', '.join(LABELS)}")
    positions = centre_grid(image, size, stride, steps, keep)
    records = tuple(PatchRecord(int(index), row, col, label) for index in slices for row, col in positions)
    return PatchPlan(label, records, len(records))


def _around_boxes(
    boxes: dict[int, list[Box]],
    image: tuple[int, int],
    fraction: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    size: int,
    min_overlap: float,
    source: str,
) -> tuple[list[PatchRecord], list[str], int]:
    """Abnormal patches around the abnormal boxes: records, shortfall notes, patches asked for.

    A position taken for one box is not offered to another, so no patch is drawn twice.
    """
    abnormal = [
        (index, number, box)
        for index in sorted(boxes)
        for number, box in enumerate(boxes[index])
        if box.label in ABNORMAL_LABELS
    ]
    if not abnormal:
        return [], [f"{source}: abnormal volume without an abnormal box: normal patches only"], 0
    counts = _share([box_patches(box.area) for _, _, box in abnormal], MAX_ABNORMAL)
    used = np.zeros_like(valid)
    records, notes = [], []
    for (index, number, box), count in zip(abnormal, counts):
        overlap = box_overlap(box, image, size)
        allowed = (overlap >= min_overlap) & valid[index] & ~used[index]
        picks = _pick(np.flatnonzero(allowed), count, rng)
        for flat in picks:
            row, col = (int(i) for i in np.unravel_index(flat, allowed.shape))
            used[index, row, col] = True
            brain = float(fraction[index, row, col])
            records.append(PatchRecord(index, row, col, "abnormal", float(overlap[row, col]), number, brain))
        if len(picks) < count:
            notes.append(
                f"{source}: slice {index} box {number} ({box.label}, {box.area} px): "
                f"{len(picks)} of {count} abnormal patches fit"
            )
    return records, notes, sum(counts)


def _round(value: float) -> int:
    """Round half up (Python's ``round`` sends halves to even)."""
    return int(np.floor(value + 0.5))


def _overlap_1d(start: int, stop: int, length: int, size: int) -> np.ndarray:
    """Pixels of ``[start, stop)`` inside ``[p, p + size)`` for every patch start ``p``."""
    begin = np.arange(length - size + 1)
    return np.clip(np.minimum(begin + size, stop) - np.maximum(begin, start), 0, None)


def _share(counts: list[int], most: int) -> list[int]:
    """Cut ``counts`` to a total of ``most`` in proportion to them (largest remainder; ties to the first)."""
    total = sum(counts)
    if total <= most:
        return counts
    quotas = np.array(counts, dtype=np.float64) * most / total
    shares = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - shares), kind="stable")
    shares[order[: most - shares.sum()]] += 1
    return shares.tolist()


def _pick(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct candidates, uniformly at random."""
    if count <= 0 or candidates.size == 0:
        return candidates[:0]
    return rng.choice(candidates, size=min(count, candidates.size), replace=False)


def _anywhere(allowed: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Up to ``count`` distinct ``(slice, row, col)``, uniformly among the True entries of ``allowed``."""
    picks = _pick(np.flatnonzero(allowed), count, rng)
    return [tuple(int(i) for i in np.unravel_index(flat, allowed.shape)) for flat in picks]


def _touched(boxes: Mapping[int, Sequence[Box]], shape: tuple[int, ...], size: int) -> np.ndarray:
    """``(S, R, C)``: True where the patch overlaps any box of its slice."""
    touched = np.zeros((shape[0], shape[1] - size + 1, shape[2] - size + 1), dtype=bool)
    for index, found in boxes.items():
        for box in found:
            touched[index] |= box_overlap(box, shape[1:], size) > 0
    return touched


def _record(position: tuple[int, int, int], label: str, fraction: np.ndarray) -> PatchRecord:
    return PatchRecord(*position, label, brain=float(fraction[position]))


def _check_mask(mask: np.ndarray, size: int, source: str = "<volume>") -> None:
    if mask.dtype != bool or mask.ndim != 3:
        raise ValueError(f"{source}: expected a boolean (S, H, W) brain mask, got {mask.dtype} {mask.shape}")
    if size < 1 or min(mask.shape[1:]) < size:
        raise ValueError(f"{source}: a {size} x {size} patch does not fit the {mask.shape[1:]} slices")


def _check_boxes(
    boxes: Mapping[int, Sequence[Box]], shape: tuple[int, ...], source: str
) -> dict[int, list[Box]]:
    checked = {}
    for index, found in boxes.items():
        if not 0 <= int(index) < shape[0]:
            raise ValueError(f"{source}: boxes on slice {index}, but the volume has {shape[0]} slices")
        for box in found:
            if box.area <= 0 or box.row0 < 0 or box.col0 < 0 or box.row1 > shape[1] or box.col1 > shape[2]:
                where = f"{source}: slice {index}: box {box}"
                raise ValueError(f"{where} is empty or outside the image {shape[1:]}")
        checked[int(index)] = list(found)
    return checked
