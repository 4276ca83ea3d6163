"""Tests of the sequence-conditioned complex VAE (small profile, CPU)."""

from __future__ import annotations

import pytest
import torch

from monai_cmri.data.sequences import SEQUENCES
from monai_cmri.losses import CVAELoss
from monai_cmri.networks.blocks import FiLM
from monai_cmri.networks.nets import ComplexCVAE

SMALL = {"channels": (8, 16), "num_res_blocks": 1, "norm_num_groups": 4, "cond_dim": 8}


def small(**kwargs) -> ComplexCVAE:
    torch.manual_seed(0)
    return ComplexCVAE(**{**SMALL, **kwargs})


def test_shapes_of_the_paper_configuration():
    net = small().eval()
    x = torch.randn(2, 2, 96, 96)
    sequence = torch.tensor([0, 4])
    recon, mu, logvar = net(x, sequence)
    assert recon.shape == (2, 2, 96, 96)
    assert mu.shape == logvar.shape == (2, 2, 48, 48)
    assert net.decode(mu, sequence).shape == (2, 2, 96, 96)
    assert net.sample(x, sequence).shape == (2, 2, 48, 48)


def test_default_is_the_full_size_model():
    net = ComplexCVAE()
    assert net.channels == (64, 128) and net.downsample_factor == 2
    assert net.embedding.num_embeddings == len(SEQUENCES) == 5
    assert sum(isinstance(m, FiLM) for m in net.modules()) == 2 * 2 * 2 * 2  # film x blocks x levels x enc/dec
    with torch.no_grad():
        _, mu, _ = net(torch.randn(1, 2, 96, 96), torch.tensor([2]))
    assert mu.shape == (1, 2, 48, 48)


@pytest.mark.parametrize(("channels", "size", "latent"), [((8,), 16, 16), ((8, 8, 16), 24, 6)])
def test_levels_set_the_downsampling(channels, size, latent):
    net = small(channels=channels, latent_channels=3).eval()
    recon, mu, _ = net(torch.randn(2, 2, size, size), torch.tensor([1, 3]))
    assert mu.shape == (2, 3, latent, latent) and recon.shape == (2, 2, size, size)


def test_sequence_has_no_effect_at_initialisation_and_does_once_film_is_nonzero():
    net = small().eval()
    x = torch.randn(1, 2, 16, 16).expand(len(SEQUENCES), -1, -1, -1)
    sequence = torch.arange(len(SEQUENCES))
    with torch.no_grad():
        recon, mu, _ = net(x, sequence)
        torch.testing.assert_close(recon, recon[:1].expand_as(recon))
        torch.testing.assert_close(mu, mu[:1].expand_as(mu))
        for film in (m for m in net.modules() if isinstance(m, FiLM)):
            film.proj.weight.normal_(std=0.3)
        recon, mu, _ = net(x, sequence)
    for i in range(1, len(SEQUENCES)):
        assert (mu[i] - mu[0]).abs().max() > 1e-3
        assert (recon[i] - recon[0]).abs().max() > 1e-3


def test_training_mode_samples_and_evaluation_mode_uses_the_mean():
    net = small()
    x, sequence = torch.randn(2, 2, 16, 16), torch.tensor([0, 1])
    with torch.no_grad():
        net.eval()
        recon_eval, mu, _ = net(x, sequence)
        torch.testing.assert_close(recon_eval, net.decode(mu, sequence))
        torch.testing.assert_close(net(x, sequence)[0], recon_eval)
        net.train()
        torch.manual_seed(1)
        first = net(x, sequence)[0]
        torch.manual_seed(2)
        second = net(x, sequence)[0]
    assert (first - second).abs().max() > 1e-4


@pytest.mark.parametrize("logvar_init", [-6.0, 0.0])
def test_logvar_init_sets_the_initial_posterior_spread_and_leaves_the_mean(logvar_init):
    x, sequence = torch.randn(8, 2, 16, 16), torch.arange(8) % 5
    with torch.no_grad():
        mu, logvar = small(logvar_init=logvar_init).encode(x, sequence)
        reference_mu, reference_logvar = small(logvar_init=0.0).encode(x, sequence)
    # Only the bias of the log-variance maps differs: the same draw of every other weight.
    torch.testing.assert_close(mu, reference_mu)
    torch.testing.assert_close(logvar, reference_logvar + logvar_init)
    assert abs(logvar.mean().item() - logvar_init) < 0.5


def test_reparameterize_has_the_posterior_moments():
    mu = torch.full((4000, 1, 2, 2), 1.5)
    logvar = torch.full_like(mu, 2 * torch.log(torch.tensor(0.5)).item())
    z = ComplexCVAE.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 1.5) < 0.02
    assert abs(z.std().item() - 0.5) < 0.02
    again = ComplexCVAE.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, again, rtol=0, atol=0)
    # Zero variance is the mean itself.
    torch.testing.assert_close(ComplexCVAE.reparameterize(mu, torch.full_like(mu, -30.0)), mu, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="differ"):
        ComplexCVAE.reparameterize(mu, logvar[:2])


def smooth_patches() -> torch.Tensor:
    """Four (2, 16, 16) complex blobs with linear phase ramps: structure a small VAE can learn."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    mag = torch.stack([torch.exp(-((xx - a) ** 2 + (yy + a) ** 2) / 0.3) for a in (-0.3, 0.0, 0.2, 0.4)])
    phase = torch.stack([k * xx + 0.5 * yy for k in (0.5, 1.0, 2.0, 3.0)])
    return torch.stack((mag * torch.cos(phase), mag * torch.sin(phase)), dim=1)


def test_a_few_adam_steps_reduce_the_loss():
    net = small()
    x = smooth_patches()
    sequence = torch.tensor([0, 1, 2, 3])
    loss = CVAELoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    for _ in range(20):
        optimizer.zero_grad()
        recon, mu, logvar = net(x, sequence)
        total, terms = loss(recon, x, mu, logvar)
        total.backward()
        optimizer.step()
        history.append(terms)
    assert history[-1]["total"] < 0.3 * history[0]["total"]
    assert history[-1]["recon"] < 0.3 * history[0]["recon"]
    # Training moved the FiLM projections away from zero: the conditioning is learned.
    assert any(m.proj.weight.abs().sum() > 0 for m in net.modules() if isinstance(m, FiLM))


def test_rejects_bad_input():
    net = small()
    x = torch.randn(2, 2, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        net(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        net(torch.randn(2, 16, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(2, 2, 15, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        net(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        net(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        net(x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        net.decode(torch.randn(2, 2, 8, 8), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 2, H, W\)"):
        net.decode(torch.randn(2, 4, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="divisible by 32 groups"):
        ComplexCVAE(channels=(8, 16))
