"""One contract for every lab of course.yml, in-process and fast: the check cells of the source
notebook, run on the reference implementation as a student's notebook would hold it.

- a lab's checks are course.yml's; the reference passes every check, leaving the notebook's
  random state alone, run here (the public checks, as a student runs them) and probed and
  judged as the grader does: the check in a check process of its own (autograder.live), the
  verdict from the record (autograder.witness);
- an answer that is not written yet (every exercise raising NotImplementedError) reads as
  "not answered" on both sides;
- each planted bug (tests/planted) fails each check it declares, and no other, with the same
  message in the notebook and from the judge: what a student sees is what the grader decides.
  (Numbers drawn at random may differ: a check starts from the notebook's random state in the
  notebook, from a fixed one when graded.)

Checks whose arguments come from the notebook's training cells (`model`, `history`) are graded
end to end, through real notebooks, in tests/test_grading.py; the `gpu` checks in test_gpu.py.
"""
from __future__ import annotations

import importlib
import inspect
import random
import re
import sys
import textwrap
import types
from functools import lru_cache

import nbformat
import numpy as np
import pytest
import torch

from autograder import witness
from autograder.config import load_course
from tests.conftest import ROOT
from tests.judging import check_process, in_process, judged, masked
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


@pytest.fixture(scope="module")
def checks_process():
    """The tests' check process (autograder.live), for the probes of this module."""
    return check_process()


@pytest.mark.parametrize("lab", LABS)
def test_the_reference_passes_here_and_before_the_judge(lab, checks_process):
    namespace = notebook(lab)
    cells = runnable(lab, namespace)
    assert cells or lab == "capstone", f"no check of {lab} runs on the reference alone"
    for name, source in cells:
        _seeded()
        arguments_drawn = _after_the_arguments(source, namespace)   # MLP() in the cell draws its weights
        _seeded()
        assert in_process(lab, source, namespace) == "pass", name
        assert _same_random_state(arguments_drawn, witness._rng_state()), f"{name} changed the notebook's random state"
        assert judged(lab, source, namespace, checks_process) == "pass", name


def _seeded() -> tuple:
    """The random generators seeded as a notebook's first cell does: their state."""
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    return witness._rng_state()


def _after_the_arguments(source: str, namespace: dict) -> tuple:
    """The generators' state after the check cell's arguments alone are evaluated, in order."""
    for _, args, kwargs in witness.check_calls(source):
        for text in [t for _, t in args] + [t for _, _, t in kwargs]:
            eval(compile(text, "<arg>", "eval"), {**namespace})
    return witness._rng_state()


def _same_random_state(a: tuple, b: tuple) -> bool:
    """torch's, numpy's and Python's global generators are where they were."""
    return (torch.equal(a[0], b[0]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))
            and a[2] == b[2])


@pytest.mark.parametrize("lab", LABS)
def test_a_labs_checks_are_course_ymls(lab):
    """The public functions of autograder/checks/<lab>.py are exactly course.yml's checks."""
    module = importlib.import_module(f"autograder.checks.{lab}")
    assert sorted(module.__all__) == sorted(COURSE.lab(lab).checks)
    assert all(callable(getattr(module, name)) for name in module.__all__)


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
            out[name] = type(name, (value,), {"__init__": __init__})   # its base and class attributes kept
        elif inspect.isfunction(value):
            def stub(*args, **kwargs):
                raise NotImplementedError()
            out[name] = stub
    return out


@pytest.mark.parametrize("lab", LABS)
def test_an_unwritten_answer_is_not_answered_on_both_sides(lab, checks_process):
    namespace = _unanswered(notebook(lab), lab)
    for name, source in runnable(lab, namespace):
        assert in_process(lab, source, namespace) == "not answered", name
        assert judged(lab, source, namespace, checks_process) == "not answered", name


PLANTED = [(lab, b) for lab, bugs in sorted(all_bugs().items()) for b in bugs]


def planted(lab: str, bug) -> dict | str:
    """The reference module of `lab` with `bug` planted, as a notebook holds it; or why it cannot
    be planted in the reference's text (it edits a notebook cell)."""
    module = importlib.import_module(f"reference.{lab}")
    target = getattr(module, bug.cell, None)
    if target is None:
        return f"{bug.cell} is a notebook cell, not a reference function"
    original = textwrap.dedent(inspect.getsource(target))
    if original not in inspect.getsource(module) or original.count(bug.old) != 1:
        return f"bug {bug.name} edits the notebook's cell, not the reference's text"
    return notebook(lab, (original, bug.apply(original)))


@pytest.mark.parametrize("lab, bug", PLANTED, ids=[f"{lab}:{b.name}" for lab, b in PLANTED])
def test_a_planted_bug_reads_the_same_in_the_notebook_and_from_the_judge(lab, bug, checks_process):
    namespace = planted(lab, bug)
    if isinstance(namespace, str):
        pytest.skip(namespace)
    cells = dict(runnable(lab, namespace))
    for name in sorted(set(cells) - bug.fails):     # exactly its checks: the others pass
        assert in_process(lab, cells[name], namespace) == "pass", name
    checked = 0
    for name in sorted(bug.fails & set(cells)):
        here = in_process(lab, cells[name], namespace)
        assert here not in ("pass", "not answered"), name
        assert masked(judged(lab, cells[name], namespace, checks_process)) == masked(here), name
        checked += 1
    if not checked:
        pytest.skip(f"bug {bug.name} fails only checks of the trained model (tests/test_checks_{lab}.py trains it; "
                    "tests/test_grading.py grades the first bug of each lab end to end)")


# --- a grading run's draw: other random cases than the notebook's own --------------------------

DRAWS = (7, 1_234_567_891)      # two grading runs' (autograder.pipeline.grading_draw)
DRAWING = [lab for lab in LABS if "drawn(" in inspect.getsource(importlib.import_module(f"autograder.checks.{lab}"))]


def _draws(lab: str, source: str, namespace: dict) -> bool:
    """Whether the check cell's cases come (in part) from `autograder.checks.drawn`."""
    module = importlib.import_module(f"autograder.checks.{lab}")
    real, seeds = module.drawn, []
    module.drawn = lambda seed: (seeds.append(seed), real(seed))[1]
    try:
        in_process(lab, source, namespace)
    finally:
        module.drawn = real
    return bool(seeds)


@pytest.mark.parametrize("lab", DRAWING)
def test_under_a_grading_draw_the_reference_passes_and_each_planted_bug_fails_exactly_its_checks(lab):
    """Graded, a check's random cases come from the run's draw (autograder.checks.drawn), in its
    check process and in the judge alike: cases no notebook saw, on which the reference passes
    and each planted bug still fails the checks it declares (under another draw; that it fails
    no other is the planted-bug test's, above)."""
    namespace = notebook(lab)
    drawing = {name: source for name, source in runnable(lab, namespace) if _draws(lab, source, namespace)}
    assert drawing, f"no check of {lab} draws its cases"
    passing, failing = DRAWS
    wrong = [name for name, source in drawing.items()
             if judged(lab, source, namespace, check_process(passing), passing) != "pass"]
    assert not wrong, wrong
    for bug in all_bugs().get(lab, []):
        namespace = planted(lab, bug)
        if isinstance(namespace, str):
            continue
        missed = [name for name in sorted(bug.fails & set(drawing))
                  if judged(lab, drawing[name], namespace, check_process(failing), failing) == "pass"]
        assert not missed, (bug.name, missed)


def _key(value) -> str:
    """What a table of recorded answers is looked up by: the call's arguments, tensors by value."""
    if isinstance(value, torch.Tensor):
        return f"T{value.dtype}{tuple(value.shape)}{value.detach().cpu().numpy().tobytes().hex()}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_key(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_key(v)}" for k, v in sorted(value.items())) + "}"
    return repr(value)


def _recorded(lab: str, answer: str) -> tuple[str, dict]:
    """The check cell of `answer` and the notebook's namespace with the answer's function replaced
    by a table of its answers to every case that cell gives (public and hidden), recorded from the
    reference; any other input gets a zero."""
    namespace = notebook(lab)
    source = dict(check_cells(lab))[answer]
    answer = {"kfold": "kfold_indices"}.get(answer, answer)      # a check named other than its function
    real, table = namespace[answer], {}

    def recording(*args, **kwargs):
        table[_key([args, kwargs])] = real(*args, **kwargs)
        return table[_key([args, kwargs])]

    assert in_process(lab, source, {**namespace, answer: recording}) == "pass"
    assert len(table) >= 2

    def from_the_table(*args, **kwargs):
        return table.get(_key([args, kwargs]), torch.zeros(()))

    return source, {**namespace, answer: from_the_table}


@pytest.mark.parametrize("lab, answer", [("detection", "iou"), ("detection", "box_iou"),
                                         ("detection", "average_precision"),
                                         ("detection", "mean_average_precision"), ("convolution", "conv2d"),
                                         ("convolution", "conv_params"), ("forward", "linear_forward"),
                                         ("backprop", "rel_error"), ("backprop", "sigmoid_grad"),
                                         ("training", "per_class_accuracy"), ("regularization", "kfold"),
                                         ("tensors", "to_tensor")])
def test_answers_recorded_from_the_checks_own_cases_pass_only_the_notebooks_draw(lab, answer):
    """The red team's attack: the checks' code ships with the notebooks, so a notebook can carry
    the answers to every case the check cell gives (public and hidden, recorded from a working
    implementation elsewhere) and answer anything else wrongly. It passes where the cases are the
    notebook's own (draw 0) and fails when graded under any other draw."""
    source, cheat = _recorded(lab, answer)
    assert judged(lab, source, cheat, check_process(0), 0) == "pass"
    for draw in DRAWS:
        assert judged(lab, source, cheat, check_process(draw), draw) != "pass", draw


@pytest.mark.parametrize("answer, cases", [("nms", 6), ("batched_nms", 5)])
def test_recorded_answers_keep_no_share_of_a_partial_check_but_its_empty_case(answer, cases):
    """In a check that scores its cases in proportion, the hand-written cases are moved at random
    under a draw too, so recorded answers keep only the one case whose answer is the same in
    every draw (no boxes in, none out) — the share a function returning nothing earns."""
    source, cheat = _recorded("detection", answer)
    assert judged("detection", source, cheat, check_process(0), 0, partial=True) == "pass"
    for draw in DRAWS:
        verdict = judged("detection", source, cheat, check_process(draw), draw, partial=True)
        passed, total = map(int, re.search(r"\((\d+) of (\d+) cases passed\)$", verdict).groups())
        assert (passed / total, total % cases) == (1 / cases, 0), (draw, verdict)
