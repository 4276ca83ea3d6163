"""The flow bundles' synthetic sets drawn by one process and by two torchrun gloo processes on the CPU.

``multi_gpu_inference.json`` shares the batches of the set out over the ranks
(:func:`monai_cmri.flow.sampling.shard_range`), each rank writes a shard and rank 0 concatenates
them in rank order, then decodes, draws the sheet and writes the statistics alone. The merged set
must equal the one-process set sample for sample: flow_stage1's ``run`` entry and flow_stage2's
``generate`` entry, with untrained tiny networks (the weights do not matter to the comparison).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cvae_data import REPO, environment, flags
from flow_data import TINY_FLOW, configs, run, write_flow_latents
from monai.bundle import ConfigParser

from monai_cmri.flow.sampling import FlowSampler, counts_per_sequence, sample_latents, shard_path, shard_range
from monai_cmri.networks import FlowUNet

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

#: What a rank's C++ runtime prints when a gloo process aborts on exit (see the cvae bundle's docs).
SHUTDOWN_ABORT = "terminate called without an active exception"
SIZES = {key: TINY_FLOW[key] for key in ("channels", "attention_levels", "num_res_blocks", "norm_num_groups",
                                         "num_head_channels")}  # fmt: skip
#: 5 sequences x 5 samples in batches of 6: 5 batches (the last of 1), 3 for rank 0 and 2 for rank 1.
SETTINGS = {"samples_per_sequence": 5, "batch_size": 6, "steps": 2, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def inputs(patches, tmp_path_factory) -> dict[str, Path]:
    """Tiny latents, the cvae that encoded them, and untrained stage-1 and stage-2 weights."""
    root = tmp_path_factory.mktemp("flow_sampling")
    latents = write_flow_latents(patches, root)
    torch.manual_seed(1)
    for stage, classes in (("stage1", None), ("stage2", 3)):
        latents[stage] = root / stage / "model.pt"
        latents[stage].parent.mkdir()
        network = FlowUNet(in_channels=2, out_channels=2, num_classes=classes, **SIZES)
        torch.save(network.state_dict(), latents[stage])
    return latents


def one_and_two(bundle: str, entry: str, inputs: dict[str, Path], **settings: object) -> tuple[Path, Path, str]:
    """``entry`` of a flow bundle run by one process, then by two torchrun gloo processes.

    Returns the two output folders and the torchrun log.
    """
    root = inputs["root"] / bundle
    overrides = {
        "dataset_dir": str(inputs["latents"]), "patch_dir": str(inputs["patches"]), "cvae_ckpt": str(inputs["cvae"]),
        "ckpt_path": str(inputs["stage1" if bundle == "flow_stage1" else "stage2"]), **settings, **SIZES,
    }  # fmt: skip
    one, two = root / "one", root / "two"
    run(bundle, entry, ("inference.json", "cpu.json"), output_dir=str(one), **overrides)
    line = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", entry,
        "--config_file", json.dumps(configs(bundle, "inference.json", "cpu.json", "multi_gpu_inference.json")),
        # Python's spelling of the booleans, as the torchrun training test writes them.
        *flags(output_dir=str(two), **{**overrides, "attention_levels": str(SIZES["attention_levels"]),
                                       "progress": "False"}),
    ]  # fmt: skip
    result = subprocess.run(line, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    if result.returncode and SHUTDOWN_ABORT in log and (two / "synthetic" / "patches.h5").is_file():
        # The rare gloo abort at exit, after the outputs are written: relaunch once.
        result = subprocess.run(line, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
        log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return one, two, log


@pytest.fixture(scope="module")
def sampled(inputs) -> tuple[Path, Path, str]:
    """flow_stage1's ``run`` entry (sample, decode, sheet, statistics) by one and by two processes."""
    return one_and_two("flow_stage1", "run", inputs, **SETTINGS)


def contents(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Every dataset and attribute of an HDF5 file."""
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in file}, dict(file.attrs)


def test_two_ranks_write_the_one_process_set(sampled):
    one, two, log = sampled
    assert "25 latents from 2 processes, samples by rank [0, 18), [18, 25)" in log, log[-3000:]
    for name in ("latents.h5", "patches.h5"):
        single, single_attrs = contents(one / "synthetic" / name)
        merged, merged_attrs = contents(two / "synthetic" / name)
        assert sorted(merged) == sorted(single), name
        for key, value in single.items():
            np.testing.assert_array_equal(merged[key], value, err_msg=f"{name}: {key}")
        if name == "latents.h5":  # the decoded file names its source latent file, which differs by folder
            assert merged_attrs == single_attrs
    data, _ = contents(two / "synthetic" / "latents.h5")
    assert len(data["latents"]) == 25 and data["seed"].tolist() == list(range(25))
    assert len({tuple(row.ravel()[:4]) for row in data["latents"]}) == 25  # every sample its own noise
    # Rank 0 alone writes the outputs, and every shard is gone.
    assert sorted(p.name for p in (two / "synthetic").iterdir()) == ["latents.h5", "patches.h5"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_stage2_generate_with_two_ranks_writes_the_one_process_set(inputs):
    """flow_stage2's ``generate`` entry: the set matched to the real training latents, guided by class."""
    one, two, log = one_and_two("flow_stage2", "generate", inputs, batch_size=4, steps=2, progress=False, threads=1)
    single, single_attrs = contents(one / "synthetic" / "latents.h5")
    merged, merged_attrs = contents(two / "synthetic" / "latents.h5")
    # The 10 real training latents in batches of 4: 2 batches for rank 0, 1 for rank 1.
    assert "10 latents from 2 processes, samples by rank [0, 8), [8, 10)" in log, log[-3000:]
    assert sorted(merged) == sorted(single) and merged_attrs == single_attrs
    for key, value in single.items():
        np.testing.assert_array_equal(merged[key], value, err_msg=key)
    assert set(merged["nfe"].tolist()) == {8}  # Heun, 2 steps, guidance 2: both halves
    assert sorted(p.name for p in (two / "synthetic").iterdir()) == ["latents.h5", "patches.h5"]
    assert sorted(p.name for p in two.iterdir()) == ["synthetic"]  # generate draws no sheet


def test_shards_cover_the_set_once_in_whole_batches():
    for total, batch, world in [(25, 6, 2), (25, 6, 3), (3, 6, 4), (0, 4, 2), (64, 8, 8), (65, 8, 8)]:
        spans = [shard_range(total, batch, rank, world) for rank in range(world)]
        assert spans[0][0] == 0 and spans[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(first % batch == 0 for first, last in spans if last > first)
        sizes = [-(-(last - first) // batch) for first, last in spans]
        assert max(sizes) - min(sizes) <= 1, (total, batch, world, spans)
    assert shard_range(25, 6, 0, 1) == (0, 25)
    assert shard_path("/out/latents.h5", 1, 4) == Path("/out/latents.rank-1-of-4.h5")
    with pytest.raises(ValueError, match="rank"):
        shard_range(25, 6, 2, 2)


def test_several_processes_need_a_process_group(tmp_path):
    network = FlowUNet(in_channels=2, out_channels=2, **SIZES)
    with pytest.raises(ValueError, match="no process group"):
        sample_latents(network, counts_per_sequence(1), tmp_path / "x.h5", FlowSampler(steps=1), shape=(2, 8, 8),
                       rank=0, world_size=2, progress=False)  # fmt: skip
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bundle", ["flow_stage1", "flow_stage2"])
def test_rank_0_only_outputs_are_the_single_process_ones(bundle):
    """Each guarded entry of ``multi_gpu_inference.json`` is inference.json's, run on rank 0 alone."""
    inference = json.loads((REPO / "bundles" / bundle / "configs" / "inference.json").read_text())
    multi = json.loads((REPO / "bundles" / bundle / "configs" / "multi_gpu_inference.json").read_text())
    for key in ("decoder", "decode", "sheet", "statistics"):
        assert multi[key] == "$None if @is_not_rank0 else " + inference[key][1:], key
    assert "sample" not in multi  # sample_latents shares the set out over the process group itself
    assert multi["initialize"][-len(inference["initialize"]):] == inference["initialize"]
    parser = ConfigParser()
    parser.read_config(configs(bundle, "inference.json", "cpu.json", "multi_gpu_inference.json"))
    assert parser.get_parsed_content("is_not_rank0") is False
    assert parser.get_parsed_content("device").type in ("cpu", "cuda")
