"""Resumable grading: results are written as they come, a rerun skips what is already graded
(unless --force or the submission changed), and a run killed midway loses nothing it finished."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from autograder.cli import main
from autograder.pipeline import GradeOptions, grade_to_folder, merge_folders
from autograder.report import read_results
from autograder.sandbox import RuntimeFolder, sweep_runtimes
from tests.conftest import ROOT, with_late_policy

LAB = "backprop"


def _class(course, root, n):
    for i in range(n):
        (root / f"s{i}").mkdir(parents=True)
        (root / f"s{i}" / f"{LAB}.ipynb").write_text(course.solution_path(LAB).read_text())


def _grade(root, out, *extra, wait=True, env=None):
    cmd = [sys.executable, "-m", "autograder.cli", "grade", str(root), "--out", str(out), "--lab", LAB, *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd + ["--no-gradebook"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_a_killed_run_resumes_where_it_stopped(course, tmp_path, monkeypatch):
    root, out, scratch = tmp_path / "class", tmp_path / "out", tmp_path / "tmp"
    _class(course, root, 3)
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = _grade(root, out, "--jobs", "1", wait=False, env=env)
    deadline = time.monotonic() + 300
    while not list((out / "results").glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)               # no chance to clean up
    proc.wait()
    first = {p.parent.name: p.stat().st_mtime_ns for p in (out / "results").glob("*/*.json")}
    assert 1 <= len(first) < 3
    for path in (out / "results").glob("*/*.json"):
        json.loads(path.read_text())               # every file written is whole
    _the_killed_graders_copy_is_swept(scratch, monkeypatch)
    again = _grade(root, out, "--jobs", "1", env=env)
    assert again.returncode == 0, again.stderr
    assert f"({len(first)} unchanged since the last run" in again.stderr
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "results").glob("*/*.json")}
    assert set(after) == {"s0", "s1", "s2"}
    assert all(after[s] == first[s] for s in first)  # finished results were not redone
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * (len(course.lab(LAB).checks) + len(course.lab(LAB).written))


def _the_killed_graders_copy_is_swept(scratch, monkeypatch):
    """SIGKILL ran no clean-up: the killed grader's copy of the student-safe files is left. The
    next grader removes it (unlocked, and old enough: here any age), never a living grader's."""
    import tempfile
    left = list(scratch.glob("course-runtime-*"))
    assert len(left) == 1
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    living = RuntimeFolder()
    try:
        assert sweep_runtimes(scratch, min_age=0) == 1
        assert not left[0].exists() and (living.path / "autograder").is_dir()
    finally:
        living.cleanup()
    assert list(scratch.glob("course-runtime-*")) == []


def test_rerun_skips_unchanged_and_regrades_changed(course, tmp_path, capsys):
    root, out = tmp_path / "class", tmp_path / "out"
    _class(course, root, 2)

    def grade(*extra) -> str:           # `course grade` in this process (no process to kill here): its stderr
        capsys.readouterr()
        assert main(["grade", str(root), "--out", str(out), "--lab", LAB, "--no-gradebook", "--jobs", "1", *extra]) == 0
        return capsys.readouterr().err
    grade()
    assert "(2 unchanged" in grade()
    blank = course.exercise_path(LAB).read_text()
    (root / "s1" / f"{LAB}.ipynb").write_text(blank)           # a new submission from s1
    assert "(1 unchanged" in grade()
    assert json.loads((out / "results" / "s1" / f"{LAB}.json").read_text())["score"] == 0
    assert "not graded again" not in grade("--force")


def test_a_submission_the_grader_stopped_on_twice_is_set_aside(course, tmp_path):
    """A submission during which the grading process itself stopped (a crash, a kill) is graded
    again on the next run, but not forever: after two such runs it gets a grader error and the
    class goes on (one submission that crashes the grader cannot stop every run); --force tries
    it again."""
    root, out = tmp_path / "class", tmp_path / "out"
    _class(course, root, 2)
    proc = _grade(root, out, "--jobs", "1", wait=False)      # killed while it grades s0
    mark = out / ".attempts" / "s0" / LAB
    deadline = time.monotonic() + 300
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert mark.read_text() == "1"
    mark.write_text("2")                                     # as if a second run had stopped there too
    again = _grade(root, out, "--jobs", "1")
    assert again.returncode == 3 and "s0/backprop: GraderStopped" in again.stderr, again.stderr   # a grader error
    s0 = json.loads((out / "results" / "s0" / f"{LAB}.json").read_text())
    s1 = json.loads((out / "results" / "s1" / f"{LAB}.json").read_text())
    assert "stopped 2 times while grading this submission" in s0["grader_error"]
    assert s1["score"] == s1["max_score"] - s1["pending_points"] and not s1["grader_error"]
    forced = _grade(root, out, "--jobs", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    s0 = json.loads((out / "results" / "s0" / f"{LAB}.json").read_text())
    assert s0["score"] == s0["max_score"] - s0["pending_points"] and not s0["grader_error"]
    assert not list((out / ".attempts").rglob("*/*"))


def test_a_new_submission_time_rewrites_the_reused_result(course, tmp_path):
    """Red team: a rerun reused the signed result and applied a new timestamp.txt's late penalty to
    its reports, but kept the stored result as it was: `course merge` showed the old penalty."""
    lab, strict = with_late_policy(course, LAB)
    root, out = tmp_path / "submitted", tmp_path / "out"
    folder = root / "s0" / LAB                       # nbgrader's layout: timestamp.txt beside the notebook
    folder.mkdir(parents=True)
    (folder / f"{LAB}.ipynb").write_text(course.solution_path(LAB).read_text())
    (folder / "timestamp.txt").write_text("2026-12-10 14:00:00.000000 UTC")
    options = GradeOptions([LAB], 1, gradebook=False)
    assert grade_to_folder(root, strict, out, options).results[0].late_penalty == 0
    (folder / "timestamp.txt").write_text("2026-12-11 18:00:00.000000 UTC")        # handed in again, late
    again = grade_to_folder(root, strict, out, options)
    penalty = again.results[0].late_penalty
    assert again.reused == 1 and penalty == round(0.2 * sum(lab.checks.values()), 2)
    assert read_results(out)["s0", LAB].late_penalty == penalty                     # 0 before
    merged = merge_folders(tmp_path / "merged", [out], strict, gradebook=False)
    assert merged.results[0].late_penalty == penalty
    assert "late_penalty" in (tmp_path / "merged" / "grades.csv").read_text()
