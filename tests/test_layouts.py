"""Where submissions come from (issue 12): the simple `<student>/<lab>.ipynb` layout and
nbgrader's collected `submitted/<student>/<lab>/<lab>.ipynb` with its `timestamp.txt`; names a
student's browser or editor changed (`Backprop.ipynb`, `backprop (1).ipynb`) are matched and
noted; every file that is not graded is a warning, on stderr and in the output's warnings.txt."""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import nbformat
import pytest

from autograder.config import CourseError
from autograder.grade import find_submissions, submission_facts
from autograder.pipeline import read_roster
from autograder.report import grades_csv, read_results
from autograder.results import CheckResult, Result
from tests.conftest import ROOT, course_cli, full_marks, with_late_policy

LAB = "tensors"


def _hand_in(course, root, rel, age=0.0):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(course.solution_path(LAB), path)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def _found(course, root):
    found, warnings = find_submissions(root, course, [LAB])
    return {student: path.relative_to(root).as_posix() for student, _, path in found}, warnings


def test_both_layouts_and_renamed_files_are_found_and_nothing_is_dropped_silently(course, tmp_path):
    _hand_in(course, tmp_path, "ada/tensors.ipynb")
    _hand_in(course, tmp_path, "bob/tensors/tensors.ipynb")                 # nbgrader's submitted/
    _hand_in(course, tmp_path, "cy/Tensors.ipynb")
    _hand_in(course, tmp_path, "dee/tensors (1).ipynb")
    _hand_in(course, tmp_path, "eve/tensors.ipynb", age=60)
    _hand_in(course, tmp_path, "eve/tensors (1).ipynb")                     # newer, but not the lab's name
    _hand_in(course, tmp_path, "fay/tensors (1).ipynb", age=60)
    _hand_in(course, tmp_path, "fay/tensors (2).ipynb")
    _hand_in(course, tmp_path, "gus/my notes.ipynb")
    _hand_in(course, tmp_path, "gus/backprop.ipynb")                        # another lab, not selected: no warning
    (tmp_path / "hal").mkdir()
    (tmp_path / "hal" / "tensors").symlink_to(tmp_path / "bob" / "tensors")  # a classmate's folder: not followed
    found, warnings = _found(course, tmp_path)
    assert found == {"ada": "ada/tensors.ipynb", "bob": "bob/tensors/tensors.ipynb", "cy": "cy/Tensors.ipynb",
                     "dee": "dee/tensors (1).ipynb", "eve": "eve/tensors.ipynb", "fay": "fay/tensors (2).ipynb"}
    assert sorted(warnings) == [
        "skipped eve/tensors (1).ipynb: eve handed in eve/tensors.ipynb for lab tensors too, and that one is graded",
        "skipped fay/tensors (1).ipynb: fay handed in fay/tensors (2).ipynb for lab tensors too, and that one is graded",
        "skipped gus/my notes.ipynb: no lab 'my notes' in course.yml",
    ]


def test_a_notebook_handed_in_with_another_lab_is_not_graded_for_its_own(course, tmp_path):
    """Red team: `tensors.ipynb` submitted inside nbgrader's `forward/` folder (newer than the late
    `tensors/` one, or alone) was graded for tensors with no timestamp: no late penalty."""
    _hand_in(course, tmp_path, "mal/tensors/tensors.ipynb", age=60)
    _hand_in(course, tmp_path, "mal/forward/tensors.ipynb")
    _hand_in(course, tmp_path, "eve/forward/tensors.ipynb")
    found, warnings = _found(course, tmp_path)
    assert found == {"mal": "mal/tensors/tensors.ipynb"}
    assert sorted(warnings) == ["skipped eve/forward/tensors.ipynb: handed in with lab forward, not as lab tensors",
                                "skipped mal/forward/tensors.ipynb: handed in with lab forward, not as lab tensors"]


def test_a_renamed_file_is_noted_and_nbgraders_timestamp_is_kept(course, tmp_path):
    def facts(path):
        return submission_facts(Result("s", LAB, str(path), []), path)
    renamed = facts(_hand_in(course, tmp_path, "cy/Tensors.ipynb"))
    assert renamed.notes == ["graded Tensors.ipynb as tensors.ipynb (its name differs from the lab's)"]
    nested = _hand_in(course, tmp_path, "bob/tensors/tensors.ipynb")
    (nested.parent / "timestamp.txt").write_text("2026-12-01 09:59:30.500000 UTC\n")   # as nbgrader writes it
    result = facts(nested)
    assert (result.notes, result.submitted_at) == ([], "2026-12-01T09:59:30.500000+00:00")
    (nested.parent / "timestamp.txt").write_text("yesterday-ish")
    result = facts(nested)
    assert result.submitted_at == "" and result.notes == [
        "timestamp.txt reads 'yesterday-ish', not a time: when it was submitted is unknown"]
    again = submission_facts(result, nested)                                 # a rerun notes it once
    assert len(again.notes) == 1


def test_course_grade_reads_nbgraders_collected_layout(course, tmp_path):
    """Red team (issue 12): `course grade` exited 2 with "no submissions" on nbgrader's own
    `submitted/` folder. Graded now, the time recorded, the renamed file noted, the stray file
    written to warnings.txt."""
    submitted = tmp_path / "submitted"
    nested = _hand_in(course, submitted, "bob/tensors/tensors.ipynb")
    (nested.parent / "timestamp.txt").write_text("2026-12-01 09:59:30.500000 UTC")
    _hand_in(course, submitted, "cy/Tensors.ipynb")
    _hand_in(course, submitted, "cy/scratch.ipynb")
    roster = tmp_path / "roster.csv"
    roster.write_text("# exported from the LMS\nname,student\nBob B.,bob\nDee D.,dee\n")   # cy is not on it
    out = tmp_path / "out"
    command = ["grade", str(submitted), "--lab", LAB, "--out", str(out), "--jobs", "2"]
    bad = course_cli([*command, "--roster", str(tmp_path / "no-such.csv")])
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--roster" in bad.stderr, bad.stderr
    assert not out.exists()                                                   # nothing written
    done = course_cli([*command, "--roster", str(roster)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: skipped cy/scratch.ipynb: no lab 'scratch' in course.yml" in done.stderr
    assert (out / "warnings.txt").read_text() == ("skipped cy/scratch.ipynb: no lab 'scratch' in course.yml\n"
                                                  "cy is not on the roster (graded anyway)\n")
    results = read_results(out)
    bob, cy = results["bob", LAB], results["cy", LAB]
    assert full_marks(bob) and bob.submitted_at == "2026-12-01T09:59:30.500000+00:00"
    assert full_marks(cy) and any("its name differs" in n for n in cy.notes)
    totals = (out / "totals.csv").read_text().splitlines()
    assert totals[2:] == [f"bob,{bob.score:g},{bob.score:g}", f"cy,{cy.score:g},{cy.score:g}",
                          "dee,0,0"]                                          # on the roster, nothing handed in
    grades = (out / "grades.csv").read_text()
    assert grades.count("dee,tensors,") == len(course.lab(LAB).checks) + len(course.lab(LAB).written) and "not handed in" in grades
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"   # nbgrader runs alembic
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:   # as nbgrader keeps missing work: a student, no submission
        assert gb.find_student("dee") and gb.find_submission(LAB, "bob").timestamp is not None
        with pytest.raises(MissingEntry):
            gb.find_submission(LAB, "dee")


def test_file_names_that_are_not_utf8_are_graded_and_reported(course, tmp_path):
    """A class folder unpacked from an archive made elsewhere can hold names that are not UTF-8:
    a stray file named so stopped `course grade` with a traceback while writing warnings.txt,
    after the grades. Such names are shown with `\\xff` escapes, two of them still two names."""
    root = tmp_path / "class"
    for student in (b"ada\xff", b"ada\xfe", b"cy\x01"):      # (a control character: XML cannot hold it)
        folder = Path(os.fsdecode(bytes(root) + b"/" + student))
        _hand_in(course, folder, f"{LAB}.ipynb")
    _hand_in(course, root, os.fsdecode(b"bob/notes\xfe.ipynb"))
    out = tmp_path / "out"
    done = course_cli(["grade", str(root), "--out", str(out), "--jobs", "2"])
    assert done.returncode == 0, done.stderr[-2000:]
    results = read_results(out)
    assert sorted(results) == [("ada\\xfe", LAB), ("ada\\xff", LAB), ("cy\\x01", LAB)]
    assert all(full_marks(r) for r in results.values())
    assert "skipped bob/notes\\xfe.ipynb: no lab" in (out / "warnings.txt").read_text(encoding="utf-8")
    assert (out / "feedback" / "ada\\xff" / LAB / f"{LAB}.html").is_file()
    ElementTree.parse(out / "junit.xml")                      # well-formed


@pytest.mark.parametrize("text", ["alice\n../../elsewhere\n", "alice\n/tmp/abs\n", "name,student\nA,zzz/../alice\n",
                                  "alice\n..\n", "alice\nbo\x01b\n"])
def test_a_roster_id_that_is_not_a_folder_name_is_refused(tmp_path, text):
    """Red team: roster ids became paths of the output: `../../x` wrote outside it, `zzz/../alice`
    replaced alice's result with "not handed in"."""
    (tmp_path / "roster.csv").write_text(text)
    with pytest.raises(CourseError, match="is not a student id"):
        read_roster(tmp_path / "roster.csv")


def test_roster_rows_without_an_id_and_a_one_column_header(tmp_path):
    (tmp_path / "short.csv").write_text("name,student\nAlice,alice\nBob\n")          # a traceback before
    assert read_roster(tmp_path / "short.csv") == ["alice"]
    (tmp_path / "one.csv").write_text("student\nalice\nbob\n")                       # "student" was a student
    assert read_roster(tmp_path / "one.csv") == ["alice", "bob"]


def test_late_work_loses_the_share_course_yml_says(course):
    """Past a lab's due time, each started day costs grading.late.per_day of the points earned,
    all past max_days; without a policy lateness is only noted; a rerun does not stack it."""
    import dataclasses
    lab, strict = with_late_policy(course, LAB)

    def graded(submitted_at, on=strict):
        r = Result("s", LAB, "x", [CheckResult(n, p, p) for n, p in lab.checks.items()], submitted_at=submitted_at)
        return submission_facts(r, Path(f"/nowhere/{LAB}.ipynb"), on)
    full = sum(lab.checks.values())
    assert graded("2026-12-10T14:59:59+00:00").score == full and graded("").score == full      # on time; no time known
    late = graded("2026-12-11T18:00:00+00:00")                                                   # 1 day 3 h: 2 started days
    assert late.late_penalty == round(0.2 * full, 2) and late.score == pytest.approx(0.8 * full)
    assert late.notes == [f"submitted late: 2 day(s) after 2026-12-10 15:00 UTC: -{late.late_penalty:g} of {full:g} "
                          "points (20%, course.yml grading.late)"]
    rows = list(csv.DictReader(io.StringIO(grades_csv([late]))))
    assert rows[-1]["check"] == "late_penalty" and sum(float(r["points"]) for r in rows) == pytest.approx(late.score)
    again = submission_facts(late, Path(f"/nowhere/{LAB}.ipynb"), strict)
    assert again.late_penalty == late.late_penalty and len(again.notes) == 1
    assert graded("2026-12-15T00:00:00+00:00").score == 0                                       # past max_days
    lenient = graded("2026-12-11T18:00:00+00:00", dataclasses.replace(strict, late_per_day=None))
    assert lenient.score == full and lenient.notes[0].endswith("(no late policy in course.yml)")


def test_nbgrader_exchange_round_trip_with_the_shipped_config(course, tmp_path):
    """The repository's nbgrader_config.py makes a course folder nbgrader's: release from
    exercises/, a student fetches and submits, the instructor collects, `course grade` grades
    nbgrader's submitted/ folder with its timestamp."""
    instructor, student, exchange = tmp_path / "course", tmp_path / "alice", tmp_path / "exchange"
    for folder in (instructor, student, exchange):
        folder.mkdir()
    exchange.chmod(0o777)
    shutil.copy(ROOT / "nbgrader_config.py", instructor)
    for built in ("solutions", "exercises"):
        (instructor / built).symlink_to(ROOT / built)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    nbgrader = lambda cwd, *args: subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--Exchange.root={exchange}", "--course", "cnn-course"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    from nbgrader.utils import get_username
    alice = get_username()          # nbgrader's student id: the login of whoever submits
    for cwd, args in ((instructor, ["db", "assignment", "add", LAB]), (instructor, ["release_assignment", LAB]),
                      (student, ["fetch_assignment", LAB])):
        proc = nbgrader(cwd, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    fetched = student / LAB / f"{LAB}.ipynb"
    assert fetched.read_bytes() == course.exercise_path(LAB).read_bytes()
    shutil.copy(course.solution_path(LAB), fetched)                       # alice answers
    for cwd, args in ((student, ["submit", LAB]), (instructor, ["collect", LAB])):
        proc = nbgrader(cwd, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = instructor / "submitted" / alice / LAB
    assert (collected / f"{LAB}.ipynb").is_file() and (collected / "timestamp.txt").is_file()
    out = tmp_path / "out"
    proc = course_cli(["--course", str(ROOT), "grade", str(instructor / "submitted"), "--lab", LAB, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = read_results(out)[alice, LAB]
    assert full_marks(result) and result.submitted_at

    # nbgrader's own tools on what course grade wrote: the autograded notebook, our feedback page
    # released through the exchange and fetched by the student, and nbgrader's generate_feedback
    autograded = nbformat.read(out / "autograded" / alice / LAB / f"{LAB}.ipynb", as_version=4)
    checks = [c for c in autograded.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert [c.outputs[0].text.strip() for c in checks] == ["passed"] * len(course.lab(LAB).checks)
    assert not [c for c in checks if "HIDDEN" in c.source]
    proc = nbgrader(out, "release_feedback", LAB)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = nbgrader(student, "fetch_feedback", LAB)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fetched = list((student / LAB / "feedback").glob(f"*/{LAB}.html"))
    assert len(fetched) == 1 and fetched[0].read_text() == (out / "feedback" / alice / LAB / f"{LAB}.html").read_text()
    shutil.copytree(out, tmp_path / "nbgrader-feedback", ignore=shutil.ignore_patterns("feedback"))
    proc = nbgrader(tmp_path / "nbgrader-feedback", "generate_feedback", LAB)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (tmp_path / "nbgrader-feedback" / "feedback" / alice / LAB / f"{LAB}.html").read_text()
    max_points, automatic = course.lab(LAB).max_points, sum(course.lab(LAB).checks.values())
    assert f"Score: {automatic:.1f} / {max_points:.1f}" in page                  # the gradebook's total (written: by hand)
    assert page.count("passed") == len(course.lab(LAB).checks) and "BEGIN HIDDEN" not in page
