"""Tests of the progress bar that shares the terminal with the log."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from monai_cmri.engines import TerminalProgressBar


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def logging_engine(stream) -> tuple[Engine, logging.Logger]:
    """An engine of 2 epochs x 5 iterations that logs every iteration to ``stream``, as MONAI's
    ``StatsHandler`` does (a logger of its own with a console handler, not propagating)."""
    logger = logging.getLogger("tests.engines.progress")
    logger.handlers, logger.propagate = [logging.StreamHandler(stream)], False
    logger.setLevel(logging.INFO)
    engine = Engine(lambda engine, batch: {"loss": 0.5})
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: logger.info(f"iteration {e.state.iteration} done"))
    return engine, logger


def interleaved(text: str) -> list[str]:
    """What was drawn on the line before each log line that does not start at the line's beginning."""
    heads = []
    for match in re.finditer(r"iteration \d+ done", text):
        line = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
        heads.append(line.split("\r")[-1])  # a carriage return moves back to the line's beginning
    return [head for head in heads if head.strip()]


def test_on_a_terminal_log_lines_are_printed_above_the_bar(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)  # the log's console stream and the bar's

    # Ignite's bar alone: the log lines start in the middle of the bar.
    engine, logger = logging_engine(terminal)
    ProgressBar(persist=False, file=terminal, mininterval=0).attach(engine, output_transform=lambda out: out)
    engine.run(range(5), max_epochs=2)
    assert len(interleaved(terminal.getvalue())) >= 8

    terminal.seek(0), terminal.truncate()
    engine, logger = logging_engine(terminal)
    handlers = list(logger.handlers)
    TerminalProgressBar(output_transform=lambda out: out, mininterval=0).attach(engine)
    engine.run(range(5), max_epochs=2)
    text = terminal.getvalue()
    assert "Epoch [2/2]: [5/5] 100%" in text and text.count(" done") == 10
    assert interleaved(text) == []
    assert logger.handlers == handlers  # the log's own handlers are back after the run


@pytest.mark.parametrize("enabled", [None, False])
def test_output_to_a_file_gets_the_log_alone(monkeypatch, enabled):
    file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", file)
    engine, logger = logging_engine(file)
    bar = TerminalProgressBar(enabled=enabled)
    bar.attach(engine)
    engine.run(range(5), max_epochs=2)
    assert bar.bar is None
    assert file.getvalue() == "".join(f"iteration {i} done\n" for i in range(1, 11))
