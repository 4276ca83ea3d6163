from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

import monai_cmri
from monai_cmri import __main__ as cli
from monai_cmri import commands
from monai_cmri.data.annotations import Annotations


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MONAI_CMRI_DEBUG": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "monai_cmri", *args], capture_output=True, text=True, timeout=120, env=environment
    )


def _run(*args: str) -> str:
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command prints on stderr (and nothing else: no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_labels_command_prints_both_rules_with_real_counts():
    out = _run("labels")
    annotations = Annotations.default()
    lenient = annotations.counts("lenient")
    strict = annotations.counts("strict")
    line = next(row for row in out.splitlines() if row.startswith("AXFLAIR"))
    numbers = [int(n) for n in line.split() if n.isdigit()]
    expected = [lenient["AXFLAIR"][c] for c in ("abnormal", "normal", "excluded", "unlabeled")]
    expected += [strict["AXFLAIR"][c] for c in ("abnormal", "normal", "excluded", "unlabeled")]
    assert numbers[:8] == expected
    assert "lenient" in out and "strict" in out


def test_merge_command_joins_shard_folders(tmp_path):
    import json

    import numpy as np

    from monai_cmri.data.dataset import write_patches

    names = [f"file_brain_AXT2_200_{i}" for i in range(4)]
    for index, name in enumerate(names):
        folder = tmp_path / f"shard{index % 3}" / "volumes"
        folder.mkdir(parents=True, exist_ok=True)
        columns = {"file": [name] * 2, "slice": [0, 1], "row": [0, 0], "col": [0, 0], "sequence": ["AXT2"] * 2,
                   "label": ["unlabeled"] * 2, "overlap": [0.0, 0.0]}
        parameters = {"volume": name, "volume_class": "unlabeled", "sequence": "AXT2", "seed": 5}
        write_patches(folder / f"{name}.h5", np.zeros((2, 2, 96, 96), np.float32), columns, parameters)
    out = tmp_path / "shard0"
    _run("merge", "--out", str(out), "--parts", f"{tmp_path / 'shard1'},{tmp_path / 'shard2'}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["volumes"]) == names
    assert sum(manifest["patches"].values()) == 8
    assert manifest["seed"] == 5


def test_bad_arguments_exit_2_with_one_line_that_states_the_rule(tmp_path):
    out = tmp_path / "sim"
    result = _cli("simulate", "--out", str(out), "--width", "260", "--readout", "640")
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith("monai_cmri simulate: error: --readout must be 2 x --width = 520")
    result = _cli("simulate", "--out", str(out), "--width", "261")
    assert result.returncode == 2
    assert "even integer of at least 16" in _error_line(result)
    assert not out.exists()  # checked before anything was written
    # fire's own argument errors (a missing required argument) exit with 2 as well.
    assert _cli("simulate").returncode == 2


def test_failures_exit_1_with_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "scans"
    result = _cli("labels", "--data", str(missing))
    assert result.returncode == 1
    assert _error_line(result) == f"monai_cmri labels: error: {missing}: not a folder"
    for debug in (_cli("labels", "--data", str(missing), "--debug"),
                  _cli("labels", "--data", str(missing), env={"MONAI_CMRI_DEBUG": "1"})):
        assert debug.returncode == 1
        assert "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1] == f"NotADirectoryError: {missing}: not a folder"


def test_interrupts_exit_130_and_unexpected_errors_name_their_type(monkeypatch, capsys):
    def interrupted(**_):
        raise KeyboardInterrupt

    def broken(**_):
        raise TypeError("unsupported operand")

    def missing_key(**_):
        raise KeyError("/data/x.h5: no dataset 'kspace'")

    monkeypatch.delenv("MONAI_CMRI_DEBUG", raising=False)
    for function, status, message in [
        (interrupted, 130, "monai_cmri labels: interrupted"),
        (broken, 1, "monai_cmri labels: error: TypeError: unsupported operand"),
        (missing_key, 1, "monai_cmri labels: error: /data/x.h5: no dataset 'kspace'"),
    ]:
        monkeypatch.setitem(cli.COMMANDS, "labels", function)
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["labels"])
        assert exit_info.value.code == status
        assert capsys.readouterr().err.strip().splitlines() == [message]
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setitem(cli.COMMANDS, "labels", interrupted)
        cli.main(["labels", "--debug"])


def test_simulate_derives_the_readout_from_the_width(tmp_path):
    # The readout is always 2 x width: a width alone is enough (it used to need a matching --readout).
    commands.simulate(str(tmp_path), volumes=1, slices=1, width=16, coils=2, quiet=True)
    (path,) = tmp_path.glob("*.h5")
    with h5py.File(path, "r") as file:
        slices, coils, readout, width = file["kspace"].shape
    assert (slices, coils, readout) == (1, 2, 32) and width <= 16


def test_pipeline_too_small_to_train_stops_before_simulating(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(commands.UsageError, match="training needs at least 24 volumes, got 3.*--notrain"):
        commands.pipeline(out=str(out), volumes=3, slices=4)
    assert not out.exists()


def test_nothing_in_the_package_imports_the_command_line():
    package = Path(monai_cmri.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "__main__.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name in ("monai_cmri.commands", "monai_cmri.__main__") for name in names):
                offenders.append(str(path.relative_to(package)))
    assert offenders == []


def test_each_experiment_command_runs_that_experiment_alone(tmp_path, monkeypatch):
    import monai_cmri.experiments.classifier as experiment

    calls = []

    def fake(root, names, **kwargs):
        calls.append((Path(root), list(names), kwargs["seeds"], kwargs["test_sets"]))
        return {}

    monkeypatch.setattr(experiment, "run_experiments", fake)
    for name in ("real_vs_synthetic", "substitution", "additive"):
        cli.main([name, "--run", str(tmp_path), "--seeds", "2", "--noprogress"])
    assert calls == [(tmp_path, [name], range(2), 4)
                     for name in ("real_vs_synthetic", "substitution", "additive")]


def test_select_checks_its_arguments_and_names_what_is_missing(tmp_path):
    result = _cli("select", "--run", str(tmp_path), "--stage", "3")
    assert result.returncode == 2 and "--stage: expected 1 or 2, got 3" in _error_line(result)
    result = _cli("select", "--run", str(tmp_path), "--stage", "1")
    assert result.returncode == 2
    line = _error_line(result)
    assert str(tmp_path / 'cvae' / 'latents' / 'train.h5') in line
    assert f"run the main job (pipeline --out {tmp_path}) first" in line
