"""The flow bundles' ``multi_gpu_train.json`` trained by torchrun with two gloo processes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from cvae_data import REPO, environment, flags
from flow_data import TINY_FLOW, configs, write_flow_latents

from monai_cmri.engines import load_weights, record_path
from monai_cmri.networks import FlowUNet

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

#: What a rank's C++ runtime prints when a gloo process aborts on exit.
SHUTDOWN_ABORT = "terminate called without an active exception"
EPOCHS = 2
SIZES = {key: TINY_FLOW[key] for key in ("channels", "attention_levels", "num_res_blocks", "norm_num_groups",
                                         "num_head_channels")}  # fmt: skip


def launch_ddp(line: list[str], finished: int) -> str:
    """Run a torchrun command line; return its log (stdout and stderr), failing the test on an error.

    As the cvae test's helper, whose count of finished engine runs is that of one epoch: a run that
    failed only by the rare gloo abort at exit (see the cvae bundle's docs/README.md), after all
    ``finished`` engine runs that rank 0 logs, is relaunched once; any other failure fails the test.
    """
    result = subprocess.run(line, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    if result.returncode and SHUTDOWN_ABORT in log and log.count("Engine run finished") == finished:
        result = subprocess.run(line, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
        log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return log


@pytest.fixture(scope="module")
def latents(patches, tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("tensorboard")
    return write_flow_latents(patches, tmp_path_factory.mktemp("flow_ddp"))


@pytest.fixture(scope="module")
def ddp(latents) -> tuple[Path, str]:
    """Two DDP processes on CPU (gloo), started by torchrun with the tiny sizes on the command line."""
    out = latents["root"] / "ddp"
    line = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "training",
        "--config_file", json.dumps(configs("flow_stage1", "train.json", "cpu.json", "multi_gpu_train.json")),
        *flags(epochs=EPOCHS, dataset_dir=str(latents["latents"]), output_dir=str(out),
               **{**TINY_FLOW, "attention_levels": str(TINY_FLOW["attention_levels"])}),
    ]  # fmt: skip
    # Python's spelling of the booleans: fire reads the JSON "[false, true]" as two (truthy) strings.
    # Rank 0 alone logs at INFO: the trainer's run and one validation run per epoch.
    return out, launch_ddp(line, finished=EPOCHS + 1)


def event_tags(out: Path) -> dict[str, set[str]]:
    """The scalar tags of the TensorBoard events files in ``out``, by the process id that wrote them."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tags = defaultdict(set)
    for path in out.glob("events.out.tfevents.*"):
        pid = path.name.split(".")[-2]
        tags[pid] |= {value.tag for event in EventFileLoader(str(path)).Load() for value in event.summary.value}
    return dict(tags)


def test_multi_gpu_config_trains_with_two_gloo_processes(ddp):
    out, log = ddp
    for epoch in range(1, EPOCHS + 1):
        assert log.count(f"Epoch[{epoch}] Metrics -- ") == 2, log[-3000:]  # the trainer's and the evaluator's line
    assert log.count("Engine run finished") == EPOCHS + 1, log[-3000:]

    # Only rank 0 writes: one set of outputs.
    models = out / "models"
    kept = sorted(models.glob("epoch_*.pt"))
    assert [json.loads(record_path(path).read_text())["epoch"] for path in kept] == [1, 2]  # keep 2 of cpu.json
    assert sorted(p.name for p in models.iterdir()) == sorted(
        [*(p.name for p in kept), *(record_path(p).name for p in kept), "model.json", "model.pt", "trainer_state.pt"]
    )
    state = torch.load(models / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == EPOCHS and len(state["rng"]) == 2  # both ranks trained every epoch
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    record = json.loads((models / "model.json").read_text())
    assert record["network"]["weights"] == "EMA" and all(
        record["network"][key] == value for key, value in SIZES.items()), record["network"]
    # One process logs to TensorBoard (its trainer's and its evaluator's writer).
    logging = [tags for tags in event_tags(out).values() if tags]
    assert logging == [{"train_loss", "val_loss"}], event_tags(out)

    # The saved EMA weights, without a DDP "module." prefix, load into the tiny network.
    for path in (models / "model.pt", kept[-1]):
        network = load_weights(FlowUNet(in_channels=2, out_channels=2, **SIZES), path)
        assert all(torch.isfinite(p).all() for p in network.parameters())


def test_only_rank_0_writes_tensorboard_events_files(ddp):
    """Rank 1 builds no TensorBoard handler (``_disabled_``), so it opens no events file.

    ``TensorBoardStatsHandler`` opens its ``SummaryWriter`` when it is built, so dropping the handler
    from the engine's list after building it would still leave an empty events file per writer.
    """
    out, _ = ddp
    assert len(event_tags(out)) == 1, event_tags(out)
    assert len(list(out.glob("events.out.tfevents.*"))) == 2  # rank 0's trainer and evaluator


def test_stage2_multi_gpu_config_trains_and_rank_0_alone_writes(latents):
    """flow_stage2's ``multi_gpu_train.json``, one epoch from untrained stage-1 weights (phase 1 only)."""
    stage1 = latents["root"] / "stage1.pt"
    torch.manual_seed(0)
    torch.save(FlowUNet(in_channels=2, out_channels=2, **SIZES).state_dict(), stage1)
    out = latents["root"] / "ddp_stage2"
    line = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "training",
        "--config_file", json.dumps(configs("flow_stage2", "train.json", "cpu.json", "multi_gpu_train.json")),
        *flags(epochs=1, phase1_epochs=1, dataset_dir=str(latents["latents"]), output_dir=str(out),
               stage1_ckpt=str(stage1), **{**TINY_FLOW, "attention_levels": str(TINY_FLOW["attention_levels"])}),
    ]  # fmt: skip
    log = launch_ddp(line, finished=2)
    assert log.count("Epoch[1] Metrics -- ") == 2, log[-3000:]
    state = torch.load(out / "models" / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and len(state["rng"]) == 2
    assert (out / "models" / "model.pt").is_file()
    assert len(event_tags(out)) == 1 and len(list(out.glob("events.out.tfevents.*"))) == 2, event_tags(out)
