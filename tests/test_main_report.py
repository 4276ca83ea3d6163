"""The main job's report: tables beside the paper's, "not run" sections, self-contained HTML, Chromium rendering."""

from __future__ import annotations

import base64
import os
import re
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from monai_cmri import report
from monai_cmri.__main__ import main
from monai_cmri.atomic import write_json
from monai_cmri.engines.report import write_reconstruction_table
from monai_cmri.experiments.composition import ADDITIVE, REAL_ONLY, REAL_SYNTHETIC
from monai_cmri.experiments.plots import additive_figure, substitution_figure
from monai_cmri.experiments.tables import write_table
from monai_cmri.simulate import Annotation, write_annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Four volumes in the manifest and one excluded volume that only the annotations name.
VOLUMES = {
    "file_brain_AXFLAIR_201_6000000": ("AXFLAIR", "abnormal", "train"),
    "file_brain_AXFLAIR_201_6000001": ("AXFLAIR", "normal", "val"),
    "file_brain_AXT1_202_6000002": ("AXT1", "abnormal", "test"),
    "file_brain_AXT2_200_6000003": ("AXT2", "unlabeled", "train"),
}
EXCLUDED = "file_brain_AXT1POST_201_6000004"
PATCHES = {
    "abnormal": {"AXFLAIR": {"train": 12, "val": 0, "test": 0, "total": 12},
                 "AXT1": {"train": 0, "val": 0, "test": 5, "total": 5}},
    "normal": {"AXFLAIR": {"train": 7, "val": 3, "test": 0, "total": 10}},
    "unlabeled": {"AXT2": {"train": 1234, "val": 0, "test": 0, "total": 1234}},
}
STAGES = [{"name": "simulate + preprocess", "seconds": 61.25, "resumed": False},
          {"name": "merge", "seconds": 2.5, "resumed": True}]


def _png(path: Path, value: float = 0.5) -> None:
    import matplotlib.image

    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, np.full((6, 10), value), cmap="gray", vmin=0, vmax=1)


def _dataset(root: Path, train: bool) -> None:
    """What every main-job folder has: annotations, the manifest, the volume figures, run.json."""
    (root / "kspace").mkdir(parents=True)
    rows = [Annotation("file_brain_AXFLAIR_201_6000000", 1, False, 10, 20, 30, 40, "Mass"),
            Annotation("file_brain_AXFLAIR_201_6000001", 0, True, None, None, None, None, "Normal for age"),
            Annotation("file_brain_AXT1_202_6000002", 2, False, 5, 6, 7, 8, "Nonspecific lesion"),
            Annotation(EXCLUDED, 0, True, None, None, None, None, "Possible artifact")]
    write_annotations(root / "kspace", rows, [row.file for row in rows])
    manifest = {"seed": 3, "volumes": {name: {"class": c, "sequence": s, "split": split, "key": "k"}
                                       for name, (s, c, split) in VOLUMES.items()},
                "patches": {"train": 1253, "val": 3, "test": 5}, "table": PATCHES, "rules": {}, "version": 1,
                "sources": [str(root / "patches")]}
    (root / "patches").mkdir()
    write_json(root / "patches" / "manifest.json", manifest)
    for name in ("AXFLAIR", "AXT1", "AXT2", "patches"):
        _png(root / "figures" / f"{name}.png")
    # run.json as the main job writes it (monai_cmri.pipeline.RunRecord): the profile described in full.
    profile = {"name": "demo", "bundle_profile": "cpu", "bundle_overrides": {},
               "grid": {"seeds": [0, 1], "test_sets": 1, "substitution_fractions": [0.0, 1.0]}}
    arguments = {"profile": profile, "volumes": 27, "seed": 3, "slices": 8, "coils": None, "keep_kspace": False,
                 "train": train}
    write_json(root / "run.json", {
        "format": 1, "profile": profile, "arguments": arguments, "seed": 3, "started": "2025-01-02T03:04:05+00:00",
        "finished": "2025-01-02T03:14:05+00:00" if train else None, "running": None if train else "report",
        "attempts": 2, "stages": STAGES, "environment": report.environment()})


def _trained(root: Path) -> None:
    """The outputs of the bundles and experiments, written by their own writers."""
    _dataset(root, train=True)
    table = {"AXFLAIR": {"coherence": 0.99123, "coherence_std": 0.00214, "ssim": 0.8761, "ssim_std": 0.0412,
                         "psnr": 29.87, "psnr_std": 1.93, "n": 17},
             "AXT2": {"coherence": 0.98, "coherence_std": 0.01, "ssim": 0.8, "ssim_std": 0.05, "psnr": 27.04,
                      "psnr_std": 2.0, "n": 4}}
    (root / "cvae").mkdir()
    write_reconstruction_table(table, root / "cvae" / "reconstruction.csv", root / "cvae" / "reconstruction.md")
    for path in (root / "cvae" / "reconstruction.png", root / "flow_stage1" / "samples.png",
                 root / "flow_stage2" / "samples.png"):
        _png(path)
    candidates = [{"path": str(root / "flow_stage1" / "models" / f"epoch_{e}.pt"), "sha256": f"sha{e}", "epoch": e,
                   "runs": [{"sequence": "AXFLAIR", "seed": 0, "auroc": a}], "mean_auroc": a, "std_auroc": 0.0}
                  for e, a in ((2, 0.7312), (4, 0.5871))]
    write_json(root / "flow_stage1" / "selection.json", {
        "criterion": "lowest real-vs-synthetic validation AUROC", "candidates": candidates,
        "selected": {key: candidates[1][key] for key in ("path", "sha256", "epoch", "mean_auroc")}})
    experiments = root / "experiments"
    write_table([{"sequence": "AXFLAIR", "n": 4, "mean": 0.6123, "std": 0.0204},
                 {"sequence": "AXT2", "n": 4, "mean": 0.5, "std": float("nan")}],
                experiments / "real_vs_synthetic" / "summary")
    substitution = [
        {"condition": REAL_ONLY, "fraction": 1.0, "test_set": "test", "n": 1, "mean": 0.7777, "std": float("nan")},
        {"condition": REAL_SYNTHETIC, "fraction": 0.0, "test_set": "test", "n": 1, "mean": 0.8111, "std": float("nan")},
        {"condition": REAL_ONLY, "fraction": 1.0, "test_set": "external", "n": 1, "mean": 0.6001, "std": float("nan")},
        {"condition": REAL_SYNTHETIC, "fraction": 0.0, "test_set": "external", "n": 1, "mean": 0.6502,
         "std": float("nan")},
    ]
    write_table(substitution, experiments / "substitution" / "summary")
    substitution_figure(substitution, experiments / "substitution" / "substitution.png")
    # One test set and one condition: the summary leaves both columns out, as the experiments write it.
    additive = [{"condition": ADDITIVE, "fraction": f, "test_set": "test", "n": 2, "mean": m, "std": 0.01}
                for f, m in ((0.0, 0.7777), (1.0, 0.8333))]
    write_table(additive, experiments / "additive" / "summary")
    additive_figure(additive, experiments / "additive" / "additive.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    _trained(root)
    report.write_report(root)
    return root


@pytest.fixture(scope="module")
def notrain(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("notrain")
    _dataset(root, train=False)
    report.write_report(root)
    return root


def _section(markdown: str, title: str) -> str:
    """The text of the ``##`` section whose title starts with ``title``."""
    match = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", markdown, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r}"
    return match.group(0)


def test_dataset_counts_beside_table_1(trained):
    text = _section((trained / "report.md").read_text(), "Dataset")
    # Volumes per sequence and class: abnormal, normal, unlabeled, excluded, total.
    assert "| AXFLAIR | 1 | 1 | 0 | 0 | 2 |" in text
    assert "| AXT1POST | 0 | 0 | 0 | 1 | 1 |" in text  # excluded: only in the annotations
    assert "| total | 2 | 1 | 1 | 1 | 5 |" in text
    assert "Volumes per split: train 2, val 1, test 1 (split seed 3)." in text
    assert "| abnormal | AXFLAIR | 12 | 0 | 0 | 12 | 4,720 | 1,173 | 1,503 | 7,396 |" in text
    assert "| abnormal | AXT1POST | 0 | 0 | 0 | 0 | 2,022 | 256 | 475 | 2,753 |" in text
    assert "| abnormal | all | 12 | 0 | 5 | 17 | 10,101 | 1,805 | 2,355 | 14,261 |" in text
    assert "| unlabeled | AXT2 | 1,234 | 0 | 0 | 1,234 | 25,460 | 600 | 720 | 26,780 |" in text
    assert "| total |  | 1,253 | 3 | 5 | 1,261 | 58,956 | 5,584 | 6,254 | 70,794 |" in text


def test_tables_3_and_4_and_the_figures_headlines_beside_the_paper(trained):
    markdown = (trained / "report.md").read_text()
    cvae = _section(markdown, "Autoencoder")
    assert ("| AXFLAIR | 0.9912 ± 0.0021 | 0.876 ± 0.041 | 29.9 ± 1.9 | 17 "
            "| 0.9984 ± 0.0013 | 0.955 ± 0.018 | 35.8 ± 2.3 |") in cvae
    missing = "| AXT1PRE | not in the test split | — | — | — | 0.9986 ± 0.0009 | 0.930 ± 0.035 | 35.0 ± 2.9 |"
    assert missing in cvae
    table4 = _section(markdown, "Real vs synthetic")
    assert "| AXFLAIR | 0.612 ± 0.020 | 4 | 0.635 ± 0.030 |" in table4
    assert "| AXT2 | 0.500 | 4 | 0.653 ± 0.014 |" in table4
    assert "| AXT1 | not run |  | 0.640 ± 0.026 |" in table4
    downstream = _section(markdown, "Substitution and additive")
    assert "| Figure 6 | 100 % real (baseline) | fastMRI | 0.778 | 0.842 ± 0.006 |" in downstream
    assert "| Figure 6 | 0 % real (all synthetic) | fastMRI | 0.811 | 0.880 ± 0.006 |" in downstream
    assert "| Figure 7 | 0 % real (all synthetic) | external | 0.650 | 0.843 ± 0.019 |" in downstream
    assert "| Figure 8a | nothing added (baseline) | fastMRI | 0.778 ± 0.010 | 0.842 ± 0.006 |" in downstream
    assert "| Figure 8a | +80 % synthetic (best) | fastMRI | not in this run's grid | 0.894 ± 0.003 |" in downstream
    assert "| Figure 8b | nothing added (baseline) | external | not in this run's grid | 0.815 ± 0.008 |" in downstream
    assert "![substitution AUROC](experiments/substitution/substitution.png)" in downstream
    assert "![additive AUROC](experiments/additive/additive.png)" in downstream
    selection = _section(markdown, "Model selection")
    assert "Criterion: lowest real-vs-synthetic validation AUROC." in selection
    assert "| epoch_4.pt | 4 | 0.587 ± 0.000 | 1 | yes |" in selection and "| epoch_2.pt | 2 | 0.731" in selection
    assert "### flow_stage2" in selection and "Not run: flow_stage2/selection.json not found" in selection


def test_run_parameters_timings_and_environment(trained):
    text = _section((trained / "report.md").read_text(), "Run")
    assert ("Profile demo, seed 3; started 2025-01-02T03:04:05+00:00, finished 2025-01-02T03:14:05+00:00 "
            "(2 attempts).") in text
    assert '| profile | "demo" |' in text and "| grid.seeds | [0, 1] |" in text
    assert '| bundle_profile | "cpu" |' in text
    assert "| volumes | 27 |" in text and "| train | true |" in text and "| coils | null |" in text
    assert "| simulate + preprocess | 61.2 |  |" in text and "| merge | 2.5 | yes |" in text
    assert "| total | 63.8 |  |" in text
    environment = report.environment()
    assert f"| torch | {environment['packages']['torch']} |" in text
    assert f"| python | {environment['packages']['python']} |" in text
    assert f"{environment['hardware']['cpus']} CPUs" in text


def test_notrain_sections_say_not_run(notrain):
    markdown = (notrain / "report.md").read_text()
    assert "| abnormal | AXFLAIR | 12 |" in _section(markdown, "Dataset")
    for title in ("Autoencoder", "Model selection", "Real vs synthetic", "Substitution and additive"):
        assert "Not run: the run did not train (--notrain)" in _section(markdown, title), title
    sheets = _section(markdown, "Figures and sample sheets")
    assert "![training patches](figures/patches.png)" in sheets and "![AXT1](figures/AXT1.png)" in sheets
    assert sheets.count("Not run: the run did not train (--notrain)") == 3  # Figures 3, 4, 5
    assert "not finished when this report was written, during the stage 'report' (2 attempts)." in markdown
    assert "<h2>Autoencoder (paper 3.1, Table 3)</h2>" in (notrain / "report.html").read_text()


def test_an_empty_folder_reports_every_section_missing(tmp_path):
    markdown, page = report.write_report(tmp_path)
    text = markdown.read_text()
    assert text.count("Not run:") >= 9 and "Not recorded: run.json not found" in text
    assert "<img" not in page.read_text()
    with pytest.raises(FileNotFoundError, match="not a folder"):
        report.write_report(tmp_path / "missing")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_html_is_self_contained_and_every_image_is_an_embedded_png(trained):
    page = (trained / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    markup = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]*"', "", page)  # base64 holds "/"
    for external in ("http:", "https:", "//", "src=", "href=", "<script", "<link", "url(", "@import", "<iframe",
                     "<object", "<embed"):
        assert external not in markup, external
    assert len(sources) == len(re.findall(r"<img ", page)) == 9
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        width, height = _png_size(base64.b64decode(source[len(prefix):], validate=True))
        assert width > 0 and height > 0
    # The Markdown links the same images, relative to the folder.
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", (trained / "report.md").read_text())
    assert len(links) == 9 and all(not Path(link).is_absolute() and (trained / link).is_file() for link in links)
    assert '<td class="num">4,720</td>' in page and "<th>class</th>" in page


def test_report_command_writes_both_files(trained, capsys):
    for name in report.REPORT_FILES:
        (trained / name).unlink()
    main(["report", "--run", str(trained)])
    printed = capsys.readouterr().out.split()
    assert printed == [str(trained / name) for name in report.REPORT_FILES]
    assert all((trained / name).is_file() for name in report.REPORT_FILES)
    assert not list(trained.glob(".*.tmp"))
    with pytest.raises(SystemExit) as stopped:
        main(["report", "--run", str(trained / "missing")])
    assert stopped.value.code == 2 and "not a folder" in capsys.readouterr().err


def test_missing_chromium_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_DEFAULT_CHROMIUM", tmp_path / "chromium")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Chromium not found.*apt-get install chromium"):
        report.find_chromium()
    page = tmp_path / "page.html"
    page.write_text("<html><body></body></html>")
    with pytest.raises(FileNotFoundError, match="Chromium not found"):
        report.screenshot(page, tmp_path / "page.png")


def _require_chromium() -> Path:
    try:
        return report.find_chromium()
    except FileNotFoundError as error:
        if os.environ.get("MONAI_CMRI_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"MONAI_CMRI_REQUIRE_CHROMIUM=1 but {error}")
        pytest.skip(f"headless rendering needs Chromium: {error} (MONAI_CMRI_REQUIRE_CHROMIUM=1 makes this a failure)")


def test_chromium_loads_every_image_of_the_report(trained, tmp_path):
    _require_chromium()
    probe = ("<script>window.addEventListener('load', () => { const images = Array.from(document.images); "
             "document.body.setAttribute('data-images', images.length + '/' + "
             "images.filter(image => image.complete && image.naturalWidth > 0).length); });</script>")
    copy = tmp_path / "probe.html"
    copy.write_text((trained / "report.html").read_text().replace("</body>", probe + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        command = report.chromium_command(profile, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
        dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    match = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert match, dom[:500]
    assert match.group(1) == match.group(2) == "9"


def test_screenshot_renders_the_whole_page(trained, tmp_path):
    _require_chromium()
    png = report.screenshot(trained / "report.html", tmp_path / "shots" / "report.png", width=900)
    width, height = _png_size(png.read_bytes())
    assert width == 900 and height > 2000  # the measured page, far taller than one screen
