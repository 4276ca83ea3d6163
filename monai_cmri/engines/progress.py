"""A progress bar that shares the terminal with the log (SPEC 4).

Ignite's ``ProgressBar`` (tqdm) redraws one line in place on stderr while MONAI's handlers log to
stdout. On a terminal, every log line written during an epoch starts in the middle of the bar; in a
file or a pipe, where nothing is redrawn, every refresh of the bar becomes text of its own between
the log lines. :class:`TerminalProgressBar` draws Ignite's bar only on a terminal and, while the
engine runs, prints the log records above the bar (tqdm's ``logging_redirect_tqdm``). Runs whose
output goes to a file or a pipe get the log alone: one line per epoch and per ``log_every``
iterations.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import IO, Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from tqdm.contrib.logging import logging_redirect_tqdm

from monai_cmri.bundles import as_flag

__all__ = ["TerminalProgressBar"]


class TerminalProgressBar:
    """Ignite's ``ProgressBar`` on an interactive terminal, with the log printed above it.

    Args:
        enabled: draw the bar (True), never (False), or when ``stream`` is a terminal (None).
        persist: keep the finished bar of each epoch on screen (Ignite's argument).
        output_transform: maps the engine output to the values shown on the bar, e.g.
            ``lambda output: {"loss": output["loss"]}``.
        stream: where the bar is drawn; ``sys.stderr`` when None (looked up at attach time).
        kwargs: further ``tqdm`` arguments, e.g. ``mininterval`` (seconds between refreshes).

    Example:
        ``TerminalProgressBar(output_transform=lambda out: {"loss": out["loss"]}).attach(trainer)``
    """

    def __init__(
        self,
        enabled: bool | None = None,
        persist: bool = False,
        output_transform: Callable[[Any], Any] | None = None,
        stream: IO[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.enabled = None if enabled is None else as_flag(enabled, "progress")
        self.persist = persist
        self.output_transform = output_transform
        self.stream = stream
        self.kwargs = kwargs
        self.bar: ProgressBar | None = None
        self._redirect = ExitStack()

    def attach(self, engine: Engine) -> None:
        """Attach the bar to ``engine`` if it is enabled; do nothing otherwise."""
        stream = self.stream if self.stream is not None else sys.stderr
        enabled = self.enabled if self.enabled is not None else _is_terminal(stream)
        if not enabled:
            return
        self.bar = ProgressBar(persist=self.persist, file=stream, **self.kwargs)
        self.bar.attach(engine, output_transform=self.output_transform)
        engine.add_event_handler(Events.STARTED, self.redirect_logging)
        engine.add_event_handler(Events.COMPLETED, self.restore_logging)
        engine.add_event_handler(Events.TERMINATE, self.restore_logging)

    def redirect_logging(self, engine: Engine | None = None) -> None:
        """Print the records of every logger with a console handler through ``tqdm.write`` from now on.

        That is the root logger and loggers that do not propagate to it, such as MONAI's
        ``StatsHandler`` logger (``monai.apps.get_logger`` gives it a stdout handler of its own).
        Loggers without a console handler are left alone: tqdm would add one and their records
        would be printed twice. An engine that raises leaves the redirect in place, which prints as
        before once no bar is drawn.
        """
        loggers = [logging.root, *logging.root.manager.loggerDict.values()]
        loggers = [
            logger
            for logger in loggers
            if isinstance(logger, logging.Logger) and any(_is_console(handler) for handler in logger.handlers)
        ]
        self._redirect.close()
        if loggers:
            self._redirect.enter_context(logging_redirect_tqdm(loggers=loggers))

    def restore_logging(self, engine: Engine | None = None) -> None:
        """Give the root logger its own console handlers back."""
        self._redirect.close()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (sys.stdout, sys.stderr)
