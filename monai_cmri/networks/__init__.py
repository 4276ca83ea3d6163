"""Networks and their blocks, on two-channel (real, imag) tensors (SPEC 2)."""

from __future__ import annotations

from monai_cmri.networks.blocks import FiLM, FiLMResBlock
from monai_cmri.networks.nets import ComplexCVAE, ComplexCVAEReconstruction, FlowUNet, SEResNetClassifier

__all__ = ["FiLM", "FiLMResBlock", "ComplexCVAE", "ComplexCVAEReconstruction", "FlowUNet", "SEResNetClassifier"]
