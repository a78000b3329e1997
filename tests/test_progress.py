"""Progress where no terminal shows a bar (a CI log): a line at least every `every` seconds
while work goes on, a last line at the end, none after a failure (its one line is its own)."""
from __future__ import annotations

import io
import time

import pytest

from autograder.progress import Progress


def test_a_log_gets_a_line_every_period_and_a_last_one():
    log = io.StringIO()
    with Progress(3, "grading", every=0.2, stream=log) as bar:
        bar.update()
        time.sleep(0.5)                      # a slow notebook: the log still moves
        bar.update()
        bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("grading: ") for line in lines), lines
    assert lines[0].startswith("grading: 1/3 notebooks") and lines[-1].startswith("grading: 3/3 notebooks")


def test_a_failed_command_says_nothing_more():
    log = io.StringIO()
    with pytest.raises(ValueError):
        with Progress(3, "grading", every=60, stream=log):
            raise ValueError("bad roster")
    assert log.getvalue() == ""


def test_the_last_line_comes_once():
    log = io.StringIO()
    with Progress(1, "grading", every=0.1, stream=log) as bar:
        bar.update()
        time.sleep(0.35)                     # ticks after the work is done say nothing
    assert log.getvalue().count("grading: 1/1 notebooks") == 1, log.getvalue()
