"""A killed main job, started again with the same arguments, ends with an uninterrupted run's outputs.

The kill is a real SIGKILL of a process running :func:`monai_cmri.pipeline.run_pipeline`, sent
mid-stage: while volumes are being preprocessed, and while flow stage 1 trains (after the trainer
state of an epoch is on disk). The rerun must skip what was finished, continue what was not, leave
no temporary file behind, and write the same files as a run that was never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from monai_cmri.atomic import FolderLockedError
from monai_cmri.pipeline import PROGRESS_DIR, RUN_RECORD, run_pipeline
from monai_cmri.profiles import Profile

REPO = Path(__file__).resolve().parents[1]

#: A main job small enough to run twice in a test: the demo's stages, one or two epochs each.
TINY = Profile(
    name="tiny",
    description="the smallest main job that runs every stage",
    volumes=24,
    slices=2,
    bundle_profile="cpu",
    bundle_overrides={
        "cvae": {"epochs": 2},
        "flow_stage1": {"epochs": 3, "keep_checkpoints": 1, "samples_per_sequence": 4, "steps": 2},
        "flow_stage2": {"epochs": 2, "keep_checkpoints": 1, "phase1_epochs": 1, "steps": 2},
    },
    classifier_overrides={"epochs": 1, "stem_stride": 2, "channels": [8, 16], "blocks": [1, 1]},
)
SMALL = {"volumes": 3, "slices": 1, "coils": [4], "train": False}

_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_pipeline_resume import TINY, SMALL
from monai_cmri.pipeline import run_pipeline
if {train!r}:
    run_pipeline(Path({out!r}), profile=TINY, coils=[4], workers=1, threads=1, progress=False)
else:
    run_pipeline(Path({out!r}), **SMALL, workers=1, progress=False)
"""


def start(out: Path, train: bool, log: Path) -> subprocess.Popen:
    """Run the main job in a child process, as a user's command would."""
    script = _SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), train=train)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=handle,
                                stderr=subprocess.STDOUT)


def finish(out: Path, train: bool, log: Path, timeout: float = 900) -> None:
    """Run the main job in a child process to its end (the same threads as the killed one, so that
    float32 sums come out the same)."""
    process = start(out, train, log)
    assert process.wait(timeout=timeout) == 0, log.read_text()[-4000:]


def kill_when(process: subprocess.Popen, log: Path, ready, timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before it was killed:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not ready to kill after {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def record(out: Path) -> dict:
    return json.loads((out / RUN_RECORD).read_text())


def temporaries(out: Path) -> list[Path]:
    return [path for path in out.rglob("*") if path.name.startswith(".") and path.name.endswith(".tmp")]


def same_h5(a: Path, b: Path) -> None:
    with h5py.File(a) as one, h5py.File(b) as two:
        assert sorted(one) == sorted(two), a
        for key in one:
            if isinstance(one[key], h5py.Dataset):
                np.testing.assert_array_equal(one[key][()], two[key][()], err_msg=f"{a}:{key}")


def test_a_run_killed_while_preprocessing_resumes_with_the_volumes_it_finished(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # One thread, as in the child processes, so that ESPIRiT's float32 sums come out the same.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_pipeline(whole, **SMALL, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)

    log = tmp_path / "killed.log"
    process = start(killed, train=False, log=log)
    volume_records = killed / PROGRESS_DIR / "volumes"
    kill_when(process, log, lambda: len(list(volume_records.glob("*.json"))) >= 1)
    finished = {path.name for path in volume_records.glob("*.json")}
    assert 1 <= len(finished) < SMALL["volumes"]
    assert record(killed)["running"] == "simulate + preprocess"
    stamps = {name: (volume_records / name).stat().st_mtime_ns for name in finished}

    finish(killed, train=False, log=tmp_path / "rerun.log")
    # The volumes finished before the kill were not processed again.
    assert {name: (volume_records / name).stat().st_mtime_ns for name in finished} == stamps
    stages = record(killed)["stages"]
    assert [entry["name"] for entry in stages] == ["simulate + preprocess", "merge", "report"]
    assert stages[0]["resumed"] and not stages[1]["resumed"]
    assert not temporaries(killed)
    for name in ("kspace/brain.csv", "kspace/brain_file_list.csv", "patches/splits.json"):
        assert (killed / name).read_text() == (whole / name).read_text(), name
    volumes = sorted(path.name for path in (whole / "patches" / "volumes").glob("*.h5"))
    assert volumes == sorted(path.name for path in (killed / "patches" / "volumes").glob("*.h5"))
    for name in [*(f"volumes/{volume}" for volume in volumes), "train.h5"]:
        same_h5(whole / "patches" / name, killed / "patches" / name)
    assert sorted(p.name for p in (whole / "figures").glob("*.png")) == sorted(p.name for p in (killed / "figures").glob("*.png"))
    assert (killed / "report.html").is_file() and (killed / "summary.md").is_file()


def test_a_finished_run_is_skipped_and_other_arguments_are_refused(tmp_path, capfd):
    out = tmp_path / "run"
    run_pipeline(out, volumes=1, slices=2, coils=[4], train=False, workers=1, progress=False)
    stamps = {path: path.stat().st_mtime_ns for path in (out / "patches").rglob("*.h5")}
    capfd.readouterr()
    run_pipeline(out, volumes=1, slices=2, coils=[4], train=False, workers=1, progress=True)
    stdout, _ = capfd.readouterr()
    assert stdout.count("finished earlier, skipped") == 3
    assert {path: path.stat().st_mtime_ns for path in (out / "patches").rglob("*.h5")} == stamps
    assert record(out)["attempts"] == 2 and record(out)["finished"]
    with pytest.raises(ValueError, match=r"other settings \(volumes: 1 there, 2 now\).*another --out"):
        run_pipeline(out, volumes=2, slices=2, coils=[4], train=False, workers=1, progress=False)


def test_two_runs_on_one_folder_are_refused(tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "first.log"
    process = start(out, train=False, log=log)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".pipeline.lock").is_file():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.02)
        with pytest.raises(FolderLockedError, match="in use by process"):
            run_pipeline(out, **SMALL, workers=1, progress=False)
    finally:
        process.kill()
        process.wait(timeout=60)


@pytest.mark.slow
def test_a_run_killed_while_training_ends_with_the_outputs_of_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(whole, train=True, log=tmp_path / "whole.log")

    log = tmp_path / "killed.log"
    process = start(killed, train=True, log=log)
    state = killed / "flow_stage1" / "models" / "trainer_state.pt"

    def first_epoch_saved() -> bool:
        try:
            return int(torch.load(state, map_location="cpu", weights_only=True)["epoch"]) >= 1
        except (OSError, EOFError, RuntimeError, KeyError):
            return False

    kill_when(process, log, first_epoch_saved, timeout=600)
    assert record(killed)["running"] == "stage1 train"
    done = [entry["name"] for entry in record(killed)["stages"]]
    assert done[:2] == ["simulate + preprocess", "merge"] and "stage1 train" not in done

    finish(killed, train=True, log=tmp_path / "rerun.log")
    stages = {entry["name"]: entry for entry in record(killed)["stages"]}
    assert stages["stage1 train"]["resumed"] and not stages["cvae train"]["resumed"]
    assert list(stages) == [entry["name"] for entry in record(whole)["stages"]]
    assert not temporaries(killed)

    for name in ("cvae/models/model.pt", "flow_stage1/models/model.pt", "flow_stage2/models/model.pt"):
        one = torch.load(whole / name, map_location="cpu", weights_only=True)
        two = torch.load(killed / name, map_location="cpu", weights_only=True)
        assert one.keys() == two.keys(), name
        for key in one:
            torch.testing.assert_close(one[key], two[key], rtol=0, atol=0, msg=f"{name}: {key}")
    for name in ("flow_stage1/synthetic/latents.h5", "flow_stage2/synthetic/patches.h5"):
        same_h5(whole / name, killed / name)
    for name in ("flow_stage1/selection.md", "flow_stage2/selection.md", "experiments/substitution/summary.csv",
                 "experiments/additive/summary.csv", "experiments/real_vs_synthetic/summary.csv"):
        assert (killed / name).read_text() == (whole / name).read_text().replace(str(whole), str(killed)), name
