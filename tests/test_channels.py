"""How notebooks reach the grader: a Gradescope autograder run as Gradescope runs it, and a GitHub
Classroom template whose workflow commands run here, on real notebooks."""
from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.build import dumps
from autograder.gradescope import SPEC, write_zip
from autograder.release import CLASSROOM_WORKFLOW, hidden_checks
from tests.planted import all_bugs, plant
from tests.test_config import run_cli

LAB = "losses"          # quick to grade, and its checks have hidden tests
BUG = "softmax-no-max-subtraction"


def notebooks(course) -> dict[str, str]:
    solution = nbformat.read(course.solution_path(LAB), as_version=4)
    bug = next(b for b in all_bugs()[LAB] if b.name == BUG)
    return {"solution": dumps(solution), "blank": course.exercise_path(LAB).read_text(),
            "bug": dumps(plant(solution, bug))}


# ---------------------------------------------------------------- Gradescope
@pytest.fixture(scope="module")
def autograder_zip(course, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gradescope") / f"{LAB}.zip"
    write_zip(course, LAB, out, leaderboard=True)
    return out


def run_autograder(zip_path: Path, root: Path, submission: dict[str, str],
                   path_first: Path | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Gradescope's steps: the zip unpacked into /autograder/source, the upload in
    /autograder/submission, `run_autograder` run; here /autograder is `root`."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
        for info in z.infolist():                    # zipfile does not restore modes: Gradescope does
            if info.external_attr >> 16 & stat.S_IXUSR:
                (root / "source" / info.filename).chmod(0o755)
    (root / "submission").mkdir(parents=True, exist_ok=True)
    for name, text in submission.items():
        (root / "submission" / name).write_text(text)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_PYTHON": sys.executable}
    if path_first:                                   # programs found there first (a stand-in bwrap)
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    proc = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=600, cwd="/")
    return proc, json.loads((root / "results" / "results.json").read_text())


def test_gradescope_zip_holds_the_grader_for_one_lab_and_no_student_file(course, autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        spec = json.loads(z.read(SPEC))
    assert {"setup.sh", "run_autograder", "course.yml", "pyproject.toml", "autograder/grade.py",
            f"solutions/{LAB}/{LAB}.ipynb", f"reference/{LAB}.py"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    other = {lab.id for lab in course.labs} - {LAB}
    assert not [n for n in names if n.startswith(("solutions/", "exercises/")) and n.split("/")[1] in other]
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "examples/", ".venv/"))]
    draw = spec.pop("draw")              # the zip's own draw of the checks' random cases
    assert isinstance(draw, int) and 0 < draw < 2**31
    assert spec == {"lab": LAB, "hidden": hidden_checks(course, course.lab(LAB)), "leaderboard": True,
                    "unsafe_no_sandbox": False, "language": course.language}
    assert spec["hidden"], "the test wants a lab whose checks have hidden tests"


def _graded_as(course, doc: dict, expected_lost: set[str], tmp_path: Path) -> dict:
    """Asserts that results.json lost exactly `expected_lost`, shows each check as course.yml
    says, and names no server path; returns its tests by name."""
    lab = course.lab(LAB)
    hidden = set(hidden_checks(course, lab))
    tests = {t["name"]: t for t in doc["tests"]}
    assert list(tests) == list(lab.checks) + list(lab.written)       # a written answer: a person grades it
    lost = {name for name, t in tests.items() if t.get("status") == "failed"}
    assert lost == expected_lost, {n: tests[n]["output"] for n in lost}
    assert doc["score"] == sum(lab.checks.values()) - sum(lab.checks[n] for n in expected_lost)
    for name, t in tests.items():
        assert t["max_score"] == (lab.checks | lab.written)[name]
        assert t["visibility"] == (course.hidden_visibility if name in hidden else "visible")
        if name in lab.written:
            assert "status" not in t and t["score"] == 0
        else:
            assert (t["output"] == "passed") == (name not in expected_lost)
    assert doc["execution_time"] > 0 and "graded without the sandbox" not in doc["output"]
    assert str(tmp_path) not in json.dumps(doc)            # no server path reaches the student
    return tests


def test_gradescope_run_grades_a_planted_bug_exactly(course, autograder_zip, tmp_path):
    """The planted bug loses its check and every other check passes (the solution's full marks
    are test_grading's; a blank notebook: the forged one of the next test)."""
    proc, doc = run_autograder(autograder_zip, tmp_path / "bug", {f"{LAB}.ipynb": notebooks(course)["bug"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    tests = _graded_as(course, doc, {"softmax"}, tmp_path)
    assert "expected" in tests["softmax"]["output"] and len(tests["softmax"]["output"].splitlines()) <= 2


def test_gradescope_run_survives_what_students_upload(course, autograder_zip, tmp_path):
    """Nothing to grade, a renamed notebook among others, and a blank notebook that writes full
    marks into results.json: each gets an honest results.json (the blank one: every check lost)."""
    lab = course.lab(LAB)
    _, doc = run_autograder(autograder_zip, tmp_path / "none", {"notes.txt": "hello"})
    assert doc["score"] == 0 and f"upload {LAB}.ipynb" in doc["output"]
    assert [t["status"] for t in doc["tests"]] == ["failed"] * len(lab.checks)

    forged = nbformat.read(course.exercise_path(LAB), as_version=4)
    results = tmp_path / "forge" / "results" / "results.json"
    forged.cells.insert(3, nbformat.v4.new_code_cell(
        "import json, pathlib\n"
        f"for path in [{str(results)!r}, '/autograder/results/results.json']:\n"
        "    try:\n"
        "        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)\n"
        "        pathlib.Path(path).write_text(json.dumps({'score': 999, 'tests': []}))\n"
        "    except OSError:\n"
        "        pass\n"))
    linked = tmp_path / "linked"                 # a link to the course's own solution is not graded
    (linked / "submission").mkdir(parents=True)
    (linked / "submission" / f"{LAB}.ipynb").symlink_to(linked / "source" / "solutions" / LAB / f"{LAB}.ipynb")
    (linked / "submission" / "dir").symlink_to(linked / "source" / "solutions" / LAB)
    _, doc = run_autograder(autograder_zip, linked, {})
    assert doc["score"] == 0 and f"upload {LAB}.ipynb" in doc["output"]

    proc, doc = run_autograder(autograder_zip, tmp_path / "forge",
                               {f"{LAB} (2).ipynb": dumps(forged), "scratch.ipynb": course.exercise_path(LAB).read_text()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    _graded_as(course, doc, set(lab.checks), tmp_path)
    assert f"graded {LAB} (2).ipynb; also uploaded, not graded: scratch.ipynb" in doc["output"]


def test_gradescope_without_a_sandbox_grades_nothing(course, autograder_zip, tmp_path):
    """Red team: where the container cannot start bubblewrap, an unsandboxed notebook runs as
    root beside the solution (`import reference`) and results.json, and a blank one gave itself
    9/9. Now nothing runs: 0 and one line saying why, unless the zip was made --unsafe-no-sandbox."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    proc, doc = run_autograder(autograder_zip, tmp_path / "autograder",
                               {f"{LAB}.ipynb": course.solution_path(LAB).read_text()}, path_first=fake)
    assert proc.returncode == 3 and "nothing graded" in proc.stderr
    assert doc["score"] == 0 and "could not isolate your notebook" in doc["output"]
    assert {t["status"] for t in doc["tests"]} == {"failed"} and len(doc["tests"]) == len(course.lab(LAB).checks) + len(course.lab(LAB).written)


def test_cli_gradescope(tmp_path):
    proc = run_cli("gradescope", LAB, str(tmp_path / "a.zip"))
    assert proc.returncode == 0 and zipfile.is_zipfile(tmp_path / "a.zip") and "Configure Autograder" in proc.stderr
    for args, expected in ((["gradescope", "nosuch", str(tmp_path / "b.zip")], "unknown lab 'nosuch'"),
                           (["gradescope", LAB, str(tmp_path / "b.tar")], "is a .zip file")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- GitHub Classroom
@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("classroom") / "template"
    proc = run_cli("classroom", LAB, str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def workflow_steps(template: Path) -> list[dict]:
    doc = yaml.safe_load((template / CLASSROOM_WORKFLOW).read_text())
    return doc["jobs"]["run-autograding-tests"]["steps"]


def test_classroom_template_layout_and_workflow(course, template):
    lab = course.lab(LAB)
    assert (template / f"{LAB}.ipynb").read_bytes() == course.exercise_path(LAB).read_bytes()
    assert (template / "autograder" / "checks" / f"{LAB}.py").is_file() and (template / "pyproject.toml").is_file()
    assert not (template / "exercises").exists() and "hand-in/" in (template / ".gitignore").read_text()
    steps = workflow_steps(template)
    graders = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-command-grader@")]
    assert [(s["id"], s["with"]["max-score"]) for s in graders] == list(lab.checks.items())
    reporter = steps[-1]
    assert reporter["uses"].startswith("classroom-resources/autograding-grading-reporter@")
    assert reporter["with"]["runners"].split(",") == list(lab.checks)
    assert reporter["env"] == {f"{n.upper()}_RESULTS": f"${{{{steps.{n}.outputs.result}}}}" for n in lab.checks}
    readme = (template / "README.md").read_text()
    assert "Commit the notebook and push" in readme and "Gradescope" not in readme


def run_workflow(template: Path, notebook: str, tmp_path: Path) -> dict[str, tuple[int, str]]:
    """The workflow's own commands, run here in a copy of the template holding `notebook` (the
    install step is this venv): {check: (exit code, its line)} of the command-grader steps."""
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(template), str(repo)], check=True)
    (repo / f"{LAB}.ipynb").write_text(notebook)
    steps = workflow_steps(repo)
    python = lambda command: [sys.executable, *shlex.split(command)[1:]]   # `python ...` is this interpreter
    run = next(s["run"] for s in steps if s.get("name") == "Run the notebook")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(python(run), cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    outcomes = {}
    for step in steps:
        if step.get("uses", "").startswith("classroom-resources/autograding-command-grader@"):
            proc = subprocess.run(python(step["with"]["command"]), cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=60)
            outcomes[step["id"]] = (proc.returncode, proc.stdout.strip())
    return outcomes


@pytest.mark.parametrize("who", ["solution", "blank"])
def test_classroom_workflow_commands_give_the_public_points(course, template, tmp_path, who):
    lab = course.lab(LAB)
    outcomes = run_workflow(template, notebooks(course)[who], tmp_path)
    assert set(outcomes) == set(lab.checks)
    earned = sum(lab.checks[name] for name, (code, _) in outcomes.items() if code == 0)
    assert earned == (sum(lab.checks.values()) if who == "solution" else 0), outcomes   # written answers: by hand
    for name, (code, line) in outcomes.items():
        assert line.startswith(f"{name}: ") and len(line.splitlines()) == 1
        if who == "blank":
            assert code == 1 and "NotImplementedError" in line


def test_grade_reads_cloned_classroom_repositories(course, tmp_path):
    """`gh classroom clone student-repos` makes <assignment>-submissions/<assignment>-<login>/:
    the login is the student; the notebook is at the top of each repository."""
    from autograder.grade import find_submissions
    root = tmp_path / f"{LAB}-lab-submissions"
    for login in ("alice", "bob-smith"):
        repo = root / f"{LAB}-lab-{login}"
        (repo / ".git").mkdir(parents=True)
        (repo / f"{LAB}.ipynb").write_text(course.exercise_path(LAB).read_text())
        (repo / "autograder").mkdir()
    found, warnings = find_submissions(root, course, [LAB])
    assert [(s, lab.id, p.relative_to(root).as_posix()) for s, lab, p in found] == [
        ("alice", LAB, f"{LAB}-lab-alice/{LAB}.ipynb"), ("bob-smith", LAB, f"{LAB}-lab-bob-smith/{LAB}.ipynb")]
    assert warnings == []


def test_cloned_repositories_keep_their_logins_and_cannot_set_their_own_time(course, tmp_path, monkeypatch):
    """Red team: a clone's id changed with the set of clones graded together; a committed
    timestamp.txt dodged the late policy, and one linked to /proc/self/environ put the grader's
    environment into the student's feedback."""
    from autograder.grade import find_submissions, submission_facts
    from autograder.results import CheckResult, Result

    root = tmp_path / f"{LAB}-lab-submissions"
    for name in (f"{LAB}-lab-alice", f"{LAB}-lab-bob", "bob"):
        (root / name).mkdir(parents=True)
        (root / name / f"{LAB}.ipynb").write_text(course.exercise_path(LAB).read_text())
    (root / f"{LAB}-lab-alice" / ".git").mkdir()
    (root / f"{LAB}-lab-bob" / ".git").mkdir()
    found, _ = find_submissions(root, course, [LAB])
    assert sorted(s for s, _, _ in found) == ["alice", "bob", f"{LAB}-lab-bob"]   # a lone clone's login; no two "bob"

    monkeypatch.setenv("GRADER_SECRET", "s3cret-token")
    trudy = root / f"{LAB}-lab-trudy"
    (trudy / ".git").mkdir(parents=True)
    (trudy / LAB).mkdir()
    notebook = trudy / LAB / f"{LAB}.ipynb"
    notebook.write_text(course.exercise_path(LAB).read_text())
    stamp = trudy / LAB / "timestamp.txt"
    for content in ("link", "2025-01-01 12:00:00"):
        stamp.unlink(missing_ok=True)
        if content == "link":
            stamp.symlink_to("/proc/self/environ")
        else:
            stamp.write_text(content)
        result = submission_facts(Result("trudy", LAB, str(notebook), [CheckResult("x", 1, 1)]), notebook, course)
        assert result.submitted_at == "" and "s3cret" not in json.dumps(result.to_dict())
        assert any("when it was submitted is unknown" in n for n in result.notes)

    # the link outside a clone too (nbgrader's submitted/<student>/<lab>/ layout): never read
    (trudy / ".git").rmdir()
    stamp.unlink()
    stamp.symlink_to("/proc/self/environ")
    result = submission_facts(Result("trudy", LAB, str(notebook), [CheckResult("x", 1, 1)]), notebook, course)
    assert result.submitted_at == "" and "s3cret" not in json.dumps(result.to_dict())
    assert any("not a small plain file" in n for n in result.notes)
