"""The paper's classifier experiments as pure logic (paper 2.4, 3; SPEC 3).

Which rows a classifier trains and is tested on, how results are stored, resumed, tabulated and
plotted; how a classifier is trained is left to the ``train_and_score`` callable given to
:func:`run_grid`.

* :mod:`~monai_cmri.experiments.sources`: the source dicts that describe a training set;
* :mod:`~monai_cmri.experiments.rows`: the metadata of a patch or latent file;
* :mod:`~monai_cmri.experiments.fractions`: nested, stratified volume and row fractions;
* :mod:`~monai_cmri.experiments.composition`: substitution and additive training sets (Figures 6-8);
* :mod:`~monai_cmri.experiments.real_vs_synthetic`: per-sequence real-vs-synthetic data (Table 4);
* :mod:`~monai_cmri.experiments.aggregate`: top-5 % volume scores and AUROC (external test set);
* :mod:`~monai_cmri.experiments.results`: the resumable result store;
* :mod:`~monai_cmri.experiments.tables`, :mod:`~monai_cmri.experiments.plots`: mean +- std tables
  and the figures;
* :mod:`~monai_cmri.experiments.grids`: the configurations of the three experiments;
* :mod:`~monai_cmri.experiments.runner`: :func:`run_grid`.
"""

from __future__ import annotations

from monai_cmri.experiments.aggregate import (
    TOP_FRACTION,
    auroc,
    top_count,
    top_mean,
    volume_auroc,
    volume_labels,
    volume_scores,
)
from monai_cmri.experiments.composition import (
    ADDITIVE,
    ADDITIVE_FRACTIONS,
    REAL_ONLY,
    REAL_SYNTHETIC,
    SUBSTITUTION_FRACTIONS,
    TrainingSet,
    additive,
    substitution,
    volume_strata,
)
from monai_cmri.experiments.fractions import FRACTIONS, cell_order, kept_count, nested_rows, nested_volumes, take
from monai_cmri.experiments.grids import SEEDS, additive_grid, real_vs_synthetic_grid, substitution_grid
from monai_cmri.experiments.plots import additive_figure, substitution_figure
from monai_cmri.experiments.real_vs_synthetic import TEST_SETS, SequenceSplit, real_vs_synthetic
from monai_cmri.experiments.results import ResultStore, config_key
from monai_cmri.experiments.rows import Rows, read_rows
from monai_cmri.experiments.runner import run_grid
from monai_cmri.experiments.sources import Source, make_source
from monai_cmri.experiments.tables import expand, markdown_table, summarize, write_table

__all__ = [
    "ADDITIVE",
    "ADDITIVE_FRACTIONS",
    "FRACTIONS",
    "REAL_ONLY",
    "REAL_SYNTHETIC",
    "SEEDS",
    "SUBSTITUTION_FRACTIONS",
    "TEST_SETS",
    "TOP_FRACTION",
    "ResultStore",
    "Rows",
    "SequenceSplit",
    "Source",
    "TrainingSet",
    "additive",
    "additive_figure",
    "additive_grid",
    "auroc",
    "cell_order",
    "config_key",
    "expand",
    "kept_count",
    "make_source",
    "markdown_table",
    "nested_rows",
    "nested_volumes",
    "read_rows",
    "real_vs_synthetic",
    "real_vs_synthetic_grid",
    "run_grid",
    "substitution",
    "substitution_figure",
    "substitution_grid",
    "summarize",
    "take",
    "top_count",
    "top_mean",
    "volume_auroc",
    "volume_labels",
    "volume_scores",
    "volume_strata",
    "write_table",
]
