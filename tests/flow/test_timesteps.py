"""Tests of training time sampling and of the adapter to MONAI's ``RFlowScheduler`` (paper 2.3)."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.schedulers import RFlowScheduler

from monai_cmri.flow.path import interpolate
from monai_cmri.flow.timesteps import from_monai_timesteps, sample_logit_normal, sample_uniform, to_monai_timesteps


@pytest.mark.parametrize("sampler", [sample_uniform, sample_logit_normal])
def test_a_fixed_seed_reproduces_the_times(sampler):
    a = sampler(64, generator=torch.Generator().manual_seed(3))
    b = sampler(64, generator=torch.Generator().manual_seed(3))
    c = sampler(64, generator=torch.Generator().manual_seed(4))
    assert a.shape == (64,) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("location, scale", [(0.0, 1.0), (0.8, 0.5), (-1.2, 1.6)])
def test_logit_normal_median_and_logit_spread(location, scale):
    n = 20000
    t = sample_logit_normal(n, location=location, scale=scale, generator=torch.Generator().manual_seed(0))
    # The sample median of N(m, s) logits has standard error s * sqrt(pi / (2 n)); allow 5 of them.
    logit_median = torch.logit(t.double()).median().item()
    assert abs(logit_median - location) < 5 * scale * math.sqrt(math.pi / (2 * n))
    assert abs(t.median().item() - 1 / (1 + math.exp(-location))) < 0.02
    assert abs(torch.logit(t.double()).std().item() - scale) < 0.05 * scale


def test_uniform_mean_and_variance():
    t = sample_uniform(20000, generator=torch.Generator().manual_seed(0)).double()
    assert abs(t.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / 20000)
    assert abs(t.var().item() - 1 / 12) < 0.003


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="scale"):
        sample_logit_normal(4, scale=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        sample_uniform(0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_monai_timesteps(torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        from_monai_timesteps(torch.tensor([1001]))


def test_monai_round_trip_and_endpoints():
    t = torch.tensor([0.0, 0.25, 0.5, 0.875, 1.0])
    timesteps = to_monai_timesteps(t, num_train_timesteps=1000)
    torch.testing.assert_close(timesteps, torch.tensor([1000.0, 750.0, 500.0, 125.0, 0.0]))
    torch.testing.assert_close(from_monai_timesteps(timesteps), t)
    integer_steps = torch.tensor([0, 1, 500, 1000])
    # t = 1 - T / N in float32 carries an error of ~eps_32, i.e. ~1.2e-4 once scaled back by N = 1000.
    round_trip = to_monai_timesteps(from_monai_timesteps(integer_steps, 1000), 1000)
    torch.testing.assert_close(round_trip, integer_steps.float(), rtol=0, atol=1.2e-4)


def test_monai_add_noise_agrees_with_our_path():
    g = torch.Generator().manual_seed(5)
    x_0, x_1 = torch.randn(3, 2, 6, 6, generator=g), torch.randn(3, 2, 6, 6, generator=g)
    scheduler = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=True)
    timesteps = torch.tensor([0, 300, 1000])
    theirs = scheduler.add_noise(original_samples=x_1, noise=x_0, timesteps=timesteps)
    ours = interpolate(x_0, x_1, from_monai_timesteps(timesteps, 1000))
    torch.testing.assert_close(theirs, ours)
