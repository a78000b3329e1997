"""Write the sample class that `make demo` grades: examples/class/<student>/<lab>.ipynb.

- `solution/`: every lab's solution notebook (full marks);
- `blank/`: every lab's untouched exercise notebook (zero);
- `bug-<name>/`: a solution notebook with one planted bug from tests/planted (loses exactly the
  points of the checks the bug declares);
- `broken/`: a file that is not a notebook (graded 0 with a message; the class goes on).

Run it after `course build` when a lab's answers change: `python examples/make_class.py`.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.build import dumps  # noqa: E402
from autograder.config import load_course  # noqa: E402
from tests.planted import all_bugs, plant  # noqa: E402


def write_class(out: Path) -> None:
    course = load_course(ROOT / "course.yml")
    shutil.rmtree(out, ignore_errors=True)
    bugs = all_bugs()
    for lab in course.labs:
        solution = nbformat.read(course.solution_path(lab.id), as_version=4)
        files = {"solution": dumps(solution), "blank": course.exercise_path(lab.id).read_text()}
        for bug in bugs.get(lab.id, [])[:1]:
            files[f"bug-{bug.name}"] = dumps(plant(solution, bug))
        for student, text in files.items():
            path = out / student / f"{lab.id}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    (out / "broken").mkdir(exist_ok=True)
    (out / "broken" / course.labs[0].id).with_suffix(".ipynb").write_text('{"cells": [ this is not json\n')


if __name__ == "__main__":
    target = ROOT / "examples" / "class"
    write_class(target)
    print(f"wrote {sum(1 for _ in target.rglob('*.ipynb'))} notebooks under {target.relative_to(ROOT)}")
