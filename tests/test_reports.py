"""Reports: Gradescope results.json, JUnit XML, HTML feedback, nbgrader's gradebook, and the
exit codes CI relies on."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

from autograder.classreport import BINS
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
    assert rows[1] == ["Points Possible", f"{full.max_score:g}", f"{other.max_score:g}",      # the results' (here: checks only)
                       f"{full.max_score + other.max_score:g}"]
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
    assert {k: root.get(k) for k in ("tests", "failures", "errors")} == {"tests": str(4 * n), "failures": "1", "errors": str(n)}
    assert sum(int(s.get("skipped")) for s in root.findall("testsuite")) == 1
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    cy, dee = suites[f"cy/{full.lab}"], suites[f"dee/{full.lab}"]
    assert (cy.get("skipped"), cy.get("failures"), cy.get("time"), cy.get("timestamp")) == ("1", "0", "2.00", "2026-12-06T09:00:00")
    assert cy.find(f"testcase[@name='{names[-1]}']/skipped").get("message").startswith("skipped: no CUDA")
    assert (dee.get("errors"), dee.get("failures")) == (str(n), "0")
    assert dee.find("testcase/error").get("message") == "WorkerLost: the worker died"
    assert all(s.get("hostname") and s.get("package") == full.lab for s in suites.values())

    # as a consumer reads it: junitparser (what CI plugins and report actions build on)
    from junitparser import Error, Failure, JUnitXml, Skipped
    parsed = JUnitXml.fromstring(junit_xml([full, lost, skipped, broken], timestamp="2026-12-06T09:00:00"))
    kinds = {(suite.name, case.name): {type(r) for r in case.result} for suite in parsed for case in suite}
    assert kinds[f"bob/{full.lab}", names[0]] == {Failure} and kinds[f"cy/{full.lab}", names[-1]] == {Skipped}
    assert all(kinds[f"dee/{full.lab}", name] == {Error} for name in names)
    assert sum(1 for k in kinds.values() if not k) == n + (n - 1) + (n - 1)      # passes: ada all, bob and cy but one
    assert [(s.tests, s.failures, s.errors, s.skipped) for s in parsed] == [(n, 0, 0, 0), (n, 1, 0, 0), (n, 0, 0, 1), (n, 0, n, 0)]
    assert parsed.tests == 4 * n and parsed.failures == 1 and parsed.errors == n and parsed.skipped == 1


# Jenkins' JUnit schema (the xunit plugin's, MIT, its notice inside), as pytest's own tests use it:
# pytest's testing/example_scripts/junit-10.xsd, copied from its source distribution on PyPI
JUNIT_SCHEMA = Path(__file__).parent / "schemas" / "junit-10.xsd"


def test_junit_is_valid_against_the_schema_jenkins_reads(course):
    """Issue 12: the JUnit file validates against Jenkins' junit-10.xsd (the xunit plugin's
    schema, which pytest validates its own junit-xml against): passes, failures, grader errors,
    skips and written answers pending."""
    import xmlschema
    schema = xmlschema.XMLSchema(str(JUNIT_SCHEMA))
    full, lost = _results(course)
    skipped = Result("cy", full.lab, "z.ipynb", [CheckResult(c.name, c.max_points, c.max_points,
                     "skipped: no CUDA" if c is full.checks[-1] else "") for c in full.checks])
    broken = Result("dee", full.lab, "w.ipynb", [CheckResult(c.name, 0, c.max_points, "not graded") for c in full.checks],
                    grader_error="WorkerLost: the worker died")
    pending = Result("eve", full.lab, "v.ipynb", full.checks + [CheckResult("why", 0, 1, "graded by hand", by_hand=True,
                                                                            pending=True)])
    schema.validate(junit_xml([full, lost, skipped, broken, pending]))          # raises with the first violation
    assert not schema.is_valid(junit_xml([full]).replace("<testsuite name=", "<testsuite nom="))   # (it does check)


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
        # only the written answers wait for a person, never an autograded cell
        assert submission.needs_manual_grade == bool(course.labs[0].written)
        assert not any(gb.find_grade(f"check_{n}", lost.lab, lost.lab, "bob").needs_manual_grade for n in course.labs[0].checks)
        assert all(gb.find_grade(f"written_{n}", lost.lab, lost.lab, "bob").needs_manual_grade for n in course.labs[0].written)
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


def test_fail_under_exit_code_and_report_files(course, tmp_path, capsys):
    from autograder.cli import main
    (tmp_path / "class" / "eve").mkdir(parents=True)
    (tmp_path / "class" / "eve" / f"{course.labs[0].id}.ipynb").write_text("{ not json")
    out = tmp_path / "out"
    cmd = ["grade", str(tmp_path / "class"), "--out", str(out)]       # `course grade`, in this process
    assert main(cmd + ["--fail-under", "50"]) == 4 and "below --fail-under 50%: eve/" in capsys.readouterr().err
    assert main(cmd) == 0
    lab = course.labs[0].id
    for rel in ("grades.csv", "totals.csv", "junit.xml", "gradebook.db", "class_report.html", f"results/eve/{lab}.json",
                f"gradescope/eve/{lab}/results.json", f"feedback/eve/{lab}/{lab}.html"):
        assert (out / rel).is_file(), rel


class _Page(HTMLParser):
    """Tables (by id: rows of cell texts), images (id -> src) and charts (an inline SVG's id -> the
    attributes of its bars) of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.links, self._table, self._row = {}, {}, [], None, None
        self.charts, self._chart = {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"t{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")
        elif tag == "img":
            self.images[attrs.get("id")] = attrs["src"]
        elif tag == "svg":
            self._chart = self.charts.setdefault(attrs.get("id"), [])
        elif tag == "rect" and attrs.get("class") == "bar":
            self._chart.append(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._row is not None and self._row:
            self._row[-1] += data.strip()


def test_class_report_shows_each_lab_the_hardest_checks_and_the_slowest_notebooks(course, tmp_path):
    from autograder.classreport import class_report_html
    first, second = course.labs[0], course.labs[1]
    names = list(first.checks)
    full = Result("ada", first.id, "a.ipynb", [CheckResult(n, p, p) for n, p in first.checks.items()], seconds=3.0)
    lost = Result("bob", first.id, "b.ipynb", [CheckResult(n, 0 if n == names[0] else p, p, "x: expected 1, got 2" if n == names[0] else "")
                                              for n, p in first.checks.items()], seconds=9.5, compute_seconds=8.0)
    missing = Result("cyd", first.id, "", [CheckResult(n, 0, p, "not handed in") for n, p in first.checks.items()], handed_in=False)
    other = Result("ada", second.id, "c.ipynb", [CheckResult(n, 0, p, "no") for n, p in second.checks.items()], seconds=1.0)
    page = _Page()
    page.feed(class_report_html([full, lost, missing, other], "CNN: class report"))
    labs = page.tables["labs"]
    assert labs[1][:4] == [first.id, "2", "1", f"{(full.score + lost.score) / 2:.1f} / {full.max_score:g}"]
    assert labs[1][5:] == ["1", "0", "0"] and labs[2][:3] == [second.id, "1", "0"] and labs[2][6] == "1"
    rates = page.tables["check-rates"][1:]
    assert rates[0] == [first.id, names[0], "50%"] and all(r[2] == "100%" for r in rates[1:len(names)])
    assert [r[:3] for r in page.tables["slowest"][1:]] == [["bob", first.id, "9.5"], ["ada", first.id, "3.0"],
                                                            ["ada", second.id, "1.0"]]
    # the plots: inline SVG, one bar per score bin of each lab and one per check (the page loads nothing)
    counts = [int(bar["data-count"]) for bar in page.charts["distribution"]]
    assert len(counts) == 2 * BINS
    first_lab, second_lab = counts[:BINS], counts[BINS:]
    assert sum(first_lab) == 2 and first_lab[-1] == 1             # cyd handed nothing in; ada's full marks: 100 %
    assert first_lab[int(100 * lost.score / lost.max_score // (100 / BINS))] == 1 and second_lab == [1] + [0] * (BINS - 1)
    percents = [float(bar["data-percent"]) for bar in page.charts["checks"]]
    assert [f"{p:.0f}%" for p in percents] == [r[2] for r in page.tables["check-rates"][1:]]
    assert all(float(bar["width"]) > 0 for bar in page.charts["checks"] if float(bar["data-percent"]) > 0)
    assert not page.images and not page.links


def test_leaderboard_ranks_the_hidden_split_accuracies(course, tmp_path):
    """Issue 14: the capstone's accuracy on the hidden split, ranked for the class (ties share a
    rank and keep the higher score first), in leaderboard.csv and in the class report; a lab
    whose checks measure nothing has no leaderboard (and an old leaderboard.csv goes)."""
    from autograder.classreport import class_report_html
    from autograder.report import write_reports
    lab = course.lab("capstone")

    def result(student, accuracy, lost=()):
        checks = [CheckResult(n, 0 if n in lost else p, p, "no" if n in lost else "",
                              measured=accuracy if n == "accuracy" else None) for n, p in lab.checks.items()]
        return Result(student, lab.id, f"{student}.ipynb", checks)

    results = [result("ada", 0.971), result("bob", 0.9833), result("cyd", 0.971, lost=("time_budget",)),
               result("dee", 0.412, lost=("accuracy",)), Result("eve", lab.id, "", [], handed_in=False),
               Result("fay", lab.id, "f.ipynb", [], grader_error="the judge did not start")]
    write_reports(tmp_path, results)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text())))
    assert [(r["rank"], r["student"], r["accuracy"]) for r in rows] == [
        ("1", "bob", "0.9833"), ("2", "ada", "0.9710"), ("2", "cyd", "0.9710"), ("4", "dee", "0.4120")]
    assert {r["lab"] for r in rows} == {"capstone"} and {r["check"] for r in rows} == {"accuracy"}
    page = _Page()
    page.feed(class_report_html(results, "CNN: class report"))
    board = page.tables["leaderboard-capstone-accuracy"]
    top = sum(lab.checks.values())
    assert board[1:] == [["1", "bob", "0.9833", f"{top:g} / {top:g}"], ["2", "ada", "0.9710", f"{top:g} / {top:g}"],
                         ["2", "cyd", "0.9710", f"{top - lab.checks['time_budget']:g} / {top:g}"],
                         ["4", "dee", "0.4120", f"{top - lab.checks['accuracy']:g} / {top:g}"]]
    write_reports(tmp_path, list(_results(course)))          # nothing measured: no leaderboard
    assert not (tmp_path / "leaderboard.csv").exists()
    assert "leaderboard" not in class_report_html(list(_results(course)))


def test_feedback_page_shows_the_answer_a_lost_check_tested_and_the_comment(course, tmp_path):
    """The student's own code under each lost check (from the submitted notebook's answer cells
    that the check tests), and the instructor's comment from DIR/comments/<student>/<lab>.txt."""
    import nbformat
    from autograder.build import dumps
    from autograder.pipeline import answers_of_lost_checks
    from autograder.report import write_reports
    from tests.planted import all_bugs, plant

    bug = next(b for b in all_bugs()["losses"] if b.name == "focal-loss-p-to-the-gamma")
    path = tmp_path / "losses.ipynb"
    path.write_text(dumps(plant(nbformat.read(course.solution_path("losses"), as_version=4), bug)))
    lab = course.lab("losses")
    result = Result("eve", "losses", str(path), [CheckResult(n, 0 if n == "focal_loss" else p, p,
                                                             "focal: expected 1, got 2 — hint" if n == "focal_loss" else "")
                                                 for n, p in lab.checks.items()])
    answers = answers_of_lost_checks(course, [result])
    assert list(answers[("eve", "losses")]) == ["focal_loss"]
    assert "weight = p ** gamma" in answers[("eve", "losses")]["focal_loss"]
    assert "def softmax" not in answers[("eve", "losses")]["focal_loss"]       # only the cells this check tests
    out = tmp_path / "out"
    (out / "comments" / "eve").mkdir(parents=True)
    (out / "comments" / "eve" / "losses.txt").write_text("Look at p_t <again>.")
    write_reports(out, [result], {"losses": lab.title}, answers)
    page = (out / "feedback" / "eve" / "losses" / "losses.html").read_text()
    assert "<pre>" in page and "weight = p ** gamma" in page and page.count("<details>") == 1
    assert "Look at p_t &lt;again&gt;." in page
    (out / "comments" / "eve" / "losses.txt").unlink()
    write_reports(out, [result], {"losses": lab.title}, answers)
    assert "<em>none yet</em>" in (out / "feedback" / "eve" / "losses" / "losses.html").read_text()


def test_written_answers_wait_in_formgraders_queue_and_come_back_in_every_report(course, tmp_path):
    """A written answer (nbgrader's "manually graded answer" cell) counts 0, pending, until a
    person scores it in formgrader; the next reports carry that score (and a TA's change to an
    autograded check), a regrade keeps it, and the gradebook's auto scores stay the grader's."""
    import nbformat
    from nbgrader.api import Gradebook
    from autograder.gradebook import with_hand_scores, write_nbgrader_folders
    from autograder.grade import written_answers
    from autograder.report import junit_xml, write_reports

    lab = course.lab("transfer")
    assert lab.written, "the test wants a lab with a written answer"
    (name, points), = lab.written.items()
    exercise = nbformat.read(course.exercise_path("transfer"), as_version=4)
    cell = next(c for c in exercise.cells if c.metadata.nbgrader.get("grade_id") == f"written_{name}")
    assert cell.cell_type == "markdown" and cell.metadata.nbgrader["grade"] and cell.metadata.nbgrader["solution"]
    cell.source = "Because the *scratch* model learns the features itself."
    submitted = tmp_path / "ann" / "transfer.ipynb"
    submitted.parent.mkdir()
    nbformat.write(exercise, submitted)
    result = Result("ann", "transfer", str(submitted), [CheckResult(n, p, p) for n, p in lab.checks.items()] + written_answers(lab))
    assert result.pending_points == points and result.score == result.max_score - points == sum(lab.checks.values())
    root = ET.fromstring(junit_xml([result]))
    assert root.find("testsuite").get("skipped") == "1" and root.get("failures") == "0"

    out = tmp_path / "out"
    write_gradebook(out / "gradebook.db", [result], course)
    url = f"sqlite:///{out / 'gradebook.db'}"
    with Gradebook(url) as gb:
        grade = gb.find_grade(f"written_{name}", "transfer", "transfer", "ann")
        assert grade.auto_score is None and grade.needs_manual_grade and grade.max_score == points
        assert gb.find_submission("transfer", "ann").needs_manual_grade        # formgrader's "needs manual grade" list
        grade.manual_score = 1.5                                               # what a TA enters in formgrader
        gb.find_grade("check_freeze", "transfer", "transfer", "ann").manual_score = 0.0
        gb.find_grade("check_replace_head", "transfer", "transfer", "ann").extra_credit = 0.5
        gb.db.commit()
    shown = with_hand_scores(out / "gradebook.db", [result])[0]
    by_name = {c.name: c for c in shown.checks}
    assert by_name[name].points == 1.5 and not by_name[name].pending and by_name[name].message == "graded by hand"
    assert by_name["freeze"].points == 0 and "changed by hand: 1 → 0" in by_name["freeze"].message
    assert by_name["replace_head"].points == lab.checks["replace_head"] + 0.5
    assert shown.score == sum(lab.checks.values()) - 1 + 0.5 + 1.5
    assert result.score == sum(lab.checks.values())                            # the grader's own result is untouched

    write_gradebook(out / "gradebook.db", [result], course)                   # a regrade: the TA's work stays
    with Gradebook(url) as gb:
        grade = gb.find_grade(f"written_{name}", "transfer", "transfer", "ann")
        assert grade.manual_score == 1.5 and not grade.needs_manual_grade and grade.auto_score is None
        assert gb.find_grade("check_freeze", "transfer", "transfer", "ann").auto_score == 1.0
    write_reports(out, [shown], {"transfer": lab.title})
    totals = list(csv.reader(io.StringIO((out / "totals.csv").read_text())))
    assert totals[2] == ["ann", f"{shown.score:g}", f"{shown.score:g}"]
    write_nbgrader_folders(out, [shown], course)
    autograded = nbformat.read(out / "autograded" / "ann" / "transfer" / "transfer.ipynb", as_version=4)
    answer = next(c for c in autograded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == f"written_{name}")
    assert answer.source == "Because the *scratch* model learns the features itself."        # the student's, not the model answer


def test_the_gradebook_records_nbgraders_own_schema_revision(tmp_path):
    """The revision a new gradebook records is read in-process (autograder.gradebook): the same
    one nbgrader's `alembic heads` subprocess gives."""
    from nbgrader.dbutil import _temp_alembic_ini
    from autograder.gradebook import _alembic_head
    with _temp_alembic_ini(f"sqlite:///{tmp_path / 'gradebook.db'}") as ini:
        heads = subprocess.run([str(Path(sys.executable).parent / "alembic"), "-c", ini, "heads"],
                               capture_output=True, text=True, check=True).stdout
    assert _alembic_head() == heads.split()[0]


def test_a_rerun_writes_only_what_changed(course, tmp_path):
    """Issue 15: work in proportion to change. A rerun in which nothing changed rewrites no
    submission's page, Gradescope JSON or autograded notebook and leaves the gradebook's bytes
    alone; a comment, a TA's score, a deleted page or a gradebook row edited behind the grader's
    back brings back exactly what it concerns."""
    from autograder.pipeline import write_class_outputs

    lab = course.labs[0]
    out = tmp_path / "out"

    def results():
        full, lost = _results(course)
        for r in (full, lost):
            path = tmp_path / "class" / r.student / f"{lab.id}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(course.solution_path(lab.id).read_bytes())
            r.path = str(path)
        return [full, lost]

    def files(student):
        return [out / "feedback" / student / lab.id / f"{lab.id}.html", out / "gradescope" / student / lab.id / "results.json",
                out / "autograded" / student / lab.id / f"{lab.id}.ipynb"]

    def stamps():
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for s in ("ada", "bob") for p in files(s)}

    write_class_outputs(out, results(), [], course)
    first, db, report = stamps(), (out / "gradebook.db").read_bytes(), (out / "class_report.html").stat().st_ino
    write_class_outputs(out, results(), [], course)                          # nothing changed
    assert stamps() == first and (out / "gradebook.db").read_bytes() == db
    assert (out / "class_report.html").stat().st_ino == report

    (out / "comments" / "bob").mkdir(parents=True)
    (out / "comments" / "bob" / f"{lab.id}.txt").write_text("Come and see me about the first check.")
    write_class_outputs(out, results(), [], course)
    now = stamps()
    assert [p for p in first if now[p] != first[p]] == files("bob")[:2]      # bob's page and JSON, nothing else
    assert "Come and see me" in files("bob")[0].read_text()
    assert (out / "class_report.html").stat().st_ino == report                # no score changed

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    from nbgrader.api import Gradebook
    check = f"check_{next(iter(lab.checks))}"
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        gb.find_grade(check, lab.id, lab.id, "ada").manual_score = 0.5         # a TA, in formgrader
        gb.find_grade(check, lab.id, lab.id, "bob").auto_score = 99.0          # an edit behind the grader's back
        gb.db.commit()
    before = stamps()
    files("bob")[2].unlink()                                                   # a page deleted by hand
    shown, _ = write_class_outputs(out, results(), [], course)
    now = stamps()
    assert {p for p in before if p.exists() and now[p] != before[p]} == {*files("ada"), *files("bob")[2:]}
    assert "changed by hand" in files("ada")[0].read_text() and shown[0].score != results()[0].score
    assert (out / "class_report.html").stat().st_ino != report                 # ada's score changed
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        assert gb.find_grade(check, lab.id, lab.id, "bob").auto_score == 0.0   # the grader's own again
        assert gb.find_grade(check, lab.id, lab.id, "ada").manual_score == 0.5
