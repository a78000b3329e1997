"""Reports of a grading run: one JSON per submission (written as soon as it is known),
grades.csv for the class, Gradescope's results.json, JUnit XML for CI, a self-contained HTML
feedback page per submission, and the summary table printed at the end."""
from __future__ import annotations

import csv
import hashlib
import hmac
import html
import io
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from xml.etree import ElementTree as ET

from .i18n import gettext as _
from .i18n import lab_title, language
from .results import Result

CSV_FIELDS = ["student", "lab", "check", "points", "max_points", "message"]
KEY_FILE = ".grader-key"     # in the output folder, mode 600; no sandbox ever sees that folder


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def result_path(out: Path, result: Result) -> Path:
    return out / "results" / result.student / f"{result.lab}.json"


def grader_key(out: Path) -> bytes:
    """The secret that signs this output folder's results (made on first use)."""
    path = out / KEY_FILE
    out.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        return f.read().strip().encode()


def _signature(key: bytes, data: dict) -> str:
    body = json.dumps({k: v for k, v in data.items() if k != "signature"}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def write_result(out: Path, result: Result) -> None:
    """One submission's result, signed (HMAC-SHA256 with the folder's key)."""
    data = result.to_dict()
    data["signature"] = _signature(grader_key(out), data)
    atomic_write(result_path(out, result), json.dumps(data, indent=1, sort_keys=True) + "\n")


OUTPUTS = "outputs"       # DIR/outputs/<student>/<lab>.json: what each cell showed (autograded/)


def write_outputs(out: Path, result: Result) -> None:
    """What the cells of a newly graded submission showed, beside its result (none: removed)."""
    path = out / OUTPUTS / result.student / f"{result.lab}.json"
    if result.outputs:
        atomic_write(path, json.dumps({str(i): items for i, items in sorted(result.outputs.items())}))
    else:
        path.unlink(missing_ok=True)


def read_outputs(out: Path, result: Result) -> dict[int, list]:
    """{cell index: [[kind, text]]} written by `write_outputs` ({} if none or unreadable)."""
    from .results import MAX_OUTPUTS, capped_outputs
    try:
        data = json.loads((out / OUTPUTS / result.student / f"{result.lab}.json").read_text(encoding="utf-8"))
        budget = [MAX_OUTPUTS]
        return {int(i): capped_outputs(items, budget) for i, items in data.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def read_results(out: Path) -> dict[tuple[str, str], Result]:
    """Results this grader wrote under `out` (a resumed run skips what they cover). A result
    that is unreadable, unsigned or whose signature does not match is ignored: it is graded again."""
    done = {}
    paths = sorted((out / "results").glob("*/*.json"))
    if not paths:
        return done
    key = grader_key(out)
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            signature = data.pop("signature", "")
            if not hmac.compare_digest(str(signature), _signature(key, data)):
                continue
            result = Result.from_dict(data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue  # unreadable: grade it again
        if path.parent.name == result.student and path.stem == result.lab:
            done[result.student, result.lab] = result
    return done


def grades_csv(results: list[Result]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        for c in r.checks:
            writer.writerow({"student": _cell(r.student), "lab": r.lab, "check": c.name, "points": c.points,
                             "max_points": c.max_points, "message": _cell(c.message)})
        if r.late_penalty:        # so that a lab's rows still sum to its score
            writer.writerow({"student": _cell(r.student), "lab": r.lab, "check": "late_penalty",
                             "points": -r.late_penalty, "max_points": 0,
                             "message": _cell(next((n for n in r.notes if n.startswith("submitted late")), ""))})
    return buf.getvalue()


def totals_csv(results: list[Result], labs: list[str]) -> str:
    """Per-student totals, one row each, a column per lab (`labs`' order) and the total: the wide
    shape an LMS imports (Canvas's "Points Possible" row second). A lab a student did not hand in
    is an empty cell, not a zero: the LMS decides what missing work is worth."""
    labs = [lab for lab in labs if any(r.lab == lab for r in results)]
    by_key = {(r.student, r.lab): r for r in results}
    maxima = {lab: next(r.max_score for r in results if r.lab == lab) for lab in labs}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Student", *labs, "Total"])
    writer.writerow(["Points Possible", *(f"{maxima[lab]:g}" for lab in labs), f"{sum(maxima.values()):g}"])
    for student in sorted({r.student for r in results}):
        scores = [by_key[student, lab].score if (student, lab) in by_key else None for lab in labs]
        writer.writerow([_cell(student), *("" if v is None else f"{v:g}" for v in scores),
                         f"{sum(v for v in scores if v is not None):g}"])
    return buf.getvalue()


LEADERBOARD_FIELDS = ["lab", "check", "rank", "student", "accuracy", "score", "max_score"]


def leaderboard(results: list[Result]) -> dict[tuple[str, str], list[tuple[int, float, Result]]]:
    """{(lab, check): [(rank, value, result)]}: the handed-in results ranked by what that scored
    check measured on the hidden split (an accuracy), best first; equal values share a rank and
    keep the higher score, then the student's id, first. Only the checks that measure (the labs
    with a hidden-split accuracy, the capstone's among them)."""
    boards: dict[tuple[str, str], list[tuple[float, Result]]] = {}
    for r in results:
        for c in r.checks:
            if c.measured is not None and r.handed_in and not r.grader_error:
                boards.setdefault((r.lab, c.name), []).append((c.measured, r))
    ranked = {}
    for key, rows in boards.items():
        rows.sort(key=lambda m: (-m[0], -m[1].score, m[1].student))
        ranks = []
        for i, (value, r) in enumerate(rows, 1):
            ranks.append((ranks[-1][0] if ranks and ranks[-1][1] == value else i, value, r))
        ranked[key] = ranks
    return ranked


def leaderboard_csv(boards: dict[tuple[str, str], list[tuple[int, float, Result]]]) -> str:
    """Every measured check's ranking (`leaderboard`), one row per submission."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, LEADERBOARD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for (lab, check), ranked in boards.items():
        for rank, value, r in ranked:
            writer.writerow({"lab": lab, "check": check, "rank": rank, "student": _cell(r.student),
                             "accuracy": f"{value:.4f}", "score": f"{r.score:g}", "max_score": f"{r.max_score:g}"})
    return buf.getvalue()


def _cell(text: str) -> str:
    """A CSV field no spreadsheet runs as a formula (OWASP: a leading = + - @ tab or CR is quoted)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _fmt(x: float) -> str:
    return f"{x:g}"


def summary_table(results: list[Result]) -> str:
    """One row per submission: score, the checks lost, and the first message."""
    rows = [("student", "lab", "score", "time", "lost")]
    for r in results:
        lost = [c.name for c in r.checks if not c.passed and not c.pending]
        by_hand = f" ({_fmt(r.pending_points)} by hand)" if r.pending_points else ""
        rows.append((r.student, r.lab, f"{_fmt(r.score)}/{_fmt(r.max_score)}{by_hand}", f"{r.seconds:.1f}s",
                     ", ".join(lost) if lost else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "-" * min(100, max(len(l) for l in lines)))
    return "\n".join(lines)


def failure_lines(results: list[Result], limit: int = 30) -> list[str]:
    """`student/lab check: message` for each lost check, for the terminal."""
    lines = [f"{r.student}/{r.lab} {c.name}: {c.message}" for r in results for c in r.checks
             if not c.passed and not c.pending]
    return lines[:limit] + ([f"... and {len(lines) - limit} more in grades.csv"] if len(lines) > limit else [])


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.\-]+/)+([\w.\-]*)")


def for_students(text: str) -> str:
    """`text` as a student may read it: a server path (a grader error's) shortened to its last
    part, so that pages and Gradescope output never show where the course lives."""
    return _ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", text)


def gradescope_tests(result: Result, hidden: frozenset[str] = frozenset(), visibility: str = "visible") -> list[dict]:
    """Gradescope's test entries, one per check: points, the student-safe message, and the
    `hidden` checks' `visibility`."""
    return [{"name": c.name, "score": c.points, "max_score": c.max_points, "output": for_students(c.message or _("passed")),
             "visibility": visibility if c.name in hidden else "visible"} for c in result.checks]


def gradescope_json(result: Result) -> str:
    """Gradescope's autograder `results.json` for one submission (what its student reads)."""
    doc = {"score": result.score, "execution_time": result.seconds, "tests": gradescope_tests(result),
           "output": for_students("\n".join(result.notes + ([_("grader error: {error}").format(error=result.grader_error)]
                                                             if result.grader_error else [])))}
    return json.dumps(doc, indent=1) + "\n"


def junit_xml(results: list[Result], timestamp: str | None = None) -> str:
    """One <testsuite> per submission, one <testcase> per check: a lost check is a <failure>, a
    check the grader could not run (a grader error) an <error>, a check skipped for want of CUDA
    that kept its points a <skipped> (never a pass). Suites carry the attributes Jenkins and the
    Ant task read: tests, failures, errors, skipped, time, timestamp, hostname; the file is valid
    against Jenkins' junit-10.xsd (whose <testsuites> has no `skipped`: each suite counts its own)."""
    import socket
    from datetime import datetime, timezone
    stamp = timestamp or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    kinds = [[_junit_kind(r, c) for c in r.checks] for r in results]
    total = {k: sum(row.count(k) for row in kinds) for k in ("failure", "error")}
    suites = ET.Element("testsuites", name="course grade", tests=str(sum(len(r.checks) for r in results)),
                        failures=str(total["failure"]), errors=str(total["error"]),
                        time=f"{sum(r.seconds for r in results):.2f}")
    for i, (r, row) in enumerate(zip(results, kinds)):
        suite = ET.SubElement(suites, "testsuite", name=f"{r.student}/{r.lab}", tests=str(len(r.checks)),
                              failures=str(row.count("failure")), errors=str(row.count("error")),
                              skipped=str(row.count("skipped")), time=f"{r.seconds:.2f}", timestamp=stamp,
                              hostname=socket.gethostname() or "localhost", id=str(i), package=r.lab)
        for c, kind in zip(r.checks, row):
            case = ET.SubElement(suite, "testcase", classname=f"{r.student}.{r.lab}", name=c.name)
            if kind == "error":
                ET.SubElement(case, "error", message=r.grader_error, type="GraderError").text = r.grader_error
            elif kind == "skipped":
                ET.SubElement(case, "skipped", message=c.message)
            elif kind == "failure":
                failure = ET.SubElement(case, "failure", message=c.message or "failed",
                                        type=f"{_fmt(c.points)}/{_fmt(c.max_points)} points")
                failure.text = c.message
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _junit_kind(r: Result, c) -> str:
    if r.grader_error:
        return "error"
    if c.pending:
        return "skipped"
    if c.message.startswith("skipped:") and c.passed:
        return "skipped"
    return "pass" if c.passed else "failure"


_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }}
td.pts {{ white-space: nowrap; font-variant-numeric: tabular-nums; }}
tr.pass td.pts {{ color: #1a7f37; }} tr.fail td.pts {{ color: #cf222e; font-weight: 600; }}
code, pre {{ font: 13px/1.4 ui-monospace, monospace; white-space: pre-wrap; }}
pre {{ background: #f6f8fa; padding: .5rem .7rem; margin: .4rem 0 0; border-radius: 4px; }}
details summary {{ cursor: pointer; color: #555; font-size: 13px; }}
.score {{ font-size: 1.4rem; }}
.comment {{ border: 1px solid #ddd; border-left: 4px solid #4c72b0; padding: .6rem 1rem; margin: 1.5rem 0; min-height: 3rem; }}
</style></head><body>
<h1>{heading}</h1>
<p class="score">{score}</p>
{notes}
<table><thead><tr><th>{check}</th><th>{points}</th><th>{verdict}</th></tr></thead><tbody>
{rows}
</tbody></table>
<section class="comment" id="comment"><strong>{comment_heading}</strong>
{comment}
</section>
</body></html>
"""
COMMENTS = "comments"      # DIR/comments/<student>/<lab>.txt: an instructor's comment, shown on the page


def _verdict(c, code: str = "") -> str:
    """`passed` (with a note such as the accuracy reached), or the failure message and, below it,
    the student's answer that the check tested."""
    if c.pending:
        return html.escape(c.message)
    if c.passed:
        return _("passed") + (f" — {html.escape(for_students(c.message))}" if c.message else "")
    yours = _("your answer")
    answer = (f"<details><summary>{yours}</summary><pre>{html.escape(code)}</pre></details>"
              if code.strip() else "")
    return f"<code>{html.escape(for_students(c.message))}</code>{answer}"


def feedback_html(result: Result, title: str = "", answers: dict[str, str] | None = None, comment: str = "") -> str:
    """A self-contained page: each check with its points and, if lost, what was expected, what
    was got, the hint and the student's answer code it tested (`answers`: check -> code); then
    the instructor's comment, or room for one. In the current language (autograder.i18n: the
    course's), the lab's title (course.yml's) included."""
    answers = answers or {}
    rows = "\n".join(
        f'<tr class="{"pending" if c.pending else "pass" if c.passed else "fail"}"><td>{html.escape(c.name)}</td>'
        f'<td class="pts">{_fmt(c.points)} / {_fmt(c.max_points)}</td>'
        f'<td>{_verdict(c, answers.get(c.name, ""))}</td></tr>'
        for c in result.checks)
    note, none_yet = _("Note:"), _("none yet")
    notes = "".join(f"<p><strong>{note}</strong> {html.escape(for_students(n))}</p>" for n in result.notes)
    remark = (f"<p>{html.escape(comment).replace(chr(10), '<br>')}</p>" if comment.strip()
              else f"<p><em>{none_yet}</em></p>")
    title = lab_title(title) if title else ""
    heading = _("{lab}: feedback for {student}").format(lab=html.escape(title or result.lab), student=html.escape(result.student))
    return _PAGE.format(lang=language(), title=html.escape(title or f"{result.lab} — {result.student}"), heading=heading,
                        score=_("{score} / {max_score} points").format(score=_fmt(result.score), max_score=_fmt(result.max_score)),
                        check=_("check"), points=_("points"), verdict=_("expected / got / hint"),
                        comment_heading=_("Comment from your instructor"), notes=notes, rows=rows, comment=remark)


def instructor_comment(out: Path, r: Result) -> str:
    """The comment an instructor left in DIR/comments/<student>/<lab>.txt ("" if none)."""
    path = out / COMMENTS / r.student / f"{r.lab}.txt"
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def write_reports(out: Path, results: list[Result], titles: dict[str, str] | None = None,
                  answers: dict[tuple[str, str], dict[str, str]] | None = None, course_title: str = "",
                  only: set[tuple[str, str]] | None = None, class_report: bool = True) -> None:
    """The class-level files (the class report too, unless `class_report` is False: it is up to
    date), and Gradescope JSON and HTML feedback for every submission (`answers[(student, lab)]`:
    the code each lost check tested); with `only`, the per-submission files of those submissions
    alone (the others are up to date)."""
    from .classreport import class_report_html

    atomic_write(out / "grades.csv", grades_csv(results))
    atomic_write(out / "totals.csv", totals_csv(results, list(titles or {}) or sorted({r.lab for r in results})))
    atomic_write(out / "junit.xml", junit_xml(results))
    boards = leaderboard(results)
    if boards:
        atomic_write(out / "leaderboard.csv", leaderboard_csv(boards))
    else:
        (out / "leaderboard.csv").unlink(missing_ok=True)
    if results and class_report:
        atomic_write(out / "class_report.html", class_report_html(results, f"{course_title or 'Class'}: class report"))
    for r in results:
        if only is not None and (r.student, r.lab) not in only:
            continue
        atomic_write(out / "gradescope" / r.student / r.lab / "results.json", gradescope_json(r))
        atomic_write(out / "feedback" / r.student / r.lab / f"{r.lab}.html",     # nbgrader's layout
                     feedback_html(r, (titles or {}).get(r.lab, ""), (answers or {}).get((r.student, r.lab)), instructor_comment(out, r)))
