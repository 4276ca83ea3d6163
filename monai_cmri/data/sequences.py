"""The five fastMRI brain sequences and how a file's sequence is recognised (SPEC 1.1)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SEQUENCES", "sequence_from_name", "normalize_sequence"]

#: The acquisitions of the fastMRI brain release, in the order used for embeddings and tables.
SEQUENCES: tuple[str, ...] = ("AXFLAIR", "AXT1", "AXT1POST", "AXT1PRE", "AXT2")

_NAME = re.compile(r"file_brain_(AXFLAIR|AXT1POST|AXT1PRE|AXT1|AXT2)_", re.IGNORECASE)


def normalize_sequence(value: str, source: str = "<input>") -> str:
    """Return the canonical name of a sequence given in any case, with or without spaces.

    Args:
        value: a sequence name such as ``"AXT1POST"``, ``"axt1post"`` or ``"AX T1 POST"``.
        source: a name for the error message, usually the file path.

    Raises:
        ValueError: when ``value`` is not one of :data:`SEQUENCES`.
    """
    name = re.sub(r"[\s_-]+", "", str(value)).upper()
    if name not in SEQUENCES:
        raise ValueError(f"{source}: unknown sequence {value!r}; expected one of {', '.join(SEQUENCES)}")
    return name


def sequence_from_name(path: str | Path) -> str | None:
    """Sequence encoded in a fastMRI file name (``file_brain_{SEQUENCE}_{site}_{id}.h5``), else None."""
    match = _NAME.search(Path(path).name)
    return match.group(1).upper() if match else None
