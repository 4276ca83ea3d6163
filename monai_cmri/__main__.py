"""Command line: ``python -m monai_cmri <command>`` (or ``monai-cmri <command>``).

Commands:
    pipeline   the main job on the simulated dataset (simulate, summarise, render figures)
    simulate   write a simulated fastMRI-format dataset with fastMRI+-style annotations
    labels     class counts per sequence from fastMRI+ annotations, both class rules
    figure     render a fastMRI file's slices (magnitude, phase, boxes) to PNG

Each command is a thin wrapper over the package; ``python -m monai_cmri <command> --help`` lists
its arguments.
"""

from __future__ import annotations

from monai_cmri import commands

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``monai-cmri`` console script."""
    import fire

    fire.Fire(
        {
            "pipeline": commands.pipeline,
            "simulate": commands.simulate,
            "labels": commands.labels,
            "figure": commands.figure,
        },
        name="monai_cmri",
    )


if __name__ == "__main__":
    main()
