"""Command line: ``python -m monai_cmri <command>`` (or ``monai-cmri <command>``).

Commands:
    pipeline    the main job on the simulated dataset
    simulate    write a simulated fastMRI-format dataset with fastMRI+-style annotations
    preprocess  fastMRI files -> ESPIRiT -> patch datasets with volume-level splits
    merge       merge the per-volume patch files of one or several shards into split datasets
    labels      class counts per sequence from fastMRI+ annotations, both class rules
    figure      render a fastMRI file's slices (magnitude, phase, boxes) to PNG
    sheet       render a sheet of patches (magnitude, phase; normal vs abnormal) to PNG
    export      write a fastMRI file's combined volume as NIfTI (magnitude, phase)

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
            "preprocess": commands.preprocess,
            "merge": commands.merge,
            "labels": commands.labels,
            "figure": commands.figure,
            "sheet": commands.sheet,
            "export": commands.export,
        },
        name="monai_cmri",
    )


if __name__ == "__main__":
    main()
