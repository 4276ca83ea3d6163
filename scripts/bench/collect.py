"""Merge the figures of one ``scripts/gpu_check.sh`` run into ``figures.json`` and a readable ``figures.md``.

Reads, in the check's output folder: ``steps.tsv`` (one line per step: name, exit status, seconds,
time limit), every benchmark's ``NAME.json`` (written by its ``--json``), ``device.txt`` (from
``nvidia-smi``, absent on a dry run) and the main job's ``pipeline/run.json`` (its finished stages
and their seconds). Adds the device name, the date and the torch, CUDA and cuDNN versions. A step
that failed or ran out of time is marked ``failed`` or ``timed out``; what it wrote before is kept.

Usage::

    python scripts/bench/collect.py gpu_check [--dry_run]
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import fire
import torch

from monai_cmri.atomic import write_json, write_text

#: Keys of the benchmark figures left out of ``figures.md`` (still in ``figures.json``).
NOISE = ("repeats", "load_start", "load_end")


def steps(folder: Path) -> list[dict[str, Any]]:
    """The rows of ``steps.tsv``: name, exit status, seconds, limit and a status word."""
    rows = []
    path = folder / "steps.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, rc, seconds, limit = line.split("\t")
        code = int(rc)
        # timeout(1) exits 124, or 137 when its KILL after the grace period was needed.
        status = "ok" if code == 0 else "timed out" if code in (124, 137) else "failed"
        rows.append({"name": name, "rc": code, "seconds": float(seconds), "limit_s": float(limit), "status": status})
    return rows


def pipeline(folder: Path) -> dict[str, Any] | None:
    """The main job's stages and times from ``pipeline/run.json``, or None if it wrote none."""
    path = folder / "pipeline" / "run.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    stages = [{"name": s["name"], "seconds": s["seconds"]} for s in record.get("stages", [])]
    return {
        "arguments": record.get("arguments"),
        "profile": record.get("profile"),
        "finished": record.get("finished"),
        "running_when_stopped": record.get("running"),
        "stages": stages,
        "stages_s": sum(s["seconds"] for s in stages),
    }


def device(folder: Path, dry_run: bool) -> dict[str, Any]:
    """The machine: GPU (or CPU on a dry run), versions, date."""
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpus": os.cpu_count(),
        "host": platform.node(),
        "dry_run": dry_run,
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    else:
        info["device"] = f"CPU only ({platform.processor() or platform.machine()})"
    smi = folder / "device.txt"
    if smi.is_file():
        info["nvidia_smi"] = smi.read_text().strip()
    return info


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, text)`` rows of a JSON value, lists of numbers as one row, noise left out."""
    if isinstance(value, dict):
        rows = []
        for key, item in value.items():
            if key not in NOISE:
                rows += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [row for index, item in enumerate(value) for row in flatten(item, f"{prefix}[{index}]")]
    if isinstance(value, float):
        return [(prefix, f"{value:.4g}")]
    return [(prefix, json.dumps(value) if isinstance(value, (list, dict)) else str(value))]


def markdown(figures: dict[str, Any]) -> str:
    """``figures.md``: the machine, the steps, the pipeline's stages, then every benchmark's figures."""
    machine = figures["machine"]
    lines = [
        f"# GPU check, {machine['date']}",
        "",
        f"{machine['device']}; torch {machine['torch']}, CUDA {machine['cuda']}, cuDNN {machine['cudnn']}; "
        f"{machine['cpus']} CPUs" + ("; DRY RUN on the CPU with tiny settings: not GPU figures" if machine["dry_run"] else ""),
        "",
        "| step | status | seconds | limit |",
        "| --- | --- | ---: | ---: |",
    ]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.0f} | {s['limit_s']:.0f} |" for s in figures["steps"]]
    job = figures.get("pipeline")
    if job:
        lines += ["", f"## Main job: {job['stages_s']:.0f} s in finished stages", "", "| stage | seconds |", "| --- | ---: |"]
        lines += [f"| {stage['name']} | {stage['seconds']:.1f} |" for stage in job["stages"]]
        if job["running_when_stopped"]:
            lines += [f"| {job['running_when_stopped']} | stopped unfinished |"]
    for name, values in figures["benchmarks"].items():
        lines += ["", f"## {name}", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {key} | {text} |" for key, text in flatten(values)]
    return "\n".join(lines) + "\n"


def main(folder: str = "gpu_check", dry_run: bool = False) -> None:
    """Write ``folder/figures.json`` and ``folder/figures.md`` from what the check's steps left there."""
    root = Path(folder)
    rows = steps(root)
    benchmarks = {}
    for row in rows:
        path = root / f"{row['name']}.json"
        if path.is_file():
            benchmarks[row["name"]] = json.loads(path.read_text())
    figures = {"machine": device(root, dry_run), "steps": rows, "pipeline": pipeline(root), "benchmarks": benchmarks}
    write_json(root / "figures.json", figures)
    write_text(root / "figures.md", markdown(figures))
    print(f"figures: {root / 'figures.json'}, {root / 'figures.md'}")


if __name__ == "__main__":
    fire.Fire(main)
