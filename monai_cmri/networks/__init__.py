"""Networks and their blocks, on two-channel (real, imag) tensors (SPEC 2)."""

from __future__ import annotations

from monai_cmri.networks.blocks import FiLM, FiLMResBlock
from monai_cmri.networks.nets import ComplexCVAE, FlowUNet, SEResNetClassifier

__all__ = ["FiLM", "FiLMResBlock", "ComplexCVAE", "FlowUNet", "SEResNetClassifier"]
