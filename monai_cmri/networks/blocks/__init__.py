"""Network building blocks: FiLM conditioning and the residual block that uses it."""

from __future__ import annotations

from monai_cmri.networks.blocks.film import FiLM, FiLMResBlock

__all__ = ["FiLM", "FiLMResBlock"]
