"""One contract for every lab of course.yml, in-process and fast: the check cells of the source
notebook, run on the reference implementation as a student's notebook would hold it.

- the reference passes every check, run here (the public checks, as a student runs them) and
  probed and judged (autograder.witness, as the grader runs them), with the check in this
  process and in a check process of its own (autograder.live, as the fork engine probes);
- an answer that is not written yet (every exercise raising NotImplementedError) reads as
  "not answered" on both sides;
- each planted bug (tests/planted) fails each check it declares with the same message in the
  notebook and from the judge: what a student sees is what the grader decides. (Numbers drawn
  at random may differ: a check starts from the notebook's random state in the notebook, from a
  fixed one when graded.)

Checks whose arguments come from the notebook's training cells (`model`, `history`) are graded
end to end, through real notebooks, in tests/test_grading.py; the `gpu` checks in test_gpu.py.
"""
from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import textwrap
import types
from functools import lru_cache

import nbformat
import pytest

from autograder import live, witness
from autograder.config import load_course
from tests.conftest import ROOT
from tests.planted import all_bugs

COURSE = load_course(ROOT / "course.yml")
LABS = [lab.id for lab in COURSE.labs]


@lru_cache(maxsize=None)
def check_cells(lab: str) -> tuple[tuple[str, str], ...]:
    """(check name, source) of every graded cell of the lab's source notebook."""
    nb = nbformat.read(COURSE.solution_path(lab), as_version=4)
    return tuple((c.metadata["nbgrader"]["grade_id"].removeprefix("check_"), c.source) for c in nb.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
                 and not c.metadata["nbgrader"].get("solution"))


def notebook(lab: str, edit: tuple[str, str] | None = None) -> dict:
    """The reference module of `lab` executed as one namespace, as a notebook holds it; `edit`
    (old, new) replaces a function's source first (a planted bug)."""
    module = importlib.import_module(f"reference.{lab}")
    source = inspect.getsource(module)
    if edit:
        assert source.count(edit[0]) == 1, edit[0][:60]
        source = source.replace(*edit)
    fake = types.ModuleType(f"notebook_{lab}")
    fake.__file__ = module.__file__
    sys.modules[fake.__name__] = fake           # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), fake.__dict__)
    return fake.__dict__


def runnable(lab: str, namespace: dict) -> list[tuple[str, str]]:
    """The check cells whose arguments the namespace holds (not the trained `model` of a notebook)."""
    out = []
    for name, source in check_cells(lab):
        if name == "gpu":
            continue                  # the device record of a training run (tests/test_gpu.py)
        calls = witness.check_calls(source)
        texts = [t for _, args, kwargs in calls for k, t in [*args, *((k, t) for _, k, t in kwargs)] if k == "student"]
        try:
            for text in texts:
                eval(compile(text, "<arg>", "eval"), {**namespace})
        except NameError:
            continue
        except Exception:  # noqa: BLE001 — evaluating it raised something else: still a check to run
            pass
        out.append((name, source))
    return out


def in_process(lab: str, source: str, namespace: dict) -> str:
    checks = importlib.import_module(f"autograder.checks.{lab}")
    try:
        exec(compile(source, "<check cell>", "exec"), {**namespace, "checks": checks})
    except NotImplementedError:
        return "not answered"
    except AssertionError as e:
        return str(e)
    return "pass"


@pytest.fixture(scope="module")
def checks_process():
    """A check process (autograder.live) for the probes of this module."""
    sock = live.spawn_check_process()
    yield sock
    sock.close()


def judged(lab: str, source: str, namespace: dict, checks_process=None) -> str:
    """The judge's verdict on a probe of the cell: in this process, or with `checks_process`
    (a socket) in the check process."""
    if checks_process is None:
        header, blob = witness.probe_cell(lab, source, namespace)
    else:
        header, blob = live.probe_cell(lab, source, namespace, checks_process)
    try:
        witness.judge_cell(lab, source, json.loads(json.dumps(header)), blob)
    except NotImplementedError:
        return "not answered"
    except AssertionError as e:
        return str(e)
    return "pass"


@pytest.mark.parametrize("lab", LABS)
def test_the_reference_passes_here_and_before_the_judge(lab, checks_process):
    namespace = notebook(lab)
    cells = runnable(lab, namespace)
    assert cells or lab == "capstone", f"no check of {lab} runs on the reference alone"
    for name, source in cells:
        assert in_process(lab, source, namespace) == "pass", name
        assert judged(lab, source, namespace) == "pass", name
        assert judged(lab, source, namespace, checks_process) == "pass", name


def _unanswered(namespace: dict, lab: str) -> dict:
    """Every exercise of the lab replaced by the exercise notebook's stub."""
    module = importlib.import_module(f"reference.{lab}")
    out = dict(namespace)
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__ or name.startswith("_"):
            continue
        if inspect.isclass(value):
            def __init__(self, *args, **kwargs):
                raise NotImplementedError()
            out[name] = type(name, (), {"__init__": __init__})
        elif inspect.isfunction(value):
            def stub(*args, **kwargs):
                raise NotImplementedError()
            out[name] = stub
    return out


@pytest.mark.parametrize("lab", LABS)
def test_an_unwritten_answer_is_not_answered_on_both_sides(lab, checks_process):
    namespace = _unanswered(notebook(lab), lab)
    for name, source in runnable(lab, namespace):
        here = in_process(lab, source, namespace)
        assert here == judged(lab, source, namespace), name
        assert here == judged(lab, source, namespace, checks_process), name
        assert here != "pass", name


def _words(message: str) -> str:
    """A message with its numbers masked."""
    return re.sub(r"-?\d[\d,]*(\.\d+)?(e[-+]?\d+)?", "#", message)


PLANTED = [(lab, b) for lab, bugs in sorted(all_bugs().items()) for b in bugs]


@pytest.mark.parametrize("lab, bug", PLANTED, ids=[f"{lab}:{b.name}" for lab, b in PLANTED])
def test_a_planted_bug_reads_the_same_in_the_notebook_and_from_the_judge(lab, bug, checks_process):
    module = importlib.import_module(f"reference.{lab}")
    target = getattr(module, bug.cell, None)
    if target is None:
        pytest.skip(f"{bug.cell} is a notebook cell, not a reference function")
    original = textwrap.dedent(inspect.getsource(target))
    if original not in inspect.getsource(module) or original.count(bug.old) != 1:
        pytest.skip(f"bug {bug.name} edits the notebook's cell, not the reference's text")
    namespace = notebook(lab, (original, bug.apply(original)))
    cells = dict(runnable(lab, namespace))
    checked = 0
    for name in sorted(bug.fails & set(cells)):
        here = in_process(lab, cells[name], namespace)
        assert here not in ("pass", "not answered"), name
        assert _words(judged(lab, cells[name], namespace)) == _words(here), name
        assert _words(judged(lab, cells[name], namespace, checks_process)) == _words(here), name
        checked += 1
    if not checked:
        pytest.skip(f"bug {bug.name} fails only checks of the trained model (tests/test_grading.py)")
