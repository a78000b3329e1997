"""Running a check as the grader does, for the tests: the check's verdict on a student's objects
here (as the notebook's public check cell runs it) and from the judge (probed with the check in a
check process of its own, as the fork engine grades: autograder.live, then autograder.witness's
judge on the record). `fails` asserts that both say the same.
"""
from __future__ import annotations

import ast
import atexit
import importlib
import json
import re
import socket
from typing import Any, Callable


from autograder import live, witness

_CHECK_PROCESSES: dict[int, socket.socket] = {}


def check_process(draw: int = 0) -> socket.socket:
    """The tests' check process (autograder.live) for a grading run's `draw`, started once per
    test session."""
    if draw not in _CHECK_PROCESSES:
        _CHECK_PROCESSES[draw] = live.spawn_check_process(draw=draw)
        atexit.register(_CHECK_PROCESSES[draw].close)
    return _CHECK_PROCESSES[draw]


def in_process(lab: str, source: str, namespace: dict) -> str:
    """The verdict of a check cell run here: "pass", "not answered" or the failure's message."""
    checks = importlib.import_module(f"autograder.checks.{lab}")
    try:
        exec(compile(source, "<check cell>", "exec"), {**namespace, "checks": checks})
    except NotImplementedError:
        return "not answered"
    except AssertionError as e:
        return str(e)
    return "pass"


def judged(lab: str, source: str, namespace: dict, checks_process: socket.socket | None = None,
           draw: int = 0, partial: bool = False) -> str:
    """The judge's verdict on a probe of the cell: with the check in this process, or with
    `checks_process` (a socket) in the check process, started for the grading run's `draw`
    (`check_process(draw)`); `partial`: judged case by case (its message then ends "(k of n
    cases passed)")."""
    if checks_process is None:
        header, blob = witness.probe_cell(lab, source, namespace)
    else:
        header, blob = live.probe_cell(lab, source, namespace, checks_process)
    try:
        witness.judge_cell(lab, source, json.loads(json.dumps(header)), blob, facts={"draw": draw}, partial=partial)
    except NotImplementedError:
        return "not answered"
    except AssertionError as e:
        return str(e)
    return "pass"


def masked(message: str) -> str:
    """A message with its numbers masked (numbers drawn at random differ: a check starts from the
    notebook's random state in the notebook, from a fixed one when graded)."""
    return re.sub(r"-?\d[\d,]*(\.\d+)?(e[-+]?\d+)?", "#", message)


def _literal(value: Any) -> str | None:
    """`value` as the source of a literal in a check cell, when it is one."""
    try:
        text = repr(value)
        return text if ast.literal_eval(text) == value and type(ast.literal_eval(text)) is type(value) else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def cell(check: Callable, *args: Any, **kwargs: Any) -> tuple[str, str, dict]:
    """(lab, check cell source, namespace) of the call `check(*args, **kwargs)`: literals written
    into the cell, every other argument a name in the notebook's namespace."""
    lab = check.__module__.rsplit(".", 1)[-1]
    namespace: dict[str, Any] = {}

    def text(value: Any) -> str:
        literal = _literal(value)
        if literal is not None:
            return literal
        name = f"arg{len(namespace)}"
        namespace[name] = value
        return name
    parts = [text(a) for a in args] + [f"{k}={text(v)}" for k, v in kwargs.items()]
    return lab, f"checks.{check.__name__}({', '.join(parts)})", namespace


def verdicts(check: Callable, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """(here, from the judge) for `check(*args, **kwargs)`."""
    lab, source, namespace = cell(check, *args, **kwargs)
    return in_process(lab, source, namespace), judged(lab, source, namespace, check_process())


def fails(check: Callable, *args: Any, contains: tuple[str, ...] = (), **kwargs: Any) -> str:
    """`check(*args, **kwargs)` fails with one line, expected / got / hint, holding every
    `contains`; the judge fails it with the same words. Returns the message (as the notebook
    shows it)."""
    here, judge = verdicts(check, *args, **kwargs)
    _one_clear_line(here, contains)
    assert masked(judge) == masked(here), f"the judge says {judge!r}"
    return here


def fails_here(check: Callable, *args: Any, contains: tuple[str, ...] = (), **kwargs: Any) -> str:
    """As `fails`, in this process only: for a verdict that the grader takes from what only it
    measures (the training time, the accuracy on the hidden split; tests/test_grading.py)."""
    lab, source, namespace = cell(check, *args, **kwargs)
    here = in_process(lab, source, namespace)
    _one_clear_line(here, contains)
    return here


def _one_clear_line(message: str, contains: tuple[str, ...]) -> None:
    assert message not in ("pass", "not answered"), message
    assert "expected" in message and "got" in message, message
    assert message.count("\n") == 0 and " — " in message, message   # one line, with a hint
    for part in contains:
        assert part in message, message


def passes(check: Callable, *args: Any, **kwargs: Any) -> None:
    """`check(*args, **kwargs)` passes, here and before the judge."""
    assert verdicts(check, *args, **kwargs) == ("pass", "pass")

