"""Broken and hostile submissions, each a real notebook graded through `course grade` in one class:
every one gets a result with a clear message, loses only what it broke, and never stops the rest."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

from autograder.build import dumps
from tests.conftest import course_cli

LAB = "backprop"
TARGET = "sigmoid_grad"      # an answer cell and the check aimed at it
CELL_TIMEOUT = 8
MEMORY_MB = 1500


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _edit(nb, grade_id, fn):
    nb = copy.deepcopy(nb)
    fn(_cell(nb, grade_id))
    return nb


def _drop(nb, grade_id):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def _prepend(code):
    return lambda cell: setattr(cell, "source", code + "\n" + cell.source)


def _checks_after(nb, grade_id):
    """Checks whose test cells come after cell `grade_id` in the notebook."""
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    return {i.removeprefix("check_") for i in ids[ids.index(grade_id) + 1:] if i and i.startswith("check_")}


@pytest.fixture(scope="module")
def source(course):
    return nbformat.read(course.solution_path(LAB), as_version=4)


@pytest.fixture(scope="module")
def graded(course, source, tmp_path_factory):
    blank = nbformat.read(course.exercise_path(LAB), as_version=4)
    solution = source
    notebooks = {
        "invalid-json": '{"cells": [ not json',
        "empty": "",
        "not-utf8": b"\xff\xfe\x00binary",
        "not-a-notebook": json.dumps({"hello": "world"}),
        "raises": _edit(solution, TARGET, _prepend("raise ValueError('oops')")),
        "loops": _edit(solution, TARGET, _prepend("while True:\n    pass")),
        "loops-ignoring-sigint": _edit(solution, TARGET, _prepend(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")),
        "kernel-exit": _edit(solution, TARGET, _prepend("import os\nos._exit(1)")),
        "segfault": _edit(solution, TARGET, _prepend("import ctypes\nctypes.string_at(0)")),
        "deleted-answer": _drop(solution, TARGET),
        "deleted-test": _drop(solution, f"check_{TARGET}"),
        "edited-test": _edit(blank, f"check_{TARGET}", lambda c: setattr(c, "source", "pass")),
        "edited-points": _edit(_edit(blank, f"check_{TARGET}", lambda c: c.metadata.nbgrader.update(points=999)),
                               f"check_{TARGET}", lambda c: setattr(c, "source", "pass")),
        "stderr-noise": _edit(solution, TARGET, _prepend(
            "import sys, warnings\nwarnings.warn('deprecated', UserWarning)\nprint('noise', file=sys.stderr)")),
        "extra-cell": _insert_helper(solution),
        "megabyte-output": _edit(solution, TARGET, _prepend("for _ in range(20):\n    print('x' * 2**20)")),
        "v3-format": nbformat.writes(copy.deepcopy(solution), version=3),
        "solution": solution,
        "recorded-answers": _edit(solution, "rel_error", lambda c: setattr(c, "source", _recorded_rel_error(solution))),
        "duplicated-answer": _duplicate(solution, f"def {TARGET}(*args, **kwargs):\n    raise ValueError('the second copy')"),
        "v3-broken": json.dumps({"nbformat": 3, "nbformat_minor": 5, "metadata": {},     # no v3.5 exists
                                 "worksheets": [{"cells": [{"cell_type": "markdown", "metadata": {}, "source": "hi"}]}]}),
        # a lone surrogate ("\ud800": JSON and Python's str allow one, UTF-8 does not) in a cell's
        # source, in what a cell prints and in a message stopped the reports of the whole class
        "surrogates": dumps(_insert_cell(_edit(solution, TARGET, _prepend("# LONE")), 'print("\\ud800")'))
        .replace("LONE", "\\ud800"),
        "surrogate-error": _edit(solution, TARGET, _prepend('raise ValueError("\\ud800")')),
    }
    return _grade_class(notebooks, tmp_path_factory, CELL_TIMEOUT)


def _grade_class(notebooks, tmp_path_factory, cell_timeout, out=None):
    """Grade one student per notebook (`course grade`, two jobs) into `out` (a new folder by
    default): ({student: result of every student graded there}, process)."""
    root = tmp_path_factory.mktemp("faults")
    for student, content in notebooks.items():
        path = root / student / f"{LAB}.ipynb"
        path.parent.mkdir()
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else dumps(content))
    out = out or tmp_path_factory.mktemp("out")
    before = {p.parent.name for p in (out / "results").glob(f"*/{LAB}.json")}
    proc = course_cli(["grade", str(root), "--out", str(out), "--jobs", "2", "--cell-timeout", str(cell_timeout),
                    "--memory-mb", str(MEMORY_MB)])
    assert proc.returncode == 0, proc.stderr
    results = {p.parent.name: json.loads(p.read_text()) for p in (out / "results").glob(f"*/{LAB}.json")}
    assert set(results) - before == set(notebooks)
    return results, proc


def _target(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == TARGET)


def _duplicate(nb, code):
    """A copy of the answer cell TARGET, metadata and all, holding `code`, right after it."""
    nb = copy.deepcopy(nb)
    i = _target(nb)
    twin = copy.deepcopy(nb.cells[i])
    twin.id, twin.source = "twin", code
    nb.cells.insert(i + 1, twin)
    return nb


def _insert_cell(nb, code):
    """The student adds a code cell of their own before the answer cell TARGET."""
    nb = copy.deepcopy(nb)
    nb.cells.insert(_target(nb), nbformat.v4.new_code_cell(code))
    return nb


def _insert_helper(nb):
    """The student adds a cell of their own, and their answer uses it."""
    nb = _insert_cell(nb, "def my_helper(s):\n    return s * (1 - s)")
    cell = nb.cells[_target(nb)]
    cell.source = cell.source + f"\n\n_original = {TARGET}\ndef {TARGET}(x):\n    return _original(x) + 0 * my_helper(0.5)"
    return nb


# how a table of recorded answers is keyed: the arguments' values (the notebook and this test)
_KEY = ("def _key(a, b):\n    import torch\n"
        "    return tuple((tuple(torch.as_tensor(v).shape), torch.as_tensor(v, dtype=torch.float64).numpy().tobytes().hex())"
        " for v in (a, b))\n")


def _recorded_rel_error(solution, draw: int = 0) -> str:
    """The red team's attack: an answer cell holding the answers to every case rel_error's check
    cell gives (the check's code ships with the notebooks), recorded from the reference (under
    `draw`: as a check process of a grading run with that draw gives them); anything else is
    answered 0.5."""
    from reference.backprop import rel_error
    from tests.judging import check_process, in_process, judged
    scope: dict = {}
    exec(_KEY, scope)
    table = {}

    def recording(a, b):
        table[scope["_key"](a, b)] = rel_error(a, b)
        return table[scope["_key"](a, b)]
    source = _cell(solution, "check_rel_error").source
    if draw:
        assert judged(LAB, source, {"rel_error": recording}, check_process(draw), draw) == "pass"
    else:
        assert in_process(LAB, source, {"rel_error": recording}) == "pass"
    return f"{_KEY}_TABLE = {table!r}\n\ndef rel_error(a, b):\n    return _TABLE.get(_key(a, b), 0.5)\n"


def _by_name(result):
    return {c["name"]: c for c in result["checks"]}


def _lost(result):
    return {c["name"] for c in result["checks"] if c["points"] != c["max_points"] and not c.get("pending")}


@pytest.mark.parametrize("student, message", [
    ("invalid-json", "not graded: not a notebook: invalid JSON at line 1"),
    ("empty", "not graded: the file is empty"),
    ("not-utf8", "not graded: not a notebook: not UTF-8 text"),
    ("not-a-notebook", "not graded: not a notebook: JSON without notebook cells"),
    ("v3-broken", "not graded: not a valid notebook: a notebook of format 3 that cannot be converted to format 4"),
])
def test_unreadable_files_score_zero_with_a_message(graded, student, message):
    result = graded[0][student]
    assert result["score"] == 0 and result["max_score"] > 0
    assert all(c["message"].startswith(message) for c in result["checks"]), result["checks"][0]["message"]


@pytest.mark.parametrize("student, context", [
    ("raises", "ValueError: oops"),
    ("loops", "timed out"),
])
def test_a_failing_answer_loses_only_its_check(graded, student, context):
    result = graded[0][student]
    assert _lost(result) == {TARGET}
    message = _by_name(result)[TARGET]["message"]
    assert f"name '{TARGET}' is not defined" in message and context in message


def test_a_kernel_that_dies_or_ignores_interrupts_loses_the_rest(graded, source):
    after = _checks_after(source, TARGET) | {TARGET}
    died, crashed, stuck = (graded[0][s] for s in ("kernel-exit", "segfault", "loops-ignoring-sigint"))
    assert _lost(died) == _lost(crashed) == _lost(stuck) == after
    assert "not run: the kernel died" in _by_name(died)[TARGET]["message"]
    assert "not run: the kernel died" in _by_name(crashed)[TARGET]["message"]
    assert "not run: the kernel stopped answering" in _by_name(stuck)[TARGET]["message"]


def test_a_memory_bomb_is_stopped(source, tmp_path_factory):
    # graded on its own with a cell limit it cannot reach first: on a loaded machine allocating
    # 1500 MB can take longer than the class's 8 s, and then the time limit (rightly) stops it
    bomb = _edit(source, TARGET, _prepend("chunks = []\nwhile True:\n    chunks.append(b'x' * (50 * 2**20))"))
    results, _ = _grade_class({"memory-bomb": bomb}, tmp_path_factory, cell_timeout=120)
    result = results["memory-bomb"]
    assert _lost(result) == _checks_after(source, TARGET) | {TARGET}
    assert "the notebook used more than 1500 MB of memory" in _by_name(result)[TARGET]["message"]


def test_a_megabyte_of_output_costs_nothing(graded):
    assert graded[0]["megabyte-output"]["score"] == graded[0]["megabyte-output"]["max_score"] - graded[0]["megabyte-output"]["pending_points"]


def test_deleted_answer_cell(graded):
    result = graded[0]["deleted-answer"]
    assert _lost(result) == {TARGET}
    assert any("was deleted" in n for n in result["notes"])


def test_tests_and_points_are_restored_from_the_source(graded, course):
    assert graded[0]["deleted-test"]["score"] == graded[0]["deleted-test"]["max_score"] - graded[0]["deleted-test"]["pending_points"]
    for student in ("edited-test", "edited-points"):
        result = graded[0][student]
        assert result["score"] == 0 and result["max_score"] == course.lab(LAB).max_points
        assert "not answered yet" in _by_name(result)[TARGET]["message"]


def test_stderr_and_warnings_never_cost_points(graded):
    assert graded[0]["stderr-noise"]["score"] == graded[0]["stderr-noise"]["max_score"] - graded[0]["stderr-noise"]["pending_points"]


def test_cells_the_student_added_are_kept(graded):
    assert graded[0]["extra-cell"]["score"] == graded[0]["extra-cell"]["max_score"] - graded[0]["extra-cell"]["pending_points"]


def test_an_old_format_notebook_is_graded(graded):
    result = graded[0]["v3-format"]   # the solution saved as nbformat 3: read as v4, full marks
    assert result["score"] == result["max_score"] - result["pending_points"] and not result["grader_error"]


def test_text_utf8_cannot_write_is_replaced_and_every_report_is_written(graded):
    results, proc = graded
    assert _lost(results["surrogates"]) == set()
    assert _lost(results["surrogate-error"]) == {TARGET}
    assert "ValueError: \ufffd" in _by_name(results["surrogate-error"])[TARGET]["message"]
    out = Path(proc.args[proc.args.index("--out") + 1])
    assert "surrogates" in (out / "grades.csv").read_text(encoding="utf-8")
    assert (out / "feedback" / "surrogates" / LAB / f"{LAB}.html").is_file()
    assert "\ufffd" in (out / "autograded" / "surrogates" / LAB / f"{LAB}.ipynb").read_text(encoding="utf-8")


def test_answers_recorded_for_the_checks_own_cases_lose_the_check(graded):
    """Graded, the check's random cases come from the output folder's secret draw, not the ones
    its code gives in a notebook: the recorded answers lose exactly that check (the reference,
    graded in the same run, passes it: the draw is the same in the check process and the judge)."""
    results, _ = graded
    assert _lost(results["recorded-answers"]) == {"rel_error"}
    assert _lost(results["solution"]) == set()


# rel_error reading the draw of its grading run from the notebook's own memory (the job its
# process was forked with) and showing it in the feedback
LEAK = ("def rel_error(a, b):\n    import gc\n    for o in gc.get_objects():\n"
        "        if isinstance(o, dict) and 'draw' in o and 'probe_dir' in o:\n"
        "            raise ValueError(f\"draw={o['draw']}\")\n"
        "    raise ValueError('draw=0')\n")


def test_a_draw_read_while_graded_is_worth_nothing_to_the_next_submission(source, tmp_path_factory):
    """Red team: a notebook read its draw while it was graded and showed it in its feedback; a
    table recorded under that draw, submitted next into the same output folder, passed rel_error
    (the draw was the folder's, the same for every submission). A submission's draw now mixes
    the folder's with the code it runs, so the next submission's cases are others."""
    out = tmp_path_factory.mktemp("out")

    def grade(student, nb):                  # one student, into the folder they all share
        return _grade_class({student: nb}, tmp_path_factory, CELL_TIMEOUT, out)[0][student]

    leaked = _by_name(grade("eve", _edit(source, "rel_error", lambda c: setattr(c, "source", LEAK))))["rel_error"]
    draw = int(re.search(r"draw=(\d+)", leaked["message"]).group(1))
    assert draw > 0, leaked["message"]                   # the notebook did read it
    table = _recorded_rel_error(source, draw)            # passes rel_error under that draw (asserted there)
    cheat = grade("mallory", _edit(source, "rel_error", lambda c: setattr(c, "source", table)))
    assert _lost(cheat) == {"rel_error"}


def test_a_duplicated_answer_cell_is_graded_as_the_student_ran_it(graded):
    """Its later copy redefines the answer in the student's notebook: it was dropped, and the
    grader graded a program the student never ran (red team: a wrong copy after a right one kept
    the points). It now runs after the first, as the student's own code, and a note says so."""
    result = graded[0]["duplicated-answer"]
    assert _lost(result) == {TARGET} and "the second copy" in _by_name(result)[TARGET]["message"]
    assert any(f"cell '{TARGET}' appears 2 times" in n for n in result["notes"])


def test_the_class_report_lists_everyone(graded):
    results, proc = graded
    for student in results:
        assert student in proc.stdout


def test_memory_is_counted_in_proportional_sizes_and_read_cheaply():
    """The memory poll reads /proc/<pid>/status (microseconds) and smaps_rollup (tens of ms for a
    process that imported torch) only where the resident size, which bounds the proportional
    one, passes the limit: a fork sharing this process's pages counts half of them, as before."""
    import os
    import signal
    import time

    import torch  # noqa: F401  (pages worth sharing)

    from autograder import forked
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        time.sleep(60)
        os._exit(0)
    try:
        time.sleep(0.2)
        resident, proportional = forked._resident_mb(pid), forked._memory_mb(pid)
        assert proportional < 0.7 * resident, (proportional, resident)     # pages shared with this process
        reads = []
        exact = forked._memory_mb
        forked._memory_mb = lambda p: reads.append(p) or exact(p)
        try:
            assert not forked.over_memory(pid, False, resident * 2) and reads == []          # the bound settles it
            assert not forked.over_memory(pid, False, (resident + proportional) / 2) and reads == [pid]
            assert forked.over_memory(pid, False, proportional / 2)
        finally:
            forked._memory_mb = exact
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_file_that_is_not_a_notebook_never_waits_for_a_worker(course, fresh_workers, tmp_path, monkeypatch):
    """Unreadable files are answered from the file alone: with no worker that could start, they
    still get their one-line "not graded" result, and no grader error."""
    from autograder import grade, sandbox

    def no_worker(self, *args, **kwargs):
        raise OSError("no worker starts on this machine")
    monkeypatch.setattr(sandbox.Worker, "launch", no_worker)      # (grading starts it again when needed)
    monkeypatch.setattr(sandbox.Worker, "start", no_worker)
    for student, content in (("ann", '{"cells": [ not json'), ("bob", "")):
        (tmp_path / student).mkdir()
        (tmp_path / student / f"{LAB}.ipynb").write_text(content)
    results, _ = grade.grade_class(tmp_path, course, [LAB], jobs=1)
    assert [(r.student, r.grader_error) for r in results] == [("ann", ""), ("bob", "")]
    assert all(c.message.startswith("not graded: ") for r in results for c in r.checks)
