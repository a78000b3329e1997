"""Reports: Gradescope results.json, JUnit XML, HTML feedback, nbgrader's gradebook, and the
exit codes CI relies on."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

from autograder.grade import CheckResult, Result
from autograder.gradebook import write_gradebook
from autograder.report import feedback_html, for_students, gradescope_json, junit_xml, totals_csv
from tests.conftest import ROOT


def _results(course):
    lab = course.labs[0]
    names = list(lab.checks)
    full = Result("ada", lab.id, "x.ipynb", [CheckResult(n, p, p) for n, p in lab.checks.items()], seconds=1.5)
    lost = Result("bob", lab.id, "y.ipynb",
                  [CheckResult(n, 0 if n == names[0] else p, p, "thing: expected 1, got <2> — hint" if n == names[0] else "")
                   for n, p in lab.checks.items()], notes=["answer cell 'x' was deleted"])
    return full, lost


def test_totals_are_one_row_per_student_in_the_shape_an_lms_imports(course):
    full, lost = _results(course)
    first, second = course.labs[0], course.labs[1]
    other = Result("bob", second.id, "z.ipynb", [CheckResult(n, p, p) for n, p in second.checks.items()])
    rows = list(csv.reader(io.StringIO(totals_csv([full, lost, other], [lab.id for lab in course.labs]))))
    assert rows[0] == ["Student", first.id, second.id, "Total"]
    assert rows[1] == ["Points Possible", f"{first.max_points:g}", f"{second.max_points:g}",
                       f"{first.max_points + second.max_points:g}"]
    assert rows[2] == ["ada", f"{full.score:g}", "", f"{full.score:g}"]            # not handed in: empty, not 0
    assert rows[3] == ["bob", f"{lost.score:g}", f"{other.score:g}", f"{lost.score + other.score:g}"]


def test_gradescope_shape(course):
    full, lost = _results(course)
    doc = json.loads(gradescope_json(lost))
    assert doc["score"] == lost.score
    assert {"name", "score", "max_score", "output", "visibility"} <= set(doc["tests"][0])
    assert doc["tests"][0]["output"].startswith("thing: expected 1") and "deleted" in doc["output"]


def test_junit_counts_failures(course):
    full, lost = _results(course)
    root = ET.fromstring(junit_xml([full, lost]))
    assert root.get("failures") == "1" and int(root.get("tests")) == 2 * len(full.checks)
    failure = root.find("testsuite[@name='bob/%s']/testcase/failure" % lost.lab)
    assert failure is not None and "expected 1, got <2>" in failure.get("message")


def test_junit_tells_failures_errors_and_skips_apart(course):
    """A GPU check skipped for want of CUDA that kept its points is <skipped>, never a pass; a
    grader error is an <error>, not the student's failure; suites carry time and timestamp."""
    full, lost = _results(course)
    names = [c.name for c in full.checks]
    skipped = Result("cy", full.lab, "z.ipynb", [CheckResult(c.name, c.max_points, c.max_points,
                     "skipped: no CUDA on this grader (grading.gpu: preferred)" if c is full.checks[-1] else "")
                     for c in full.checks], seconds=2.0)
    broken = Result("dee", full.lab, "w.ipynb", [CheckResult(c.name, 0, c.max_points, "not graded: grader error")
                                                  for c in full.checks], grader_error="WorkerLost: the worker died")
    root = ET.fromstring(junit_xml([full, lost, skipped, broken], timestamp="2026-12-06T09:00:00"))
    n = len(names)
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": str(4 * n), "failures": "1", "errors": str(n), "skipped": "1"}
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    cy, dee = suites[f"cy/{full.lab}"], suites[f"dee/{full.lab}"]
    assert (cy.get("skipped"), cy.get("failures"), cy.get("time"), cy.get("timestamp")) == ("1", "0", "2.00", "2026-12-06T09:00:00")
    assert cy.find(f"testcase[@name='{names[-1]}']/skipped").get("message").startswith("skipped: no CUDA")
    assert (dee.get("errors"), dee.get("failures")) == (str(n), "0")
    assert dee.find("testcase/error").get("message") == "WorkerLost: the worker died"
    assert all(s.get("hostname") and s.get("package") == full.lab for s in suites.values())


def test_what_students_read_never_shows_server_paths(course):
    full, _ = _results(course)
    secret = "/srv/course-2026/private/hidden_test.pt"
    broken = Result("eve", full.lab, "e.ipynb", [CheckResult(c.name, 0, c.max_points,
                    f"not graded: grader error (OSError: [Errno 2] No such file: '{secret}')") for c in full.checks],
                    notes=[f"restored from {secret}"], grader_error=f"OSError: [Errno 2] No such file: '{secret}'")
    for text in (feedback_html(broken, "Tensors"), gradescope_json(broken)):
        assert "/srv/course-2026" not in text and "hidden_test.pt" in text
    kept = "expected 1/2 of the cases, got 0.5 (e.g. x[0]/y[0]) — see https://pytorch.org/docs/nn.html"
    assert for_students(kept) == kept                           # ratios and URLs are not paths


def test_feedback_page_is_self_contained_and_escaped(course):
    _, lost = _results(course)
    page = feedback_html(lost, "Lab title")
    assert "got &lt;2&gt;" in page and "<2>" not in page
    assert "http" not in page and "<script" not in page          # no external assets, no scripts
    assert f"{lost.score:g} / {lost.max_score:g} points" in page


def test_gradebook_is_nbgraders(course, tmp_path):
    full, lost = _results(course)
    db = tmp_path / "gradebook.db"
    write_gradebook(db, [full, lost], course)
    write_gradebook(db, [lost], course)                          # a regrade replaces, never duplicates
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{db}") as gb:
        assert gb.find_submission(full.lab, "ada").score == full.score
        assert gb.find_submission(lost.lab, "bob").score == lost.score
        assert gb.find_submission(lost.lab, "bob").max_score == course.labs[0].max_points
        assert len(gb.students) == 2


def test_a_regrade_keeps_what_a_ta_entered_and_records_the_submission_time(course, tmp_path):
    """Data loss, red team (issue 12): a manual score entered in formgrader was gone after a rerun.
    A regrade now updates the submission in place; autograded cells are not queued for manual
    grading unless a TA graded them by hand; nbgrader's timestamp.txt reaches the gradebook."""
    full, lost = _results(course)
    lost.submitted_at = "2026-12-01T10:00:00.250000+00:00"
    lost.late_penalty = 0.5
    db = tmp_path / "gradebook.db"
    write_gradebook(db, [full, lost], course)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    from nbgrader.api import Gradebook
    first = f"check_{next(iter(course.labs[0].checks))}"
    with Gradebook(f"sqlite:///{db}") as gb:
        submission = gb.find_submission(lost.lab, "bob")
        assert str(submission.timestamp) == "2026-12-01 10:00:00.250000"
        assert not submission.needs_manual_grade and all(not nb.needs_manual_grade for nb in submission.notebooks)
        assert submission.notebooks[0].late_submission_penalty == 0.5
        grade = gb.find_grade(first, lost.lab, lost.lab, "bob")
        grade.manual_score, grade.extra_credit = 1.5, 0.5                   # a TA, in formgrader
        gb.db.commit()
    write_gradebook(db, [full, lost], course)                                # the next run
    with Gradebook(f"sqlite:///{db}") as gb:
        grade = gb.find_grade(first, lost.lab, lost.lab, "bob")
        assert (grade.manual_score, grade.extra_credit, grade.auto_score) == (1.5, 0.5, 0.0)
        assert grade.needs_manual_grade          # graded by hand: nbgrader's rule, the TA reviews it
        assert gb.find_submission(lost.lab, "bob").score == sum(c.points for c in lost.checks) + 1.5 + 0.5
        assert len(gb.find_assignment(lost.lab).submissions) == 2


def test_nbgrader_export_in_the_output_folder_leaves_our_grades_csv_alone(course, tmp_path):
    """Red team (issue 12): `nbgrader export` run where `course grade` wrote overwrote its
    grades.csv. The folder's nbgrader_config.py sends nbgrader's export to nbgrader_grades.csv;
    an instructor's own nbgrader_config.py is never replaced."""
    full, lost = _results(course)
    write_gradebook(tmp_path / "gradebook.db", [full, lost], course)
    (tmp_path / "grades.csv").write_text("ours\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "export"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "grades.csv").read_text() == "ours\n"
    exported = list(csv.DictReader((tmp_path / "nbgrader_grades.csv").open()))
    assert {(row["student_id"], float(row["score"])) for row in exported} == {("ada", full.score), ("bob", lost.score)}
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")          # the instructor's own
    write_gradebook(tmp_path / "gradebook.db", [full, lost], course)
    assert (tmp_path / "nbgrader_config.py").read_text() == "c = get_config()\n"


def test_fail_under_exit_code_and_report_files(course, tmp_path):
    (tmp_path / "class" / "eve").mkdir(parents=True)
    (tmp_path / "class" / "eve" / f"{course.labs[0].id}.ipynb").write_text("{ not json")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder.cli", "grade", str(tmp_path / "class"), "--out", str(out)]
    proc = subprocess.run(cmd + ["--fail-under", "50"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4 and "below --fail-under 50%: eve/" in proc.stderr
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300).returncode == 0
    lab = course.labs[0].id
    for rel in ("grades.csv", "totals.csv", "junit.xml", "gradebook.db", f"results/eve/{lab}.json",
                f"gradescope/eve/{lab}/results.json", f"feedback/eve/{lab}.html"):
        assert (out / rel).is_file(), rel
