"""The grader end to end, on real notebooks through `grade_class` (fresh kernels, as in a class):
the solution scores full marks, the blank exercise zero, every planted bug loses exactly the
points of the checks it declares, and broken submissions get a clear message without stopping
the class."""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from autograder.build import dumps
from autograder.config import load_course
from autograder.grade import grade_class
from tests.conftest import ROOT
from tests.planted import all_bugs, plant

# Through real notebooks and fresh kernels: the first bug of each lab (its clearest; the lab's
# own check tests and tests/test_contract.py plant every bug, probed and judged as the grader does,
# in-process: here the whole pipeline shows that a planted bug loses exactly its points).
_COURSE = load_course(ROOT / "course.yml")
LABS = [lab.id for lab in _COURSE.labs]
BUGS = [(lab, b) for lab, bugs in sorted(all_bugs().items()) if lab in LABS
        for b in bugs[:1]]


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    """Grade one class holding every lab's solution and blank exercise and every planted bug."""
    root = tmp_path_factory.mktemp("class")
    for lab in course.labs:
        solution = nbformat.read(course.solution_path(lab.id), as_version=4)
        files = {"solution": dumps(solution), "blank": course.exercise_path(lab.id).read_text()}
        for lab_id, b in BUGS:
            if lab_id == lab.id:
                files[f"bug-{b.name}"] = dumps(plant(solution, b))
        for student, text in files.items():
            (root / student).mkdir(exist_ok=True)
            (root / student / f"{lab.id}.ipynb").write_text(text)
    results, warnings = grade_class(root, course, jobs=2)
    assert not warnings
    return {(r.student, r.lab): r for r in results}


@pytest.mark.parametrize("lab_id", LABS)
def test_solution_full_marks_blank_zero(graded, course, lab_id):
    solution, blank = graded["solution", lab_id], graded["blank", lab_id]
    assert not solution.grader_error and not blank.grader_error
    # written answers wait for a person (formgrader): 0 points, pending, never a lost check
    assert solution.score == solution.max_score - solution.pending_points > 0, [
        (c.name, c.message) for c in solution.checks if not c.passed and not c.pending]
    assert [c.name for c in solution.checks if c.pending] == list(course.lab(lab_id).written)
    assert solution.notes == []          # the integrity guard found nothing to restore
    # run top to bottom, no cell of the solution fails (a helper used before the cell defining it)
    assert not [(i, text) for i, shown in (solution.outputs or {}).items() for kind, text in shown
                if kind == "error"]
    assert blank.score == 0
    for check in blank.checks:
        assert check.message, check.name  # every lost check says why


def test_every_lab_has_two_planted_bugs(course):
    bugs = all_bugs()
    assert all(len(bugs.get(lab.id, [])) >= 2 for lab in course.labs)


@pytest.mark.parametrize("lab_id, bug", BUGS, ids=[f"{lab}:{b.name}" for lab, b in BUGS])
def test_planted_bug_loses_exactly_its_checks(graded, course, lab_id, bug):
    result = graded[f"bug-{bug.name}", lab_id]
    assert not bug.fails - set(course.lab(lab_id).checks), "the bug declares checks the lab does not have"
    lab = course.lab(lab_id)
    failed = {c.name for c in result.checks if not c.passed and not c.pending}
    assert failed == set(bug.fails), {c.name: c.message for c in result.checks if not c.passed}
    lost = 0.0
    for c in result.checks:
        if c.passed or c.pending:
            continue
        assert c.message
        if c.name in lab.partial and c.points:     # independent cases score in proportion
            passed, total = map(int, re.search(r"\((\d+) of (\d+) cases passed\)$", c.message).groups())
            assert 0 < passed < total and c.points == round(c.max_points * passed / total, 2)
        else:
            assert c.points == 0
        lost += c.max_points - c.points
    assert result.score == pytest.approx(result.max_score - result.pending_points - lost)


def test_results_round_trip_json(graded):
    from autograder.grade import Result
    r = graded["solution", next(iter(graded))[1]]
    assert Result.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_kernel_engine_agrees_with_fork_engine(graded, course, tmp_path):
    """The Jupyter-kernel engine (nbgrader's way) scores the same as the default fork engine."""
    lab = course.labs[0].id
    for student in ("solution", "blank"):
        (tmp_path / student).mkdir()
        src = course.solution_path(lab) if student == "solution" else course.exercise_path(lab)
        (tmp_path / student / f"{lab}.ipynb").write_text(src.read_text())
    results, _ = grade_class(tmp_path, course, [lab], jobs=2, engine="kernel")
    for r in results:
        fork = graded[r.student, lab]
        assert [(c.name, c.points, c.message) for c in r.checks] == [(c.name, c.points, c.message) for c in fork.checks]
