"""Tests of the SE-ResNet classifier (paper 2.4.1, 2.4.2) in its small CPU profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn

from monai_cmri.networks import SEResNetClassifier
from monai_cmri.networks.nets.classifier import SEResNetBlock

SMALL = {"channels": (16, 32, 64), "blocks": (1, 1, 1)}


def small(**kwargs) -> SEResNetClassifier:
    torch.manual_seed(0)
    return SEResNetClassifier(**{**SMALL, **kwargs})


def n_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("shape", [(3, 2, 48, 48), (3, 2, 96, 96), (2, 2, 17, 23)])
def test_one_logit_per_sample_for_latents_patches_and_odd_sizes(shape):
    net = small().eval()
    with torch.no_grad():
        logits = net(torch.randn(shape))
    assert logits.shape == (shape[0], 1)
    assert torch.isfinite(logits).all()


def test_small_and_default_profile_sizes():
    """CPU profile (16, 32, 64), one block per stage: 80,141 parameters; the default
    (32, 64, 128, 256): 1,270,489."""
    assert n_parameters(small()) == 80_141
    net = SEResNetClassifier()
    assert n_parameters(net) == 1_270_489
    assert len(net.stages) == 4 and sum(isinstance(m, ChannelSELayer) for m in net.modules()) == 4


def test_channel_se_layer_is_input_times_sigmoid_of_mlp_of_average_pool():
    net = small()
    se = net.stages[1][0].se
    torch.manual_seed(1)
    with torch.no_grad():
        for p in se.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(2, 32, 7, 5)
    w1, b1 = se.fc[0].weight.detach().numpy(), se.fc[0].bias.detach().numpy()
    w2, b2 = se.fc[2].weight.detach().numpy(), se.fc[2].bias.detach().numpy()
    pooled = x.numpy().mean(axis=(2, 3))  # (B, C)
    hidden = np.maximum(pooled @ w1.T + b1, 0.0)  # (B, C // r)
    gates = 1.0 / (1.0 + np.exp(-(hidden @ w2.T + b2)))  # (B, C)
    assert w1.shape == (32 // 4, 32)
    assert ((gates > 0) & (gates < 1)).all() and gates.std() > 0.05
    with torch.no_grad():
        out = se(x.clone())
    np.testing.assert_allclose(out.numpy(), x.numpy() * gates[:, :, None, None], rtol=1e-5, atol=1e-6)


def test_a_closed_gate_leaves_only_the_shortcut():
    torch.manual_seed(0)
    block = SEResNetBlock(8, 16, stride=2, se_reduction=4).eval()
    with torch.no_grad():
        block.se.fc[2].bias.fill_(-1e4)  # sigmoid -> 0: the residual branch is switched off
        x = torch.randn(2, 8, 9, 9)
        out = block(x)
        expected = torch.relu(block.shortcut(x))
    assert out.shape == (2, 16, 5, 5)
    torch.testing.assert_close(out, expected)


def test_scripted_model_equals_eager():
    net = small(dropout=0.2).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(3, 2, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(scripted(x[:, :, :40, :44]), net(x[:, :, :40, :44]), rtol=1e-5, atol=1e-6)
    with pytest.raises(torch.jit.Error, match=r"ValueError: SEResNetClassifier expects \(B, 2, H, W\)"):
        scripted(torch.randn(1, 3, 48, 48))


def test_batch_of_one_in_eval_mode_matches_its_row_of_a_batch():
    net = small().eval()
    x = torch.randn(4, 2, 96, 96)
    with torch.no_grad():
        batch = net(x)
        single = net(x[2:3])
    assert single.shape == (1, 1)
    torch.testing.assert_close(single, batch[2:3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 48, 48), (1, 3, 48, 48), (1, 1, 2, 48, 48)])
def test_wrong_dims_or_channels_raise(shape):
    with pytest.raises(ValueError, match=r"expects \(B, 2, H, W\)"):
        small()(torch.randn(shape))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": (), "blocks": ()},
        {"channels": (16, 32), "blocks": (1, 1, 1)},
        {"channels": (16, 32), "blocks": (1, 0)},
        {"dropout": 1.0},
        {"se_reduction": 32},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        SEResNetClassifier(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    ("norm", "kind"), [("instance", nn.InstanceNorm2d), (("group", {"num_groups": 4}), nn.GroupNorm)]
)
def test_norm_choice_reaches_every_block(norm, kind):
    net = small(norm=norm)
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm))]
    # stem + 2 per block + one projection shortcut in each of the two downsampling stages
    assert len(norms) == 1 + 2 * 3 + 2 and all(isinstance(m, kind) for m in norms)


def test_learns_to_separate_two_classes_by_phase():
    """Same magnitudes, phases 0 and pi/2: a task only the two-channel input can solve."""
    torch.manual_seed(0)
    net = small()
    label = torch.arange(16) % 2
    angle = label.float().view(-1, 1, 1, 1) * (torch.pi / 2)

    def patches() -> torch.Tensor:
        magnitude = torch.rand(16, 1, 16, 16) + 0.5
        return torch.cat([magnitude * torch.cos(angle), magnitude * torch.sin(angle)], dim=1)

    x = patches()
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(10):
        optimiser.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), label.float()).backward()
        optimiser.step()
    net.eval()
    with torch.no_grad():
        accuracy = ((net(patches()).squeeze(1) > 0).long() == label).float().mean()  # new magnitudes
    assert accuracy == 1.0
