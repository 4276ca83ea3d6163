from __future__ import annotations

import subprocess
import sys

from monai_cmri.data.annotations import Annotations


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "monai_cmri", *args], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


def test_labels_command_prints_both_rules_with_real_counts():
    out = _run("labels")
    annotations = Annotations.default()
    lenient = annotations.counts("lenient")
    strict = annotations.counts("strict")
    line = next(row for row in out.splitlines() if row.startswith("AXFLAIR"))
    numbers = [int(n) for n in line.split() if n.isdigit()]
    expected = [lenient["AXFLAIR"][c] for c in ("abnormal", "normal", "excluded", "unlabeled")]
    expected += [strict["AXFLAIR"][c] for c in ("abnormal", "normal", "excluded", "unlabeled")]
    assert numbers[:8] == expected
    assert "lenient" in out and "strict" in out
