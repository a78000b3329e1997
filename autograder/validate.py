"""`course validate`: each lab's solution notebook scores full marks (but for written answers,
which people grade) and its blank exercise scores zero, both through the real grader."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .config import Course, CourseError
from .grade import Result, grade_class
from .progress import Progress


def validate(course: Course, lab_ids: list[str] | None = None, jobs: int | None = None) -> tuple[list[Result], list[str]]:
    """Grade solution and blank notebooks of the selected labs; return the results and the
    problems found (empty when every lab is sound)."""
    labs = course.select(lab_ids)
    with tempfile.TemporaryDirectory(prefix="course-validate-") as tmp:
        for lab in labs:
            for student, path in (("solution", course.solution_path(lab.id)), ("blank", course.exercise_path(lab.id))):
                if not path.exists():
                    raise CourseError(f"{path}: missing (run `course build`)")
                dest = Path(tmp, student, f"{lab.id}.ipynb")
                dest.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, dest)
        with Progress(2 * len(labs), "validating") as bar:
            results, _ = grade_class(Path(tmp), course, [lab.id for lab in labs], jobs=jobs, on_result=bar.update)
    problems = []
    for r in results:
        if r.grader_error:
            problems.append(f"{r.lab}: grader error on the {r.student} notebook: {r.grader_error}")
        elif r.student == "solution" and r.score != r.max_score - r.pending_points:     # written answers: by hand
            lost = "; ".join(f"{c.name}: {c.message}" for c in r.checks if not c.passed and not c.pending)
            problems.append(f"{r.lab}: the solution scores {r.score:g}/{r.max_score:g} — {lost}")
        elif r.student == "blank" and r.score != 0:
            won = ", ".join(c.name for c in r.checks if c.points)
            problems.append(f"{r.lab}: the blank exercise scores {r.score:g} (checks passing unanswered: {won})")
    return results, problems
