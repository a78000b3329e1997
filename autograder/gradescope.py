"""Gradescope: `course gradescope LAB OUT.zip` writes a programming-assignment autograder.

Gradescope unpacks the zip into /autograder/source, runs `setup.sh` once to build its image,
then, for every submission, `run_autograder`, which runs `python -m autograder.gradescope`:

    /autograder/submission/*.ipynb  ->  this project's grader (sandboxed where the container
                                        allows it, hidden checks included)
                                    ->  /autograder/results/results.json

The zip holds the grader and the course's sources for that one lab (course.yml, its solution
notebook, `reference/` for the build's checks, the package's `pyproject.toml`), never a
student's file. Tests run it as Gradescope does, with AUTOGRADER_ROOT pointing at a temporary
/autograder tree.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .config import Course, CourseError, Lab, load_course

SPEC = "gradescope.json"        # in the zip: the lab it grades and how
# Gradescope's Ubuntu base image has no Python 3.11 of its own everywhere: uv brings one, and the
# CPU wheels of torch (the course's pins; Gradescope's autograders have no GPU).
SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, to build the autograder's image.
set -euxo pipefail
apt-get update
apt-get install -y --no-install-recommends bubblewrap curl ca-certificates
curl -LsSf https://astral.sh/uv/install.sh | env UV_INSTALL_DIR=/usr/local/bin sh
uv venv --python 3.11 /autograder/venv
uv pip install --python /autograder/venv/bin/python \\
    --extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match \\
    -e /autograder/source
/autograder/venv/bin/python -m autograder.gradescope check
"""
RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grades /autograder/submission/*.ipynb into
# /autograder/results/results.json. AUTOGRADER_ROOT and COURSE_PYTHON exist for tests.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${COURSE_PYTHON:-$ROOT/venv/bin/python}"
cd "$ROOT/source" || exit 1
export PATH="$(dirname "$PYTHON"):$PATH" PYTHONPATH="$ROOT/source"
exec "$PYTHON" -m autograder.gradescope run --root "$ROOT"
"""


def _course_files(course: Course, lab: Lab) -> dict[str, Path]:
    """The course files the zip carries: the package, course.yml, pyproject, the lab's notebooks."""
    root = course.root
    files = {"course.yml": course.path, "pyproject.toml": root / "pyproject.toml"}
    for package in ("autograder", "reference"):
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" \
                    and "tests" not in path.relative_to(root / package).parts:
                files[path.relative_to(root).as_posix()] = path
    for path in (course.solution_path(lab.id), course.exercise_path(lab.id)):
        files[path.relative_to(root).as_posix()] = path
    missing = [rel for rel, path in files.items() if not path.is_file()]
    if missing:
        raise CourseError(f"{course.root}: not a full course checkout (missing {', '.join(missing[:3])})")
    return files


def write_zip(course: Course, lab_id: str, out: Path, leaderboard: bool = False, unsafe_no_sandbox: bool = False) -> Path:
    """The Gradescope autograder of `lab_id` as a zip at `out` (setup.sh and run_autograder at
    its top, as Gradescope wants). Refuses stale built notebooks, as `course release` does.
    Where the container cannot start the sandbox, the autograder grades nothing unless
    `unsafe_no_sandbox` (then the student's code runs as root beside the solution notebook)."""
    from .build import build
    from .release import hidden_checks

    lab = course.lab(lab_id)
    out = Path(out)
    if out.suffix != ".zip":
        raise CourseError(f"{out}: the autograder is a .zip file")
    stale = build(course, [lab.id], check=True, languages=list(dict.fromkeys(["en", course.language])))
    if stale:
        raise CourseError(f"stale or missing built files ({', '.join(p.name for p in stale)}): run `course build` first")
    spec = {"lab": lab.id, "hidden": hidden_checks(course, lab), "leaderboard": leaderboard,
            "unsafe_no_sandbox": unsafe_no_sandbox, "language": course.language,
            "draw": secrets.randbelow((1 << 31) - 1) + 1}   # the zip's own (autograder.checks.drawn): every
                                                            # submission gets the same cases, unknown to students
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16
            z.writestr(info, text)
        z.writestr(SPEC, json.dumps(spec, indent=1) + "\n")
        for rel, path in _course_files(course, lab).items():
            z.write(path, rel)
    tmp.replace(out)
    return out


# --- inside Gradescope's container ---------------------------------------------------------------

def _pick_notebook(folder: Path, lab_id: str) -> tuple[Path | None, list[str]]:
    """The notebook to grade among the uploaded files: `<lab>.ipynb` (anywhere, the newest), else
    the only notebook, else the newest; notes say what was chosen over what."""
    from .grade import lab_name

    def linked(path: Path) -> bool:          # a link could name the course's own solution notebook
        return any(p.is_symlink() for p in [path, *path.parents] if p.is_relative_to(folder) and p != folder)
    notebooks = sorted(p for p in folder.rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts and not linked(p) and p.is_file())
    if not notebooks:
        return None, []
    named = [p for p in notebooks if lab_name(p.stem) == lab_id] or notebooks
    chosen = max(named, key=lambda p: (p.stat().st_mtime, str(p)))
    notes = [f"graded {chosen.relative_to(folder)}; also uploaded, not graded: "
             f"{', '.join(str(p.relative_to(folder)) for p in notebooks if p != chosen)}"] if len(notebooks) > 1 else []
    return chosen, notes


def results_json(result, spec: dict, visibility: str, notes: list[str], sandboxed: bool) -> dict:
    """Gradescope's results.json: a test per check (status, points, the one-line message), the
    checks with hidden tests shown as course.yml's `release.hidden_visibility` says, and the
    submission's notes and time; the scored accuracies as a leaderboard where asked."""
    from .report import for_students, gradescope_tests

    tests = gradescope_tests(result, frozenset(spec.get("hidden", [])), visibility)
    for i, (test, c) in enumerate(zip(tests, result.checks), 1):
        test["number"] = str(i)
        if not c.pending:
            test["status"] = "passed" if c.passed else "failed"
    lines = [*notes, *result.notes]
    if result.grader_error:
        lines.append(f"grader error (not your fault; your instructor is told): {result.grader_error}")
    if not sandboxed:
        lines.append("graded without the sandbox: this container could not start one")
    doc = {"score": result.score, "execution_time": round(result.seconds, 1), "tests": tests,
           "output": for_students("\n".join(lines)), "stdout_visibility": "hidden"}
    board = [{"name": f"{c.name} accuracy", "value": c.measured, "order": "desc"}
             for c in result.checks if c.measured is not None]
    if spec.get("leaderboard") and board:
        doc["leaderboard"] = board
    return doc


def _write(results: Path, doc: dict) -> None:
    from .report import atomic_write
    atomic_write(results, json.dumps(doc, indent=1) + "\n")


def _nothing_graded(results: Path, checks: dict[str, int], why: str, summary: str) -> None:
    """A results.json the student can read when nothing was graded: every test failed, and why."""
    _write(results, {"score": 0, "execution_time": 0, "output": summary, "tests": [
        {"name": name, "score": 0, "max_score": points, "status": "failed", "visibility": "visible", "output": why}
        for name, points in checks.items()]})


def _draw(spec: dict) -> int | None:
    """The zip's draw; None (the output folder's own) for a zip made before it had one."""
    draw = spec.get("draw")
    return draw if isinstance(draw, int) and not isinstance(draw, bool) and draw > 0 else None


def run(root: Path) -> int:
    """Grade the submission in `root`/submission into `root`/results/results.json. Always writes
    a results.json a student can read (a missing notebook or a grader failure included)."""
    from .notebook import SubmissionError, read_capped
    from .pipeline import GradeOptions, grade_to_folder
    from .sandbox import sandbox_problem

    t0 = time.monotonic()
    results = root / "results" / "results.json"
    source = root / "source"
    try:
        spec = json.loads((source / SPEC).read_text(encoding="utf-8"))
        course = load_course(source / "course.yml")
        course = dataclasses.replace(course, language=spec.get("language", course.language))   # `--lang` when zipped
        lab = course.lab(spec["lab"])
    except (OSError, ValueError, KeyError, CourseError) as e:
        _write(results, {"score": 0, "output": "the autograder is broken (not your fault): tell your instructor",
                         "tests": []})
        print(f"gradescope: error: the autograder's files: {e}", file=sys.stderr)
        return 2
    notebook, notes = _pick_notebook(root / "submission", lab.id)
    if notebook is None:
        _nothing_graded(results, lab.checks, f"no notebook in your submission: upload {lab.id}.ipynb (the file "
                                             f"hand-in/{lab.id}.ipynb that the notebook's last cell writes)",
                        f"no .ipynb file was uploaded: upload {lab.id}.ipynb")
        return 0
    problem = sandbox_problem()
    if problem and not spec.get("unsafe_no_sandbox"):
        # unsandboxed, the notebook runs as root beside the solution and the results file: refuse
        why = "the autograder could not isolate your notebook, so it did not run it (not your fault; tell your instructor)"
        _nothing_graded(results, lab.checks | lab.written, "not graded: " + why, why)
        print(f"gradescope: error: {problem}: nothing graded (`course gradescope --unsafe-no-sandbox` grades without it)",
              file=sys.stderr)
        return 3
    sandboxed = not problem
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        submissions = Path(tmp, "submissions", "student")
        submissions.mkdir(parents=True)
        try:
            (submissions / f"{lab.id}.ipynb").write_bytes(read_capped(notebook))   # a regular file, capped
        except SubmissionError as e:
            (submissions / f"{lab.id}.ipynb").write_bytes(b"")
            notes.append(str(e))
        options = GradeOptions([lab.id], jobs=1, sandboxed=sandboxed, gradebook=False, reports=False, device="auto",
                               draw=_draw(spec))
        graded = grade_to_folder(submissions.parent, course, Path(tmp, "out"), options)
    result = graded.results[0]
    doc = results_json(result, spec, course.hidden_visibility, notes, sandboxed)
    doc["execution_time"] = round(time.monotonic() - t0, 1)
    _write(results, doc)
    for w in graded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{lab.id}: {result.score:g}/{result.max_score:g} in {doc['execution_time']} s"
          f"{'' if sandboxed else ' (no sandbox: ' + sandbox_problem() + ')'}")
    return 3 if result.grader_error else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="grade /autograder/submission into /autograder/results/results.json")
    r.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    sub.add_parser("check", help="setup.sh's last step: the course loads and a sandbox can (or cannot) be made")
    args = p.parse_args(argv)
    if args.command == "check":
        from .sandbox import sandbox_problem
        course = load_course(Path(__file__).resolve().parent.parent / "course.yml")
        print(f"{course.title}: {len(course.labs)} lab(s); sandbox: {sandbox_problem() or 'available'}")
        return 0
    return run(Path(args.root))


if __name__ == "__main__":
    sys.exit(main())
