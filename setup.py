"""The packages of the distribution; everything else is declared in setup.cfg.

Besides ``monai_cmri`` and its subpackages, the wheel and the sdist carry the repository's four
MONAI bundles as the data package ``monai_cmri_bundles``, mapped onto the ``bundles/`` folder so
that the folder stays where the docs and tests expect it (its files: ``package_data`` in
setup.cfg). Its subfolders are listed as namespace packages, as setuptools wants folders of data
files to be. setup.cfg alone cannot join ``find:`` with a package mapped onto another folder.
"""

from setuptools import find_namespace_packages, find_packages, setup

BUNDLES_PACKAGE = "monai_cmri_bundles"

setup(
    packages=[
        *find_packages(include=["monai_cmri", "monai_cmri.*"]),
        BUNDLES_PACKAGE,
        *(f"{BUNDLES_PACKAGE}.{name}" for name in find_namespace_packages("bundles", exclude=["*__pycache__*"])),
    ],
    package_dir={BUNDLES_PACKAGE: "bundles"},
)
