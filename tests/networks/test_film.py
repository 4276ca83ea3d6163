"""Tests of FiLM and the FiLM residual block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_cmri.networks.blocks import FiLM, FiLMResBlock


def test_film_is_identity_at_initialisation():
    film = FiLM(num_channels=6, cond_dim=4)
    assert torch.count_nonzero(film.proj.weight) == 0 and torch.count_nonzero(film.proj.bias) == 0
    x = torch.randn(3, 6, 5, 7)
    torch.testing.assert_close(film(x, torch.randn(3, 4)), x, rtol=0, atol=0)


def test_film_applies_predicted_scale_and_shift():
    film = FiLM(num_channels=3, cond_dim=2)
    with torch.no_grad():
        # scale = (c0, 2 c0, 0), shift = (0, c1, -1)
        film.proj.weight.copy_(torch.tensor([[1.0, 0], [2, 0], [0, 0], [0, 0], [0, 1], [0, 0]]))
        film.proj.bias.copy_(torch.tensor([0.0, 0, 0, 0, 0, -1]))
    x = torch.randn(2, 3, 4, 4)
    cond = torch.tensor([[0.5, 3.0], [-1.0, 0.0]])
    out = film(x, cond)
    for b, (c0, c1) in enumerate(cond.tolist()):
        torch.testing.assert_close(out[b, 0], x[b, 0] * (1 + c0))
        torch.testing.assert_close(out[b, 1], x[b, 1] * (1 + 2 * c0) + c1)
        torch.testing.assert_close(out[b, 2], x[b, 2] - 1)


def test_film_works_for_any_spatial_rank():
    film = FiLM(num_channels=2, cond_dim=3)
    nn.init.normal_(film.proj.weight)
    cond = torch.randn(4, 3)
    x3d = torch.randn(4, 2, 3, 4, 5)
    out = film(x3d, cond)
    # The same modulation applied slice by slice: spatial axes only broadcast.
    torch.testing.assert_close(out[..., 1], film(x3d[..., 1], cond))
    assert film(torch.randn(4, 2), cond).shape == (4, 2)


def test_film_learns_from_zero_initialisation():
    film = FiLM(num_channels=2, cond_dim=3)
    x, cond = torch.randn(4, 2, 3, 3), torch.randn(4, 3)
    (film(x, cond) * torch.randn(4, 2, 3, 3)).sum().backward()
    assert film.proj.weight.grad.abs().sum() > 0


def test_film_rejects_bad_shapes():
    film = FiLM(num_channels=4, cond_dim=3)
    with pytest.raises(ValueError, match=r"\(B, 4, \.\.\.\)"):
        film(torch.randn(2, 5, 3, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        film(torch.randn(2, 4, 3, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        film(torch.randn(2, 4, 3, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="positive"):
        FiLM(0, 3)


def test_resblock_at_init_ignores_the_condition_and_matches_a_plain_block():
    torch.manual_seed(0)
    block = FiLMResBlock(2, in_channels=4, out_channels=8, cond_dim=5, norm_num_groups=2).eval()
    x = torch.randn(3, 4, 6, 6)
    out = block(x, torch.randn(3, 5))
    assert out.shape == (3, 8, 6, 6)
    torch.testing.assert_close(out, block(x, torch.randn(3, 5)))
    # The reference: the same layers without FiLM (GroupNorm -> SiLU -> conv, twice, plus 1x1 skip).
    silu = nn.functional.silu
    h = block.conv1(silu(block.norm1(x)))
    h = block.conv2(silu(block.norm2(h)))
    torch.testing.assert_close(out, block.skip(x) + h)


def test_resblock_condition_changes_output_once_film_is_trained():
    torch.manual_seed(0)
    block = FiLMResBlock(2, in_channels=4, out_channels=4, cond_dim=5, norm_num_groups=2)
    assert isinstance(block.skip, nn.Identity)
    for film in (block.film1, block.film2):
        nn.init.normal_(film.proj.weight, std=0.5)
    x = torch.randn(1, 4, 6, 6).expand(2, -1, -1, -1)
    out = block(x, torch.randn(2, 5))
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_resblock_rejects_indivisible_groups():
    with pytest.raises(ValueError, match="6 channels are not divisible by 4"):
        FiLMResBlock(2, in_channels=8, out_channels=6, cond_dim=3, norm_num_groups=4)
