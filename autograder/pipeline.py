"""Grading a class into an output folder: the library function `course grade` is a thin layer over.

    submissions -> grade_class (sandboxed workers; each result written, signed, as it is known)
                -> reports (grades.csv, JUnit, Gradescope JSON, HTML feedback) -> gradebook.db
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import Course, CourseError
from .grade import Result, find_submissions, grade_class


@dataclass(frozen=True)
class GradeOptions:
    """Everything `course grade` can be told, in one place (None: course.yml's value)."""
    lab_ids: list[str] | None = None
    jobs: int | None = None
    cell_timeout: float | None = None
    notebook_timeout: float | None = None
    memory_mb: float | None = None
    engine: str = "fork"
    device: str | None = "auto"
    sandboxed: bool = True
    force: bool = False
    gradebook: bool = True


@dataclass
class ClassGrades:
    results: list[Result]
    warnings: list[str]
    reused: int                  # results kept from an earlier run (unchanged, signed)


def grade_to_folder(submissions: Path, course: Course, out: Path, options: GradeOptions = GradeOptions(),
                    progress=None) -> ClassGrades:
    """Grade every submission under `submissions` into `out`: one signed result per submission
    as soon as it is known, then the class reports and the gradebook. `progress(result)` is
    called for each result. Reuses unchanged results unless `options.force`."""
    from .report import read_results, write_reports, write_result
    if options.memory_mb is not None:
        if options.memory_mb <= 0:
            raise CourseError(f"--memory-mb must be positive, got {options.memory_mb:g}")
        course = dataclasses.replace(course, memory_mb=options.memory_mb)
    find_submissions(submissions, course, options.lab_ids)          # a bad folder stops here, before anything is written
    done = {} if options.force else read_results(out)
    attempts = out / ".attempts"            # submissions being graded (autograder.grade.grade_class)
    if options.force:
        shutil.rmtree(attempts, ignore_errors=True)

    def on_result(result: Result) -> None:
        write_result(out, result)
        if progress:
            progress(result)

    results, warnings = grade_class(submissions, course, options.lab_ids, options.jobs, options.cell_timeout,
                                    options.notebook_timeout, on_result, options.engine, done, options.device,
                                    sandboxed=options.sandboxed, attempts=attempts)
    reused = sum(1 for r in results if done.get((r.student, r.lab)) is r)
    write_reports(out, results, {lab.id: lab.title for lab in course.labs})
    unmatched = out / "warnings.txt"        # files not graded, and why: never silently dropped
    if warnings:
        unmatched.write_text("".join(f"{w}\n" for w in warnings))
    else:
        unmatched.unlink(missing_ok=True)
    if options.gradebook:
        from .gradebook import write_gradebook
        write_gradebook(out / "gradebook.db", results, course)
    return ClassGrades(results, warnings, reused)
