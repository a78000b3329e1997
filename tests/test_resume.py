"""Resumable grading: results are written as they come, a rerun skips what is already graded
(unless --force or the submission changed), and a run killed midway loses nothing it finished."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT

LAB = "backprop"


def _class(course, root, n):
    for i in range(n):
        (root / f"s{i}").mkdir(parents=True)
        (root / f"s{i}" / f"{LAB}.ipynb").write_text(course.solution_path(LAB).read_text())


def _grade(root, out, *extra, wait=True):
    cmd = [sys.executable, "-m", "autograder.cli", "grade", str(root), "--out", str(out), "--lab", LAB, *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd + ["--no-gradebook"], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_killed_run_resumes_where_it_stopped(course, tmp_path):
    root, out = tmp_path / "class", tmp_path / "out"
    _class(course, root, 3)
    proc = _grade(root, out, "--jobs", "1", wait=False)
    deadline = time.monotonic() + 300
    while not list((out / "results").glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)               # no chance to clean up
    proc.wait()
    first = {p.parent.name: p.stat().st_mtime_ns for p in (out / "results").glob("*/*.json")}
    assert 1 <= len(first) < 3
    for path in (out / "results").glob("*/*.json"):
        json.loads(path.read_text())               # every file written is whole
    again = _grade(root, out, "--jobs", "1")
    assert again.returncode == 0, again.stderr
    assert f"({len(first)} unchanged since the last run" in again.stderr
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "results").glob("*/*.json")}
    assert set(after) == {"s0", "s1", "s2"}
    assert all(after[s] == first[s] for s in first)  # finished results were not redone
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * len(course.lab(LAB).checks)


def test_rerun_skips_unchanged_and_regrades_changed(course, tmp_path):
    root, out = tmp_path / "class", tmp_path / "out"
    _class(course, root, 2)
    assert _grade(root, out).returncode == 0
    assert "(2 unchanged" in _grade(root, out).stderr
    blank = course.exercise_path(LAB).read_text()
    (root / "s1" / f"{LAB}.ipynb").write_text(blank)           # a new submission from s1
    proc = _grade(root, out)
    assert "(1 unchanged" in proc.stderr
    assert json.loads((out / "results" / "s1" / f"{LAB}.json").read_text())["score"] == 0
    forced = _grade(root, out, "--force")
    assert "not graded again" not in forced.stderr
