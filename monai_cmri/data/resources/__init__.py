"""Data files shipped with the package (fastMRI+ annotations, MIT licensed)."""
