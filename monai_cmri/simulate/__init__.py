"""Brain k-space simulator: the project's default dataset (README "The simulated dataset").

Writes folders in exactly the fastMRI brain multi-coil format plus fastMRI+-style annotation CSVs
(README "The data it expects"), from MNI152 anatomy with a random pose and deformation per
subject, procedural skull and scalp, spin-echo and inversion-recovery contrast, gadolinium,
B0 and transceive phase, loop-coil sensitivities, correlated noise and 3D lesions.

Modules, one concept each: ``geometry`` (acquisition grid), ``anatomy`` (atlas, pose,
shells), ``contrast`` (relaxation and signal equations), ``lesions`` (3D findings),
``artifacts`` (flow ghosts), ``phase`` (field and transceive phase), ``coils``
(sensitivities and noise covariance), ``kspace`` (encoding and RSS), ``boxes`` (fastMRI+
rows), ``spec`` / ``cohort`` (what each volume is), ``volume`` (one volume end to end),
``writer`` (files) and ``external`` (an external test set from another site with volume labels,
paper 2.1.4).
"""

from __future__ import annotations

from monai_cmri.simulate.boxes import CSV_HEADER, Annotation, box_from_mask, rows_of_box
from monai_cmri.simulate.cohort import DEMO_VOLUMES, plan_volume
from monai_cmri.simulate.contrast import TISSUES, protocol, tissue_signals
from monai_cmri.simulate.external import (
    EXTERNAL_LABELS_CSV,
    EXTERNAL_SEQUENCES,
    ExternalSpec,
    ExternalVolume,
    external_volume,
    plan_external_volume,
    simulate_external,
    write_external_labels,
    write_external_volume,
)
from monai_cmri.simulate.kspace import encode, rss
from monai_cmri.simulate.lesions import ABNORMAL_FINDINGS, FINDING_LABELS
from monai_cmri.simulate.spec import SCANNERS, VolumeSpec
from monai_cmri.simulate.volume import SimulatedVolume, simulate_volume
from monai_cmri.simulate.writer import dataset_volume, simulate_dataset, write_annotations, write_volume

__all__ = [
    "simulate_dataset",
    "simulate_volume",
    "SimulatedVolume",
    "VolumeSpec",
    "plan_volume",
    "DEMO_VOLUMES",
    "dataset_volume",
    "write_volume",
    "write_annotations",
    "Annotation",
    "CSV_HEADER",
    "box_from_mask",
    "rows_of_box",
    "TISSUES",
    "protocol",
    "tissue_signals",
    "encode",
    "rss",
    "FINDING_LABELS",
    "ABNORMAL_FINDINGS",
    "SCANNERS",
    "simulate_external",
    "plan_external_volume",
    "external_volume",
    "write_external_volume",
    "write_external_labels",
    "ExternalSpec",
    "ExternalVolume",
    "EXTERNAL_SEQUENCES",
    "EXTERNAL_LABELS_CSV",
]
