"""fastMRI+ brain annotations: labels, boxes and volume classes (SPEC 1.2, paper 2.1.1).

fastMRI+ (MIT licensed, shipped under ``resources/fastmri_plus``) gives, for 1001 reviewed brain
volumes, study-level labels (one row per label, no box) and image-level bounding boxes with a
label, in a CSV with the columns ``file,slice,study_level,x,y,width,height,label``. This module
parses it, normalises the label spellings, converts the boxes from the up/down flipped
coordinates of fastMRI+ to the unflipped 320 x 320 image, and sorts volumes into the classes
the paper trains on: abnormal, normal, excluded and unlabeled.

The parser uses the standard :mod:`csv` module: the files are small (8213 rows) and pandas is
not a dependency of the package.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path, PurePath

from monai_cmri.data.sequences import SEQUENCES, sequence_from_name

__all__ = [
    "ABNORMAL_LABELS",
    "NORMAL_LABELS",
    "CLASSES",
    "RULES",
    "IMAGE_SIZE",
    "Annotation",
    "Box",
    "Annotations",
    "normalize_label",
    "volume_name",
    "unflip",
    "class_counts",
    "format_counts",
    "find_annotations",
    "labels",
]

#: Findings that make a volume abnormal (paper 2.1.1), as normalised label keys.
ABNORMAL_LABELS: frozenset[str] = frozenset(
    {
        "mass",
        "extra-axial mass",
        "nonspecific lesion",
        "nonspecific white matter lesion",
        "encephalomalacia",
        "lacunar infarct",
        "likely cysts",
    }
)
#: Labels of a normal volume: study-level "normal for age", image-level "normal variant".
NORMAL_LABELS: frozenset[str] = frozenset({"normal for age", "normal variant"})
#: Volume classes, in table order.
CLASSES: tuple[str, ...] = ("abnormal", "normal", "excluded", "unlabeled")
#: Classification rules: "lenient" is the paper's, "strict" drops abnormal volumes with other findings.
RULES: tuple[str, ...] = ("lenient", "strict")
#: Side of the fastMRI reconstruction the boxes refer to, in pixels.
IMAGE_SIZE: int = 320

_COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
_BOX_FIELDS = ("x", "y", "width", "height")
_RESOURCES = ("resources", "fastmri_plus")
_CHOICES = ", ".join(CLASSES)


def normalize_label(text: str) -> str:
    """Canonical key of a fastMRI+ label: lower case, outer spaces stripped, inner runs collapsed.

    ``"Nonspecific white matter lesion"`` and ``" nonspecific  white matter Lesion "`` both give
    ``"nonspecific white matter lesion"`` (SPEC 1.2: labels vary in case).
    """
    return " ".join(str(text).split()).lower()


def volume_name(path: str | os.PathLike[str]) -> str:
    """fastMRI volume name of a file name or path: directories and a ``.h5`` suffix removed.

    ``"/data/multicoil_train/file_brain_AXT1_202_2020089.h5"`` -> ``"file_brain_AXT1_202_2020089"``.
    """
    name = PurePath(os.fspath(path)).name.strip()
    return name[:-3] if name.lower().endswith(".h5") else name


@dataclass(frozen=True)
class Annotation:
    """One row of ``brain.csv``.

    Attributes:
        file: volume name, without directory or ``.h5``.
        slice: slice index within the volume (0 for study-level rows).
        study: True for a study-level label (no box).
        label: normalised label key (:func:`normalize_label`).
        x: left column of the box in flipped coordinates, pixels; None for study-level rows.
        y: top row of the box in up/down flipped coordinates, pixels; None for study-level rows.
        width: box width in pixels (>= 0); None for study-level rows.
        height: box height in pixels (>= 0); None for study-level rows.
    """

    file: str
    slice: int
    study: bool
    label: str
    x: int | None = None
    y: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Box:
    """Axis-aligned box on the unflipped image: rows ``[row0, row1)``, columns ``[col0, col1)``.

    Attributes:
        row0: first row (inclusive), pixels from the top of the unflipped image.
        row1: last row (exclusive).
        col0: first column (inclusive).
        col1: last column (exclusive).
        label: normalised label key.
    """

    row0: int
    row1: int
    col0: int
    col1: int
    label: str

    @property
    def area(self) -> int:
        """Number of pixels covered."""
        return (self.row1 - self.row0) * (self.col1 - self.col0)


def unflip(
    annotation: Annotation, size: int = IMAGE_SIZE, check: bool = False, source: str = "<annotations>"
) -> Box:
    """Convert a fastMRI+ box to rows and columns of the unflipped ``size x size`` image (SPEC 1.2).

    fastMRI+ drew its boxes on up/down flipped images, so on the unflipped image the box covers
    rows ``[size - y - height, size - y)`` and columns ``[x, x + width)``.

    Args:
        annotation: an image-level row.
        size: side of the square image the boxes refer to, pixels (320 for fastMRI+).
        check: if True, a box reaching outside the image raises; if False it is clipped to it.
        source: a name for error messages, usually the CSV path.

    Raises:
        ValueError: for a study-level row, a box with non-positive width or height, a box fully
            outside the image, or (with ``check``) a box partly outside; the message names the
            source, file and slice.
    """
    x, y, width, height = annotation.x, annotation.y, annotation.width, annotation.height
    where = f"{source}: {annotation.file} slice {annotation.slice}: {annotation.label!r}"
    if annotation.study or x is None or y is None or width is None or height is None:
        raise ValueError(f"{where} is a study-level label without a box")
    if width <= 0 or height <= 0:
        raise ValueError(f"{where} box has non-positive size {width}x{height}")
    row0, row1, col0, col1 = size - y - height, size - y, x, x + width
    span = f"rows [{row0}, {row1}) cols [{col0}, {col1})"
    if row1 <= 0 or row0 >= size or col1 <= 0 or col0 >= size:
        raise ValueError(f"{where} box {span} lies outside the {size}x{size} image")
    if check and (row0 < 0 or col0 < 0 or row1 > size or col1 > size):
        raise ValueError(f"{where} box {span} reaches outside the {size}x{size} image")
    return Box(max(row0, 0), min(row1, size), max(col0, 0), min(col1, size), annotation.label)


def _shipped(name: str) -> AbstractContextManager[Path]:
    """Path of a shipped fastMRI+ file, valid inside the ``with`` block."""
    return as_file(files("monai_cmri.data").joinpath(*_RESOURCES, name))


def _int(value: str, field: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: {field} must be an integer, got {value!r}") from None


def _parse_row(row: Mapping[str, str | None], where: str) -> Annotation:
    if any(row.get(column) is None for column in _COLUMNS) or None in row:
        raise ValueError(f"{where}: expected {len(_COLUMNS)} fields ({','.join(_COLUMNS)})")
    file = volume_name(row["file"])
    label = normalize_label(row["label"])
    if not file or not label:
        raise ValueError(f"{where}: empty file name or label")
    slice_ = _int(row["slice"].strip(), "slice", where)
    if slice_ < 0:
        raise ValueError(f"{where}: negative slice {slice_}")
    level = row["study_level"].strip().lower()
    if level not in ("yes", "no"):
        raise ValueError(f"{where}: study_level must be Yes or No, got {row['study_level']!r}")
    box = [row[field].strip() for field in _BOX_FIELDS]
    if level == "yes":
        if any(box):
            raise ValueError(f"{where}: study-level row has box fields {box}")
        return Annotation(file, slice_, True, label)
    x, y, width, height = (_int(value, field, where) for value, field in zip(box, _BOX_FIELDS))
    if width < 0 or height < 0:
        raise ValueError(f"{where}: negative box size {width}x{height}")
    return Annotation(file, slice_, False, label, x, y, width, height)


def _read_rows(path: Path) -> tuple[list[Annotation], int]:
    """Parse ``brain.csv``; exact duplicate lines are dropped and counted."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in _COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            expected = ",".join(_COLUMNS)
            raise ValueError(f"{path}:1: missing column(s) {', '.join(missing)}; expected {expected}")
        return _parse_rows((row, f"{path}:{reader.line_num}") for row in reader)


def _parse_rows(rows: Iterable[tuple[Mapping[str, str | None], str]]) -> tuple[list[Annotation], int]:
    """Parse ``(row, where)`` pairs of CSV fields; exact duplicates are dropped and counted."""
    parsed, seen, duplicates = [], set(), 0
    for row, where in rows:
        key = tuple(row.get(column) for column in _COLUMNS)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        parsed.append(_parse_row(row, where))
    return parsed, duplicates


def _read_file_list(path: Path) -> list[str]:
    """Volume names of ``brain_file_list.csv``: one per line, no header (a ``file`` header is skipped)."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        names = [volume_name(row[0]) for row in csv.reader(stream) if row and row[0].strip()]
    if names and names[0].lower() == "file":
        names = names[1:]
    if not names:
        raise ValueError(f"{path}: no file names")
    return names


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")


class Annotations:
    """fastMRI+ brain annotations grouped by volume (SPEC 1.2).

    A volume is *annotated* when it was reviewed, i.e. listed in ``brain_file_list.csv`` or named
    in ``brain.csv``; every other volume is unlabeled. Classes (paper 2.1.1):

    - abnormal: at least one label in :data:`ABNORMAL_LABELS`; with ``rule="strict"`` additionally
      every label of the volume must be in :data:`ABNORMAL_LABELS` or :data:`NORMAL_LABELS`.
    - normal: at least one label, all in :data:`NORMAL_LABELS` (same under both rules).
    - excluded: every other annotated volume, including the reviewed volumes without any row
      (4 in fastMRI+): they were reviewed, so they are not unlabeled, and carry no "normal for
      age" label, so they are not normal.
    - unlabeled: not annotated.

    Classes match on the label alone, not on its level: in fastMRI+ the findings and "normal
    variant" are image-level and "normal for age" is study-level, so the level adds nothing.

    Args:
        rows: parsed rows of ``brain.csv``.
        reviewed: names of the reviewed volumes (``brain_file_list.csv``).
        source: a name for error messages and the report, usually the CSV path.
        duplicates: number of exact duplicate rows dropped while reading.

    Attributes:
        rows: ``{volume name: [Annotation, ...]}`` for every annotated volume, in CSV order
            (an empty list for a reviewed volume without any row).
        source: as given.
        duplicates: as given.
    """

    def __init__(
        self,
        rows: Iterable[Annotation],
        reviewed: Iterable[str],
        source: str = "<annotations>",
        duplicates: int = 0,
    ) -> None:
        self.source = source
        self.duplicates = duplicates
        self.rows: dict[str, list[Annotation]] = {volume_name(name): [] for name in reviewed}
        for row in rows:
            self.rows.setdefault(row.file, []).append(row)

    @classmethod
    def from_csv(
        cls, csv_path: str | os.PathLike[str], file_list_path: str | os.PathLike[str] | None = None
    ) -> Annotations:
        """Read ``brain.csv`` and, optionally, ``brain_file_list.csv``.

        Args:
            csv_path: the annotation CSV (``file,slice,study_level,x,y,width,height,label``).
            file_list_path: the list of reviewed volumes; None takes the volumes named in the CSV.

        Raises:
            OSError: when a file cannot be read.
            ValueError: for malformed content, naming the file and line.
        """
        rows, duplicates = _read_rows(Path(csv_path))
        reviewed = _read_file_list(Path(file_list_path)) if file_list_path is not None else []
        return cls(rows, reviewed, source=str(csv_path), duplicates=duplicates)

    @classmethod
    def from_records(
        cls, records: Iterable[Sequence[str]], reviewed: Iterable[str] = (), source: str = "<annotations>"
    ) -> Annotations:
        """Annotations from rows of ``brain.csv`` fields, parsed and checked exactly as :meth:`from_csv` does.

        Args:
            records: the fields of each row, in the CSV's column order
                (``file,slice,study_level,x,y,width,height,label``), as strings.
            reviewed: names of the reviewed volumes.
            source: a name for error messages, usually the CSV the rows belong to.

        Raises:
            ValueError: for a malformed row, naming ``source`` and the row's number (from 1).
        """
        pairs = ((dict(zip(_COLUMNS, record)) if len(record) == len(_COLUMNS) else {}, f"{source}: row {number}")
                 for number, record in enumerate(records, start=1))
        rows, duplicates = _parse_rows(pairs)
        return cls(rows, reviewed, source=source, duplicates=duplicates)

    @classmethod
    def default(cls) -> Annotations:
        """The fastMRI+ brain annotations shipped with the package."""
        with _shipped("brain.csv") as csv_path, _shipped("brain_file_list.csv") as list_path:
            return cls.from_csv(csv_path, list_path)

    @property
    def files(self) -> tuple[str, ...]:
        """Names of the annotated (reviewed) volumes, sorted."""
        return tuple(sorted(self.rows))

    def labels(self, name: str | os.PathLike[str]) -> frozenset[str]:
        """Normalised labels of a volume (empty when it has no row or is not annotated)."""
        return frozenset(row.label for row in self.rows.get(volume_name(name), ()))

    def volume_class(self, name: str | os.PathLike[str], rule: str = "lenient") -> str:
        """Class of a volume, one of :data:`CLASSES`.

        Args:
            name: volume name or path, with or without ``.h5``.
            rule: "lenient" (the paper's) or "strict" (see the class docstring).
        """
        _check_rule(rule)
        if volume_name(name) not in self.rows:
            return "unlabeled"
        found = self.labels(name)
        if found & ABNORMAL_LABELS and (rule == "lenient" or found <= ABNORMAL_LABELS | NORMAL_LABELS):
            return "abnormal"
        if found and found <= NORMAL_LABELS:
            return "normal"
        return "excluded"

    def volume_classes(
        self, names: Iterable[str | os.PathLike[str]], rule: str = "lenient"
    ) -> dict[str, str]:
        """Class of each volume, keyed by the name or path as given (``str`` of it)."""
        _check_rule(rule)
        return {os.fspath(name): self.volume_class(name, rule) for name in names}

    def slices(self, name: str | os.PathLike[str]) -> list[int]:
        """Sorted indices of the slices of a volume that carry at least one box."""
        return sorted({row.slice for row in self.rows.get(volume_name(name), ()) if not row.study})

    def boxes(
        self, name: str | os.PathLike[str], slice: int, size: int = IMAGE_SIZE, check: bool = False
    ) -> list[Box]:
        """All boxes of one slice, on the unflipped image (:func:`unflip`), in CSV order.

        Boxes of zero width or height mark no pixel and are skipped (fastMRI+ has two, neither
        abnormal).

        Args:
            name: volume name or path.
            slice: slice index.
            size: image side the boxes refer to, pixels.
            check: raise instead of clipping a box that reaches outside the image.
        """
        rows = self.rows.get(volume_name(name), ())
        return [
            unflip(row, size, check, self.source)
            for row in rows
            if not row.study and row.slice == slice and row.width and row.height
        ]

    def abnormal_boxes(
        self, name: str | os.PathLike[str], slice: int, size: int = IMAGE_SIZE, check: bool = False
    ) -> list[Box]:
        """Boxes of one slice whose label is in :data:`ABNORMAL_LABELS`, unflipped (SPEC 1.3 patches)."""
        return [box for box in self.boxes(name, slice, size, check) if box.label in ABNORMAL_LABELS]

    def counts(
        self, rule: str = "lenient", names: Iterable[str | os.PathLike[str]] | None = None
    ) -> dict[str, dict[str, int]]:
        """Volumes per sequence and class (:func:`class_counts`) of ``names``, default the annotated ones."""
        return class_counts(self.volume_classes(self.files if names is None else names, rule))


def class_counts(classes: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Table of volume counts, sequence x class, from a ``{name or path: class}`` mapping.

    Rows are :data:`SEQUENCES` (always present, possibly all zero), then ``"other"`` when some
    names carry no sequence; columns are :data:`CLASSES` and ``"total"``.
    """
    table = {sequence: dict.fromkeys((*CLASSES, "total"), 0) for sequence in SEQUENCES}
    for name, volume_class in classes.items():
        if volume_class not in CLASSES:
            raise ValueError(f"{name}: unknown class {volume_class!r}; expected one of {_CHOICES}")
        row = table.setdefault(sequence_from_name(name) or "other", dict.fromkeys((*CLASSES, "total"), 0))
        row[volume_class] += 1
        row["total"] += 1
    return table


def format_counts(tables: Mapping[str, Mapping[str, Mapping[str, int]]], title: str = "") -> str:
    """Fixed-width text of class-count tables (:func:`class_counts`) side by side, one group per rule.

    Args:
        tables: ``{rule: {sequence: {class: count}}}``, all with the same sequences and totals.
        title: a line printed above the table.
    """
    rules = list(tables)
    sequences = list(tables[rules[0]])
    width = max(len(name) for name in CLASSES)
    group = " ".join(f"{name:>{width}}" for name in CLASSES)
    lines = [title] if title else []
    lines.append(f"{'':<9} " + " | ".join(f"{rule:^{len(group)}}" for rule in rules) + f" | {'':>{width}}")
    lines.append(f"{'sequence':<9} " + " | ".join(group for _ in rules) + f" | {'total':>{width}}")
    lines.append("-" * len(lines[-1]))
    grand = {rule: dict.fromkeys((*CLASSES, "total"), 0) for rule in rules}
    for sequence in [*sequences, "all"]:
        cells = []
        for rule in rules:
            if sequence != "all":
                for key in (*CLASSES, "total"):
                    grand[rule][key] += tables[rule][sequence][key]
            row = grand[rule] if sequence == "all" else tables[rule][sequence]
            cells.append(" ".join(f"{row[name]:>{width}}" for name in CLASSES))
        total = (grand[rules[0]] if sequence == "all" else tables[rules[0]][sequence])["total"]
        lines.append(f"{sequence:<9} " + " | ".join(cells) + f" | {total:>{width}}")
    return "\n".join(lines)


def find_annotations(
    folder: str | os.PathLike[str] | None = None,
    csv: str | os.PathLike[str] | None = None,
    file_list: str | os.PathLike[str] | None = None,
) -> Annotations:
    """The annotations that go with a folder of fastMRI files, as every command finds them.

    An explicit ``csv`` wins; else the folder's own ``brain.csv`` (with its ``brain_file_list.csv``
    when present), as the simulator writes them; else the shipped fastMRI+ release.

    Args:
        folder: a folder of fastMRI ``.h5`` files, or None.
        csv: a fastMRI+ ``brain.csv``.
        file_list: its ``brain_file_list.csv``; with ``csv`` None and no ``brain.csv`` in the folder,
            it replaces the shipped list.

    Returns:
        The annotations; :attr:`Annotations.source` names the CSV they were read from.

    Raises:
        OSError: when a file cannot be read.
        ValueError: for malformed content.
    """
    if csv is None and folder is not None and (Path(folder) / "brain.csv").is_file():
        csv = Path(folder) / "brain.csv"
        if file_list is None and (Path(folder) / "brain_file_list.csv").is_file():
            file_list = Path(folder) / "brain_file_list.csv"
    if csv is not None:
        return Annotations.from_csv(csv, file_list)
    if file_list is None:
        return Annotations.default()
    with _shipped("brain.csv") as csv_path:
        return Annotations.from_csv(csv_path, file_list)


def labels(csv: str | None = None, file_list: str | None = None, data: str | None = None) -> str:
    """Report of the fastMRI+ volume classes per sequence under both rules (paper 2.1.1).

    Backs the command ``python -m monai_cmri labels``.

    Args:
        csv: annotation CSV; by default ``brain.csv`` in ``data`` when present (as the simulator
            writes it), else the shipped fastMRI+ ``brain.csv``.
        file_list: list of reviewed volumes; by default the ``brain_file_list.csv`` beside the
            ``brain.csv`` found in ``data``, the shipped list with the shipped CSV, else the volumes
            named in ``csv``.
        data: a folder of fastMRI ``.h5`` files (searched recursively); when given, the report also
            classifies them, unannotated ones as unlabeled.

    Returns:
        The report text; its first line names the annotation files used.

    Raises:
        OSError: when ``data`` is not a folder or a file cannot be read.
        ValueError: for malformed CSVs, or when ``data`` holds no ``.h5`` file.
    """
    folder = Path(data) if data is not None else None
    if folder is not None and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    annotations = find_annotations(folder, csv, file_list)
    if csv is not None:
        origin = "given"
    elif folder is not None and (folder / "brain.csv").is_file():
        origin = f"found in {folder}"
    else:
        origin = "shipped fastMRI+ release"
    rows = sum(len(found) for found in annotations.rows.values())
    empty = [name for name in annotations.files if not annotations.rows[name]]
    boxes = [row for found in annotations.rows.values() for row in found if not row.study]
    lines = [
        f"Annotations: {annotations.source} ({origin})",
        f"  {rows} rows kept ({annotations.duplicates} exact duplicate(s) dropped), "
        f"{len(boxes)} boxes ({sum(1 for row in boxes if not (row.width and row.height))} of zero size), "
        f"{rows - len(boxes)} study-level labels",
        f"  {len(annotations.files)} annotated volumes, "
        f"{len(empty)} without any label (counted as excluded)",
        "",
        format_counts({rule: annotations.counts(rule) for rule in RULES}, "Annotated volumes"),
    ]
    if folder is not None:
        paths = sorted(str(path) for path in folder.rglob("*.h5"))
        if not paths:
            raise ValueError(f"{folder}: no .h5 files")
        tables = {rule: annotations.counts(rule, paths) for rule in RULES}
        lines += ["", format_counts(tables, f"Volumes in {folder} ({len(paths)} files)")]
    return "\n".join(lines) + "\n"
