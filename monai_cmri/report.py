"""The main job's report: its tables and figures beside the paper's, as Markdown and self-contained HTML.

:func:`write_report` reads a main-job folder (layout in :mod:`monai_cmri.pipeline`) and writes
``report.md`` (images as relative links) and ``report.html`` (images embedded as base64 data
URIs, inline CSS, no scripts, no external references) from one structured content, section by
section:

* the dataset: volumes per sequence and class, patches per class, sequence and split in the layout
  of paper Table 1 (``patches/manifest.json``, ``kspace/brain.csv``, ``kspace/brain_file_list.csv``);
* the autoencoder: per-sequence reconstruction quality, paper Table 3 (``cvae/reconstruction.csv``);
* the sample sheets, paper Figures 2-5 (``figures/*.png``, ``cvae/reconstruction.png``,
  ``flow_stage1/samples.png``, ``flow_stage2/samples.png``);
* the model selection of both flow stages, paper 2.4.3 (``flow_stage*/selection.json``);
* real against synthetic latents, paper Table 4 (``experiments/real_vs_synthetic/summary.csv``);
* substitution and additive experiments, paper Figures 6-8 (``experiments/*/summary.csv`` and
  the figures);
* the run: arguments, seed, stage timings, hardware and package versions (``run.json``).

The paper's numbers (:data:`PAPER_TABLE1`, :data:`PAPER_TABLE3`, :data:`PAPER_TABLE4`,
:data:`PAPER_FIGURES`) stand beside ours wherever the paper has them. A section whose inputs are
missing (a ``--notrain`` run has no ``cvae/``, ``flow_stage*/`` or ``experiments/``) says
"not run" and why.

:func:`screenshot` renders the HTML with headless Chromium, which draws it as a browser would.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any, Union

from monai_cmri.atomic import atomic_write, write_text
from monai_cmri.data.annotations import CLASSES, Annotations
from monai_cmri.data.sequences import SEQUENCES, sequence_from_name
from monai_cmri.data.splits import SPLITS

__all__ = [
    "PAPER_VOLUMES",
    "PAPER_TABLE1",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "Headline",
    "PAPER_FIGURES",
    "PACKAGES",
    "REPORT_FILES",
    "environment",
    "write_report",
    "find_chromium",
    "chromium_command",
    "screenshot",
]

#: Paper 2.1.1: brain scans of the fastMRI release, and those fastMRI+ annotates.
PAPER_VOLUMES: dict[str, int] = {"scans": 6970, "annotated": 1000}
#: Paper 2.1.3, Table 1: patches per (class, sequence) as (train, validation, test, total).
PAPER_TABLE1: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("abnormal", "AXFLAIR"): (4720, 1173, 1503, 7396),
    ("abnormal", "AXT1"): (3359, 376, 377, 4112),
    ("abnormal", "AXT1POST"): (2022, 256, 475, 2753),
    ("normal", "AXFLAIR"): (4125, 1020, 989, 6134),
    ("normal", "AXT1"): (5820, 1319, 1020, 8159),
    ("normal", "AXT1POST"): (3620, 580, 900, 5100),
    ("unlabeled", "AXT1POST"): (7480, 192, 188, 7860),
    ("unlabeled", "AXT1PRE"): (2350, 68, 82, 2500),
    ("unlabeled", "AXT2"): (25460, 600, 720, 26780),
}
#: Paper 3.1, Table 3: per sequence, (mean, std) of phase coherence, magnitude SSIM and magnitude
#: PSNR (dB) on the test split.
PAPER_TABLE3: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "AXFLAIR": ((0.9984, 0.0013), (0.955, 0.018), (35.8, 2.3)),
    "AXT1": ((0.9983, 0.0008), (0.944, 0.029), (36.5, 3.3)),
    "AXT1POST": ((0.9977, 0.0017), (0.932, 0.031), (35.0, 2.7)),
    "AXT1PRE": ((0.9986, 0.0009), (0.930, 0.035), (35.0, 2.9)),
    "AXT2": ((0.9979, 0.0009), (0.951, 0.019), (35.4, 1.5)),
}
#: Paper 3.2, Table 4: real-vs-synthetic latent AUROC per sequence, (mean, std) over 5 seeds x 4
#: synthetic test sets.
PAPER_TABLE4: dict[str, tuple[float, float]] = {
    "AXFLAIR": (0.635, 0.030),
    "AXT1": (0.640, 0.026),
    "AXT1POST": (0.555, 0.049),
    "AXT1PRE": (0.502, 0.014),
    "AXT2": (0.653, 0.014),
}


@dataclass(frozen=True)
class Headline:
    """A number the paper states for one configuration of a downstream experiment (paper 3.3).

    Attributes:
        figure: the paper's figure, e.g. ``"Figure 6"``.
        section: the paper's section that states it.
        experiment: ``"substitution"`` or ``"additive"`` (the folder under ``experiments/``).
        condition: the configuration's condition (:mod:`monai_cmri.experiments.composition`).
        fraction: real fraction (substitution) or added synthetic fraction (additive).
        test_set: ``"test"`` (the fastMRI test split) or ``"external"``.
        mean: the paper's AUROC.
        std: its standard deviation over seeds.
        what: the configuration in words.
    """

    figure: str
    section: str
    experiment: str
    condition: str
    fraction: float
    test_set: str
    mean: float
    std: float
    what: str


#: Paper 3.3.1-3.3.2, Figures 6-8: the AUROCs the text states (mean, std over five seeds).
PAPER_FIGURES: tuple[Headline, ...] = (
    Headline("Figure 6", "3.3.1", "substitution", "real", 1.0, "test", 0.842, 0.006, "100 % real (baseline)"),
    Headline("Figure 6", "3.3.1", "substitution", "real+synthetic", 0.0, "test", 0.880, 0.006,
             "0 % real (all synthetic)"),
    Headline("Figure 7", "3.3.1", "substitution", "real", 1.0, "external", 0.815, 0.008, "100 % real (baseline)"),
    Headline("Figure 7", "3.3.1", "substitution", "real+synthetic", 0.0, "external", 0.843, 0.019,
             "0 % real (all synthetic)"),
    Headline("Figure 8a", "3.3.2", "additive", "additive", 0.0, "test", 0.842, 0.006, "nothing added (baseline)"),
    Headline("Figure 8a", "3.3.2", "additive", "additive", 0.8, "test", 0.894, 0.003, "+80 % synthetic (best)"),
    Headline("Figure 8b", "3.3.2", "additive", "additive", 0.0, "external", 0.815, 0.008,
             "nothing added (baseline)"),
    Headline("Figure 8b", "3.3.2", "additive", "additive", 0.9, "external", 0.840, 0.004, "+90 % synthetic (best)"),
)
#: Distributions whose versions :func:`environment` records, by the name the report shows.
PACKAGES: dict[str, str] = {
    "torch": "torch",
    "monai": "monai",
    "pytorch-ignite": "pytorch-ignite",
    "numpy": "numpy",
    "h5py": "h5py",
    "scipy": "scipy",
    "scikit-learn": "scikit-learn",
    "matplotlib": "matplotlib",
    "monai_cmri": "monai_cmri",
    "sigpy": "sigpy",
}
#: The files :func:`write_report` writes into the main-job folder.
REPORT_FILES: tuple[str, str] = ("report.md", "report.html")

# Classes in the order of paper Table 1; the experiments' folders; the chromium executables tried.
_TABLE1_CLASSES = ("abnormal", "normal", "unlabeled")
_EXPERIMENTS = ("real_vs_synthetic", "substitution", "additive")
_DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
_CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--hide-scrollbars")
# The tallest page a screenshot measures to (Chromium's limit on one texture side is 16384).
_MAX_HEIGHT = 16384
_NONE = "—"



@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Code:
    text: str


@dataclass(frozen=True)
class _Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]
    caption: str = ""


@dataclass(frozen=True)
class _Image:
    path: str  # relative to the main-job folder, "/" separated
    caption: str


_Block = Union[_Text, _Code, _Table, _Image, "_Section"]


@dataclass
class _Section:
    title: str
    blocks: list[_Block] = field(default_factory=list)

    def text(self, text: str) -> None:
        self.blocks.append(_Text(text))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None,
              caption: str = "") -> None:
        numeric = tuple(numeric) if numeric is not None else (False,) + (True,) * (len(columns) - 1)
        self.blocks.append(_Table(tuple(columns), tuple(tuple(str(cell) for cell in row) for row in rows),
                                  numeric, caption))



def environment() -> dict[str, Any]:
    """Hardware and package versions of this machine, as ``run.json`` records them.

    Returns:
        ``{"hardware": {"platform", "machine", "cpu", "cpus", "memory_gb", "cuda": [device names]},
        "packages": {"python": version, name: version or None for each of :data:`PACKAGES`}}``; a
        package that is not installed is None, ``cuda`` an empty list without a CUDA device.
    """
    packages: dict[str, str | None] = {"python": platform.python_version()}
    for name, distribution in PACKAGES.items():
        try:
            packages[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            packages[name] = None
    hardware = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "cuda": _cuda_devices(),
    }
    return {"hardware": hardware, "packages": packages}


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float | None:
    """Physical memory in GiB, None where the system does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def _cuda_devices() -> list[str]:
    """Names of the CUDA devices torch sees (none without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]



def _json(path: Path) -> Any | None:
    """A JSON file's content, None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _csv(path: Path) -> list[dict[str, str]] | None:
    """A CSV file's rows, None when it is missing or unreadable."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean_std(mean: Any, std: Any, digits: int) -> str:
    """``mean ± std`` as the paper writes it; the mean alone for a NaN std, a dash for no mean."""
    mean, std = _float(mean), _float(std)
    if math.isnan(mean):
        return _NONE
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def _count(value: int | None) -> str:
    return _NONE if value is None else f"{value:,}"


class _Run:
    """What the report reads of a main-job folder: its ``run.json`` and whether it trained."""

    def __init__(self, root: Path) -> None:
        self.root = root
        record = _json(root / "run.json")
        self.record: dict[str, Any] = record if isinstance(record, dict) else {}
        arguments = self.record.get("arguments")
        self.arguments: dict[str, Any] = arguments if isinstance(arguments, dict) else {}

    def not_run(self, what: str, needs: str) -> str:
        """The sentence of a section that has no inputs: why, as far as the folder tells."""
        if self.arguments.get("train") is False:
            return f"Not run: the run did not train (--notrain), so it has no {what}."
        return f"Not run: {needs} not found in {self.root}."



def _dataset(run: _Run) -> _Section:
    """Volumes per sequence and class, patches per class, sequence and split (paper 2.1, Table 1)."""
    section = _Section("Dataset (paper 2.1, Table 1)")
    manifest = _json(run.root / "patches" / "manifest.json")
    if not isinstance(manifest, dict):
        section.text(f"Not run: patches/manifest.json not found in {run.root}; the paper's Table 1 "
                     f"has {sum(row[3] for row in PAPER_TABLE1.values()):,} patches.")
        return section
    volumes = {name: (entry.get("sequence"), entry.get("class"), entry.get("split"))
               for name, entry in (manifest.get("volumes") or {}).items()}
    # Excluded volumes give no patches and are not in the manifest; the annotations name them.
    kspace = run.root / "kspace"
    if (kspace / "brain.csv").is_file():
        listing = kspace / "brain_file_list.csv"
        try:
            annotations = Annotations.from_csv(kspace / "brain.csv", listing if listing.is_file() else None)
        except (OSError, ValueError) as error:
            section.text(f"The annotations could not be read ({error}); excluded volumes are not counted.")
        else:
            for name in annotations.files:
                if name not in volumes and annotations.volume_class(name) == "excluded":
                    volumes[name] = (sequence_from_name(name), "excluded", None)
    classes = [name for name in CLASSES if name != "excluded"] + ["excluded"]
    rows, totals = [], dict.fromkeys((*classes, "total"), 0)
    for sequence in [*SEQUENCES, *sorted({s for s, _, _ in volumes.values() if s not in SEQUENCES}, key=str)]:
        counts = {name: sum(1 for s, c, _ in volumes.values() if s == sequence and c == name) for name in classes}
        counts["total"] = sum(counts.values())
        if counts["total"]:
            rows.append([sequence or "other", *(_count(counts[name]) for name in (*classes, "total"))])
            for name in totals:
                totals[name] += counts[name]
    rows.append(["total", *(_count(totals[name]) for name in (*classes, "total"))])
    section.text(f"Volumes per sequence and class ({totals['total']} volumes; the paper's fastMRI "
                 f"release has {PAPER_VOLUMES['scans']:,} brain scans, {PAPER_VOLUMES['annotated']:,} of them "
                 "annotated by fastMRI+). Excluded volumes give no patches.")
    section.table(["sequence", *classes, "total"], rows)
    per_split = {split: sum(1 for _, _, s in volumes.values() if s == split) for split in SPLITS}
    section.text("Volumes per split: " + ", ".join(f"{split} {n}" for split, n in per_split.items())
                 + f" (split seed {manifest.get('seed', _NONE)}).")

    table = manifest.get("table") or {}
    ours = {(label, sequence): tuple(int(row.get(split, 0)) for split in (*SPLITS, "total"))
            for label, by_sequence in table.items() for sequence, row in by_sequence.items()}
    labels = [*_TABLE1_CLASSES, *sorted({label for label, _ in ours} - set(_TABLE1_CLASSES))]
    rows = []
    grand_ours, grand_paper = [0, 0, 0, 0], [0, 0, 0, 0]
    for label in labels:
        cells = [(label, s) for s in SEQUENCES if (label, s) in ours or (label, s) in PAPER_TABLE1]
        cells += sorted(cell for cell in ours if cell[0] == label and cell[1] not in SEQUENCES)
        sum_ours, sum_paper = [0, 0, 0, 0], [0, 0, 0, 0]
        for cell in cells:
            mine, paper = ours.get(cell, (0, 0, 0, 0)), PAPER_TABLE1.get(cell)
            rows.append([label, cell[1], *map(_count, mine), *(map(_count, paper) if paper else [_NONE] * 4)])
            sum_ours = [a + b for a, b in zip(sum_ours, mine)]
            sum_paper = [a + b for a, b in zip(sum_paper, paper or (0, 0, 0, 0))]
        if cells:
            rows.append([label, "all", *map(_count, sum_ours), *map(_count, sum_paper)])
            grand_ours = [a + b for a, b in zip(grand_ours, sum_ours)]
            grand_paper = [a + b for a, b in zip(grand_paper, sum_paper)]
    rows.append(["total", "", *map(_count, grand_ours), *map(_count, grand_paper)])
    section.text("Patches per class, sequence and split (Table 1 layout), ours beside the paper's:")
    section.table(["class", "sequence", "train", "val", "test", "total",
                   "paper train", "paper val", "paper test", "paper total"], rows,
                  numeric=(False, False) + (True,) * 8)
    return section


def _autoencoder(run: _Run) -> _Section:
    """Per-sequence reconstruction quality on the test split (paper 3.1, Table 3)."""
    section = _Section("Autoencoder (paper 3.1, Table 3)")
    rows = _csv(run.root / "cvae" / "reconstruction.csv")
    if rows is None:
        section.text(run.not_run("cvae evaluation", "cvae/reconstruction.csv"))
        return section
    ours = {row.get("sequence", ""): row for row in rows}
    table = []
    # The paper's precision: coherence 4 decimals, SSIM 3, PSNR 1.
    digits = {"coherence": 4, "ssim": 3, "psnr": 1}
    order = [*(s for s in SEQUENCES if s in ours or s in PAPER_TABLE3), *(s for s in ours if s not in SEQUENCES)]
    for sequence in order:
        row, paper = ours.get(sequence), PAPER_TABLE3.get(sequence)
        if row:
            mine = [_mean_std(row.get(name), row.get(f"{name}_std"), d) for name, d in digits.items()]
            mine.append(row.get("n", ""))
        else:
            mine = ["not in the test split", _NONE, _NONE, _NONE]
        theirs = [_mean_std(mean, std, d) for (mean, std), d in zip(paper, digits.values())] if paper else [_NONE] * 3
        table.append([sequence, *mine, *theirs])
    section.text("Phase coherence, magnitude SSIM and magnitude PSNR (dB) per sequence, mean ± std over the "
                 "test patches, ours beside the paper's:")
    section.table(["sequence", "coherence", "SSIM", "PSNR (dB)", "n", "paper coherence", "paper SSIM",
                   "paper PSNR (dB)"], table)
    return section


def _sheets(run: _Run) -> _Section:
    """The figures and sample sheets (paper Figures 2-5)."""
    section = _Section("Figures and sample sheets (paper Figures 2-5)")
    figures = run.root / "figures"
    volumes = [figures / f"{sequence}.png" for sequence in SEQUENCES if (figures / f"{sequence}.png").is_file()]
    volumes += sorted(path for path in figures.glob("*.png")
                      if path.stem not in SEQUENCES and path.name != "patches.png")
    sub = _Section("Volumes: magnitude, phase and boxes of one volume per sequence")
    if volumes:
        for path in volumes:
            sub.blocks.append(_Image(_relative(path, run.root), path.stem))
    else:
        sub.text(f"Not run: no figures/<SEQUENCE>.png in {run.root}.")
    section.blocks.append(sub)
    sheets = [
        ("Figure 2: training patches, normal and abnormal", "figures/patches.png", "training patches"),
        ("Figure 3: cvae reconstructions (original, reconstruction, difference)", "cvae/reconstruction.png",
         "cvae reconstructions"),
        ("Figure 4: flow stage 1, synthetic and real patches per sequence", "flow_stage1/samples.png",
         "flow_stage1 samples"),
        ("Figure 5: flow stage 2, synthetic normal and abnormal patches", "flow_stage2/samples.png",
         "flow_stage2 samples"),
    ]
    for title, path, caption in sheets:
        sub = _Section(title)
        if (run.root / path).is_file():
            sub.blocks.append(_Image(path, caption))
        elif path.startswith("figures/"):
            sub.text(f"Not run: {path} not found (a training split without patches draws no sheet).")
        else:
            sub.text(run.not_run(caption, path))
        section.blocks.append(sub)
    return section


def _selection(run: _Run) -> _Section:
    """Which kept checkpoint of each flow stage samples (paper 2.4.3)."""
    section = _Section("Model selection (paper 2.4.3)")
    for stage in ("flow_stage1", "flow_stage2"):
        sub = _Section(stage)
        folder = run.root / stage
        record = _json(folder / "selection.json")
        if isinstance(record, dict) and record.get("candidates"):
            sub.text(f"Criterion: {record.get('criterion', _NONE)}.")
            chosen = (record.get("selected") or {}).get("sha256")
            rows = [[Path(str(entry.get("path", ""))).name, _NONE if entry.get("epoch") is None else entry["epoch"],
                     _mean_std(entry.get("mean_auroc"), entry.get("std_auroc"), 3), len(entry.get("runs") or ()),
                     "yes" if entry.get("sha256") == chosen else ""]
                    for entry in record["candidates"]]
            sub.table(["checkpoint", "epoch", "validation AUROC", "runs", "selected"], rows,
                      numeric=(False, True, True, True, False))
        elif (folder / "selection.md").is_file():
            sub.blocks.append(_Code((folder / "selection.md").read_text(encoding="utf-8").strip()))
        else:
            sub.text(run.not_run(f"{stage} selection", f"{stage}/selection.json"))
        section.blocks.append(sub)
    return section


def _real_vs_synthetic(run: _Run) -> _Section:
    """Real against synthetic latents per sequence (paper 3.2, Table 4)."""
    section = _Section("Real vs synthetic latents (paper 3.2, Table 4)")
    rows = _csv(run.root / "experiments" / "real_vs_synthetic" / "summary.csv")
    if rows is None:
        section.text(run.not_run("classifier experiments", "experiments/real_vs_synthetic/summary.csv"))
        return section
    # The summary has a sequence column only when its rows differ in it (one sequence: no column).
    ours = {row.get("sequence") or "all": row for row in rows}
    order = [*(s for s in SEQUENCES if s in ours or s in PAPER_TABLE4), *(s for s in ours if s not in SEQUENCES)]
    table = []
    for sequence in order:
        row, paper = ours.get(sequence), PAPER_TABLE4.get(sequence)
        table.append([sequence, _mean_std(row["mean"], row["std"], 3) if row else "not run", row["n"] if row else "",
                      _mean_std(*paper, 3) if paper else _NONE])
    section.text("AUROC of a classifier of real against synthetic latents (0.5: indistinguishable), mean ± std "
                 "over seeds and synthetic test sets, ours beside the paper's:")
    section.table(["sequence", "AUROC", "n", "paper AUROC"], table)
    return section


def _downstream(run: _Run) -> _Section:
    """Substitution and additive experiments (paper 3.3, Figures 6-8)."""
    section = _Section("Substitution and additive experiments (paper 3.3, Figures 6-8)")
    summaries = {name: _csv(run.root / "experiments" / name / "summary.csv") for name in ("substitution", "additive")}
    if all(rows is None for rows in summaries.values()):
        section.text(run.not_run("classifier experiments", "experiments/substitution/summary.csv and "
                                 "experiments/additive/summary.csv"))
        return section
    rows = []
    for headline in PAPER_FIGURES:
        found = _lookup(summaries.get(headline.experiment), headline)
        ours = (_mean_std(found["mean"], found["std"], 3) if found else
                "not run" if summaries.get(headline.experiment) is None else "not in this run's grid")
        rows.append([headline.figure, headline.what, "fastMRI" if headline.test_set == "test" else headline.test_set,
                     ours, _mean_std(headline.mean, headline.std, 3)])
    section.text("Downstream normal-vs-abnormal AUROC of the configurations the paper states, ours beside the paper's "
                 "(test set 'fastMRI': the real test split; 'external': the external set, where the run had one):")
    section.table(["figure", "configuration", "test set", "AUROC", "paper AUROC"], rows,
                  numeric=(False, False, False, True, True))
    titles = {"substitution": "Substitution: real data replaced by synthetic (Figures 6, 7)",
              "additive": "Additive: synthetic data added to all real data (Figure 8)"}
    for name, summary in summaries.items():
        sub = _Section(titles[name])
        if summary is None:
            sub.text(run.not_run(f"{name} experiment", f"experiments/{name}/summary.csv"))
        else:
            columns = [name for name in (summary[0] if summary else ()) if name not in ("n", "mean", "std")]
            rows = [[*(row[name] for name in columns), _mean_std(row["mean"], row["std"], 3), row["n"]]
                    for row in summary]
            sub.table([*columns, "AUROC", "n"], rows, numeric=(False,) * len(columns) + (True, True))
            figure = run.root / "experiments" / name / f"{name}.png"
            if figure.is_file():
                sub.blocks.append(_Image(_relative(figure, run.root), f"{name} AUROC"))
            else:
                sub.text(f"No figure: {_relative(figure, run.root)} not found.")
        section.blocks.append(sub)
    return section


def _lookup(rows: list[dict[str, str]] | None, headline: Headline) -> dict[str, str] | None:
    """Our summary row of a headline's configuration; a column the summary leaves out (because all
    its rows agree in it) matches, except a missing test set, which is the real test split."""
    for row in rows or ():
        if "condition" in row and row["condition"] != headline.condition:
            continue
        if "fraction" in row and not math.isclose(_float(row["fraction"]), headline.fraction):
            continue
        if (row.get("test_set") or "test") != headline.test_set:
            continue
        return row
    return None


def _run_section(run: _Run) -> _Section:
    """Arguments, seed, stage timings, hardware and package versions of the run (``run.json``)."""
    section = _Section("Run")
    record = run.record
    if not record:
        section.text(f"Not recorded: run.json not found in {run.root}.")
        return section
    arguments = run.arguments
    profile = arguments.get("profile")
    name = profile.get("name", _NONE) if isinstance(profile, dict) else profile or _NONE
    started, finished, running = record.get("started"), record.get("finished"), record.get("running")
    if finished:
        end = f"finished {finished}"
    elif running:
        end = f"not finished when this report was written, during the stage {running!r}"
    else:
        end = "not finished"
    attempts = record.get("attempts")
    section.text(f"Profile {name}, seed {arguments.get('seed', _NONE)}; started {started or _NONE}, {end}"
                 + (f" ({attempts} attempt{'s' if attempts != 1 else ''})." if attempts else "."))
    if run.arguments:
        shown = {key: (value.get("name", _NONE) if key == "profile" and isinstance(value, dict) else value)
                 for key, value in run.arguments.items()}
        section.table(["argument", "value"], [[key, json.dumps(value)] for key, value in shown.items()],
                      numeric=(False, False))
    if isinstance(profile, dict):
        rows = []
        for key, value in profile.items():
            if key == "name":
                continue
            if isinstance(value, dict) and value:
                rows += [[f"{key}.{inner}", json.dumps(item)] for inner, item in value.items()]
            else:
                rows.append([key, json.dumps(value)])
        section.text(f"Profile {name} (seeds, grids and bundle overrides of the run):")
        section.table(["setting", "value"], rows, numeric=(False, False))
    stages = [stage for stage in record.get("stages") or () if isinstance(stage, dict)]
    if stages:
        rows = [[stage.get("name", ""), f"{_float(stage.get('seconds')):.1f}", "yes" if stage.get("resumed") else ""]
                for stage in stages]
        rows.append(["total", f"{sum(_float(stage.get('seconds')) for stage in stages):.1f}", ""])
        section.table(["stage", "seconds", "resumed"], rows, numeric=(False, True, False))
    else:
        section.text("No stage timings recorded.")
    recorded = record.get("environment") or {}
    hardware, packages = recorded.get("hardware") or {}, recorded.get("packages") or {}
    sub = _Section("Hardware and packages")
    if hardware:
        cuda = hardware.get("cuda")
        sub.table(["hardware", ""], [
            ["platform", hardware.get("platform", _NONE)],
            ["CPU", f"{hardware.get('cpu', _NONE)} ({hardware.get('cpus', _NONE)} CPUs)"],
            ["memory", f"{hardware['memory_gb']} GiB" if hardware.get("memory_gb") is not None else _NONE],
            ["CUDA devices", ", ".join(cuda) if cuda else "none"],
        ], numeric=(False, False))
    if packages:
        sub.table(["package", "version"], [[name, version or "not installed"] for name, version in packages.items()],
                  numeric=(False, False))
    if not hardware and not packages:
        sub.text("Not recorded: run.json has no environment.")
    section.blocks.append(sub)
    return section


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()



def _markdown(title: str, sections: Sequence[_Section]) -> str:
    lines = [f"# {title}", ""]

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def emit(block: _Block, level: int) -> None:
        if isinstance(block, _Section):
            lines.extend([f"{'#' * level} {block.title}", ""])
            for inner in block.blocks:
                emit(inner, level + 1)
        elif isinstance(block, _Text):
            lines.extend([block.text, ""])
        elif isinstance(block, _Code):
            lines.extend(["```", block.text, "```", ""])
        elif isinstance(block, _Image):
            lines.extend([f"![{block.caption}]({block.path})", ""])
        else:
            lines.append("| " + " | ".join(cell(c) for c in block.columns) + " |")
            lines.append("|" + "".join("---:|" if n else "---|" for n in block.numeric))
            lines.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in block.rows)
            lines.append("")

    for section in sections:
        emit(section, 2)
    return "\n".join(lines)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #1b1f24; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f3f5f7; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6e8; }
figcaption { color: #57606a; font-size: 13px; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
""".strip()


def _html(title: str, sections: Sequence[_Section], root: Path) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>",
             f"<h1>{escape(title)}</h1>"]

    def emit(block: _Block, level: int) -> None:
        if isinstance(block, _Section):
            parts.append(f"<h{min(level, 6)}>{escape(block.title)}</h{min(level, 6)}>")
            for inner in block.blocks:
                emit(inner, level + 1)
        elif isinstance(block, _Text):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, _Code):
            parts.append(f"<pre>{escape(block.text)}</pre>")
        elif isinstance(block, _Image):
            data = base64.b64encode((root / block.path).read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{escape(block.caption)}">'
                         f"<figcaption>{escape(block.caption)} ({escape(block.path)})</figcaption></figure>")
        else:
            numeric_class = ' class="num"'

            def row(cells: Sequence[str], tag: str) -> str:
                return "<tr>" + "".join(f'<{tag}{numeric_class if numeric else ""}>{escape(text)}</{tag}>'
                                        for text, numeric in zip(cells, block.numeric)) + "</tr>"

            parts.append("<table>")
            parts.append("<thead>" + row(block.columns, "th") + "</thead>")
            parts.append("<tbody>" + "".join(row(cells, "td") for cells in block.rows) + "</tbody>")
            parts.append("</table>")

    for section in sections:
        emit(section, 2)
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``out/report.md`` and ``out/report.html`` from a main-job folder, atomically.

    Reads what the folder holds (module docstring); a section whose inputs are missing says
    "not run". ``report.md`` links the images relative to ``out``; ``report.html`` embeds them as
    base64 data URIs, with inline CSS and no scripts or external references, so it can be moved
    and opened anywhere.

    Args:
        out: the main job's output folder (:func:`monai_cmri.pipeline.run_pipeline`).

    Returns:
        ``(report.md, report.html)``.

    Raises:
        FileNotFoundError: when ``out`` is not a folder.
    """
    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder; run the main job (pipeline --out {root}) first")
    run = _Run(root)
    title = f"monai_cmri report: {root.resolve().name}"
    sections = [_dataset(run), _autoencoder(run), _sheets(run), _selection(run), _real_vs_synthetic(run),
                _downstream(run), _run_section(run)]
    markdown = write_text(root / REPORT_FILES[0], _markdown(title, sections))
    page = write_text(root / REPORT_FILES[1], _html(title, sections, root))
    return markdown, page



def find_chromium() -> Path:
    """The Chromium executable: ``/usr/bin/chromium``, else the first of ``chromium``,
    ``chromium-browser``, ``google-chrome`` on ``PATH``.

    Raises:
        FileNotFoundError: when none is installed; the message says how to install it.
    """
    if os.access(_DEFAULT_CHROMIUM, os.X_OK):
        return _DEFAULT_CHROMIUM
    for name in _CHROMIUM:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise FileNotFoundError(
        "Chromium not found (/usr/bin/chromium or chromium on PATH); install it, e.g. apt-get install chromium"
    )


def chromium_command(user_data_dir: str | os.PathLike[str], *arguments: str) -> list[str]:
    """A headless Chromium command line that touches nothing outside ``user_data_dir`` and the network.

    Args:
        user_data_dir: a fresh, empty folder for the browser profile.
        arguments: further flags and the URL.
    """
    return [str(find_chromium()), *_CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", *arguments]


def _run_chromium(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Chromium did not finish within {timeout:.0f} s: {' '.join(command)}") from None
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"Chromium failed with exit status {result.returncode}: {tail}")
    return result


def _page_height(html_path: Path, width: int, timeout: float) -> int:
    """The rendered height of a page at ``width`` pixels, measured by a copy of it with a script."""
    probe = ("<script>window.addEventListener('load', () => document.body.setAttribute("
             "'data-page-height', String(document.documentElement.scrollHeight)));</script>")
    with tempfile.TemporaryDirectory(prefix="monai_cmri_chromium_") as folder:
        copy = Path(folder) / "page.html"
        text = html_path.read_text(encoding="utf-8")
        copy.write_text(text.replace("</body>", probe + "</body>", 1) if "</body>" in text else text + probe,
                        encoding="utf-8")
        result = _run_chromium(chromium_command(Path(folder) / "profile", f"--window-size={width},800",
                                                "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()), timeout)
    marker = 'data-page-height="'
    start = result.stdout.find(marker)
    if start < 0:
        raise RuntimeError(f"{html_path}: Chromium did not report the page height")
    return int(result.stdout[start + len(marker):].split('"', 1)[0])


def screenshot(
    html: str | os.PathLike[str],
    png: str | os.PathLike[str],
    width: int = 1200,
    height: int | None = None,
    timeout: float = 120.0,
) -> Path:
    """Render an HTML file with headless Chromium and write a PNG screenshot of it, atomically.

    Args:
        html: the HTML file (e.g. ``report.html``).
        png: the PNG to write.
        width: window width, pixels.
        height: window height, pixels; None measures the whole page (up to 16384 pixels).
        timeout: seconds each Chromium run may take.

    Returns:
        ``png``.

    Raises:
        FileNotFoundError: when the HTML file or Chromium is missing.
        ValueError: for a width or height below 1.
        RuntimeError: when Chromium fails or writes no image.
    """
    html_path, png = Path(html).resolve(), Path(png)
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path}: not found")
    if width < 1 or (height is not None and height < 1):
        raise ValueError(f"screenshot: width and height must be at least 1 pixel, got {width} x {height}")
    find_chromium()
    if height is None:
        height = max(1, min(_page_height(html_path, width, timeout), _MAX_HEIGHT))
    with tempfile.TemporaryDirectory(prefix="monai_cmri_chromium_") as folder:
        shot = Path(folder) / "screenshot.png"
        _run_chromium(chromium_command(Path(folder) / "profile", f"--window-size={width},{height}",
                                       "--virtual-time-budget=10000", f"--screenshot={shot}", html_path.as_uri()),
                      timeout)
        if not shot.is_file():
            raise RuntimeError(f"Chromium wrote no screenshot of {html_path}")
        data = shot.read_bytes()
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(png, "wb", needed=len(data)) as handle:
        handle.write(data)
    return png
