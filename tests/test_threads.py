from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monai_cmri import threads
from monai_cmri.threads import THREAD_VARIABLES, available_cpus, pool_workers, resolve_threads

#: Applies the policy in a fresh interpreter (torch's thread counts are global to a process and
#: the inter-op count can be set only once) and reports what torch, BLAS and the environment hold.
#: scipy's own OpenBLAS is loaded only afterwards: it must take the count from the environment.
PROBE = """
import json, os, sys
import numpy, threadpoolctl, torch
from monai_cmri.threads import apply_thread_policy
counts = [apply_thread_policy(value) for value in json.loads(sys.argv[1])]
import scipy.linalg
blas = {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}
print(json.dumps({"returned": counts, "torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                  "blas": sorted(blas), "env": [os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")]}))
"""


def environment(**env: str) -> dict[str, str]:
    """This process's environment without thread variables, with ``env`` and the repository on the path."""
    environ = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES} | env
    root = str(Path(__file__).resolve().parents[1])
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environ.get("PYTHONPATH")]))
    return environ


def probe(values: list[int | str], **env: str) -> dict:
    environ = environment(**env)
    command = [sys.executable, "-c", PROBE, json.dumps(values)]
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_auto_is_one_thread_without_thread_variables():
    assert resolve_threads("auto", environ={}) == 1
    assert resolve_threads(None, environ={"OMP_NUM_THREADS": ""}) == 1


def test_auto_respects_thread_variables():
    assert resolve_threads("auto", environ={"OMP_NUM_THREADS": "3"}) == 3
    assert resolve_threads("auto", environ={"MKL_NUM_THREADS": " 5 "}) == 5
    assert resolve_threads("auto", environ={"OMP_NUM_THREADS": "4,2", "MKL_NUM_THREADS": "7"}) == 4  # OpenMP list
    with pytest.raises(ValueError, match=r"OMP_NUM_THREADS='two'"):
        resolve_threads("auto", environ={"OMP_NUM_THREADS": "two"})
    with pytest.raises(ValueError, match=r"MKL_NUM_THREADS='0'"):
        resolve_threads("auto", environ={"MKL_NUM_THREADS": "0"})


def test_explicit_counts_ignore_the_environment():
    environ = {"OMP_NUM_THREADS": "8"}
    assert resolve_threads(3, environ=environ) == 3
    assert resolve_threads("2", environ=environ) == 2
    assert resolve_threads("all", environ=environ) == available_cpus()


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "", "many", "2.0", [2]])
def test_rejects_nonsense_naming_the_value(value):
    with pytest.raises(ValueError, match=f"threads={value!r}".replace("[", r"\[").replace(".", r"\.")):
        resolve_threads(value, environ={})


def test_apply_sets_torch_blas_and_children_environment():
    # The first call also sets the inter-op pool; later calls may not, but set the rest and do not raise.
    quiet = probe(["auto", 2, 1])
    assert quiet == {"returned": [1, 2, 1], "torch": 1, "interop": 1, "blas": [1], "env": ["1", "1"]}
    user = probe(["auto"], OMP_NUM_THREADS="2")
    assert user["returned"] == [2] and user["torch"] == 2 and user["interop"] == 2 and user["env"] == ["2", "2"]
    # numpy's OpenBLAS is set to 2; scipy's reads the environment and caps it at the cores it finds.
    assert 2 in user["blas"] and set(user["blas"]) <= {1, 2}


def test_resolving_imports_no_torch():
    # The command line resolves the count and exports it before torch loads, so that OpenMP starts with it.
    code = "import sys, monai_cmri.threads as t; t.resolve_threads(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_available_cpus_honours_a_cgroup_quota(tmp_path, monkeypatch):
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "_CGROUP_CPU_MAX", cpu_max)
    assert available_cpus() == affinity  # no file
    cpu_max.write_text("max 100000\n")
    assert available_cpus() == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU still runs one thread
    assert available_cpus() == 1
    cpu_max.write_text("150000 100000\n")
    assert available_cpus() == min(affinity, 2)
    cpu_max.write_text("garbage\n")
    assert available_cpus() == affinity


def test_pool_workers():
    assert pool_workers() == pool_workers("auto") == available_cpus()
    assert pool_workers(8, jobs=3) == 3
    assert pool_workers("4", jobs=0) == 1
    assert pool_workers(2) == 2
    for value in (0, "x", True):
        with pytest.raises(ValueError, match=f"workers={value!r}"):
            pool_workers(value)
    with pytest.raises(ValueError, match="jobs"):
        pool_workers(2, jobs=-1)
