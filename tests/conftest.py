from __future__ import annotations

from pathlib import Path

import pytest

from autograder.config import load_course

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def course():
    return load_course(ROOT / "course.yml")


def full_marks(result) -> bool:
    """Every point the grader gives by itself: the written answers (graded by a person) aside."""
    return result.score == result.max_score - result.pending_points


def lost_checks(result) -> dict[str, str]:
    """{check: message} of every check the result lost (a written answer waiting for a person is not lost)."""
    return {c.name: c.message for c in result.checks if not c.passed and not c.pending}
