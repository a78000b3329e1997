"""Answer cells with a starter: the exercise begins with given code (broken code to fix, in the
debugging lab) instead of nbgrader's "# YOUR CODE HERE" stub; the solution keeps the solution,
and the grader, which takes answer cells from the submission, runs what the student handed in."""
from __future__ import annotations

import json
import types

import nbformat
import pytest
from nbgrader.utils import compute_checksum

from autograder.build import _Helpers, dumps, generate_assignments, parse_cells
from autograder.config import CourseError, Lab
from autograder.notebook import restore

LAB = Lab("demo", "Demo", {"works": 1})
FIXED = "def f(x):\n    return x + 1"
BROKEN = "def f(x):\n    return x - 1"


def _text() -> str:
    helpers = _Helpers(LAB, types.SimpleNamespace(), [])
    return "\n\n".join([
        "# %% [markdown]\n# # Demo",
        helpers.answer("f", FIXED, starter=BROKEN),
        helpers.answer("g", "def g():\n    return 2"),
        helpers.answer("h", "h = 3", starter=""),
        helpers.check("works", "assert f(1) == 2"),
    ]) + "\n"


def _source_notebook(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=parse_cells(text, LAB), metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


@pytest.fixture(scope="module")
def built() -> tuple[nbformat.NotebookNode, str]:
    """The source notebook and the text of the exercise nbgrader generates from it (~2 s)."""
    source = _source_notebook(_text())
    return source, generate_assignments({"demo": source})["demo"]


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_answer_with_starter_keeps_the_solution_and_stores_the_starter():
    text = _text()
    assert "### BEGIN STARTER\n" + BROKEN + "\n### END STARTER" in text
    cell = _cell(_source_notebook(text), "f")
    assert cell.source == f"### BEGIN SOLUTION\n{FIXED}\n### END SOLUTION"   # the solution notebook: fixed code
    assert cell.metadata["course"] == {"starter": BROKEN}
    assert cell.metadata["nbgrader"]["solution"] and not cell.metadata["nbgrader"]["locked"]
    assert "course" not in _cell(_source_notebook(text), "g").metadata   # an ordinary answer cell is unchanged


def test_the_exercise_starts_with_the_starter(built):
    source, text = built
    exercise = nbformat.reads(text, as_version=4)
    f, g = _cell(exercise, "f"), _cell(exercise, "g")
    assert f.source == BROKEN and "course" not in f.metadata            # no trace of the mechanism
    assert f.metadata["nbgrader"]["checksum"] == compute_checksum(f)     # nbgrader's checksum of what it holds
    assert g.source == "# YOUR CODE HERE\nraise NotImplementedError()"   # other answer cells get the stub
    assert "BEGIN SOLUTION" not in dumps(exercise) and FIXED not in dumps(exercise)
    assert _cell(source, "f").source.count(FIXED) == 1                   # generating left the source alone


def test_an_empty_starter_gives_an_empty_cell(built):
    assert _cell(nbformat.reads(built[1], as_version=4), "h").source == ""


def test_the_grader_runs_what_the_student_handed_in(built):
    source, text = built
    exercise = nbformat.reads(text, as_version=4)
    as_given, _ = restore(exercise, source)                               # an untouched exercise: the broken code
    assert _cell(as_given, "f").source == BROKEN
    fixed = nbformat.from_dict(json.loads(dumps(exercise)))
    _cell(fixed, "f").source = FIXED
    graded, notes = restore(fixed, source)
    assert _cell(graded, "f").source == FIXED and not notes
    assert _cell(graded, "check_works").source == "assert f(1) == 2"     # locked cells come from the source


def test_generation_is_deterministic(built):
    assert generate_assignments({"demo": _source_notebook(_text())})["demo"] == built[1]


@pytest.mark.parametrize("text, problem", [
    ("# %%\nx = 1\n### BEGIN STARTER\nx = 2\n### END STARTER\n", "not a code cell"),
    ("# %% [answer] id=a\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### BEGIN STARTER\ny\n", "one '### BEGIN STARTER'"),
    ("# %% [answer] id=a\n### BEGIN STARTER\ny\n### END STARTER\n### BEGIN SOLUTION\nx\n### END SOLUTION\n",
     "at the end of the cell"),
    ("# %% [answer] id=a\nx\n### BEGIN STARTER\ny\n### END STARTER\n### BEGIN STARTER\nz\n### END STARTER\n",
     "one '### BEGIN STARTER'"),
])
def test_malformed_starters_are_one_clear_error(text, problem):
    with pytest.raises(CourseError, match=problem.replace("(", r"\(")):
        parse_cells(text, LAB)
