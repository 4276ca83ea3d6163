"""Physics of simulated volumes: contrast, signed IR, coils, noise level, lesions and boxes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sim_helpers import small_volume

from monai_cmri.simulate import FINDING_LABELS, TISSUES, rows_of_box
from monai_cmri.simulate.kspace import rss


def _tissue_mean(volume, tissue: str, values: np.ndarray, purity: float = 0.9) -> float:
    pure = volume.fractions[:, TISSUES.index(tissue)] > purity
    assert pure.sum() > 20, f"too few pure {tissue} pixels"
    return float(values[pure].mean())


def _corrected_rss(volume) -> np.ndarray:
    """RSS of the stored k-space divided by the RSS of the true coil maps (shading removed)."""
    shading = np.sqrt((np.abs(volume.sensitivities) ** 2).sum(1))
    return volume.reconstruction_rss / np.maximum(shading, 1e-6)


@pytest.mark.parametrize("field", [1.494, 2.8936])
def test_contrast_order_per_sequence(contrast_volumes, field):
    means = {}
    for sequence in ("AXT1", "AXT2", "AXFLAIR"):
        volume = contrast_volumes[(sequence, field)]
        for source, values in (("image", np.abs(volume.image)), ("rss", _corrected_rss(volume))):
            means[sequence, source] = {t: _tissue_mean(volume, t, values) for t in ("wm", "gm", "csf")}
    for source in ("image", "rss"):
        t1, t2, flair = means["AXT1", source], means["AXT2", source], means["AXFLAIR", source]
        assert t1["wm"] > t1["gm"] > t1["csf"], (source, t1)
        assert t2["csf"] > t2["gm"] > t2["wm"], (source, t2)
        assert flair["csf"] < flair["wm"] < flair["gm"], (source, flair)
    ratios = {s: means[s, "image"]["wm"] / means[s, "image"]["gm"] for s in ("AXT1", "AXT2", "AXFLAIR")}
    assert ratios["AXT1"] > 1.15 and ratios["AXT2"] < 0.85


def test_inversion_recovery_keeps_the_sign(contrast_volumes):
    # 3 T T1 is T1-FLAIR: CSF has not recovered past the null, so it is negative.
    volume = contrast_volumes[("AXT1", 2.8936)]
    signed = (volume.image * np.exp(-1j * volume.phase)).real
    assert abs((volume.image * np.exp(-1j * volume.phase)).imag).max() < 1e-3 * abs(volume.image).max()
    assert _tissue_mean(volume, "csf", signed, 0.95) < 0 < _tissue_mean(volume, "wm", signed)


def test_enhancing_rim_bright_after_gadolinium():
    pre = small_volume("AXT1PRE", 1.494, ("mass",), seed=5)
    post = small_volume("AXT1POST", 1.494, ("mass",), seed=5)
    np.testing.assert_array_equal(pre.fractions, post.fractions)  # same subject and lesion
    tumour = {v.spec.sequence: _tissue_mean(v, "tumor", np.abs(v.image), 0.5) / _tissue_mean(v, "wm", np.abs(v.image))
              for v in (pre, post)}
    assert tumour["AXT1POST"] > 1.4 > 1.0 > tumour["AXT1PRE"]


def test_coil_sensitivities_are_not_uniform(contrast_volumes):
    volume = contrast_volumes[("AXT2", 1.494)]
    brain = volume.fractions[:, [TISSUES.index(t) for t in ("gm", "wm", "csf")]].sum(1) > 0.5
    shading = np.sqrt((np.abs(volume.sensitivities) ** 2).sum(1))
    ratios, spreads = [], []
    for s in range(len(brain)):
        mask = ndimage.binary_fill_holes(brain[s])
        inner = ndimage.binary_erosion(mask, iterations=int(round(35 / 1.71875)))
        edge = mask & ~ndimage.binary_erosion(mask, iterations=3)
        ratios.append(shading[s][edge].mean() / shading[s][inner].mean())
        single = np.abs(volume.sensitivities[s][:, mask])
        spreads.append(np.percentile(single, 95, axis=1) / np.percentile(single, 5, axis=1))
    assert min(ratios) > 1.3, ratios
    assert np.min(spreads) > 3.0  # each coil sees its side of the head far brighter


def test_noise_level_is_a_25th_of_the_median_head_signal(contrast_volumes):
    volume = contrast_volumes[("AXT2", 2.8936)]
    head = volume.fractions.sum(1) > 0.5
    clean = np.abs(volume.image) * np.sqrt((np.abs(volume.sensitivities) ** 2).sum(1))
    assert volume.noise_sigma == pytest.approx(np.median(clean[head]) / 25, rel=1e-4)
    # Noise measured in the air of the oversampled readout margin (no object there).
    margin = volume.kspace  # (S, C, readout, W): image rows outside the central half are air
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(margin, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    air = images[:, :, :20]
    lines = volume.spec.lines / volume.spec.width
    measured = np.sqrt(np.mean(np.abs(air) ** 2) / np.mean(np.diag(volume.noise_covariance)) / lines)
    assert measured == pytest.approx(volume.noise_sigma, rel=0.1)


def test_rss_is_brightest_in_the_head_and_scaled_like_fastmri(contrast_volumes):
    for volume in contrast_volumes.values():
        assert 1e-4 < volume.reconstruction_rss.max() < 1e-3
        np.testing.assert_allclose(rss(volume.kspace), volume.reconstruction_rss, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "findings", [("mass",), ("wml",), ("cyst", "encephalomalacia"), ("posttreatment", "artifact")]
)
def test_every_lesion_lies_inside_its_boxes(findings):
    volume = small_volume("AXFLAIR", 2.8936, findings, seed=11, slices=4)
    size = volume.reconstruction_rss.shape[-1]
    assert volume.masks and all(m.shape == volume.reconstruction_rss.shape for m in volume.masks)
    boxes = [a for a in volume.annotations if not a.study_level]
    for mask, label in zip(volume.masks, volume.mask_labels):
        for s in np.flatnonzero(mask.any(axis=(1, 2))):
            covered = np.zeros((size, size), bool)
            for box in (b for b in boxes if b.slice == s and b.label == label):
                assert 0 <= box.x and box.x + box.width <= size and 0 <= box.y and box.y + box.height <= size
                covered[rows_of_box(box.y, box.height, size), box.x : box.x + box.width] = True
            assert covered[mask[s]].all(), (label, s)
    labels = {a.label for a in boxes}
    assert labels == {FINDING_LABELS[f] for f in findings}


def test_mass_has_necrosis_rim_and_edema_that_follows_white_matter():
    volume = small_volume("AXT2", 1.494, ("mass",), seed=3, slices=3)
    lesion = volume.lesions[0]
    fractions = volume.fractions
    edema, gm = fractions[:, TISSUES.index("edema")], fractions[:, TISSUES.index("gm")]
    assert edema.max() > 0.5
    assert gm[edema > 0.5].mean() < 0.2 and edema[gm > 0.9].max() < 0.1  # the cortex is spared
    necrosis, tumour = fractions[:, TISSUES.index("necrosis")].sum(), fractions[:, TISSUES.index("tumor")].sum()
    assert tumour > 0 and (necrosis > 0) == (lesion.core > 0)


def test_field_map_is_smooth_and_phase_combines_its_parts(contrast_volumes):
    volume = contrast_volumes[("AXFLAIR", 2.8936)]
    head = volume.fractions.sum(1) > 0.5
    field = volume.field_ppm[head]
    assert 0.05 < np.ptp(field) < 20  # a few ppm across the head after a first-order shim
    wrapped = np.angle(volume.image * np.exp(-1j * volume.phase))
    brain = volume.fractions[:, TISSUES.index("wm")] > 0.9
    assert np.abs(wrapped[brain]).max() < 1e-3  # white matter signal is positive: phase is all in `phase`
