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
    experiments the classifier experiments on a main-job folder (paper 2.4, Table 4, Figures 6-8)
    real_vs_synthetic, substitution, additive
                one of those experiments
    select      select a flow stage's checkpoint among those its bundle kept (paper 2.4.3)
    bundle      print the folders of the MONAI bundles (installed or in a clone), or copy them out
    report      the main job's report (Markdown and self-contained HTML), the paper's numbers beside ours

Each command is a thin wrapper over the package; ``python -m monai_cmri <command> --help`` lists
its arguments.

Errors end the command with one line on stderr, ``monai_cmri <command>: error: <message>``, and
exit status 2 for bad arguments, 1 for a failure and 130 for an interrupt (Ctrl-C). ``--debug``
(anywhere on the command line) or ``MONAI_CMRI_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from monai_cmri import commands

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "error_message", "main"]

#: The commands, by name.
COMMANDS = {
    "pipeline": commands.pipeline,
    "simulate": commands.simulate,
    "preprocess": commands.preprocess,
    "merge": commands.merge,
    "labels": commands.labels,
    "figure": commands.figure,
    "sheet": commands.sheet,
    "export": commands.export,
    "experiments": commands.experiments,
    "real_vs_synthetic": commands.real_vs_synthetic,
    "substitution": commands.substitution,
    "additive": commands.additive,
    "select": commands.select,
    "bundle": commands.bundle,
    "report": commands.report,
}
#: Exit status of a command that failed, of one given bad arguments (as fire's own), of an interrupt.
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# What the package raises for a failure the user can act on; anything else is a bug and says its type.
_FAILURES = (OSError, ValueError, RuntimeError, KeyError, FloatingPointError)
_DEBUG_FLAG = "--debug"


def error_message(error: BaseException) -> str:
    """One line saying what went wrong: the exception's message, its type name for unexpected types."""
    # KeyError's str() is the repr of its argument; the package's KeyErrors carry a sentence.
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
    message = " ".join(line.strip() for line in str(text).splitlines() if line.strip())
    if not isinstance(error, _FAILURES):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message or type(error).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``monai-cmri`` console script.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` by default.

    Raises:
        SystemExit: with :data:`EXIT_FAILURE`, :data:`EXIT_USAGE` or :data:`EXIT_INTERRUPTED` when
            the command does not succeed (fire's own argument errors exit with 2 as well).
    """
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _DEBUG_FLAG in args or os.environ.get("MONAI_CMRI_DEBUG", "") not in ("", "0")
    args = [arg for arg in args if arg != _DEBUG_FLAG]
    prefix = " ".join(["monai_cmri", *(arg for arg in args[:1] if not arg.startswith("-"))])
    try:
        _thread_policy()
        fire.Fire(COMMANDS, command=args, name="monai_cmri")
    except KeyboardInterrupt:
        if debug:
            raise
        _close_progress_bars()
        print(f"{prefix}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # the top of the command line: every error becomes one line
        if debug:
            raise
        _close_progress_bars()
        print(f"{prefix}: error: {error_message(error)}", file=sys.stderr)
        sys.exit(EXIT_USAGE if isinstance(error, commands.UsageError) else EXIT_FAILURE)


def _thread_policy() -> None:
    """One CPU thread per process unless ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` ask for more.

    Set in the environment before torch is imported, so torch, BLAS and every child process (worker
    pools, bundle runs) start with it; see :mod:`monai_cmri.threads` for the measurements behind it.
    """
    from monai_cmri.threads import THREAD_VARIABLES, resolve_threads

    count = resolve_threads("auto")
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(count))


def _close_progress_bars() -> None:
    """End the lines of the progress bars the error interrupted, so that the message starts a line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


if __name__ == "__main__":
    main()
