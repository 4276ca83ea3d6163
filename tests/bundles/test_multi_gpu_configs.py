"""Every bundle's ``multi_gpu_*.json``: what only rank 0 builds, checked without a process group.

A handler that writes (TensorBoard's ``SummaryWriter`` opens its events file when the handler is
built) or logs must not be built on the other ranks at all: dropping it from the engine's list after
the config built it would still leave its files. The multi-process configs therefore mark those
handlers ``"_disabled_": "@is_not_rank0"`` (MONAI's own spelling for its tracking handlers), and
the torchrun tests check the outputs of two gloo processes.
"""

from __future__ import annotations

import json

import pytest
from cvae_data import REPO
from monai.bundle import ConfigParser

TRAINING = ("cvae", "flow_stage1", "flow_stage2", "classifier")
#: The train handlers rank 0 alone builds: the last three of every train.json.
RANK_0_TRAIN = ["StatsHandler", "TensorBoardStatsHandler", "monai_cmri.engines.TerminalProgressBar"]


def merged(bundle: str, *names: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles" / bundle / "configs" / name) for name in names])
    parser.update({"bundle_root": str(REPO / "bundles" / bundle)})
    return parser


def rank_0_only(handlers: list) -> list[str]:
    return [h["_target_"] for h in handlers if isinstance(h, dict) and h.get("_disabled_") == "@is_not_rank0"]


@pytest.mark.parametrize("bundle", TRAINING)
def test_writers_and_loggers_are_built_on_rank_0_alone(bundle):
    parser = merged(bundle, "train.json", "multi_gpu_train.json")
    assert parser["is_not_rank0"].endswith("torch.distributed.get_rank() > 0")
    assert parser.get_parsed_content("is_not_rank0") is False  # no process group: one process, rank 0
    handlers = parser["train#handlers"]
    assert rank_0_only(handlers) == RANK_0_TRAIN
    assert [h["_target_"] for h in handlers[-3:]] == RANK_0_TRAIN
    # Every rank keeps the handlers that take part in training: EMA, validation, schedules, the state.
    assert all("_disabled_" not in h for h in handlers[:-3] if isinstance(h, dict))
    validate = parser["validate#handlers"]
    assert rank_0_only(validate) == [h["_target_"] for h in validate]  # logs, TensorBoard, best model
    assert parser["train#trainer#train_handlers"].replace("::", "#") == "$monai_cmri.engines.tracked(@train#handlers)"
    assert parser["validate#evaluator#val_handlers"].replace("::", "#") == "@validate#handlers"
    if bundle == "classifier":
        # Every rank's ScoreWriter gathers its share of the test scores; rank 0 alone writes them.
        assert rank_0_only(parser["test#handlers"]) == ["StatsHandler"]


@pytest.mark.parametrize("bundle", TRAINING)
def test_multi_gpu_overrides_name_existing_ids(bundle):
    """Each ``#``-id of the override exists in train.json, so an edit there cannot orphan it silently."""
    base = merged(bundle, "train.json")
    overrides = json.loads((REPO / "bundles" / bundle / "configs" / "multi_gpu_train.json").read_text())
    for key in overrides:
        if "#" in key:
            parent = key.rsplit("#", 1)[0]
            assert parent in base, key
