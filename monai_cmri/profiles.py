"""The main job's profiles: how big a dataset, which bundle settings and which experiment grid.

``python -m monai_cmri pipeline --profile demo|gpu|paper`` picks one of :data:`PROFILES`:

* ``demo``: what the README's first command runs, on a 2-core CPU in 11-16 minutes: 27 volumes
  of 8 slices, every bundle with its CPU profile (``configs/cpu.json``), the experiments on a
  reduced grid (one seed, one synthetic test set, 0 % and 100 % only).
* ``gpu``: the whole pipeline at a scale that gives meaningful numbers on one H100/H200 with 16
  CPU cores: 96 volumes of 8 slices (thousands of patches), every bundle with its full-size
  network and shortened schedules, ESPIRiT on the GPU inside the volume workers
  (:func:`monai_cmri.data.reader.combined_volume` takes CUDA when there is one), and a grid of one
  seed, 2 synthetic test sets and fractions 0, 50 and 100 %. Sized to run in about 5 minutes, within
  the 9 minutes of ``scripts/gpu_check.sh``, which measures it.
* ``paper``: the paper's settings (2.2-2.4): every bundle's defaults (100 cvae epochs, 200 + 100
  flow epochs, 50 classifier epochs, 5 kept checkpoints), 5 seeds, 4 synthetic test sets, fractions
  in steps of 10 %, on 1,000 simulated volumes of 16 slices. Hours on a GPU; not run in the tests.

A profile's ``volumes`` and ``slices`` are defaults that the command line may change; its bundle
settings and grid are part of what the run is, recorded in ``run.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Profile", "PROFILES", "profile"]


@dataclass(frozen=True)
class Profile:
    """One way to run the main job.

    Attributes:
        name: the name on the command line.
        description: one line on what it is for.
        volumes: simulated volumes by default.
        slices: slices per volume by default.
        bundle_profile: ``"cpu"`` merges every bundle's ``configs/cpu.json``; ``"full"`` uses the
            bundles' defaults (the paper's settings).
        bundle_overrides: ``{bundle: {variable: value}}`` merged on top, in every run of that bundle.
        seeds: classifier seeds per experiment configuration (paper 2.4: 5).
        test_sets: synthetic test sets of the real-vs-synthetic experiment (paper: 4).
        substitution_fractions: real fractions of the substitution experiment.
        additive_fractions: synthetic fractions added in the additive experiment.
        classifier_overrides: ``classifier`` bundle variables of the experiments and the model
            selection's classifiers.
    """

    name: str
    description: str
    volumes: int
    slices: int
    bundle_profile: str
    bundle_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    test_sets: int = 1
    substitution_fractions: tuple[float, ...] = (0.0, 1.0)
    additive_fractions: tuple[float, ...] = (0.0, 1.0)
    classifier_overrides: Mapping[str, Any] = field(default_factory=dict)

    def overrides(self, bundle: str) -> dict[str, Any]:
        """This profile's variables of ``bundle`` (a copy)."""
        return dict(self.bundle_overrides.get(bundle, {}))

    def grid(self) -> dict[str, Any]:
        """The experiment grid as keyword arguments of
        :func:`monai_cmri.experiments.classifier.run_experiments`."""
        return {
            "seeds": self.seeds,
            "test_sets": self.test_sets,
            "substitution_fractions": self.substitution_fractions,
            "additive_fractions": self.additive_fractions,
            "overrides": dict(self.classifier_overrides),
        }

    def describe(self) -> dict[str, Any]:
        """Everything that defines the profile, as plain JSON values (for ``run.json``)."""
        return {
            "name": self.name,
            "bundle_profile": self.bundle_profile,
            "bundle_overrides": {bundle: dict(values) for bundle, values in self.bundle_overrides.items()},
            "grid": {key: list(value) if isinstance(value, tuple) else value for key, value in self.grid().items()},
        }


_TENTHS = tuple(round(0.1 * step, 1) for step in range(11))

#: The profiles by name (module docstring).
PROFILES: dict[str, Profile] = {
    "demo": Profile(
        name="demo",
        description="the README's main job: 27 volumes, CPU profiles, reduced grid (11-16 min on 2 CPU cores)",
        volumes=27,
        slices=8,
        bundle_profile="cpu",
        # The classifier's stem halves the input (stride 2): a quarter of the work per patch.
        classifier_overrides={"stem_stride": 2},
    ),
    "gpu": Profile(
        name="gpu",
        description="one H100/H200 with 16 CPU cores: 96 volumes, full-size networks, short schedules (about 5 min)",
        volumes=96,
        slices=8,
        bundle_profile="full",
        bundle_overrides={
            "cvae": {"epochs": 8},
            "flow_stage1": {"epochs": 24, "keep_checkpoints": 2, "samples_per_sequence": 512},
            "flow_stage2": {"epochs": 12, "keep_checkpoints": 2},
        },
        seeds=(0,),
        test_sets=2,
        substitution_fractions=(0.0, 0.5, 1.0),
        additive_fractions=(0.0, 1.0),
        classifier_overrides={"epochs": 6},
    ),
    "paper": Profile(
        name="paper",
        description="the paper's settings and grid on 1,000 simulated volumes (hours on a GPU)",
        volumes=1000,
        slices=16,
        bundle_profile="full",
        seeds=(0, 1, 2, 3, 4),
        test_sets=4,
        substitution_fractions=_TENTHS,
        additive_fractions=_TENTHS,
    ),
}


def profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}") from None
