"""Networks: the sequence-conditioned complex VAE, the flow-matching U-Net and the SE-ResNet classifier."""

from __future__ import annotations

from monai_cmri.networks.nets.classifier import SEResNetClassifier
from monai_cmri.networks.nets.cvae import ComplexCVAE, ComplexCVAEReconstruction
from monai_cmri.networks.nets.flow_unet import CLASS_NULL, CLASS_TOKENS, SEQUENCE_NULL, TIME_SCALE, FlowUNet

__all__ = [
    "ComplexCVAE",
    "ComplexCVAEReconstruction",
    "FlowUNet",
    "SEResNetClassifier",
    "SEQUENCE_NULL",
    "CLASS_TOKENS",
    "CLASS_NULL",
    "TIME_SCALE",
]
