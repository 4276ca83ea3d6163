"""Dataset composition: schedule guarantees, realistic proportions, per-volume determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from monai_cmri.data.splits import SPLITS, split_volumes
from monai_cmri.simulate.cohort import DEMO_VOLUMES, SEQUENCE_MIX, plan_volume
from monai_cmri.simulate.spec import VolumeSpec


def test_every_sequence_in_the_first_five_volumes():
    assert {plan_volume(i, 3).sequence for i in range(5)} == set(SEQUENCE_MIX)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_datasets_have_normal_and_abnormal_per_annotated_sequence(seed):
    specs = [plan_volume(i, seed) for i in range(12)]
    for sequence in ("AXFLAIR", "AXT1", "AXT1POST"):
        classes = {s.volume_class for s in specs if s.sequence == sequence}
        assert {"normal", "abnormal"} <= classes
    twenty = [plan_volume(i, seed).volume_class for i in range(20)]
    assert twenty.count("abnormal") >= 3 and twenty.count("normal") >= 3 and twenty.count("excluded") >= 2


def cheap_specs(n: int, seed: int) -> list[VolumeSpec]:
    return [plan_volume(i, seed, slices=1, width=16, readout=32, coils=[1]) for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1])
def test_demo_cohort_fills_every_split_with_every_cell(seed):
    specs = cheap_specs(DEMO_VOLUMES, seed)
    # The classes the preprocessing reads from the annotations (lenient rule), as in
    # monai_cmri.pipeline.minimum_volumes.
    classes = {s.name: s.volume_class for s in specs}
    splits = split_volumes(classes, seed)
    held = {split: {(s.sequence, classes[s.name]) for s in specs if splits.get(s.name) == split} for split in SPLITS}
    for split, cells in held.items():
        assert {sequence for sequence, _ in cells} == set(SEQUENCE_MIX), split
        for sequence in ("AXFLAIR", "AXT1", "AXT1POST"):
            assert {(sequence, "normal"), (sequence, "abnormal")} <= cells, (split, sequence)


def test_demo_volumes_is_the_fewest_with_three_per_cell():
    def smallest_cell(n: int) -> int:
        cells = Counter((s.sequence, s.volume_class) for s in cheap_specs(n, 0) if s.volume_class != "excluded")
        return min(cells.values()) if len(cells) == 8 else 0

    assert smallest_cell(DEMO_VOLUMES) >= 3 and smallest_cell(DEMO_VOLUMES - 1) < 3


def test_proportions_past_the_schedule():
    specs = [plan_volume(i, 0) for i in range(20, 2020)]
    shares = Counter(s.sequence for s in specs)
    for sequence, share in SEQUENCE_MIX.items():
        assert shares[sequence] / len(specs) == pytest.approx(share, abs=0.03)
    high = np.mean([s.field_strength_t > 2 for s in specs])
    assert 0.4 < high < 0.65
    assert not any(s.annotated for s in specs if s.sequence in ("AXT2", "AXT1PRE"))
    post = [s.annotated for s in specs if s.sequence == "AXT1POST"]
    assert 0.05 < np.mean(post) < 0.3
    coils = Counter(s.coils for s in specs)
    assert set(coils) == {8, 12, 16, 20} and coils[16] + coils[20] > 0.7 * len(specs)
    flair = [s for s in specs if s.sequence == "AXFLAIR"]
    assert {s.width for s in flair} == {264, 288, 320}
    # Both abnormal-and-excluded volumes exist (abnormal by the lenient rule only).
    mixed = [s for s in specs if s.volume_class == "abnormal" and {"artifact", "posttreatment"} & set(s.findings)]
    assert mixed


def test_volume_depends_only_on_seed_and_index():
    assert plan_volume(31, 5) == plan_volume(31, 5)
    assert plan_volume(31, 5) != plan_volume(31, 6)
    names = [plan_volume(i, 5).name for i in range(300)]
    assert len(set(names)) == len(names)


def test_small_matrices_scale_narrow_widths():
    widths = {plan_volume(i, 0, width=64, readout=128).width for i in range(20, 400)}
    assert widths <= {52, 58, 64} and len(widths) > 1


def test_volume_spec_validates():
    with pytest.raises(ValueError, match="name"):
        VolumeSpec(name="file_brain_AXT2_200_1", sequence="AXT1")
    with pytest.raises(ValueError, match="width"):
        VolumeSpec(name="file_brain_AXT2_200_1", sequence="AXT2", readout=128, width=96)
    with pytest.raises(ValueError, match="acquired_lines"):
        VolumeSpec(name="file_brain_AXT2_200_1", sequence="AXT2", acquired_lines=319)
    with pytest.raises(ValueError, match="findings"):
        VolumeSpec(name="file_brain_AXT2_200_1", sequence="AXT2", findings=("tumour",))
    assert VolumeSpec(name="file_brain_AXT2_200_1", sequence="AXT2", findings=("wml",)).volume_class == "unlabeled"
    spec = VolumeSpec(name="file_brain_AXT1_200_1", sequence="AXT1", findings=("wml", "artifact"), annotated=True)
    assert spec.volume_class == "abnormal"
    spec = VolumeSpec(name="file_brain_AXT1_200_1", sequence="AXT1", findings=("artifact",), annotated=True)
    assert spec.volume_class == "excluded"
    spec = VolumeSpec(name="file_brain_AXT1_200_1", sequence="AXT1", findings=("normal_variant",), annotated=True)
    assert spec.volume_class == "normal"
