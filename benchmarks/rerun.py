"""A rerun of `course grade` over a large class in which nothing changed: how long the grader takes
to find that out and bring every report and the gradebook up to date. Prints figures; asserts only
that nothing was graded again.

    .venv/bin/python benchmarks/rerun.py [--students 500] [--profile]

The class: --students students x every lab of course.yml (500 x 16 = 8,000 notebooks), each a copy
of the lab's exercise notebook, with a signed result already in the output folder whose
fingerprint matches it (as a finished run leaves them; a quarter of the checks lost, with
messages, so that feedback pages show answers). Then `grade_to_folder` (what `course grade`
runs) three times:
    first       the first run over those results: every report, feedback page, autograded
                notebook and gradebook row written
    rerun       the same again, nothing changed: the figure the README reports
    one change  one submission's result changed (re-signed), the rest as before
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.config import load_course  # noqa: E402
from autograder.grade import fingerprint, written_answers  # noqa: E402
from autograder.pipeline import GradeOptions, grade_to_folder  # noqa: E402
from autograder.report import write_result  # noqa: E402
from autograder.results import CheckResult, Result  # noqa: E402


def make_class(course, students: int, root: Path) -> int:
    """Notebooks under root/class and their signed results under root/out; returns how many."""
    n = 0
    for s in range(students):
        student = f"s{s:04d}"
        for lab in course.labs:
            path = root / "class" / student / f"{lab.id}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(course.exercise_path(lab.id), path)
            checks = [CheckResult(name, 0 if (s + i) % 4 == 0 else points, points,
                                  "expected 1.0, got 0.5 — a hint" if (s + i) % 4 == 0 else "")
                      for i, (name, points) in enumerate(lab.checks.items())] + written_answers(lab)
            write_result(root / "out", Result(student, lab.id, str(path), checks, seconds=1.0, compute_seconds=0.5,
                                              fingerprint=fingerprint(path, lab, course, "cpu", True)))
            n += 1
    return n


def timed(label: str, course, root: Path, profile: bool) -> float:
    options = GradeOptions(device="cpu")
    profiler = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    graded = grade_to_folder(root / "class", course, root / "out", options)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - t0
    assert graded.reused == len(graded.results), (graded.reused, len(graded.results))
    print(f"{label:<12}{seconds:>8.1f} s   ({len(graded.results):,} results, {graded.reused:,} reused)", flush=True)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--students", type=int, default=500)
    p.add_argument("--profile", action="store_true", help="print where the rerun's time goes (cProfile)")
    args = p.parse_args()
    course = load_course(ROOT / "course.yml")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        n = make_class(course, args.students, root)
        print(f"{n:,} notebooks and results made in {time.perf_counter() - t0:.1f} s", flush=True)
        timed("first", course, root, False)
        timed("rerun", course, root, args.profile)
        from autograder.report import read_results
        result = next(iter(read_results(root / "out").values()))
        result.checks[0].message += " (regraded)"
        write_result(root / "out", result)
        timed("one change", course, root, False)


if __name__ == "__main__":
    main()
