"""Tests of the conditional VAE loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from monai_cmri.losses import CVAELoss, gradient_l1, kl_standard_normal


def test_zero_for_a_perfect_reconstruction_and_a_standard_normal_posterior():
    x = torch.randn(3, 2, 5, 4)
    latent = torch.zeros(3, 2, 3, 2)
    total, terms = CVAELoss(lambda_grad=2.0, lambda_kl=0.5)(x, x.clone(), latent, latent.clone())
    assert total.item() == 0.0
    assert all(value.item() == 0.0 for value in terms.values())


def test_reconstruction_term_by_hand():
    target = torch.zeros(1, 2, 2, 2)
    recon = torch.tensor([[[[1.0, -2.0], [0.0, 0.5]], [[0.0, 0.0], [-0.5, 0.0]]]])
    _, terms = CVAELoss()(recon, target, torch.zeros(1, 1), torch.zeros(1, 1))
    assert terms["recon"].item() == pytest.approx((1 + 2 + 0.5 + 0.5) / 8)


def test_gradient_term_by_hand():
    target = torch.randn(1, 1, 2, 2)
    error = torch.tensor([[[[0.0, 1.0], [3.0, 3.0]]]])
    # Rows: differences (3, 2) -> mean 2.5; columns: (1, 0) -> mean 0.5.
    assert gradient_l1(target + error, target).item() == pytest.approx(3.0, rel=1e-6)
    # A constant offset has no edges: only the reconstruction term sees it.
    assert gradient_l1(target + 0.7, target).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_term_uses_real_and_imaginary_channels():
    target = torch.zeros(1, 2, 3, 3)
    recon = target.clone()
    recon[0, 1, :, 2] = 1.0  # an edge in the imaginary channel only
    # Along W: differences 1 on the 3 rows of one channel, out of 2 * 3 * 2 -> 3 / 12; none along H.
    assert gradient_l1(recon, target).item() == pytest.approx(0.25)


def test_kl_term_by_hand_and_against_torch_distributions():
    mu = torch.tensor([[1.0, 0.0]]).reshape(1, 2, 1, 1)
    logvar = torch.tensor([[0.0, math.log(2.0)]]).reshape(1, 2, 1, 1)
    expected = 0.5 * 1.0 + 0.5 * (2.0 - math.log(2.0) - 1.0)
    assert kl_standard_normal(mu, logvar).item() == pytest.approx(expected, rel=1e-6)

    mu, logvar = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), reference)
    # The loss averages the per-sample sums over the batch.
    _, terms = CVAELoss()(torch.zeros(4, 2, 2, 2), torch.zeros(4, 2, 2, 2), mu, logvar)
    torch.testing.assert_close(terms["kl"], reference.mean())


def test_total_is_the_weighted_sum():
    torch.manual_seed(0)
    recon, target = torch.randn(2, 2, 6, 6), torch.randn(2, 2, 6, 6)
    mu, logvar = torch.randn(2, 2, 3, 3), torch.randn(2, 2, 3, 3)
    total, terms = CVAELoss(lambda_grad=0.3, lambda_kl=0.01)(recon, target, mu, logvar)
    expected = (
        (recon - target).abs().mean() + 0.3 * gradient_l1(recon, target) + 0.01 * kl_standard_normal(mu, logvar).mean()
    )
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(terms["total"], expected)
    assert CVAELoss().lambda_grad == 1.0 and CVAELoss().lambda_kl == 1e-6


def test_computed_in_fp32_and_differentiable():
    recon = torch.randn(2, 2, 4, 4, dtype=torch.bfloat16, requires_grad=True)
    mu = torch.randn(2, 2, 2, 2, dtype=torch.float16, requires_grad=True)
    total, terms = CVAELoss()(recon, torch.randn(2, 2, 4, 4).bfloat16(), mu, torch.zeros(2, 2, 2, 2))
    assert total.dtype == torch.float32 and all(t.dtype == torch.float32 for t in terms.values())
    assert all(not t.requires_grad for t in terms.values())
    total.backward()
    assert recon.grad.abs().sum() > 0 and mu.grad.abs().sum() > 0


def test_rejects_bad_input():
    loss = CVAELoss()
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 4\) and \(2, 2, 4, 5\)"):
        loss(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 5), torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="latent batch"):
        loss(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4), torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="one shape"):
        kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="H, W >= 2"):
        gradient_l1(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match=">= 0"):
        CVAELoss(lambda_kl=-1.0)
