"""Reading a submission and restoring what the student does not control.

A student controls only the answer cells (nbgrader `solution: true`). Every other cell —
prose, given code, checks with their hidden tests — is taken from the source notebook in
`solutions/`, whatever the submission did to it (edited, re-typed, deleted, points changed).
Cells the student added are kept, in place, so helper code they wrote still runs.
"""
from __future__ import annotations

import copy
import json
import os
import re
import stat
from pathlib import Path

import nbformat

from .results import valid_text

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def is_grade(cell) -> bool:
    """nbgrader.utils.is_grade, without importing nbgrader (2 s: its server extensions)."""
    return "nbgrader" in cell.metadata and cell.metadata["nbgrader"].get("grade", False)


def is_solution(cell) -> bool:
    """nbgrader.utils.is_solution, without importing nbgrader."""
    return "nbgrader" in cell.metadata and cell.metadata["nbgrader"].get("solution", False)


MAX_BYTES = 20 << 20      # a submitted notebook larger than this is not parsed


class SubmissionError(Exception):
    """The file is not a gradable notebook; the message is one line for the student."""


def read_capped(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file that is not a symbolic link and not over `limit` bytes."""
    for link in (path, path.parent):
        if link.is_symlink():
            what = "" if link == path else "its folder "
            raise SubmissionError(f"refused: the submission is a symbolic link ({what}to {os.readlink(link)}); "
                                  "hand in the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise SubmissionError(f"cannot read the file: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionError("refused: the submission is not a regular file")
        if info.st_size > limit:
            raise SubmissionError(f"refused: the file is {info.st_size / 2**20:.1f} MB, over the {limit / 2**20:g} MB "
                                  "limit (clear the outputs and hand it in again)")
        return f.read(limit + 1)


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Parse a submitted file into an nbformat v4 notebook, or raise SubmissionError."""
    data = read_capped(path)
    if not data.strip():
        raise SubmissionError("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SubmissionError(f"not a notebook: not UTF-8 text (byte {e.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"not a notebook: invalid JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
    except RecursionError:
        raise SubmissionError("not a notebook: JSON nested too deeply") from None
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise SubmissionError("not a notebook: JSON without notebook cells")
    if _SURROGATE_ESCAPE.search(text):     # "\ud800" alone: a str UTF-8 cannot write, in a cell or output
        try:
            text = json.dumps(valid_text(raw))
        except RecursionError:
            raise SubmissionError("not a notebook: JSON nested too deeply") from None
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except RecursionError:
        raise SubmissionError("not a valid notebook: nested too deeply") from None
    except Exception as e:  # nbformat raises several types for malformed notebooks
        if raw.get("nbformat") != 4:          # its conversion's errors say nothing (KeyError((None, None)))
            raise SubmissionError(f"not a valid notebook: a notebook of format {str(raw.get('nbformat'))[:20]} that "
                                  "cannot be converted to format 4 (open it in Jupyter and save it again)") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SubmissionError(f"not a valid notebook: {first[:200]}") from None
    return nb


def _nbgrader(cell) -> dict:
    """A cell's nbgrader metadata, or {} where it is missing or of an odd type."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    gid = _nbgrader(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def cell_kind(cell) -> str:
    """answer (the student's), test (a check) or locked (given code), from the source's metadata."""
    meta = _nbgrader(cell)
    if meta.get("solution"):
        return "answer"
    return "test" if meta.get("grade") else "locked"


def _definition(source: str) -> str | None:
    """The first `def`/`class` line of a cell: what an answer cell is recognised by."""
    for line in source.splitlines():
        if line.startswith(("def ", "class ")):
            return line.split("(")[0].split(":")[0].strip()
    return None


def _visible(source: str) -> str:
    return source.split("### BEGIN HIDDEN TESTS")[0].strip()


def _relabel(submission: nbformat.NotebookNode, source: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """A copy of `submission` in which code cells that lost their nbgrader metadata (pasted
    into a new notebook, saved by an editor that drops it) are matched to the source's answer
    cells by content and order: the same `def`/`class` line, or, for an answer without one, the
    next cell that is not the course's own code. Returns it and how many cells were matched."""
    present = {_grade_id(c) for c in submission.cells} - {None}
    wanted = [c for c in source.cells if is_solution(c) and not is_grade(c) and _grade_id(c) not in present]
    course_code = {_visible(c.source) for c in source.cells if c.cell_type == "code" and not is_solution(c)}
    loose = [i for i, c in enumerate(submission.cells) if c.get("cell_type") == "code" and _grade_id(c) is None
             and isinstance(c.get("source"), str) and c.source.strip() and _visible(c.source) not in course_code]
    if not wanted or not loose:
        return submission, 0
    nb, matched, position = copy.deepcopy(submission), 0, 0
    for answer in wanted:
        key = _definition(answer.source.replace("### BEGIN SOLUTION", ""))
        for j in range(position, len(loose)):
            cell = nb.cells[loose[j]]
            if (_definition(cell.source) == key) if key else _definition(cell.source) is None:
                cell.metadata["nbgrader"] = {"grade_id": _grade_id(answer), "solution": True, "grade": False}
                matched, position = matched + 1, j + 1
                break
    return nb, matched


def restore(submission: nbformat.NotebookNode, source: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook to execute: the source's cells in the source's order, answer cells from the
    submission, cells the student added kept before the cell they preceded. Returns it and notes
    on anything unusual (a deleted answer cell, answers matched by content, ...)."""
    submission, relabelled = _relabel(submission, source)
    answers: dict[str, nbformat.NotebookNode] = {}
    added_before: dict[str | None, list] = {}
    pending: list = []
    source_ids = {_grade_id(c) for c in source.cells} - {None}
    course_code = {_visible(c.source) for c in source.cells if c.cell_type == "code" and not is_solution(c)}
    copies: dict[str, int] = {}
    for cell in submission.cells:
        gid = _grade_id(cell)
        if gid in source_ids and gid not in answers:
            answers[gid] = cell
            added_before.setdefault(gid, []).extend(pending)
            pending = []
        elif (cell.get("cell_type") == "code" and isinstance(cell.get("source"), str) and cell.source.strip()
              and _visible(cell.source) not in course_code):    # the course's own code comes from the source
            pending.append(_added(cell))    # a later copy of a cell too: it runs where the student ran it
            if gid in source_ids:
                copies[gid] = copies.get(gid, 1) + 1
    added_before.setdefault(None, []).extend(pending)

    notes, cells = [], []
    notes += [f"cell {gid!r} appears {n} times: the first is graded as that cell, the later copies run after it "
              "as your own code" for gid, n in copies.items()]
    if relabelled:
        notes.append(f"{relabelled} answer cell(s) had lost their nbgrader metadata and were matched to the "
                     "exercise by content and order")
    for cell in source.cells:
        gid = _grade_id(cell)
        cells.extend(_clean(c) for c in added_before.get(gid, []))
        if is_solution(cell) and is_grade(cell) and cell.cell_type == "markdown":    # a written answer, graded by hand
            written = answers.get(gid)
            cell = nbformat.from_dict({**cell, "source": written.source if written is not None
                                       and written.cell_type == "markdown" and isinstance(written.source, str) else ""})
        elif is_solution(cell) and not is_grade(cell):
            if gid in answers and answers[gid].cell_type == "code":
                cell = nbformat.from_dict({**cell, "source": answers[gid].source})
            else:
                notes.append(f"answer cell {gid!r} was deleted: graded as unanswered")
                cell = nbformat.from_dict({**cell, "source": "raise NotImplementedError('answer cell deleted')"})
        cells.append(_clean(cell))
    cells.extend(_clean(c) for c in added_before.get(None, []))
    nb = nbformat.from_dict({**source, "cells": cells})
    return nb, notes


def _added(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A cell the student added: its code only, run as the student's (its metadata never makes
    it a check or given code)."""
    added = nbformat.v4.new_code_cell(cell.source)
    added.metadata["nbgrader"] = {"solution": True, "grade": False, "locked": False, "added": True}
    return added


def _clean(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = nbformat.from_dict(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def load_source(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)
