"""Tests of the VAE handlers, output transforms and the evaluation report (paper Table 3, Figure 3)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from torch import nn

from monai_cmri.data.dataset import PatchDataset, write_patches
from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.engines import (
    TABLE_COLUMNS,
    CVAEEvalStep,
    ReconstructionReport,
    SampleAverage,
    StopOnNonFinite,
    magnitudes,
    markdown_table,
    prepare_cvae_batch,
    reconstruction_figure,
    write_reconstruction_table,
)

SIZE = 16
SCALE = 0.9


class Scaled(nn.Module):
    """A stand-in VAE whose reconstruction is ``SCALE * x``: coherence 1, PSNR known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, sequence: torch.Tensor):
        z = torch.zeros(x.shape[0], 2, x.shape[2] // 2, x.shape[3] // 2)
        return SCALE * x * self.weight, z, z


def phantoms(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE] / SIZE - 0.5
    out = []
    for _ in range(n):
        mag = np.exp(-((y - rng.uniform(-0.1, 0.1)) ** 2 + x**2) / (2 * rng.uniform(0.2, 0.3) ** 2))
        z = mag * np.exp(1j * (rng.uniform(-np.pi, np.pi) + 2 * x))
        out.append(np.stack([z.real, z.imag]))
    return np.asarray(out, dtype=np.float32)


@pytest.fixture
def test_set(tmp_path):
    sequences = ["AXT2", "AXFLAIR", "AXFLAIR", "AXT2", "AXFLAIR"]
    labels = ["unlabeled", "normal", "abnormal", "unlabeled", "normal"]
    n = len(sequences)
    patches = phantoms(n)
    columns = {
        "file": [f"v{i}" for i in range(n)],
        "slice": np.arange(n),
        "row": np.zeros(n, int),
        "col": np.zeros(n, int),
        "sequence": sequences,
        "label": labels,
        "overlap": np.zeros(n),
    }
    write_patches(tmp_path / "test.h5", patches, columns)
    return PatchDataset(tmp_path / "test.h5"), patches, sequences


def run_report(dataset, out_dir, **kwargs) -> ReconstructionReport:
    report = ReconstructionReport(out_dir, **kwargs)
    engine = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(dataset, batch_size=2, shuffle=False),
        network=Scaled(),
        prepare_batch=prepare_cvae_batch,
        iteration_update=CVAEEvalStep(),
        val_handlers=[report],
        decollate=False,
    )
    engine.run()
    return report


def test_report_table_matches_closed_form_values(test_set, tmp_path):
    dataset, patches, sequences = test_set
    report = run_report(dataset, tmp_path / "report", diff_max=0.05)
    # Rows follow SEQUENCES order, one per sequence present, with its patch count.
    assert list(report.table) == ["AXFLAIR", "AXT2"]
    assert [report.table[s]["n"] for s in report.table] == [3, 2]
    magnitude = np.hypot(patches[:, 0], patches[:, 1])
    psnr = 10 * np.log10(1.0 / np.mean(((1 - SCALE) * magnitude) ** 2, axis=(1, 2)))
    for name in report.table:
        chosen = [i for i, s in enumerate(sequences) if s == name]
        assert report.table[name]["coherence"] == pytest.approx(1.0, abs=1e-9)
        assert report.table[name]["psnr"] == pytest.approx(psnr[chosen].mean(), rel=1e-4)
        assert report.table[name]["psnr_std"] == pytest.approx(psnr[chosen].std(ddof=1), rel=1e-3)
        assert 0.5 < report.table[name]["ssim"] < 1.0

    with open(report.paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert [row["sequence"] for row in rows] == ["AXFLAIR", "AXT2"]
    assert [int(row["n"]) for row in rows] == [3, 2]
    assert float(rows[0]["psnr"]) == pytest.approx(report.table["AXFLAIR"]["psnr"], rel=1e-12)
    text = report.paths["markdown"].read_text()
    assert text.splitlines()[0].startswith("| Sequence | n | Phase coherence")
    assert "| AXFLAIR | 3 | 1.0000 ± 0.0000 |" in text and "| AXT2 | 2 |" in text

    import matplotlib.image

    figure = matplotlib.image.imread(report.paths["figure"])
    assert figure.ndim == 3 and figure.shape[0] > figure.shape[1]  # two examples, two rows each
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "reconstruction.csv",
        "reconstruction.md",
        "reconstruction.png",
    ]


def test_report_prefers_abnormal_examples(test_set, tmp_path):
    dataset, _, _ = test_set
    report = run_report(dataset, tmp_path, figure=False)
    titles = {s: report._examples[s][1] for s in report._examples}
    assert titles == {SEQUENCES.index("AXFLAIR"): "AXFLAIR (abnormal)", SEQUENCES.index("AXT2"): "AXT2 (unlabeled)"}
    assert "figure" not in report.paths


def test_sample_average_weights_batches_by_size():
    engine = Engine(lambda e, batch: batch)
    SampleAverage("loss").attach(engine, "loss")
    batches = [
        {"loss": torch.tensor(1.0), "image": torch.zeros(3, 2)},
        {"loss": torch.tensor(5.0), "image": torch.zeros(1, 2)},
    ]
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["loss"] == pytest.approx((3 * 1.0 + 1 * 5.0) / 4)
    with pytest.raises(ValueError, match="scalar"):
        SampleAverage("loss").update((torch.ones(2), torch.zeros(2)))


def test_magnitudes_of_dicts_and_decollated_lists():
    pred, label = torch.randn(4, 2, 5, 6), torch.randn(4, 2, 5, 6)
    expected = torch.sqrt(pred[:, :1] ** 2 + pred[:, 1:] ** 2)
    out = magnitudes(["pred", "label"])({"pred": pred, "label": label})
    torch.testing.assert_close(out[0], expected)
    assert out[1].shape == (4, 1, 5, 6)
    listed = magnitudes(["pred"])([{"pred": p} for p in pred])
    torch.testing.assert_close(listed[0], expected)


def test_stop_on_non_finite_names_the_iteration():
    losses = [1.0, float("nan"), 2.0]
    engine = Engine(lambda e, b: {"loss": torch.tensor(losses[e.state.iteration - 1]), "loss_kl": torch.tensor(3.0)})
    StopOnNonFinite().attach(engine)
    with pytest.raises(FloatingPointError, match=r"epoch 1, iteration 2 .*loss=nan.*loss_kl=3"):
        engine.run(range(3), max_epochs=1)
    finite = Engine(lambda e, b: {"loss": torch.tensor(1.0)})
    StopOnNonFinite().attach(finite)
    finite.run(range(3), max_epochs=1)
    assert finite.state.iteration == 3


def test_markdown_table_layout():
    table = {
        "AXT1": {
            "coherence": 0.99834,
            "coherence_std": 0.0008,
            "ssim": 0.9444,
            "ssim_std": 0.029,
            "psnr": 36.54,
            "psnr_std": 3.3,
            "n": 12,
        }
    }
    assert markdown_table(table).splitlines()[2] == "| AXT1 | 12 | 0.9983 ± 0.0008 | 0.944 ± 0.029 | 36.5 ± 3.3 |"
    table["AXT1"]["psnr"] = math.inf
    assert "| inf |" in markdown_table(table)


def test_write_table_rejects_incomplete_rows_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="lacks ssim"):
        write_reconstruction_table(
            {"AXT1": {"coherence": 1.0, "coherence_std": 0, "n": 1}}, tmp_path / "t.csv", tmp_path / "t.md"
        )
    assert list(tmp_path.iterdir()) == []


def test_figure_checks_its_examples(tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        reconstruction_figure([], tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        reconstruction_figure([("x", np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))], tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []
