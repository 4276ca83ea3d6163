"""The package's layers import downwards only.

The command line (``commands``, ``__main__``) is a leaf that nothing else imports; the building
blocks (``data``, ``transforms``, ``networks``, ``flow``, ``engines``, ``simulate``) do not reach up
into the jobs that use them (``preprocess``, ``pipeline``, ``report``, ``figures``,
``experiments``). A circle between the two made the command line a dependency of the main job.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monai_cmri"
_BLOCKS = ("data", "transforms", "networks", "flow", "engines", "simulate")
_JOBS = ("monai_cmri.preprocess", "monai_cmri.pipeline", "monai_cmri.report", "monai_cmri.figures",
         "monai_cmri.experiments", "monai_cmri.commands", "monai_cmri.profiles")


def imports(path: Path) -> set[str]:
    """Modules ``path`` imports, anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_command_line_is_a_leaf():
    users = [path.relative_to(PACKAGE) for path in PACKAGE.rglob("*.py")
             if path.name not in ("__main__.py", "commands.py")
             and any(name == "monai_cmri.commands" or name.startswith("monai_cmri.commands.") for name in imports(path))]
    assert not users


def test_building_blocks_do_not_import_the_jobs():
    offenders = {}
    for block in _BLOCKS:
        for path in (PACKAGE / block).rglob("*.py"):
            up = sorted(name for name in imports(path) if name.startswith(_JOBS))
            if up:
                offenders[str(path.relative_to(PACKAGE))] = up
    assert not offenders
