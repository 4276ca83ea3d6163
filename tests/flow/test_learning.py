"""A flow that has learned: two well-separated modes in unequal proportions (paper 2.3).

A tiny :class:`~monai_cmri.networks.FlowUNet` is trained with the bundles' own iteration
(:class:`~monai_cmri.engines.flow.FlowTrainStep`, MONAI's ``SupervisedTrainer``) on 2x8x8 "latents"
that are one of two smooth images plus small noise: mode A (70%, sequence token 0) and mode B (30%,
sequence token 1). Sampled with the EMA weights and Heun, the unconditional samples (null token)
must come in the data's proportions and the conditional ones in the requested mode, each near its
mode's mean.
"""

from __future__ import annotations

import math

import pytest
import torch
from ignite.handlers import EMAHandler
from monai.engines import SupervisedTrainer

from monai_cmri.engines.flow import FlowTrainStep, flow_matching_loss, prepare_flow_batch
from monai_cmri.flow.sampling import FlowSampler
from monai_cmri.networks import FlowUNet
from monai_cmri.networks.nets.flow_unet import SEQUENCE_NULL
from monai_cmri.threads import apply_thread_policy

SIZE, SHARE_A, NOISE = 8, 0.7, 0.05


def modes() -> torch.Tensor:
    """The two mode means ``(2, 2, SIZE, SIZE)``: a smooth bump and its negative, tilted."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    bump = torch.exp(-(x**2 + y**2) / 0.5)
    a = torch.stack([bump, 0.5 * x])
    b = torch.stack([-bump, 0.5 * y])
    return torch.stack([a, b])


def dataset(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    mode = (torch.rand(n, generator=generator) >= SHARE_A).long()
    data = modes()[mode] + NOISE * torch.randn(n, 2, SIZE, SIZE, generator=generator)
    return data, mode


def classify(samples: torch.Tensor) -> torch.Tensor:
    """Nearest mode mean of each sample."""
    distance = ((samples[:, None] - modes()[None]) ** 2).flatten(2).sum(-1)
    return distance.argmin(1)


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    apply_thread_policy(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data, mode = dataset(2048, generator)
    batches = [{"latent": data[i:i + 64], "sequence": mode[i:i + 64], "label": torch.full((64,), 2)}
               for i in range(0, 2048, 64)]
    network = FlowUNet(channels=(16, 32), attention_levels=(False, True), num_res_blocks=1, norm_num_groups=8,
                       num_head_channels=16)
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3)
    ema = EMAHandler(network, momentum=0.02)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=12, train_data_loader=batches, network=network, optimizer=optimizer,
        loss_function=flow_matching_loss, prepare_batch=prepare_flow_batch,
        iteration_update=FlowTrainStep(drop_prob=0.3, drop="sequence"), train_handlers=[ema], decollate=False,
    )
    trainer.run()
    return ema.ema_model


def sample(network, sequence: int, n: int, scale: float = 1.0) -> torch.Tensor:
    noise = torch.randn(n, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(sequence + 10))
    return FlowSampler("heun", 16, scale)(noise, network, torch.full((n,), sequence, dtype=torch.long))


def test_unconditional_samples_keep_the_mode_proportions_and_means(trained):
    n = 400
    samples = sample(trained, SEQUENCE_NULL, n)
    mode = classify(samples)
    share = (mode == 0).float().mean().item()
    # binomial standard error at n = 400 is 0.023; the tolerance allows for the model's own error
    assert abs(share - SHARE_A) < 0.1, share
    for index in (0, 1):
        mean = samples[mode == index].mean(0)
        error = (mean - modes()[index]).abs().max().item()
        assert error < 0.1, (index, error)  # the modes are 2.0 apart at the centre


def test_conditional_samples_come_from_the_requested_mode(trained):
    for index in (0, 1):
        samples = sample(trained, index, 100, scale=2.0)
        assert (classify(samples) == index).float().mean().item() >= 0.95
        spread = (samples - modes()[index]).pow(2).mean().sqrt().item()
        assert spread < 3 * NOISE + 0.1, spread
        assert math.isfinite(spread)
