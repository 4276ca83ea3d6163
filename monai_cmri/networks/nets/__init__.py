"""Networks: the sequence-conditioned complex VAE."""

from __future__ import annotations

from monai_cmri.networks.nets.cvae import ComplexCVAE

__all__ = ["ComplexCVAE"]
