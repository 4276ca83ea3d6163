"""monai_cmri: generative modeling of complex-valued (magnitude + phase) brain MRI with MONAI.

The pipeline keeps the phase that standard MRI pipelines discard: fastMRI multi-coil k-space ->
coil combination -> complex 96x96 patches -> a FiLM-conditioned VAE -> latent flow matching ->
classifiers that measure how real and how useful the synthetic data is.
"""

from __future__ import annotations

from monai_cmri.data.registration import install as _install_reader

__version__ = "0.1.0"

__all__ = ["__version__"]

# LoadImage(reader="EspiritReader") and LoadImage() on fastMRI .h5 files: EspiritReader joins
# MONAI's SUPPORTED_READERS, without importing MONAI here (monai_cmri.data.registration).
_install_reader()
