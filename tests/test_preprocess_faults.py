"""Preprocessing under faults: changed settings, two runs on one folder, kills, a full disk, bad inputs.

Each test reproduces one fault a careful user met (docs/reliability.md lists them) and checks
that nothing finished is lost, mixed or left half-written. Full-disk tests use a real tmpfs where
this process may mount one (root), and otherwise inject ENOSPC where the writer meets it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import monai_cmri.preprocess as preprocess_module
from monai_cmri.atomic import DiskFullError, FolderLockedError
from monai_cmri.preprocess import StaleOutputError, merge, preprocess

REPO = Path(__file__).resolve().parents[1]
HOST = socket.gethostname().replace(".", "_")
#: An abnormal and an unlabeled volume of the shared simulated dataset.
PAIR = ("file_brain_AXFLAIR_209_2098506", "file_brain_AXT2_203_2038508")


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def subset(fastmri_dir: Path, folder: Path, names=PAIR, csv: bool = True) -> Path:
    """A data folder linking the named volumes of the shared dataset, with its annotations."""
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.h5").symlink_to(fastmri_dir / f"{name}.h5")
    if csv:
        for name in ("brain.csv", "brain_file_list.csv"):
            shutil.copy(fastmri_dir / name, folder / name)
    return folder


def contents(out: Path) -> dict[str, tuple]:
    """Patches and positions of every split file."""
    found = {}
    for split in ("train", "val", "test"):
        if (out / f"{split}.h5").is_file():
            with h5py.File(out / f"{split}.h5", "r") as file:
                found[split] = (file["patches"][()], tuple(file["file"].asstr()[()]), file["row"][()], file["col"][()])
    return found


def assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for split in expected:
        np.testing.assert_allclose(actual[split][0], expected[split][0], rtol=1e-4, atol=1e-5)
        for a, b in zip(actual[split][1:], expected[split][1:]):
            assert tuple(np.asarray(a).tolist()) == tuple(np.asarray(b).tolist())


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*") if p.name.endswith(".tmp"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pair(fastmri_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, finished output folder) of the two volumes, seed 3."""
    root = tmp_path_factory.mktemp("pair")
    data = subset(fastmri_dir, root / "data")
    summary = preprocess(data, root / "out", seed=3, progress=False)
    assert sorted(summary.done) == sorted(PAIR)
    return data, root / "out"


def test_a_resumed_run_refuses_or_redoes_volumes_made_with_another_seed(pair, tmp_path):
    data, finished = pair
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = snapshot(out / "volumes")

    # Same settings: every volume is reused.
    summary = preprocess(data, out, seed=3, progress=False)
    assert sorted(summary.skipped) == sorted(PAIR) and not summary.done

    # Another seed: refused, naming what changed; nothing is touched.
    with pytest.raises(StaleOutputError, match=r"seed 3 -> 4.*--overwrite"):
        preprocess(data, out, seed=4, progress=False)
    assert snapshot(out / "volumes") == before

    # With overwrite the volumes are redone and carry the seed the manifest names.
    summary = preprocess(data, out, seed=4, progress=False, overwrite=True)
    assert sorted(summary.done) == sorted(PAIR)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 4
    for name in PAIR:
        with h5py.File(out / "volumes" / f"{name}.h5", "r") as file:
            assert json.loads(file.attrs["parameters"])["seed"] == 4
    fresh = tmp_path / "fresh"
    preprocess(data, fresh, seed=4, progress=False)
    assert_same(contents(out), contents(fresh))


def test_a_changed_annotation_csv_makes_the_volume_stale(pair, tmp_path):
    data, finished = pair
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    # A CSV without the abnormal volume's rows: it becomes unlabeled.
    edited = tmp_path / "csv"
    edited.mkdir()
    rows = [line for line in (data / "brain.csv").read_text().splitlines() if not line.startswith(PAIR[0])]
    (edited / "brain.csv").write_text("\n".join(rows) + "\n")
    listed = [line for line in (data / "brain_file_list.csv").read_text().splitlines() if PAIR[0] not in line]
    (edited / "brain_file_list.csv").write_text("\n".join(listed) + "\n")
    with pytest.raises(StaleOutputError, match=r"class abnormal -> unlabeled"):
        preprocess(data, out, seed=3, annotations=edited / "brain.csv", progress=False)
    summary = preprocess(data, out, seed=3, annotations=edited / "brain.csv", progress=False, overwrite=True)
    assert summary.done == [PAIR[0]] and summary.skipped == [PAIR[1]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["volumes"][PAIR[0]]["class"] == "unlabeled"
    with h5py.File(out / "volumes" / f"{PAIR[0]}.h5", "r") as file:
        assert set(file["label"].asstr()[()]) == {"unlabeled"}


def test_volumes_of_a_previous_data_folder_are_not_merged(pair, fastmri_dir, tmp_path):
    _, finished = pair
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    # Another data folder: one volume in common, one new one.
    other = subset(fastmri_dir, tmp_path / "other", names=(PAIR[1], "file_brain_AXT1_205_2058509"))
    summary = preprocess(other, out, seed=3, progress=False)
    assert summary.skipped == [PAIR[1]] and summary.done == ["file_brain_AXT1_205_2058509"]
    assert any("left out of the split files" in line for line in summary.report)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["volumes"]) == {PAIR[1], "file_brain_AXT1_205_2058509"}
    merged = {name for split in contents(out).values() for name in split[1]}
    assert PAIR[0] not in merged
    # With overwrite, the volume files of the old data are removed.
    summary = preprocess(other, out, seed=3, progress=False, overwrite=True)
    assert not (out / "volumes" / f"{PAIR[0]}.h5").exists()


SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    import monai_cmri.preprocess as p
    real = p.preprocess_volume
    def slow(*args, **kwargs):
        time.sleep(float(sys.argv[3]))
        return real(*args, **kwargs)
    p.preprocess_volume = slow
    p.preprocess(sys.argv[1], sys.argv[2], seed=3, shard=0, num_shards=2, progress=False)
    """
)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.2)


def test_two_runs_on_one_folder_share_it_safely_or_refuse(pair, tmp_path):
    data, finished = pair
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    holder = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(data), str(out), "600"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        lock = out / ".preprocess-shard-0-of-2.lock"
        _wait_for(lock, holder)
        # A temporary file of the live run (shard 0) must survive the other runs' start-up.
        live = out / "volumes" / f".{PAIR[0]}.h5.{HOST}.{holder.pid}.tmp"
        live.write_bytes(b"being written")

        # The other shard of the same split writes disjoint volumes: allowed, beside it.
        summary = preprocess(data, out, seed=3, shard=1, num_shards=2, progress=False)
        assert summary.done == [PAIR[1]]
        assert live.exists()
        # The same shard, an unsharded run and a merge would collide: refused, naming the holder.
        for run in (
            lambda: preprocess(data, out, seed=3, shard=0, num_shards=2, progress=False),
            lambda: preprocess(data, out, seed=3, progress=False),
            lambda: merge(out),
        ):
            with pytest.raises(FolderLockedError, match=rf"process {holder.pid} .*{lock.name}"):
                run()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    # The killed run's lock is stale: taken over with a warning; its temporary file is removed.
    with pytest.warns(UserWarning, match="stale lock"):
        summary = preprocess(data, out, seed=3, shard=0, num_shards=2, progress=False)
    assert summary.done == [PAIR[0]] and not live.exists() and not temporaries(out)
    merge(out)
    assert_same(contents(out), contents(finished))


def test_merge_needs_every_shard(pair, tmp_path):
    data, _ = pair
    out = tmp_path / "out"
    preprocess(data, out, seed=3, shard=1, num_shards=2, progress=False)
    with pytest.raises(ValueError, match=r"shard\(s\) \[0\] of 2"):
        merge(out)


KILLED_MERGE = textwrap.dedent(
    """
    import os, signal, sys
    import monai_cmri.preprocess as p
    real = p.merge_patches
    def dying(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    p.merge_patches = dying
    p.preprocess(sys.argv[1], sys.argv[2], seed=3, progress=False)
    """
)


def test_a_merge_killed_by_a_signal_leaves_nothing_behind_after_the_rerun(pair, tmp_path):
    data, finished = pair
    out = tmp_path / "out"
    shutil.copytree(finished / "volumes", out / "volumes")
    shutil.copy(finished / "run.json", out / "run.json")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", KILLED_MERGE, str(data), str(out)], env=env, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert temporaries(out), "the killed merge should have left its staging folder"
    assert not (out / "manifest.json").exists()
    # A temporary merge file of an older writer that died is removed too.
    (out / f".train.h5.{HOST}.{dead_pid()}.tmp").write_bytes(b"half")
    summary = preprocess(data, out, seed=3, progress=False)
    assert sorted(summary.skipped) == sorted(PAIR)
    assert not temporaries(out)
    assert_same(contents(out), contents(finished))


# -- full disk -------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted at a fresh folder, or a skip where mounting is not allowed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC tests cover this path")

    def make(megabytes: float) -> Path:
        size = f"{int(megabytes * 1024)}k"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        return mount

    yield make
    subprocess.run(["umount", str(mount)], capture_output=True)


def _run_in_subprocess(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


PREPROCESS = "import sys; from monai_cmri.preprocess import preprocess; preprocess(sys.argv[1], sys.argv[2], seed=3, progress=False)"
MERGE = "import sys; from monai_cmri.preprocess import merge; merge(sys.argv[1])"


def test_a_full_disk_while_writing_volumes_stops_cleanly_and_the_rerun_completes(pair, tmpfs):
    data, finished = pair
    first, second = (finished / "volumes" / f"{name}.h5" for name in sorted(PAIR))
    # Room for the first volume and half the second while the ballast is in; for everything,
    # the split files included, once it is gone.
    total = 2.5 * (first.stat().st_size + second.stat().st_size) + 2**19
    mount = tmpfs(total / 2**20)
    ballast = mount / "ballast"
    ballast.write_bytes(b"\0" * int(total - first.stat().st_size - 0.5 * second.stat().st_size - 2**18))
    out = mount / "out"
    result = _run_in_subprocess(PREPROCESS, str(data), str(out))
    # One clear error, no crash of the interpreter (a segmentation fault exits with -11).
    assert result.returncode == 1, result.stderr[-2000:]
    assert "DiskFullError" in result.stderr and "no space left" in result.stderr and "needed" in result.stderr
    assert second.name in result.stderr
    assert "Segmentation" not in result.stderr and "decrement id ref count" not in result.stderr
    assert not temporaries(mount)
    assert [p.name for p in (out / "volumes").glob("*.h5")] == [first.name]
    ballast.unlink()
    result = _run_in_subprocess(PREPROCESS, str(data), str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same(contents(out), contents(finished))


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from monai_cmri.data.dataset import PatchWriter
    n = 1
    columns = {"file": ["f"], "slice": np.zeros(n, int), "row": np.zeros(n, int), "col": np.zeros(n, int),
               "sequence": ["AXT2"], "label": ["normal"], "overlap": np.zeros(n)}
    try:
        with PatchWriter(sys.argv[1]) as writer:
            for i in range(200):
                writer.append(np.full((1, 2, 96, 96), i, np.float32), columns)
    except OSError as error:
        print(type(error).__name__, error)
    """
)


def test_the_patch_writer_on_a_full_disk_raises_once_and_leaves_no_file(tmpfs):
    # Appending past the end of a 2 MB disk: HDF5 meets ENOSPC while flushing its caches.
    mount = tmpfs(2)
    result = _run_in_subprocess(WRITER, str(mount / "big.h5"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("DiskFullError") and "big.h5: no space left" in result.stdout
    assert "decrement id ref count" not in result.stderr
    assert not list(mount.iterdir())


def test_a_full_disk_during_the_merge_keeps_the_volumes_and_the_rerun_completes(pair, tmpfs):
    data, finished = pair
    volumes = sum(p.stat().st_size for p in (finished / "volumes").glob("*.h5"))
    mount = tmpfs(volumes * 2.5 / 2**20 + 0.3)
    out = mount / "out"
    shutil.copytree(finished / "volumes", out / "volumes")
    shutil.copy(finished / "run.json", out / "run.json")
    ballast = mount / "ballast"
    ballast.write_bytes(b"\0" * int(volumes * 1.4))
    before = snapshot(out / "volumes")
    result = _run_in_subprocess(MERGE, str(out))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "DiskFullError" in result.stderr and "Segmentation" not in result.stderr
    assert not temporaries(mount) and not (out / "manifest.json").exists()
    assert snapshot(out / "volumes") == before
    ballast.unlink()
    result = _run_in_subprocess(MERGE, str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same(contents(out), contents(finished))


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_injected_enospc_at_the_writer_stops_the_run_at_the_first_volume(pair, tmp_path, monkeypatch):
    data, _ = pair
    processed = []
    real = preprocess_module.preprocess_volume

    def counting(path, *args, **kwargs):
        processed.append(Path(path).stem)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(preprocess_module, "preprocess_volume", counting)
    # HDF5 meets a full disk when it flushes what it buffered.
    monkeypatch.setattr(h5py.File, "flush", _enospc)
    out = tmp_path / "out"
    with pytest.raises(DiskFullError, match=r"volumes/file_brain_.*\.h5: no space left"):
        preprocess(data, out, seed=3, progress=False)
    assert len(processed) == 1  # the second volume never went through ESPIRiT
    assert not list((out / "volumes").iterdir()) and not temporaries(out)
    assert json.loads((out / "failed.json").read_text()) == {}


def test_injected_enospc_during_the_merge_leaves_the_old_outputs(pair, tmp_path, monkeypatch):
    data, finished = pair
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = snapshot(out)
    real = preprocess_module.merge_patches

    def fails_while_writing(*args, **kwargs):
        # The disk fills while the split file is half-written.
        with monkeypatch.context() as patch:
            patch.setattr(h5py.File, "flush", _enospc)
            return real(*args, **kwargs)

    monkeypatch.setattr(preprocess_module, "merge_patches", fails_while_writing)
    with pytest.raises(DiskFullError, match="no space left"):
        merge(out)
    assert snapshot(out) == before and not temporaries(out)


def test_an_output_error_stops_the_run_and_is_not_an_input_failure(pair, tmp_path, monkeypatch):
    data, _ = pair

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out" / "volumes" / "x.h5"))

    monkeypatch.setattr(preprocess_module, "write_patches", denied)
    with pytest.raises(PermissionError):
        preprocess(data, tmp_path / "out", seed=3, progress=False)
    assert json.loads((tmp_path / "out" / "failed.json").read_text()) == {}


# -- bad inputs ------------------------------------------------------------------------------


def test_a_folder_of_bad_files_gives_a_summary_not_a_traceback(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "file_brain_AXT2_200_1.h5").write_bytes(b"not hdf5")
    (data / "file_brain_AXT1_200_2.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    summary = preprocess(data, tmp_path / "out", progress=False)
    assert not summary.ok and set(summary.failed) == {"file_brain_AXT2_200_1", "file_brain_AXT1_200_2"}
    text = str(summary)
    assert "file_brain_AXT2_200_1" in text and "no patches were made" in text
    assert not (tmp_path / "out" / "train.h5").exists()


def test_input_anomalies_are_surfaced(fastmri_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # An acquisition attribute that is no sequence (AXT3) in a file named AXT2.
    odd = data / f"{PAIR[1]}.h5"
    shutil.copy(fastmri_dir / f"{PAIR[1]}.h5", odd)
    with h5py.File(odd, "a") as file:
        file.attrs["acquisition"] = "AXT3"
    # An all-zero k-space volume: no brain, no patch.
    zero = data / "file_brain_AXT1_205_2058509.h5"
    shutil.copy(fastmri_dir / zero.name, zero)
    with h5py.File(zero, "a") as file:
        file["kspace"][...] = 0
    # A CSV naming volumes that are not in the data.
    shutil.copy(fastmri_dir / "brain.csv", data / "brain.csv")
    shutil.copy(fastmri_dir / "brain_file_list.csv", data / "brain_file_list.csv")
    with pytest.warns(UserWarning, match="AXT3"):
        summary = preprocess(data, tmp_path / "out", progress=False)
    assert any("'AXT3'" in note and "file name" in note for note in summary.notes)
    with h5py.File(tmp_path / "out" / "volumes" / odd.name, "r") as file:
        assert any("AXT3" in note for note in json.loads(file.attrs["parameters"])["notes"])
    assert "brain too small" in summary.empty[zero.stem]
    assert "no patches: file_brain_AXT1_205_2058509" in str(summary)
    assert any("3 of 3" not in line and "not in the data" in line for line in summary.report)
    # Too few volumes for three splits: said, not silent.
    assert any(line.startswith("no patches in") for line in summary.report)
