"""Seconds per graded notebook: `course grade` against nbgrader's own autograde, same notebooks,
same run. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/grading.py [--lab ID ...] [--copies N]

For each lab, N copies (default 20) of its solution notebook are graded serially (--jobs 1) by
our grader and by `nbgrader autograde` (through NbGraderAPI, gradebook and all), then by our
grader with --jobs = the cores. The overhead is what our serial run spends per notebook beyond
the notebook's own cells (worker start, restore, fork, scoring, reports), i.e. wall time per
notebook minus the cells' time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.config import load_course  # noqa: E402
from autograder.grade import grade_class  # noqa: E402


def ours(course, lab_id: str, copies: int, jobs: int) -> tuple[float, float, float]:
    """(wall seconds per notebook including the workers' start, mean seconds per notebook as
    measured inside the worker: restore + run + score, without the start, and the mean seconds
    of the notebook's own cells)"""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(copies):
            dest = Path(tmp, f"s{i:02d}", f"{lab_id}.ipynb")
            dest.parent.mkdir()
            shutil.copy(course.solution_path(lab_id), dest)
        t0 = time.perf_counter()
        results, _ = grade_class(Path(tmp), course, [lab_id], jobs=jobs)
        elapsed = time.perf_counter() - t0
    assert all(r.score == r.max_score for r in results), [r.checks for r in results]
    return elapsed / copies, sum(r.seconds for r in results) / copies, sum(r.compute_seconds for r in results) / copies


def nbgrader(course, lab_id: str, copies: int) -> float:
    import logging
    import warnings

    from nbgrader.apps import NbGraderAPI
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from traitlets.config import Config

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # alembic
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "source", lab_id, f"{lab_id}.ipynb")
        src.parent.mkdir(parents=True)
        shutil.copy(course.solution_path(lab_id), src)
        c = Config()
        c.CourseDirectory.root = tmp
        c.Execute.timeout = int(course.cell_timeout)
        api = NbGraderAPI(config=c)
        assert api.generate_assignment(lab_id)["success"]
        for i in range(copies):
            dest = Path(tmp, "submitted", f"s{i:02d}", lab_id, f"{lab_id}.ipynb")
            dest.parent.mkdir(parents=True)
            shutil.copy(course.solution_path(lab_id), dest)
        t0 = time.perf_counter()
        for i in range(copies):
            assert api.autograde(lab_id, f"s{i:02d}", force=True)["success"]
        return (time.perf_counter() - t0) / copies


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lab", action="append")
    p.add_argument("--copies", type=int, default=20)
    args = p.parse_args()
    course = load_course(ROOT / "course.yml")
    cores = os.cpu_count() or 1
    print(f"seconds per graded notebook ({args.copies} copies of each solution, {cores} cores)")
    print("  ours serial: wall time of `grade --jobs 1` / copies (includes the one worker start)")
    print("  in worker:   restore + run + score per notebook, without the worker start")
    print("  cells:       the notebook's own cells, per notebook")
    print("  overhead:    ours serial - cells")
    print("  nbgrader:    NbGraderAPI.autograde per notebook, serial (a fresh kernel each)")
    print(f"  ratio:       nbgrader / ours -j{cores}")
    print(f"{'lab':<12}{'ours serial':>12}{'in worker':>10}{'cells':>7}{'overhead':>9}{f'ours -j{cores}':>9}"
          f"{'nbgrader':>10}{'ratio':>7}")
    for lab in course.select(args.lab):
        serial, inside, cells = ours(course, lab.id, args.copies, 1)
        parallel, _, _ = ours(course, lab.id, args.copies, cores)
        theirs = nbgrader(course, lab.id, args.copies)
        print(f"{lab.id:<12}{serial:>12.2f}{inside:>10.2f}{cells:>7.2f}{serial - cells:>9.2f}{parallel:>9.2f}"
              f"{theirs:>10.2f}{theirs / parallel:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
