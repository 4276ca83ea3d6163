"""Every checkpoint load of the package, the bundles and the scripts is ``weights_only=True``.

A checkpoint is a file a user may have been sent; ``torch.load`` without ``weights_only=True``
unpickles arbitrary objects, that is, runs arbitrary code. This scans the sources (Python with
``ast``, bundle configs as text) so that a new load cannot slip in without it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _loads(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "torch":
                yield node


def test_every_torch_load_in_python_sources_is_weights_only():
    files = [*sorted((REPO / "monai_cmri").rglob("*.py")), *sorted((REPO / "scripts").rglob("*.py"))]
    assert len(files) > 50
    offenders, count = [], 0
    for path in files:
        for call in _loads(ast.parse(path.read_text(), str(path))):
            count += 1
            weights_only = [kw for kw in call.keywords if kw.arg == "weights_only"]
            if not (weights_only and isinstance(weights_only[0].value, ast.Constant) and weights_only[0].value.value is True):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert count > 0  # the scan sees the loads that exist
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_bundle_configs_load_no_checkpoint_with_pickle():
    offenders = []
    for path in sorted((REPO / "bundles").rglob("configs/*.json")):
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert not offenders, f"torch.load without weights_only=True in a bundle config: {offenders}"
