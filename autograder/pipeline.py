"""Grading a class into an output folder: the library function `course grade` is a thin layer over.

    submissions -> grade_class (sandboxed workers; each result written, signed, as it is known)
                -> reports (grades.csv, JUnit, Gradescope JSON, HTML feedback) -> gradebook.db
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import hmac
import io
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from .config import Course, CourseError, Lab
from .grade import CONTROL_CHARS, CheckResult, Result, find_submissions, grade_class, written_answers
from .notebook import SubmissionError, read_capped
from .report import instructor_comment

NOT_HANDED_IN = "not handed in"


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
    _: dataclasses.KW_ONLY          # the switches below by name only: a new one cannot shift another
    sandboxed: bool = True
    force: bool = False
    gradebook: bool = True
    reports: bool = True            # False: the signed results only, no report or gradebook (a Gradescope
                                    # run writes its own results.json; `course merge` needs no more)
    roster: Path | None = None      # the class list: whoever has no submission gets 0, marked missing
    shard: tuple[int, int] | None = None   # grade only slice K of N (`course merge` joins the slices)
    cluster: object = None                 # a Dask scheduler's address, "local" (autograder.cluster), or a Client
    draw: int | None = None                # which random cases the checks draw (None: the output folder's own,
                                           # `grading_draw`): give every shard of a class the same one


@dataclass
class ClassGrades:
    results: list[Result]
    warnings: list[str]
    reused: int                  # results kept from an earlier run (unchanged, signed)


def grade_to_folder(submissions: Path, course: Course, out: Path, options: GradeOptions = GradeOptions(),
                    progress=None, found: tuple[list, list[str]] | None = None) -> ClassGrades:
    """Grade every submission under `submissions` into `out`: one signed result per submission
    as soon as it is known, then (with `options.reports`) the class reports and the gradebook.
    `progress(result)` is called for each result. Reuses unchanged results unless `options.force`. `found`: what
    `find_submissions` returned for these options, where the caller has it (the class is walked once)."""
    from .report import grader_key, read_results, write_outputs, write_result
    if options.memory_mb is not None:
        if options.memory_mb <= 0:
            raise CourseError(f"--memory-mb must be positive, got {options.memory_mb:g}")
        course = dataclasses.replace(course, memory_mb=options.memory_mb)
    found = found or find_submissions(submissions, course, options.lab_ids, options.shard)   # a bad folder stops here,
    changed = changed_since_built(course, found[0])                                         # before anything is written
    roster = read_roster(options.roster) if options.roster is not None else None   # and so does a bad roster
    done = {} if options.force else read_results(out)
    draw = options.draw if options.draw is not None else grading_draw(grader_key(out))
    attempts = out / ".attempts"            # submissions being graded (autograder.grade.grade_class)
    if options.force:
        shutil.rmtree(attempts, ignore_errors=True)

    def on_result(result: Result) -> None:
        write_result(out, result)
        write_outputs(out, result)          # (only newly graded results come here)
        if progress:
            progress(result)

    if options.gradebook:        # nbgrader (2 s of imports) loads while the notebooks run
        threading.Thread(target=_import_gradebook, daemon=True).start()
    with _cluster(options) as client:
        results, warnings = grade_class(submissions, course, options.lab_ids, options.jobs, options.cell_timeout,
                                        options.notebook_timeout, on_result, options.engine, done, options.device,
                                        sandboxed=options.sandboxed, attempts=attempts, shard=options.shard,
                                        cluster=client, found=found, draw=draw)
    warnings = changed + warnings
    if options.shard is not None and options.draw is None:
        warnings.append(f"shard {options.shard[0]}/{options.shard[1]} drew its random cases from {out.name}'s own key: "
                        "give every shard of the class the same --draw N, so that a submission gets the same "
                        "cases whichever shard grades it")
    reused = sum(1 for r in results if done.get((r.student, r.lab)) is r)
    if roster is not None:
        results, warnings = _with_roster(results, warnings, roster, course.select(options.lab_ids), options.shard)
        for result in results:
            if not result.handed_in:        # kept with the others, so that `course merge` has them too
                write_result(out, result)
    if options.reports:
        results, warnings = write_class_outputs(out, results, warnings, course, options.gradebook)
    return ClassGrades(results, warnings, reused)


def grading_draw(key: bytes) -> int:
    """The draw of an output folder (autograder.checks.drawn): from its secret key, so that the
    random cases a graded check gives are known to nobody before grading (a notebook cannot carry
    the answers to them), yet the same for every student and every rerun into that folder."""
    return int.from_bytes(hmac.new(key, b"draw", hashlib.sha256).digest()[:4], "big") % (1 << 31) or 1


def _cluster(options: GradeOptions):
    """A Dask client for `options.cluster` (one this opens is closed afterwards), or None."""
    if options.cluster is None or not isinstance(options.cluster, str):
        return contextlib.nullcontext(options.cluster)
    from .cluster import open_cluster
    return open_cluster(options.cluster, options.jobs)


def _import_gradebook() -> None:
    from .gradebook import _nbgrader_api
    _nbgrader_api()


def write_class_outputs(out: Path, results: list[Result], warnings: list[str], course: Course,
                        gradebook: bool = True) -> tuple[list[Result], list[str]]:
    """The class's reports, warnings.txt and (with `gradebook`) nbgrader's gradebook and folders
    for `results`; returns them as reported (with the scores people entered in formgrader).
    Incremental: a submission's own files (feedback page, Gradescope JSON, autograded notebook)
    are written only where what they show changed (`Written`), its gradebook rows only where
    they differ from it."""
    from .report import write_reports
    graded = results                        # the grader's own scores (the gradebook's auto scores)
    if gradebook:                           # + what people scored in formgrader, in every report
        from .gradebook import with_hand_scores
        results = with_hand_scores(out / "gradebook.db", results)
    titles = {lab.id: lab.title for lab in course.labs}
    written = Written.read(out)
    pages = written.stale("pages", results, lambda r: [titles.get(r.lab, ""), instructor_comment(out, r)],
                          lambda r: out / "feedback" / r.student / r.lab / f"{r.lab}.html")
    stale = [r for r in results if (r.student, r.lab) in pages]
    whole = written.digest_of_all(results, [course.title])      # the class report shows every result
    report = whole != written.kinds.get("class", {}).get("report") or not (out / "class_report.html").exists()
    write_reports(out, results, titles, answers_of_lost_checks(course, stale), course.title, only=pages,
                  class_report=report)
    unmatched = out / "warnings.txt"        # files not graded, and why: never silently dropped
    if warnings:
        unmatched.write_text("".join(f"{w}\n" for w in warnings))
    else:
        unmatched.unlink(missing_ok=True)
    if gradebook:
        from .gradebook import write_gradebook, write_nbgrader_folders
        write_gradebook(out / "gradebook.db", graded, course)     # (itself incremental)
        folders = written.stale("autograded", results, lambda r: [],
                                lambda r: out / "autograded" / r.student / r.lab / f"{r.lab}.ipynb")
        write_nbgrader_folders(out, [r for r in results if (r.student, r.lab) in folders], course)
        written.mark("autograded")
    written.mark("pages")
    written.kinds["class"] = {"report": whole}
    written.save()
    return results, warnings


class Written:
    """What an output folder's per-submission files were last written from: for each kind of file
    and each (student, lab), a digest of the result shown and what else the file depends on (the
    grader's code included). A rerun writes only the files whose digest changed, or that are gone."""
    FILE = ".written.json"

    def __init__(self, out: Path, kinds: dict[str, dict[str, str]]) -> None:
        self.out, self.kinds = out, kinds
        self._bodies: dict[int, tuple[Result, str]] = {}
        self._pending: dict[str, dict[str, str]] = {}    # kind -> the digests `stale` computed, until `mark`

    @classmethod
    def read(cls, out: Path) -> "Written":
        try:
            kinds = json.loads((out / cls.FILE).read_text(encoding="utf-8"))
            if not isinstance(kinds, dict) or not all(isinstance(v, dict) for v in kinds.values()):
                kinds = {}
        except (OSError, ValueError):
            kinds = {}
        return cls(out, kinds)

    def digest(self, result: Result, extra: list) -> str:
        from .grade import grader_digest
        if id(result) not in self._bodies:         # (the result kept too, so that its id stays its own)
            self._bodies[id(result)] = (result, json.dumps(result.to_dict(), sort_keys=True))
        body = json.dumps([self._bodies[id(result)][1], extra, grader_digest()], default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def digest_of_all(self, results: list[Result], extra: list) -> str:
        h = hashlib.sha256(json.dumps(extra).encode())
        for r in results:
            h.update(self.digest(r, []).encode())
        return h.hexdigest()[:32]

    def stale(self, kind: str, results: list[Result], extra, file=None) -> set[tuple[str, str]]:
        """The (student, lab) of `results` whose `kind` files must be written again (`extra(r)`: what
        else they show; `file(r)`: a file whose absence means written again)."""
        seen = self.kinds.get(kind, {})
        digests = self._pending[kind] = {f"{r.student}/{r.lab}": self.digest(r, extra(r)) for r in results}
        return {(r.student, r.lab) for r in results
                if seen.get(f"{r.student}/{r.lab}") != digests[f"{r.student}/{r.lab}"]
                or (file and r.handed_in and r.path and not file(r).exists())}

    def mark(self, kind: str) -> None:
        """The `kind` files `stale` named are written: keep the digests it computed for them."""
        self.kinds.setdefault(kind, {}).update(self._pending.pop(kind))

    def save(self) -> None:
        from .report import atomic_write
        atomic_write(self.out / self.FILE, json.dumps(self.kinds, sort_keys=True))


def merge_folders(out: Path, folders: list[Path], course: Course, gradebook: bool = True) -> ClassGrades:
    """Join the result folders of several runs (shards of a class, or machines) into `out`: each
    signed result as it is — its scores, notes, time and fingerprint, nothing regraded — signed
    again with `out`'s key, then one set of reports and one gradebook. A result in several
    folders is taken from the one written last, with a warning."""
    from .report import read_outputs, read_results, result_path, write_outputs, write_result

    if not folders:
        raise CourseError("course merge: name at least one result folder")
    chosen: dict[tuple[str, str], tuple[float, Result, Path]] = {}
    warnings = []
    for folder in folders:
        if not (folder / "results").is_dir():
            raise CourseError(f"{folder}: not a `course grade` output folder (no results/ in it)")
        if folder.resolve() == out.resolve():
            raise CourseError(f"{folder}: is the merge's own output folder")
        kept = read_results(folder)          # checked against that folder's own key
        signed = {p.relative_to(folder / "results").as_posix() for p in (folder / "results").glob("*/*.json")}
        unsigned = signed - {result_path(folder, r).relative_to(folder / "results").as_posix() for r in kept.values()}
        warnings += [f"skipped {folder}/results/{rel}: its signature does not match {folder}'s key" for rel in sorted(unsigned)]
        for key, result in kept.items():
            when = result_path(folder, result).stat().st_mtime
            if key in chosen:
                warnings.append(f"{key[0]}/{key[1]} is in {chosen[key][2]} and {folder}: kept the later one")
                if chosen[key][0] >= when:
                    continue
            chosen[key] = (when, result, folder)
    order = {lab.id: i for i, lab in enumerate(course.labs)}
    unknown = sorted({lab for _, lab in chosen} - set(order))
    if unknown:
        raise CourseError(f"results of labs course.yml does not have: {', '.join(unknown)}")
    # as `course grade` orders them: the submissions by student and lab, then the roster's missing work
    results = sorted((c[1] for c in chosen.values()), key=lambda r: (not r.handed_in, r.student, order[r.lab]))
    for result in results:
        write_result(out, result)
        result.outputs = read_outputs(chosen[result.student, result.lab][2], result) or None
        write_outputs(out, result)
    results, warnings = write_class_outputs(out, results, warnings, course, gradebook)
    return ClassGrades(results, warnings, 0)


def _answer_cells(course: Course, lab_id: str) -> dict[str, list[str]]:
    """{check: grade ids of the answer cells it tests}: those between the previous check cell
    and its own, in the lab's source notebook."""
    nb = json.loads(course.solution_path(lab_id).read_text(encoding="utf-8"))
    tested, pending = {}, []
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            pending.append(meta["grade_id"])
        elif meta.get("grade"):
            tested[meta["grade_id"].removeprefix("check_")] = pending
            pending = []
    return tested


def answers_of_lost_checks(course: Course, results: list[Result]) -> dict[tuple[str, str], dict[str, str]]:
    """For each submission, the student's code in the answer cells of each check it lost (read
    from the submitted notebook; a file that does not read gives none)."""
    cells_of = {}
    answers = {}
    for r in results:
        lost = [c.name for c in r.checks if not c.passed]
        if not lost or not r.path:
            continue
        try:
            if r.lab not in cells_of:
                cells_of[r.lab] = _answer_cells(course, r.lab)
            submitted = _notebook_json(Path(r.path))
            code = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                    for c in submitted["cells"] if isinstance(c.get("metadata", {}).get("nbgrader"), dict)
                    and "grade_id" in c["metadata"]["nbgrader"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, CourseError, SubmissionError):
            continue
        answers[r.student, r.lab] = {name: "\n\n".join(str(code[i]) for i in cells_of[r.lab].get(name, []) if i in code)
                                     for name in lost}
    return answers


def _built_values(path: Path) -> tuple[dict, dict] | None:
    """(points, thresholds) a built notebook shows, from its metadata (None: unreadable or older)."""
    try:
        meta = _notebook_json(path)["metadata"]["course"]
        return dict(meta["points"]), dict(meta["thresholds"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, SubmissionError):
        return None


def _notebook_json(path: Path):
    """A submitted file's JSON, read as the grader reads submissions: capped in size, a regular
    file only (SubmissionError, ValueError or RecursionError otherwise)."""
    return json.loads(read_capped(path))


def changed_since_built(course: Course, found: list[tuple[str, Lab, Path]]) -> list[str]:
    """One warning per lab whose points or thresholds in course.yml differ from those its built
    notebooks show — the course's exercise notebook, or the submitted notebooks, which are what
    the students saw. Grading uses course.yml's."""
    paths: dict[str, list[Path]] = {}
    for _, lab, path in found:
        paths.setdefault(lab.id, []).append(path)
    warnings = []
    for lab_id, submitted in paths.items():
        lab = course.lab(lab_id)
        now = (dict(lab.checks), {k: float(v) for k, v in lab.thresholds.items()})
        for where, path in (("the built exercise notebook shows", course.exercise_path(lab_id)),
                            *(("a submitted notebook shows", p) for p in submitted)):
            shown = _built_values(path)
            if shown is None or (shown[0], {k: float(v) for k, v in shown[1].items()}) == now:
                continue
            diff = [f"{kind} {name}: {old.get(name)} there, {new.get(name)} in course.yml"
                    for kind, old, new in (("points", shown[0], now[0]), ("threshold", shown[1], now[1]))
                    for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
            warnings.append(f"lab {lab_id}: course.yml differs from what {where} ({'; '.join(diff[:3])}): "
                            f"graded with course.yml's values; run `course build`, then release again")
            break
    return warnings


def read_roster(path: Path) -> list[str]:
    """Student ids from a roster: one per line, or a CSV whose `student`, `id` or `username`
    column (else its first) holds them; blank lines and `#` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CourseError(f"--roster {path}: cannot read it ({type(e).__name__})") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and "," in lines[0]:
        rows = list(csv.reader(io.StringIO("\n".join(lines))))
        header = [h.strip().lower() for h in rows[0]]
        column = next((header.index(k) for k in ("student", "id", "username") if k in header), None)
        ids = [row[column or 0].strip() if len(row) > (column or 0) else "" for row in rows[1 if column is not None else 0:]
               if row]
    else:
        ids = [line.strip() for line in lines]
        if ids and ids[0].lower() in ("student", "id", "username"):     # a one-column CSV's header
            ids = ids[1:]
    bad = next((i for i in ids if not _plain_id(i)), None)
    if bad is not None:
        raise CourseError(f"--roster {path}: {bad!r} is not a student id (ids name folders of the output: no '/', "
                          "'\\', control characters, nor '.' or '..' alone)")
    ids = list(dict.fromkeys(i for i in ids if i))
    if not ids:
        raise CourseError(f"--roster {path}: no student ids in it")
    return ids


def _plain_id(student: str) -> bool:
    """Usable as one folder name of the output (`results/<student>/`): or blank (a row without one)."""
    return student not in (".", "..") and "/" not in student and "\\" not in student and not CONTROL_CHARS.search(student)


def _with_roster(results: list[Result], warnings: list[str], roster: list[str], labs,
                 shard: tuple[int, int] | None = None) -> tuple[list[Result], list[str]]:
    """Every roster student × lab without a submission (in this shard), as a result of 0 marked
    missing; a submission from someone not on the roster is graded, and a warning says so."""
    from .grade import in_shard
    have = {(r.student, r.lab) for r in results}
    missing = [Result(student, lab.id, "", [CheckResult(n, 0, p, NOT_HANDED_IN) for n, p in lab.checks.items()]
                      + written_answers(lab, NOT_HANDED_IN),
                      notes=[f"{NOT_HANDED_IN}: {student} is on the roster and no {lab.id} notebook was found"],
                      handed_in=False)
               for student in sorted(roster) for lab in labs          # in the order `course merge` gives them
               if (student, lab.id) not in have and (shard is None or in_shard(student, lab.id, shard))]
    strangers = sorted({r.student for r in results} - set(roster))
    return results + missing, warnings + [f"{s} is not on the roster (graded anyway)" for s in strangers]
