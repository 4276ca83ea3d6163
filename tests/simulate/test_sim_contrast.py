"""Signal equations against analytic values; protocol table; contrast order per sequence."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cmri.simulate.contrast import TISSUES, inversion_recovery, protocol, spin_echo, tissue_signals


def test_spin_echo_limits():
    # Long TR: full recovery, only T2 decay remains.
    assert spin_echo(0.8, 1000.0, 100.0, tr=1e7, te=100.0) == pytest.approx(0.8 * np.exp(-1.0))
    # Short TE: the saturation-recovery curve 1 - exp(-TR/T1).
    assert spin_echo(1.0, 1000.0, 1e9, tr=500.0, te=1e-9) == pytest.approx(1 - np.exp(-0.5), rel=1e-6)


def test_inversion_recovery_is_signed_and_nulls_at_t1_ln2():
    t1 = 1000.0
    assert inversion_recovery(1.0, t1, 1e9, tr=1e7, te=0.0, ti=t1 * np.log(2)) == pytest.approx(0.0, abs=1e-9)
    assert inversion_recovery(1.0, t1, 1e9, tr=1e7, te=0.0, ti=0.1 * t1) < 0  # not yet through the null
    assert inversion_recovery(1.0, t1, 1e9, tr=1e7, te=0.0, ti=5 * t1) > 0


@pytest.mark.parametrize(
    "sequence,field,tr,te,ti",
    [
        ("AXT1", 1.494, 500, 10, None),
        ("AXT1PRE", 1.494, 500, 10, None),
        ("AXT1POST", 2.8936, 2000, 10, 850),
        ("AXT2", 2.8936, 5000, 100, None),
        ("AXFLAIR", 1.494, 9000, 86, 2500),
        ("AXFLAIR", 2.8936, 9000, 90, 2500),
    ],
)
def test_protocol_timing(sequence, field, tr, te, ti):
    p = protocol(sequence, field)
    assert (p.tr_ms, p.te_ms, p.ti_ms) == (tr, te, ti)
    assert p.gadolinium == (sequence == "AXT1POST")


def _signal(sequence: str, field: float) -> dict[str, float]:
    return dict(zip(TISSUES, tissue_signals(protocol(sequence, field), field)))


@pytest.mark.parametrize("field", [1.494, 2.8936])
def test_contrast_order_of_the_tissue_table(field):
    t1, t2, flair = _signal("AXT1", field), _signal("AXT2", field), _signal("AXFLAIR", field)
    assert t1["wm"] > t1["gm"] > abs(t1["csf"])
    assert t2["csf"] > t2["gm"] > t2["wm"]
    assert abs(flair["csf"]) < min(flair["wm"], flair["gm"]) and flair["gm"] > flair["wm"]
    # Lesions: edema and white-matter lesions bright on FLAIR, hemosiderin dark on T2.
    assert flair["edema"] > flair["wm"] and flair["wml"] > flair["gm"]
    assert t2["hemosiderin"] < t2["wm"]


@pytest.mark.parametrize("field", [1.494, 2.8936])
def test_gadolinium_brightens_enhancing_tumour_only_where_given(field):
    pre, post = _signal("AXT1PRE", field), _signal("AXT1POST", field)
    assert post["tumor"] > 1.5 * pre["tumor"] and post["tumor"] > 1.5 * post["wm"]
    for tissue in ("wm", "gm", "csf", "edema", "cyst"):
        assert post[tissue] == pre[tissue]


def test_t1_longer_at_3t_gives_csf_a_negative_t1_flair_signal():
    # T1-FLAIR at 3 T inverts CSF past the null: the kept sign puts it at a phase of pi.
    assert _signal("AXT1", 2.8936)["csf"] < 0 < _signal("AXT1", 1.494)["csf"]


def test_protocol_rejects_unknown_sequence():
    with pytest.raises(ValueError, match="unknown sequence"):
        protocol("AXPD", 1.5)
