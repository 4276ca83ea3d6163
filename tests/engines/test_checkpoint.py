"""Tests of loading a bundle's weights file (SPEC 4: models/model.pt holds one state dict)."""

from __future__ import annotations

import pytest
import torch

from monai_cmri.engines import load_weights
from monai_cmri.networks import ComplexCVAE


def tiny(channels=(4, 8), seed=0) -> ComplexCVAE:
    torch.manual_seed(seed)
    return ComplexCVAE(channels=channels, num_res_blocks=1, norm_num_groups=4, cond_dim=8)


def test_round_trip_restores_every_tensor(tmp_path):
    source = tiny(seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    loaded = load_weights(tiny(seed=2), path, "cpu")
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x, s = torch.randn(2, 2, 16, 16), torch.tensor([0, 3])
    torch.testing.assert_close(loaded.eval()(x, s)[0], source.eval()(x, s)[0], rtol=0, atol=0)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_weights(tiny(), tmp_path / "nowhere.pt")


def test_other_hyper_parameters_are_a_value_error(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(tiny(channels=(8, 16)).state_dict(), path)
    with pytest.raises(ValueError, match="model.pt.*hyper-parameters"):
        load_weights(tiny(), path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"epoch": 3, "model": tiny().state_dict()}, path)
    with pytest.raises(ValueError, match="state_dict"):
        load_weights(tiny(), path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(OSError, match="model.pt"):
        load_weights(tiny(), path)
