"""Atlas, pose and head shells."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.simulate.anatomy import ANATOMY_TISSUES, HeadLayers, draw_subject, head_fractions, load_atlas
from monai_cmri.simulate.geometry import SliceGeometry


@pytest.fixture(scope="module")
def atlas():
    return load_atlas()


def test_candidate_sets_lie_in_their_tissue(atlas):
    gm, wm, brain, surface, *_ = atlas.sample(atlas.candidates["deep_wm"])
    assert wm.mean() > 0.85 and (surface < -14).all()
    gm, wm, *_ = atlas.sample(atlas.candidates["cortex"])
    assert gm.mean() > 0.6
    gm, wm, brain, *_ = atlas.sample(atlas.candidates["periventricular"])
    assert wm.mean() > 0.7
    for name, points in atlas.candidates.items():
        assert len(points) > 1000, name
        np.testing.assert_allclose(-atlas.sample(points)[3], atlas.depth[name], atol=1e-3)


def test_pose_round_trip(atlas):
    geometry = SliceGeometry(slices=4, readout=128, width=64)
    subject = draw_subject(np.random.default_rng(4), geometry)
    points = atlas.candidates["parenchyma"][::500]
    back = subject.to_atlas(subject.to_scanner(points))
    np.testing.assert_allclose(back, points, atol=0.05)
    grid = geometry.points()
    # The cheap grid map interpolates the deformation: well under a pixel (3.4 mm here) off.
    np.testing.assert_allclose(subject.map_grid(grid), subject.to_atlas(grid), atol=0.3)


def test_subjects_differ_but_the_head_is_centred(atlas):
    geometry = SliceGeometry(slices=16, readout=640, width=320)
    centres = []
    for seed in range(4):
        subject = draw_subject(np.random.default_rng(seed), geometry)
        centres.append(subject.to_scanner(np.array([[0.0, -17.0, 18.0]], np.float32))[0])
    centres = np.array(centres)
    assert np.abs(centres[:, :2]).max() < 10 and np.ptp(centres[:, 0]) > 0.5


def test_head_fractions_shells_in_order():
    layers = HeadLayers()
    distance = np.linspace(-5, 30, 351, dtype=np.float32)
    zeros = np.zeros_like(distance)
    samples = np.stack([zeros, zeros, zeros, distance, distance, zeros])  # outside the brain mask
    fractions = head_fractions(samples, layers)
    assert fractions.shape == (len(ANATOMY_TISSUES), 351)
    assert np.all(fractions.sum(0) <= 1 + 1e-6) and np.all(fractions >= 0)
    dominant = [ANATOMY_TISSUES[i] for i in fractions.argmax(0)]
    expected = {
        0.0: "csf", 3.0: "dura", 4.0: "bone", 6.0: "fat", 8.2: "bone", 9.8: "muscle", 12.0: "fat", 15.5: "muscle"
    }
    assert {d: dominant[int(np.argmin(np.abs(distance - d)))] for d in expected} == expected
    air = distance > layers.total() + 1
    assert np.all(fractions[:, air] == 0)
    brain = np.array([[0.6], [0.3], [1.0], [-10.0], [-20.0], [0.0]], np.float32)  # csf 0.1, gm 0.6, wm 0.3
    np.testing.assert_allclose(head_fractions(brain, layers, sharpness=1.0)[:3, 0], [0.1, 0.6, 0.3], atol=1e-6)
    squared = np.array([0.01, 0.36, 0.09]) / 0.46  # sharpened: p^2, renormalised to the brain fraction
    np.testing.assert_allclose(head_fractions(brain, layers)[:3, 0], squared, atol=1e-6)


def test_skull_thickness_varies_around_the_head():
    rng = np.random.default_rng(0)
    layers = draw_subject(rng, SliceGeometry(slices=2, readout=128, width=64)).layers
    theta = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    ring = np.stack([70 * np.cos(theta), -17 + 90 * np.sin(theta), np.full_like(theta, 10)], -1).astype(np.float32)
    total = layers.total(ring)
    assert total.shape == (90,) and np.ptp(total) > 1.0
    assert np.all(total > 0.5 * layers.total()) and np.all(total < 2.5 * layers.total())


def test_t1_residual_trades_grey_for_white_and_keeps_the_brain_fraction():
    layers = HeadLayers()
    base = np.array([0.6, 0.3, 1.0, -10.0, -20.0, 0.0], np.float32)
    plain = head_fractions(base[:, None], layers, sharpness=1.0)[:3, 0]
    whiter = head_fractions(np.r_[base[:5], 0.2][:, None].astype(np.float32), layers, sharpness=1.0)[:3, 0]
    greyer = head_fractions(np.r_[base[:5], -0.2][:, None].astype(np.float32), layers, sharpness=1.0)[:3, 0]
    np.testing.assert_allclose(whiter, plain + [0, -0.2 * 0.6, 0.2 * 0.6], atol=1e-6)
    np.testing.assert_allclose(greyer, plain + [0, 0.2 * 0.3, -0.2 * 0.3], atol=1e-6)
    assert whiter.sum() == pytest.approx(1.0) and greyer.sum() == pytest.approx(1.0)


def test_atlas_t1_residual_is_small_and_zero_outside_the_brain(atlas):
    gm, wm, brain, surface, envelope, residual = atlas.volume[0].numpy()[:, ::4, ::4, ::4]
    assert np.abs(residual).max() <= 0.5 and np.abs(residual[brain == 0]).max() == 0
    assert 0.02 < np.abs(residual[brain > 0.5]).mean() < 0.2
