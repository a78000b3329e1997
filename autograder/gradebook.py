"""nbgrader's gradebook (`gradebook.db`), written through nbgrader's own API, and its folders
(`autograded/`, the metadata beside `feedback/`), so that `nbgrader export`, formgrader,
`generate_feedback` and `release_feedback` work on our grades."""
from __future__ import annotations

import dataclasses
import functools
import shutil
import warnings
from pathlib import Path

import nbformat

from .config import Course
from .results import Result


_CONFIG_MARK = "# written by `course grade`"
NBGRADER_CONFIG = f"""{_CONFIG_MARK}: nbgrader commands run in this folder read gradebook.db here.
c = get_config()  # noqa: F821
# `nbgrader export` writes this file, not grades.csv (course grade's per-check CSV stays as it is)
c.ExportPlugin.to = "nbgrader_grades.csv"
"""


def write_nbgrader_config(folder: Path) -> None:
    """An nbgrader_config.py beside the gradebook, unless one that is not ours is there."""
    config = folder / "nbgrader_config.py"
    if not config.exists() or config.read_text(errors="replace").startswith(_CONFIG_MARK):
        config.write_text(NBGRADER_CONFIG)


@functools.cache
def _alembic_head() -> str:
    """nbgrader's schema revision, read in this process from nbgrader's own migration scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR
    config = Config()
    config.set_main_option("script_location", ALEMBIC_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


def _nbgrader_api():
    """nbgrader.api, with its new-gradebook revision lookup done in this process: nbgrader runs
    the `alembic` executable for it (2–3 s a gradebook, and the venv's bin/ must be on PATH)."""
    import nbgrader.api
    nbgrader.api.get_alembic_version = _alembic_head
    return nbgrader.api


def write_gradebook(path: Path, results: list[Result], course: Course) -> None:
    """Record every result in the gradebook at `path` (created if absent): a regrade updates
    each submission in place, so manual scores, extra credit and comments entered in formgrader
    stay; submission times from nbgrader's timestamp.txt are recorded. Incremental: the gradebook
    is read once, and only the submissions whose rows differ from their result are written."""
    api = _nbgrader_api()
    Gradebook, MissingEntry = api.Gradebook, api.MissingEntry
    from nbgrader.utils import parse_utc
    from nbgrader.preprocessors import SaveCells

    db_url = f"sqlite:///{path.resolve()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_nbgrader_config(path.parent)
    with Gradebook(db_url) as gb:
        state, students = _recorded(gb, api)
    todo = [r for r in results if r.handed_in and not _up_to_date(r, state.get((r.student, r.lab)), parse_utc)]
    newcomers = sorted({r.student for r in results} - students)
    if not todo and not newcomers:
        return
    labs = sorted({r.lab for r in todo})
    with Gradebook(db_url) as gb:
        for lab_id in labs:
            gb.update_or_create_assignment(lab_id)
        for student in newcomers:
            gb.update_or_create_student(student)
    for lab_id in labs:  # the cells and their points, as nbgrader's generate_assignment records them
        source = nbformat.read(course.solution_path(lab_id), as_version=4)
        SaveCells().preprocess(source, {"nbgrader": {"notebook": lab_id, "assignment": lab_id, "db_url": db_url}})
    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes from inside nbgrader's add_submission
        for r in todo:                   # (nbgrader's way for work not handed in: no submission; export counts 0)
            stamp = {"timestamp": r.submitted_at} if r.submitted_at else {}
            try:       # a regrade updates the submission in place: a TA's manual scores and comments stay
                submission = gb.find_submission(r.lab, r.student)
                if r.submitted_at:
                    submission.timestamp = parse_utc(r.submitted_at)
            except MissingEntry:
                gb.add_submission(r.lab, r.student, **stamp)
            gb.find_submission_notebook(r.lab, r.lab, r.student).late_submission_penalty = r.late_penalty or None
            for check in r.checks:
                grade = gb.find_grade(cell_name(check), r.lab, r.lab, r.student)
                grade.auto_score, grade.needs_manual_grade = _auto_grade(check, grade.manual_score)
            gb.db.commit()


def _auto_grade(check, manual_score) -> tuple[float | None, bool]:
    """(auto_score, needs_manual_grade) of a check's grade: a written answer not scored yet is in
    formgrader's queue until someone scores it."""
    if check.pending:
        return None, manual_score is None
    return float(check.points), manual_score is not None and not check.by_hand


def _recorded(gb, api) -> tuple[dict, set[str]]:
    """What the gradebook holds, in one query: {(student, lab): (timestamp, late penalty,
    {cell: (auto_score, manual_score, needs_manual_grade)})}, and its students."""
    Grade, GradeCell, SubmittedNotebook, SubmittedAssignment, Assignment = (
        api.Grade, api.GradeCell, api.SubmittedNotebook, api.SubmittedAssignment, api.Assignment)
    rows = (gb.db.query(SubmittedAssignment.student_id, Assignment.name, GradeCell.name, Grade.auto_score,
                        Grade.manual_score, Grade.needs_manual_grade, SubmittedAssignment.timestamp,
                        SubmittedNotebook.late_submission_penalty)
            .select_from(Grade)
            .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
            .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .join(GradeCell, Grade.cell_id == GradeCell.id))
    state: dict[tuple[str, str], tuple] = {}
    for student, lab, cell, auto, manual, needs, stamp, late in rows:
        state.setdefault((student, lab), (stamp, late, {}))[2][cell] = (auto, manual, needs)
    return state, {student for (student,) in gb.db.query(api.Student.id)}


def _up_to_date(result: Result, recorded: tuple | None, parse_utc) -> bool:
    """Whether the gradebook already holds `result` as write_gradebook would write it."""
    if recorded is None:
        return False
    stamp, late, grades = recorded
    if result.submitted_at and stamp != parse_utc(result.submitted_at):
        return False
    if (result.late_penalty or None) != late:
        return False
    for check in result.checks:
        grade = grades.get(cell_name(check))
        if grade is None or (grade[0], bool(grade[2])) != _auto_grade(check, grade[1]):
            return False
    return True


def cell_name(check) -> str:
    """The gradebook's name of a check's cell (the grade id in the source notebook)."""
    return f"written_{check.name}" if check.by_hand else f"check_{check.name}"


def with_hand_scores(path: Path, results: list[Result]) -> list[Result]:
    """`results` with what people entered in formgrader (gradebook at `path`): a manual score
    replaces a check's points or scores a written answer, extra credit adds. Copies: the results
    on disk and the gradebook's auto scores stay the grader's."""
    if not path.is_file():
        return results
    api = _nbgrader_api()
    Grade, Gradebook = api.Grade, api.Gradebook

    hand: dict[tuple[str, str, str], tuple[float | None, float | None]] = {}
    with Gradebook(f"sqlite:///{path.resolve()}") as gb:
        for g in gb.db.query(Grade).filter((Grade.manual_score.isnot(None)) | (Grade.extra_credit.isnot(None))):
            submission = g.notebook.assignment
            hand[submission.student_id, submission.assignment.name, g.cell.name] = (g.manual_score, g.extra_credit)
    if not hand:
        return results
    shown = []
    for r in results:
        checks = []
        for c in r.checks:
            manual, extra = hand.get((r.student, r.lab, cell_name(c)), (None, None))
            if manual is None and extra is None:
                checks.append(c)
                continue
            points = (c.points if manual is None else manual) + (extra or 0)
            if c.by_hand:
                message = "graded by hand" + (f" (+{extra:g} extra credit)" if extra else "")
            else:
                message = c.message + (f" (changed by hand: {c.points:g} → {points:g})" if points != c.points else "")
            checks.append(dataclasses.replace(c, points=points, message=message.strip(), pending=False))
        shown.append(dataclasses.replace(r, checks=checks))
    return shown


NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")   # beside a collected submission


def _autograded(result: Result, course: Course, shown: dict[int, list] | None = None) -> nbformat.NotebookNode | None:
    """The submission as graded, in nbgrader's `autograded/` form: the locked cells restored, the
    hidden tests left out (so no page made from it shows them), under each code cell what it
    showed when it ran (`shown`: text, results, figures, its error), and under each check cell its
    verdict: `passed`, or an error output with the check's one line."""
    from .notebook import SubmissionError, _visible, load_source, read_submission, restore

    try:
        nb, _ = restore(read_submission(Path(result.path)), load_source(course.solution_path(result.lab)))
    except (SubmissionError, OSError):
        return None
    verdicts = {f"check_{c.name}": c for c in result.checks}
    for index, cell in enumerate(nb.cells):
        check = verdicts.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if cell.cell_type == "code" and check is None:
            cell.outputs = [_output(kind, text) for kind, text in (shown or {}).get(index, [])]
        if check is None or cell.cell_type != "code":
            continue
        cell.source = _visible(cell.source)
        if check.passed:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"passed {check.message}".strip() + "\n")]
        else:
            cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue=check.message,
                                                   traceback=[f"AssertionError: {check.message}"])]
    return nb


def _output(kind: str, text: str) -> nbformat.NotebookNode:
    """One of autograder.results' [kind, text] outputs as nbformat's."""
    new = nbformat.v4.new_output
    if kind in ("stdout", "stderr"):
        return new("stream", name=kind, text=text)
    if kind == "png":
        return new("display_data", data={"image/png": text, "text/plain": "<Figure>"})
    if kind == "error":
        ename, _, evalue = text.partition(": ")
        return new("error", ename=ename, evalue=evalue, traceback=[text])
    if kind == "result":
        return new("execute_result", data={"text/plain": text}, execution_count=None)
    return new("display_data", data={"text/plain": text})


def write_nbgrader_folders(out: Path, results: list[Result], course: Course) -> None:
    """`autograded/<student>/<lab>/<lab>.ipynb` for every graded submission, and nbgrader's
    `timestamp.txt` and `submission_secret.txt` (where the submission was collected by nbgrader)
    beside it and beside the feedback page, which `nbgrader release_feedback` needs."""
    from .grade import lab_name
    from .report import read_outputs

    for r in results:
        if not r.handed_in or not r.path:
            continue
        nb = _autograded(r, course, read_outputs(out, r))
        if nb is None:
            continue
        folder = out / "autograded" / r.student / r.lab
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{r.lab}.ipynb")
        submitted = Path(r.path).parent
        for name in NBGRADER_FILES:
            if (submitted / name).is_file() and lab_name(submitted.name) == r.lab:
                for target in (folder, out / "feedback" / r.student / r.lab):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(submitted / name, target / name)
