"""Tests of the fastMRI+ annotations (SPEC 1.2): labels, flipped boxes, volume classes, counts."""

from __future__ import annotations

import csv
from collections import Counter
from importlib.resources import as_file, files

import numpy as np
import pytest

from monai_cmri.data.annotations import (
    ABNORMAL_LABELS,
    CLASSES,
    IMAGE_SIZE,
    NORMAL_LABELS,
    Annotation,
    Annotations,
    Box,
    class_counts,
    format_counts,
    labels,
    normalize_label,
    unflip,
    volume_name,
)

HEADER = "file,slice,study_level,x,y,width,height,label\n"

# One volume per case of the class rules; the file list names all but the unannotated one.
CASES = {
    "file_brain_AXFLAIR_200_0000001": ("abnormal", "excluded"),  # mass + possible artifact
    "file_brain_AXFLAIR_200_0000002": ("normal", "normal"),  # normal variant only
    "file_brain_AXT1_200_0000003": ("abnormal", "abnormal"),  # normal for age + mass
    "file_brain_AXT1_200_0000004": ("excluded", "excluded"),  # possible artifact only
    "file_brain_AXT1POST_200_0000005": ("excluded", "excluded"),  # reviewed, no row
    "file_brain_AXT1POST_200_0000006": ("normal", "normal"),  # normal for age only
    "file_brain_AXFLAIR_200_0000007": ("excluded", "excluded"),  # normal for age + posttreatment change
    "file_brain_AXFLAIR_200_0000008": ("abnormal", "abnormal"),  # two spellings of one finding
    "file_brain_AXT2_200_0000009": ("unlabeled", "unlabeled"),  # not reviewed
}
ROWS = """\
file_brain_AXFLAIR_200_0000001,3,No,100,200,10,20,Mass
file_brain_AXFLAIR_200_0000001,3,No,0,0,320,5,Possible artifact
file_brain_AXFLAIR_200_0000002,4,No,50,60,8,9,Normal variant
file_brain_AXT1_200_0000003,0,Yes,,,,,Normal for age
file_brain_AXT1_200_0000003,7,No,30,40,12,6,mass
file_brain_AXT1_200_0000004,2,No,5,5,3,3,Possible artifact
file_brain_AXT1_200_0000004,2,No,5,5,3,3,Possible artifact
file_brain_AXT1POST_200_0000006,0,Yes,,,,,Normal for age
file_brain_AXFLAIR_200_0000007,0,Yes,,,,,Normal for age
file_brain_AXFLAIR_200_0000007,5,No,1,1,4,0,Posttreatment change
file_brain_AXFLAIR_200_0000008,1,No,10,300,10,20,Nonspecific white matter lesion
file_brain_AXFLAIR_200_0000008,1,No,20,30,5,5,nonspecific  white matter Lesion
"""


@pytest.fixture
def annotations(tmp_path):
    csv_path, list_path = tmp_path / "brain.csv", tmp_path / "brain_file_list.csv"
    csv_path.write_text(HEADER + ROWS)
    reviewed = [name for name, classes in CASES.items() if classes[0] != "unlabeled"]
    list_path.write_text("".join(f"{name}\n" for name in reviewed))
    return Annotations.from_csv(csv_path, list_path)


def write(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


def test_normalize_label():
    spellings = ("Nonspecific white matter lesion", " nonspecific  white matter Lesion ", "NONSPECIFIC\tWHITE  LESION")
    keys = [normalize_label(text) for text in spellings]
    assert keys == ["nonspecific white matter lesion"] * 2 + ["nonspecific white lesion"]
    assert normalize_label("Extra-axial mass") == "extra-axial mass"
    assert all(label == normalize_label(label) for label in ABNORMAL_LABELS | NORMAL_LABELS)


def test_volume_name():
    name = "file_brain_AXT1_202_2020089"
    assert volume_name(f"/data/multicoil_train/{name}.h5") == name
    assert volume_name("file_brain_AXT1_202_2020089") == "file_brain_AXT1_202_2020089"


def box(x, y, width, height, label="mass"):
    return Annotation("file_brain_AXT1_200_1", 3, False, label, x, y, width, height)


@pytest.mark.parametrize(
    "x,y,width,height", [(91, 132, 7, 6), (0, 0, 320, 320), (0, 0, 1, 1), (315, 310, 5, 10), (7, 1, 13, 2)]
)
def test_unflip_matches_flipped_mask(x, y, width, height):
    flipped = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    flipped[y : y + height, x : x + width] = True
    result = unflip(box(x, y, width, height), check=True)
    unflipped = np.zeros_like(flipped)
    unflipped[result.row0 : result.row1, result.col0 : result.col1] = True
    np.testing.assert_array_equal(unflipped, np.flipud(flipped))
    assert (result.row0, result.row1, result.col0, result.col1) == (320 - y - height, 320 - y, x, x + width)
    assert result.area == width * height == flipped.sum()


def test_unflip_edges_clip_and_check():
    # Flipped top edge (y=0) is the bottom of the unflipped image.
    assert unflip(box(0, 0, 10, 4)) == Box(316, 320, 0, 10, "mass")
    assert unflip(box(310, 316, 10, 4)) == Box(0, 4, 310, 320, "mass")
    assert unflip(box(315, 2, 10, 3)) == Box(315, 318, 315, 320, "mass")
    assert unflip(box(-4, 318, 8, 6)) == Box(0, 2, 0, 4, "mass")
    with pytest.raises(ValueError, match="file_brain_AXT1_200_1 slice 3.*reaches outside"):
        unflip(box(315, 2, 10, 3), check=True)
    for outside in (box(320, 0, 5, 5), box(0, 320, 5, 5), box(-5, 0, 5, 5), box(0, -5, 5, 5)):
        with pytest.raises(ValueError, match="slice 3.*outside the 320x320"):
            unflip(outside)
    for empty in (box(5, 5, 0, 4), box(5, 5, 4, 0)):
        with pytest.raises(ValueError, match="file_brain_AXT1_200_1 slice 3.*non-positive size"):
            unflip(empty)
    with pytest.raises(ValueError, match="study-level label without a box"):
        unflip(Annotation("file_brain_AXT1_200_1", 0, True, "normal for age"))
    assert unflip(box(10, 20, 5, 6), size=64) == Box(38, 44, 10, 15, "mass")


@pytest.mark.parametrize(
    "text,message",
    [
        ("file,slice,study_level,x,y,width,label\n", r"bad\.csv:1: missing column\(s\) height"),
        (HEADER + "f_1,2,No,1,1,4,4,Mass\nf_1,2,No,1,a,4,4,Mass\n", r"bad\.csv:3: y must be an integer"),
        (HEADER + "file_brain_AXT1_1_1,2,No,1,1,,4,Mass\n", r"bad\.csv:2: width must be an integer"),
        (HEADER + "file_brain_AXT1_1_1,2,No,1,1,4,-4,Mass\n", r"bad\.csv:2: negative box size"),
        (HEADER + "file_brain_AXT1_1_1,x,No,1,1,4,4,Mass\n", r"bad\.csv:2: slice must be an integer"),
        (HEADER + "f_1,2,Maybe,1,1,4,4,Mass\n", r"bad\.csv:2: study_level must be Yes or No"),
        (HEADER + "f_1,0,Yes,1,1,4,4,Normal for age\n", r"bad\.csv:2: study-level row has box fields"),
        (HEADER + "file_brain_AXT1_1_1,2,No,1,1,4,4\n", r"bad\.csv:2: expected 8 fields"),
        (HEADER + "file_brain_AXT1_1_1,2,No,1,1,4,4,Mass,extra\n", r"bad\.csv:2: expected 8 fields"),
        (HEADER + "file_brain_AXT1_1_1,2,No,1,1,4,4,  \n", r"bad\.csv:2: empty file name or label"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        Annotations.from_csv(write(tmp_path, text))


def test_records_parse_as_the_csv_does(annotations):
    reviewed = [name for name, classes in CASES.items() if classes[0] != "unlabeled"]
    records = list(csv.reader(ROWS.splitlines()))
    found = Annotations.from_records(records, reviewed, source="brain.csv")
    assert found.rows == annotations.rows and found.duplicates == annotations.duplicates == 1
    for name in CASES:
        assert found.volume_class(name) == annotations.volume_class(name)
    with pytest.raises(ValueError, match=r"brain\.csv: row 2: y must be an integer"):
        Annotations.from_records([records[0], ["f_1", "2", "No", "1", "a", "4", "4", "Mass"]], source="brain.csv")
    with pytest.raises(ValueError, match=r"<annotations>: row 1: expected 8 fields"):
        Annotations.from_records([records[0][:7]])


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(OSError, match="missing.csv"):
        Annotations.from_csv(tmp_path / "missing.csv")
    empty_list = tmp_path / "list.csv"
    empty_list.write_text("\n\n")
    with pytest.raises(ValueError, match=r"list\.csv: no file names"):
        Annotations.from_csv(write(tmp_path, HEADER), empty_list)


def test_file_list_header_and_suffix(tmp_path):
    list_path = tmp_path / "list.csv"
    list_path.write_text("file\nfile_brain_AXT1_1_1.h5\nfile_brain_AXT1_1_2\n")
    found = Annotations.from_csv(write(tmp_path, HEADER), list_path)
    assert found.files == ("file_brain_AXT1_1_1", "file_brain_AXT1_1_2")


@pytest.mark.parametrize("rule", ["lenient", "strict"])
def test_volume_classes(annotations, rule):
    column = 0 if rule == "lenient" else 1
    for name, classes in CASES.items():
        assert annotations.volume_class(name, rule) == classes[column], name
    paths = [f"/scans/train/{name}.h5" for name in CASES]
    expected = {path: classes[column] for path, classes in zip(paths, CASES.values())}
    assert annotations.volume_classes(paths, rule) == expected
    assert annotations.duplicates == 1
    assert len(annotations.files) == len(CASES) - 1


def test_class_rules(annotations):
    assert annotations.volume_class("file_brain_AXT1_200_0000003.h5") == "abnormal"
    assert annotations.labels("file_brain_AXFLAIR_200_0000008") == {"nonspecific white matter lesion"}
    assert annotations.labels("file_brain_AXT2_200_0000009") == frozenset()
    with pytest.raises(ValueError, match="unknown rule 'loose'"):
        annotations.volume_class("file_brain_AXT1_200_0000003", "loose")


def test_boxes(annotations):
    name = "file_brain_AXFLAIR_200_0000001"
    assert annotations.slices(name) == [3]
    mass, artifact = Box(100, 120, 100, 110, "mass"), Box(315, 320, 0, 320, "possible artifact")
    assert annotations.boxes(name, 3) == [mass, artifact]
    assert annotations.abnormal_boxes(name, 3) == [mass]
    assert annotations.boxes(name, 4) == []
    # Box reaching past the flipped bottom edge (y + height = 320) ends at row 0 exactly.
    assert annotations.abnormal_boxes("file_brain_AXFLAIR_200_0000008.h5", 1) == [
        Box(0, 20, 10, 20, "nonspecific white matter lesion"),
        Box(285, 290, 20, 25, "nonspecific white matter lesion"),
    ]
    # A zero-height box marks no pixel: skipped, not an error.
    assert annotations.boxes("file_brain_AXFLAIR_200_0000007", 5) == []
    assert annotations.abnormal_boxes("file_brain_AXFLAIR_200_0000002", 4) == []
    assert annotations.boxes("file_brain_AXT2_200_0000009", 0) == []


def test_class_counts_and_format(annotations):
    table = annotations.counts("strict")
    assert table["AXFLAIR"] == {"abnormal": 1, "normal": 1, "excluded": 2, "unlabeled": 0, "total": 4}
    assert table["AXT1POST"] == {"abnormal": 0, "normal": 1, "excluded": 1, "unlabeled": 0, "total": 2}
    assert sum(row["total"] for row in table.values()) == len(annotations.files)
    mixed = class_counts({"a/file_brain_AXT2_1_1.h5": "unlabeled", "scan.h5": "normal"})
    assert mixed["AXT2"]["unlabeled"] == 1
    assert mixed["other"] == {"abnormal": 0, "normal": 1, "excluded": 0, "unlabeled": 0, "total": 1}
    with pytest.raises(ValueError, match="unknown class"):
        class_counts({"scan.h5": "odd"})
    text = format_counts({"lenient": annotations.counts("lenient"), "strict": table}, "Title")
    lines = text.splitlines()
    assert lines[0] == "Title"
    assert len({len(line) for line in lines[1:]}) == 1  # fixed width
    assert lines[-1].split() == ["all", "3", "2", "3", "0", "|", "2", "2", "4", "0", "|", "8"]


def reference_classes(csv_path, list_path):
    """Straightforward re-implementation of paper 2.1.1, independent of the module."""
    with open(csv_path, newline="") as stream:
        rows = list(csv.reader(stream))[1:]
    duplicates = sum(count - 1 for count in Counter(map(tuple, rows)).values())
    with open(list_path) as stream:
        reviewed = [line.strip() for line in stream if line.strip()]
    found = {name: set() for name in reviewed}
    for row in rows:
        found.setdefault(row[0], set()).add(row[7].strip().lower())
    abnormal = {"mass", "extra-axial mass", "nonspecific lesion", "nonspecific white matter lesion"}
    abnormal |= {"encephalomalacia", "lacunar infarct", "likely cysts"}
    normal = {"normal for age", "normal variant"}
    classes = {"lenient": {}, "strict": {}}
    for name, names in found.items():
        if names & abnormal:
            classes["lenient"][name] = "abnormal"
            classes["strict"][name] = "abnormal" if names <= abnormal | normal else "excluded"
        elif names and names <= normal:
            classes["lenient"][name] = classes["strict"][name] = "normal"
        else:
            classes["lenient"][name] = classes["strict"][name] = "excluded"
    return classes, duplicates, reviewed


def test_real_counts():
    folder = files("monai_cmri.data").joinpath("resources", "fastmri_plus")
    with as_file(folder / "brain.csv") as csv_path, as_file(folder / "brain_file_list.csv") as list_path:
        expected, duplicates, reviewed = reference_classes(csv_path, list_path)
    real = Annotations.default()
    assert real.duplicates == duplicates
    assert set(real.files) == set(expected["lenient"])
    tables = {}
    for rule, classes in expected.items():
        table = {}
        for name, volume_class in classes.items():
            row = table.setdefault(name.split("_")[2], Counter())
            row[volume_class] += 1
        tables[rule] = real.counts(rule)
        for sequence, row in tables[rule].items():
            found = {key: row[key] for key in CLASSES if row[key]}
            assert found == dict(table.get(sequence, {})), (rule, sequence)
        assert sum(row["total"] for row in tables[rule].values()) == len(set(reviewed))
        for sequence in ("AXT1PRE", "AXT2"):
            assert tables[rule][sequence]["total"] == 0
    for sequence in tables["lenient"]:
        assert tables["strict"][sequence]["abnormal"] <= tables["lenient"][sequence]["abnormal"]
        assert tables["strict"][sequence]["normal"] == tables["lenient"][sequence]["normal"]
    lenient, strict = (sum(row["abnormal"] for row in tables[rule].values()) for rule in tables)
    assert lenient > strict


def test_real_abnormal_boxes_inside_image():
    real = Annotations.default()
    count = 0
    for name in real.files:
        for index in real.slices(name):
            for found in real.abnormal_boxes(name, index, check=True):
                assert found.label in ABNORMAL_LABELS and found.area > 0
                count += 1
    rows = [row for found in real.rows.values() for row in found]
    assert count == sum(1 for row in rows if not row.study and row.label in ABNORMAL_LABELS)


def test_labels_report(tmp_path):
    text = labels()
    assert "1 exact duplicate(s) dropped" in text and "1001 annotated volumes" in text
    real = Annotations.default()
    axflair = real.counts("lenient")["AXFLAIR"]
    row = next(line for line in text.splitlines() if line.startswith("AXFLAIR"))
    assert row.split()[1:5] == [str(axflair[key]) for key in CLASSES]

    data = tmp_path / "scans"
    (data / "val").mkdir(parents=True)
    annotated = real.files[0]
    (data / f"{annotated}.h5").touch()
    (data / "val" / "file_brain_AXT2_200_9999999.h5").touch()
    (data / "notes.txt").touch()
    text = labels(data=str(data))
    table = text.split(f"Volumes in {data} (2 files)")[1].splitlines()
    cls = real.volume_class(annotated)
    expected = ["AXFLAIR", *("1" if key == cls else "0" for key in CLASSES)]
    assert next(line for line in table if line.startswith("AXFLAIR")).split()[:5] == expected
    axt2 = next(line for line in table if line.startswith("AXT2")).split()
    assert axt2 == ["AXT2", "0", "0", "0", "1", "|", "0", "0", "0", "1", "|", "1"]

    with pytest.raises(OSError, match="not a folder"):
        labels(data=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .h5 files"):
        labels(data=str(tmp_path / "empty"))
    custom = tmp_path / "brain.csv"
    custom.write_text(HEADER + ROWS)
    assert "7 annotated volumes, 0 without any label" in labels(csv=str(custom))


def test_labels_of_a_data_folder_use_its_own_annotations(tmp_path):
    # A folder as ``simulate`` writes it: the volumes with their brain.csv and brain_file_list.csv.
    data = tmp_path / "sim"
    data.mkdir()
    (data / "brain.csv").write_text(HEADER + ROWS)
    reviewed = [name for name, classes in CASES.items() if classes[0] != "unlabeled"]
    (data / "brain_file_list.csv").write_text("".join(f"{name}\n" for name in reviewed))
    for name in CASES:
        (data / f"{name}.h5").touch()
    text = labels(data=str(data))
    assert text.splitlines()[0] == f"Annotations: {data / 'brain.csv'} (found in {data})"
    assert f"{len(reviewed)} annotated volumes, 1 without any label" in text
    table = text.split(f"Volumes in {data} ({len(CASES)} files)")[1].splitlines()
    lenient = Counter(classes[0] for name, classes in CASES.items() if "_AXFLAIR_" in name)
    strict = Counter(classes[1] for name, classes in CASES.items() if "_AXFLAIR_" in name)
    row = next(line for line in table if line.startswith("AXFLAIR")).split()
    assert row == ["AXFLAIR", *(str(lenient[key]) for key in CLASSES), "|",
                   *(str(strict[key]) for key in CLASSES), "|", str(sum(lenient.values()))]

    # An explicit CSV wins over the folder's; without a folder the shipped release is used.
    other = tmp_path / "other.csv"
    other.write_text(HEADER + ROWS.splitlines()[0] + "\n")
    assert labels(csv=str(other), data=str(data)).splitlines()[0] == f"Annotations: {other} (given)"
    assert labels().splitlines()[0].endswith("(shipped fastMRI+ release)")
