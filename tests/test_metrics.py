"""Tests of phase coherence, magnitude SSIM / PSNR and the per-sequence table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.metrics import PSNRMetric, SSIMMetric
from numpy_reference import crandn

from monai_cmri.metrics import PerSequenceMetrics, PhaseCoherence, PhaseCoherenceMetric, phase_coherence
from monai_cmri.transforms.complex import channels_to_complex, complex_to_channels


def two_channel(z: np.ndarray) -> torch.Tensor:
    return complex_to_channels(torch.as_tensor(z))


def numpy_coherence(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    pred, target = pred.astype(np.complex128), target.astype(np.complex128)
    num = np.abs(np.sum(pred * np.conj(target), axis=(-2, -1)))
    return num / np.sum(np.abs(pred) * np.abs(target), axis=(-2, -1))


def test_coherence_matches_numpy_on_an_odd_shape():
    pred, target = crandn((3, 7, 5), seed=1), crandn((3, 7, 5), seed=2)
    out = phase_coherence(two_channel(pred), two_channel(target))
    assert out.shape == (3,)
    np.testing.assert_allclose(out.numpy(), numpy_coherence(pred, target), rtol=1e-6)


@pytest.mark.parametrize(("scale", "phi"), [(1.0, 0.0), (1.0, 1.3), (1.0, -math.pi), (0.25, 0.0), (7.0, 2.5)])
def test_coherence_is_one_for_global_phase_and_scale(scale, phi):
    x = crandn((2, 9, 11))
    out = phase_coherence(two_channel(scale * np.exp(1j * phi) * x), two_channel(x))
    np.testing.assert_allclose(out.numpy(), 1.0, rtol=0, atol=1e-6)


def test_coherence_drops_with_phase_noise_as_predicted():
    # Unit magnitude and Gaussian phase noise of std s: coherence -> |E exp(i s n)| = exp(-s^2 / 2).
    rng = np.random.default_rng(3)
    x = np.exp(1j * rng.uniform(-np.pi, np.pi, (1, 64, 64)))
    noise = rng.standard_normal((1, 64, 64))
    values = []
    for s in (0.1, 0.3, 0.6, 1.0):
        out = phase_coherence(two_channel(x * np.exp(1j * s * noise)), two_channel(x)).item()
        assert out == pytest.approx(math.exp(-(s**2) / 2), abs=0.03)
        values.append(out)
    assert values[0] < 1.0 and all(a > b for a, b in zip(values, values[1:]))


def test_coherence_down_weights_low_magnitude():
    # Half the pixels have their phase scrambled; the more magnitude they carry, the lower the score.
    rng = np.random.default_rng(4)
    phase = rng.uniform(-np.pi, np.pi, (1, 8, 8))
    scramble = np.exp(1j * rng.uniform(-np.pi, np.pi, (1, 8, 8)))
    scramble[..., :4] = 1.0
    scores = []
    for weak in (1.0, 0.1, 0.01):
        mag = np.ones((1, 8, 8))
        mag[..., 4:] = weak
        x = mag * np.exp(1j * phase)
        scores.append(phase_coherence(two_channel(x * scramble), two_channel(x)).item())
    assert scores[0] < scores[1] < scores[2] and scores[2] > 0.99


def test_coherence_is_nan_without_signal_and_rejects_bad_shapes():
    x = two_channel(crandn((2, 4, 4)))
    zero = x.clone()
    zero[1] = 0
    out = phase_coherence(zero, x)
    assert out[0].item() == pytest.approx(1.0) and math.isnan(out[1].item())
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        phase_coherence(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 4\) and \(2, 2, 4, 5\)"):
        phase_coherence(torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 5))


def test_cumulative_metric_reductions():
    targets = [two_channel(crandn((3, 6, 6), seed=s)) for s in (5, 6)]
    preds = [t + 0.5 * two_channel(crandn((3, 6, 6), seed=s + 10)) for s, t in enumerate(targets)]
    expected = torch.cat([phase_coherence(p, t) for p, t in zip(preds, targets)])
    metric = PhaseCoherenceMetric()
    for p, t in zip(preds, targets):
        assert metric(y_pred=p, y=t).shape == (3, 1)
    # MONAI's convention: the mean keeps the channel axis, shape (1,).
    torch.testing.assert_close(metric.aggregate(), expected.mean().reshape(1), check_dtype=False)
    torch.testing.assert_close(metric.aggregate("none"), expected[:, None])
    assert float(metric.aggregate("sum")) == pytest.approx(expected.sum().item(), rel=1e-6)
    # A list of channel-first images is MONAI's other input form.
    listed = PhaseCoherenceMetric(reduction="none", get_not_nans=True)
    listed(y_pred=list(preds[0]), y=list(targets[0]))
    value, not_nans = listed.aggregate()
    torch.testing.assert_close(value, expected[:3, None])
    assert not_nans.sum() == 3
    metric.reset()
    with pytest.raises(ValueError, match="no values"):
        metric.aggregate()


def test_ignite_handler_matches_the_function():
    batches = []
    for seed in range(3):
        target = two_channel(crandn((2, 8, 8), seed=seed))
        batches.append((target * 0.8 + 0.3 * two_channel(crandn((2, 8, 8), seed=seed + 50)), target))
    engine = Engine(lambda engine, batch: batch)
    PhaseCoherence().attach(engine, "coherence")
    state = engine.run(batches, max_epochs=1)
    expected = torch.cat([phase_coherence(p, t) for p, t in batches])
    assert state.metrics["coherence"] == pytest.approx(expected.mean().item(), rel=1e-6)
    np.testing.assert_allclose(np.asarray(state.metric_details["coherence"]).ravel(), expected.numpy(), rtol=1e-6)


def magnitude_batch(seed: int, n: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and prediction with magnitudes in [0, 1], random phases, prediction perturbed."""
    rng = np.random.default_rng(seed)
    mag = rng.uniform(0.0, 1.0, (n, size, size))
    target = mag * np.exp(1j * rng.uniform(-np.pi, np.pi, mag.shape))
    pred_mag = np.clip(mag + 0.05 * rng.standard_normal(mag.shape), 0.0, 1.0)
    pred = pred_mag * np.exp(1j * (np.angle(target) + 0.2 * rng.standard_normal(mag.shape)))
    return two_channel(pred.astype(np.complex64)), two_channel(target.astype(np.complex64))


def test_per_sequence_ssim_and_psnr_equal_monai_and_the_definition():
    pred, target = magnitude_batch(0, 4)
    table = PerSequenceMetrics()
    table.update(pred, target, torch.tensor([1, 1, 1, 1]))
    row = table.aggregate()["AXT1"]
    assert row["n"] == 4

    mag_pred = channels_to_complex(pred).abs()[:, None]
    mag_target = channels_to_complex(target).abs()[:, None]
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(mag_pred, mag_target)
    assert row["ssim"] == pytest.approx(ssim.mean().item(), rel=1e-6)
    assert row["ssim_std"] == pytest.approx(ssim.std().item(), rel=1e-5)
    psnr = PSNRMetric(max_val=1.0, reduction="none")(mag_pred, mag_target)
    assert row["psnr"] == pytest.approx(psnr.mean().item(), rel=1e-6)
    # PSNR by hand: 10 log10(1 / mse) on the magnitudes, per patch, then the mean.
    p, t = channels_to_complex(pred).numpy(), channels_to_complex(target).numpy()
    by_hand = 10 * np.log10(1.0 / np.mean((np.abs(p) - np.abs(t)) ** 2, axis=(1, 2)))
    assert row["psnr"] == pytest.approx(by_hand.mean(), rel=1e-5)
    assert row["coherence"] == pytest.approx(numpy_coherence(p, t).mean(), rel=1e-6)


def test_per_sequence_aggregation_on_a_hand_made_batch():
    pred, target = magnitude_batch(1, 5)
    # Patches 0 and 3 are perfect copies up to a global phase: coherence 1, SSIM 1, PSNR infinite.
    for i in (0, 3):
        pred[i] = two_channel(np.exp(0.7j) * channels_to_complex(target[i]).numpy())
    table = PerSequenceMetrics()
    table.update(pred[:3], target[:3], torch.tensor([4, 0, 2]))
    table.update(pred[3:], target[3:], torch.tensor([4, 2]))
    result = table.aggregate()
    assert list(result) == ["AXFLAIR", "AXT1POST", "AXT2"]
    assert {name: row["n"] for name, row in result.items()} == {"AXFLAIR": 1, "AXT1POST": 2, "AXT2": 2}
    assert result["AXT2"]["coherence"] == pytest.approx(1.0, abs=1e-6)
    assert result["AXT2"]["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert result["AXT2"]["psnr"] > 100
    coherence = phase_coherence(pred, target).numpy()
    assert result["AXT1POST"]["coherence"] == pytest.approx(coherence[[2, 4]].mean(), rel=1e-6)
    assert result["AXT1POST"]["coherence_std"] == pytest.approx(coherence[[2, 4]].std(ddof=1), rel=1e-5)
    assert result["AXFLAIR"]["coherence"] == pytest.approx(coherence[1], rel=1e-6)
    assert result["AXFLAIR"]["coherence_std"] == 0.0
    table.reset()
    assert table.aggregate() == {}


def test_per_sequence_rejects_bad_input():
    pred, target = magnitude_batch(2, 2)
    table = PerSequenceMetrics()
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        table.update(pred, target, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integer tensor"):
        table.update(pred, target, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="SSIM window 11"):
        table.update(pred[..., :8, :8], target[..., :8, :8], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        table.update(pred[:, :1], target[:, :1], torch.tensor([0, 1]))
