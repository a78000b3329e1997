"""Seconds per graded notebook: `course grade` against nbgrader's own autograde, same notebooks,
same run. Prints figures; asserts nothing about speed (only that every copy scores full marks).

    .venv/bin/python benchmarks/grading.py [--lab ID ...] [--copies N] [--skip-ours] [--skip-nbgrader]

For each lab, N copies (default 20) of its solution notebook are graded serially (--jobs 1) by
our grader, then by our grader with --jobs = the cores, and by nbgrader the way its users grade a
class: one `nbgrader autograde LAB --force` command for all N submissions, in an nbgrader course
directory (`nbgrader_config.py`, `source/LAB/LAB.ipynb`, `submitted/<student>/LAB/LAB.ipynb`,
`gradebook.db`) prepared beforehand with `nbgrader generate_assignment LAB`, outside the timing.
nbgrader's figure is that one command's wall time / N, so its start-up is paid once, as ours is.
The overhead is what our serial run spends per notebook beyond the notebook's own cells (worker
start, restore, fork, scoring, reports), i.e. wall time per notebook minus the cells' time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# --tree DIR: time the grader of another checkout (e.g. a git worktree of an older commit)
if "--tree" in sys.argv:
    ROOT = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from autograder.config import load_course  # noqa: E402

BIN = Path(sys.executable).parent  # the venv's bin/: `nbgrader`, and `alembic`, which it runs


def ours(course, lab_id: str, copies: int, jobs: int) -> tuple[float, float, float]:
    """(wall seconds per notebook including the workers' start, mean seconds per notebook as
    measured inside the worker: restore + run + score, without the start, and the mean seconds
    of the notebook's own cells)"""
    from autograder.grade import grade_class

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(copies):
            dest = Path(tmp, f"s{i:02d}", f"{lab_id}.ipynb")
            dest.parent.mkdir()
            shutil.copy(course.solution_path(lab_id), dest)
        t0 = time.perf_counter()
        results, _ = grade_class(Path(tmp), course, [lab_id], jobs=jobs)
        elapsed = time.perf_counter() - t0
    assert all(r.score == r.max_score - r.pending_points for r in results), [r.checks for r in results]   # written: by hand
    return elapsed / copies, sum(r.seconds for r in results) / copies, sum(r.compute_seconds for r in results) / copies


def _nbgrader(course_dir: Path, *args: str) -> float:
    """Run the `nbgrader` command in `course_dir`; its wall seconds. Raises on a non-zero exit."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course_dir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"nbgrader {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}")
    return elapsed


def nbgrader(course, lab_id: str, copies: int) -> float:
    """Wall seconds per notebook of one `nbgrader autograde LAB --force` over `copies` submissions."""
    with tempfile.TemporaryDirectory() as tmp:
        course_dir = Path(tmp)
        db_url = f"sqlite:///{course_dir / 'gradebook.db'}"
        (course_dir / "nbgrader_config.py").write_text(
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.root = {str(course_dir)!r}\n"
            f"c.CourseDirectory.db_url = {db_url!r}\n"
            f"c.Execute.timeout = {int(course.cell_timeout)}  # the course's cell timeout\n", encoding="utf-8")
        src = course_dir / "source" / lab_id / f"{lab_id}.ipynb"
        src.parent.mkdir(parents=True)
        shutil.copy(course.solution_path(lab_id), src)
        _nbgrader(course_dir, "generate_assignment", lab_id, "--force")  # gradebook: the cells, points
        students = [f"s{i:02d}" for i in range(copies)]
        for student in students:
            dest = course_dir / "submitted" / student / lab_id / f"{lab_id}.ipynb"
            dest.parent.mkdir(parents=True)
            shutil.copy(course.solution_path(lab_id), dest)
        elapsed = _nbgrader(course_dir, "autograde", lab_id, "--force")  # the whole class, one command
        _check_full_marks(db_url, lab_id, students, sum(course.lab(lab_id).written.values()))
    return elapsed / copies


def _check_full_marks(db_url: str, lab_id: str, students: list[str], written: float = 0) -> None:
    """Every submission was graded by nbgrader and scored full marks (as ours must)."""
    import warnings

    from nbgrader.api import Gradebook

    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # Gradebook runs alembic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(db_url) as gb:
            scores = {s: (gb.find_submission(lab_id, s).score, gb.find_submission(lab_id, s).max_score)
                      for s in students}
    assert all(score == top - written for score, top in scores.values()), scores   # written answers: by hand


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lab", action="append")
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--skip-ours", action="store_true", help="time nbgrader only")
    p.add_argument("--skip-nbgrader", action="store_true", help="time our grader only")
    p.add_argument("--tree", metavar="DIR", help="grade with the checkout in DIR (its autograder and course.yml)")
    args = p.parse_args()
    course = load_course(ROOT / "course.yml")
    cores = os.cpu_count() or 1
    jn = f"ours -j{cores}"
    print(f"seconds per graded notebook ({args.copies} copies of each solution, {cores} cores)")
    print("  ours serial: wall time of `grade --jobs 1` / copies (includes the one worker start)")
    print("  in worker:   restore + run + score per notebook, without the worker start")
    print("  cells:       the notebook's own cells, per notebook")
    print("  overhead:    ours serial - cells")
    print(f"{f'  {jn}:':<15}wall time of `grade --jobs {cores}` / copies")
    print("  nbgrader:    wall time of one `nbgrader autograde LAB --force` for all copies / copies")
    print("               (nbgrader's CLI, serial, a fresh kernel per notebook, start-up paid once)")
    print("  /serial:     nbgrader / ours serial")
    print(f"{f'  /-j{cores}:':<15}nbgrader / ours -j{cores}")
    print(f"{'lab':<12}{'ours serial':>12}{'in worker':>10}{'cells':>7}{'overhead':>9}{jn:>10}"
          f"{'nbgrader':>10}{'/serial':>8}{f'/-j{cores}':>7}")

    def cell(value: float | None, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"

    for lab in course.select(args.lab):
        serial = inside = cells = parallel = theirs = None
        if not args.skip_ours:
            serial, inside, cells = ours(course, lab.id, args.copies, 1)
            parallel, _, _ = ours(course, lab.id, args.copies, cores)
        if not args.skip_nbgrader:
            theirs = nbgrader(course, lab.id, args.copies)
        both = serial is not None and theirs is not None
        print(f"{lab.id:<12}{cell(serial, 12)}{cell(inside, 10)}{cell(cells, 7)}"
              f"{cell(serial - cells if serial is not None else None, 9)}{cell(parallel, 10)}{cell(theirs, 10)}"
              f"{cell(theirs / serial if both else None, 8)}{cell(theirs / parallel if both else None, 7)}",
              flush=True)


if __name__ == "__main__":
    main()
