"""Smoke tests of the benchmark scripts: sample.py's quick run and the figures that gpu_check.sh collects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"


@pytest.fixture(scope="module")
def collect():
    sys.path.insert(0, str(BENCH))
    try:
        import collect as module

        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_sample_quick_projection_follows_its_rates(tmp_path):
    out = tmp_path / "sample.json"
    run = subprocess.run(
        [sys.executable, str(BENCH / "sample.py"), "--quick", f"--json={out}"],
        capture_output=True, text=True, timeout=120, cwd=BENCH.parents[1],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(out.read_text())
    generation, decoding = figures["generation"]["variants"], figures["decoding"]["variants"]
    assert generation["fp32 eager"]["ratio"] == 1.0 and generation["fp32 eager"]["relative_rms_to_baseline"] == 0.0
    # channels_last and SDPA change the latents only by rounding.
    assert all(v["relative_rms_to_baseline"] < 1e-4 for v in generation.values())
    assert figures["generation"]["guided_nfe_per_latent"] == 4  # Heun, 1 step: 2 NFE, cond + null
    projection = figures["projection"]
    assert projection["guided_nfe_per_latent"] == 4 * projection["steps"]
    baseline = projection["baseline"]
    scale = projection["steps"] / projection["measured_steps"]
    assert baseline["generation_s"] == pytest.approx(34_000 / generation["fp32 eager"]["rate"] * scale)
    assert baseline["decoding_s"] == pytest.approx(34_000 / decoding["fp32 eager"]["rate"])
    assert projection["fast path"]["total_s"] <= baseline["total_s"]


def test_collect_merges_steps_benchmarks_and_stages(tmp_path, collect):
    (tmp_path / "steps.tsv").write_text("flow\t0\t12\t25\npipeline\t124\t303\t300\nsample\t1\t3\t50\n")
    (tmp_path / "flow.json").write_text(json.dumps({"training": {"fp32 eager": {"rate": 2.5, "repeats": [2, 3]}}}))
    (tmp_path / "pipeline").mkdir()
    record = {"arguments": {"profile": "gpu"}, "profile": "gpu", "running": "cvae train",
              "stages": [{"name": "simulate + preprocess", "seconds": 100.5, "resumed": False},
                         {"name": "merge", "seconds": 2.0, "resumed": False}]}
    (tmp_path / "pipeline" / "run.json").write_text(json.dumps(record))
    collect.main(str(tmp_path), dry_run=True)
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert [s["status"] for s in figures["steps"]] == ["ok", "timed out", "failed"]
    assert figures["pipeline"]["stages_s"] == pytest.approx(102.5)
    assert figures["pipeline"]["running_when_stopped"] == "cvae train"
    assert figures["benchmarks"] == {"flow": {"training": {"fp32 eager": {"rate": 2.5, "repeats": [2, 3]}}}}
    assert figures["machine"]["dry_run"] is True and figures["machine"]["torch"]
    text = (tmp_path / "figures.md").read_text()
    assert "| pipeline | timed out | 303 | 300 |" in text
    assert "| training.fp32 eager.rate | 2.5 |" in text and "repeats" not in text
    assert "| cvae train | stopped unfinished |" in text
