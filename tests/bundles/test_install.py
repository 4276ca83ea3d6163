"""The package installed like any package, not from the clone: its sdist and wheel carry the bundles.

Builds the sdist and from it the wheel (offline, with the setuptools installed here), installs the
wheel into a fresh virtual environment that borrows this environment's dependencies (torch, monai,
...) but not the clone, and from a folder outside the repository finds and copies the bundles with
``monai-cmri bundle``, trains the cvae with ``python -m monai.bundle run`` on the installed configs
and encodes with it as the main job does (:func:`monai_cmri.bundles.run_bundle`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest
import torch
from cvae_data import REPO, SIZE, TINY, TINY_NETWORK, command

from monai_cmri import bundles, commands
from monai_cmri.bundles import BUNDLES, bundle_configs, bundle_names, copy_bundle

NAMES = ["classifier", "cvae", "flow_stage1", "flow_stage2"]
#: What a build reads: the packaging files, the package and the bundles.
SOURCES = ["setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "monai_cmri", "bundles"]


def shipped_files() -> set[str]:
    """The files of ``bundles/`` that the distributions carry: those git has or would commit (the
    shipped weights among them), less the ``.gitignore`` files."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "bundles"], cwd=REPO,
                                capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but caches
        listed = [path.relative_to(REPO).as_posix() for path in (REPO / "bundles").rglob("*") if path.is_file()]
    files = {name[len("bundles/"):] for name in listed if (REPO / name).is_file() and "__pycache__" not in name}
    return {name for name in files if Path(name).name != ".gitignore"}


def environment() -> dict[str, str]:
    """The test's environment without anything that would put the clone on ``sys.path``."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "OMP_NUM_THREADS": "1", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def check(line: list[str], cwd: Path, timeout: float = 300) -> str:
    """Run ``line`` in ``cwd``; its stdout, failing the test with its output when it fails."""
    result = subprocess.run(line, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@dataclass(frozen=True)
class Installed:
    sdist: Path
    wheel: Path
    python: Path  # the fresh environment's interpreter
    scripts: Path  # its console scripts
    purelib: Path  # its site-packages
    work: Path  # an empty folder outside the repository


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """The sdist, the wheel built from it, and a fresh virtual environment with the wheel installed."""
    root = tmp_path_factory.mktemp("install")
    source, dist = root / "source", root / "dist"
    # A copy of what a build reads: the build writes its egg-info and build folder there, not in the clone.
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    build_sdist = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    sdist = dist / check([sys.executable, "-c", build_sdist, str(dist)], source).strip().splitlines()[-1]
    check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir",
           "--wheel-dir", str(dist), str(sdist)], root)  # fmt: skip
    (wheel,) = dist.glob("monai_cmri-*.whl")

    venv = root / "venv"
    check([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    paths = json.loads(check([str(python), "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
                             root))  # fmt: skip
    purelib, scripts = Path(paths["purelib"]), Path(paths["scripts"])
    # This environment's site-packages as plain path entries, after the fresh one's own: its
    # dependencies import, while its .pth files (an editable install of the clone) are not run.
    borrowed = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (purelib / "borrowed_dependencies.pth").write_text("".join(f"{path}\n" for path in borrowed if Path(path).is_dir()))
    # pip from this environment, run by the fresh interpreter: it installs there, next to nothing else.
    check([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--no-compile",
           str(wheel)], root)  # fmt: skip
    work = root / "work"
    work.mkdir()
    return Installed(sdist, wheel, python, scripts, purelib, work)


def test_the_sdist_and_the_wheel_carry_every_bundle_file(installed):
    expected = shipped_files()
    assert {f"{name}/configs/train.json" for name in NAMES} <= expected
    with tarfile.open(installed.sdist) as sdist:
        files = [member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()]
    assert {name[len("bundles/"):] for name in files if name.startswith("bundles/")} == expected
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
    assert {name[len("monai_cmri_bundles/"):] for name in names if name.startswith("monai_cmri_bundles/")} == expected
    assert "monai_cmri/bundles.py" in names and not any(name.startswith("bundles/") for name in names)


def test_the_installed_package_finds_its_bundles_and_copies_them_out(installed):
    line = "import json, monai_cmri, monai_cmri.bundles as b; print(json.dumps([monai_cmri.__file__, str(b.BUNDLES)]))"
    package, found = json.loads(check([str(installed.python), "-c", line], installed.work))
    assert Path(package).is_relative_to(installed.purelib), package  # the wheel's copy, not the clone
    assert Path(found) == (installed.purelib / "monai_cmri_bundles").resolve()

    printed = check([str(installed.scripts / "monai-cmri"), "bundle"], installed.work).split()
    assert printed == [str(Path(found) / name) for name in NAMES]
    assert check([str(installed.scripts / "monai-cmri"), "bundle", "cvae"], installed.work).split() == [printed[1]]

    copied = check([str(installed.python), "-m", "monai_cmri", "bundle", "cvae", "--copy", "bundles"], installed.work)
    assert copied.split() == ["bundles/cvae"]
    origin, copy = Path(printed[1]), installed.work / "bundles" / "cvae"
    files = sorted(path.relative_to(origin) for path in origin.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(copy) for path in copy.rglob("*") if path.is_file())
    assert all((origin / name).read_bytes() == (copy / name).read_bytes() for name in files)

    again = subprocess.run([str(installed.scripts / "monai-cmri"), "bundle", "cvae", "--copy", "bundles"],
                           cwd=installed.work, env=environment(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exist" in again.stderr


def test_a_bundle_trains_and_encodes_from_the_installed_package(installed, patches):
    """Training as the README's command line, outside the clone; encoding as the main job runs it."""
    configs = installed.purelib / "monai_cmri_bundles" / "cvae" / "configs"
    out = installed.work / "cvae"
    line = command("training", [str(configs / "train.json"), str(configs / "cpu.json")],
                   dataset_dir=str(patches), output_dir=str(out), **TINY)  # fmt: skip
    line[0] = str(installed.python)
    log = check(line, installed.work)
    assert "Epoch[1] Metrics -- " in log
    record = json.loads((out / "models" / "model.json").read_text())
    assert record["network"]["channels"] == TINY["channels"] and record["network"]["profile"] == "cpu"

    encode = (
        "import json, sys; from monai_cmri.bundles import run_bundle; "
        "run_bundle('cvae', 'encode', ['inference.json'], json.loads(sys.argv[1]), 'cpu')"
    )
    overrides = {"dataset_dir": str(patches), "output_dir": str(out), "progress": False, **TINY_NETWORK}
    check([str(installed.python), "-c", encode, json.dumps(overrides)], installed.work)
    for split in ("train", "val", "test"):
        with h5py.File(patches / f"{split}.h5", "r") as source, h5py.File(out / "latents" / f"{split}.h5", "r") as z:
            assert z["latents"].shape == (source["patches"].shape[0], 2, SIZE // 2, SIZE // 2)
            assert torch.isfinite(torch.from_numpy(z["latents"][()])).all()


# The clone's side, in this process.


def test_the_clone_uses_its_own_bundles_folder(capsys):
    assert BUNDLES == REPO / "bundles" and bundle_names() == NAMES
    assert bundle_configs("cvae") == REPO / "bundles" / "cvae" / "configs"
    commands.bundle()
    assert capsys.readouterr().out.split() == [str(REPO / "bundles" / name) for name in NAMES]
    with pytest.raises(commands.UsageError, match="unknown bundle 'vae'; the bundles are classifier, cvae, "):
        commands.bundle("vae")
    with pytest.raises(OSError, match="no such bundle; the bundles are classifier, cvae, flow_stage1, flow_stage2"):
        bundle_configs("vae")


def test_copy_bundle_refuses_to_overwrite(tmp_path):
    copy = copy_bundle("classifier", tmp_path)
    assert copy == tmp_path / "classifier" and (copy / "configs" / "train.json").is_file()
    with pytest.raises(FileExistsError, match="already exists"):
        copy_bundle("classifier", tmp_path)


def test_without_bundles_the_error_says_where_it_looked(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bundles, "BUNDLES", tmp_path / "bundles")
    monkeypatch.setattr(bundles, "_CLONE", tmp_path / "bundles")
    message = (
        f"bundle 'cvae' not found: no bundles in {tmp_path / 'bundles'} (a clone of the repository) and no installed "
        "package monai_cmri_bundles holding them"
    )
    with pytest.raises(OSError, match=re.escape(message)):
        bundle_configs("cvae")
    with pytest.raises(OSError, match="no installed package monai_cmri_bundles"):
        commands.bundle()
    assert capsys.readouterr().out == ""
