"""Attacks on the grade, each a real notebook graded through `grade_class`: a submission that
patches torch, the checks or their names, or the labels in its own process, gets no point it
would not get honestly. The accuracy is counted outside the notebook, with labels it never sees."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from autograder.build import dumps
from autograder.grade import grade_class
from tests.conftest import ROOT, full_marks, lost_checks
from tests.planted import append_to_cell as _append, bug, plant

LAB, TARGET = "backprop", "sigmoid_grad"
WRONG = bug("wrong", TARGET, "return s * (1 - s)", "return x * (1 - x)", TARGET)

# each attack is appended to the wrong answer's cell: none may earn the point back
ATTACKS = {
    "patch-allclose": "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.isclose = lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool)",
    "patch-tensor-eq": "import torch\ntorch.Tensor.eq = lambda self, other: torch.ones_like(self, dtype=torch.bool)\n"
                       "torch.Tensor.__eq__ = torch.Tensor.eq\ntorch.Tensor.__sub__ = lambda self, other: torch.zeros_like(self)",
    "redefine-check": "import autograder.checks.backprop as _m\n_m.sigmoid_grad = lambda *a, **k: None",
    "rebind-checks-name": "class _Pass:\n    def __getattr__(self, name):\n        return lambda *a, **k: None\nchecks = _Pass()",
    "replace-check-code": "checks.sigmoid_grad.__code__ = (lambda *a, **k: None).__code__",
    "patch-fail-helper": "import autograder.checks as _c\n_c.fail = lambda *a, **k: None\n_c.expect_close = lambda *a, **k: None",
    "swap-sys-modules": "import sys, types\n_fake = types.ModuleType('autograder.checks.backprop')\n"
                        "_fake.sigmoid_grad = lambda *a, **k: None\nsys.modules['autograder.checks.backprop'] = _fake",
    "patch-assertion-error": "import builtins\nclass _Quiet(Exception):\n    pass\nbuiltins.AssertionError = _Quiet",
}
# a function that patches torch while the check calls it: the judge runs in the grader, unpatched
DURING = ("_honest = sigmoid_grad\n"
          "def sigmoid_grad(x):\n"
          "    import torch\n"
          "    torch.allclose = lambda *a, **k: True\n"
          "    return x * (1 - x)\n")


@pytest.fixture(scope="module")
def attacked(course, tmp_path_factory):
    solution = nbformat.read(course.solution_path(LAB), as_version=4)
    wrong = plant(solution, WRONG)
    notebooks = {"solution": solution, "wrong": wrong, "during-check": _append(solution, TARGET, DURING)}
    notebooks.update({name: _append(wrong, TARGET, code) for name, code in ATTACKS.items()})
    root = tmp_path_factory.mktemp("attacks")
    for student, nb in notebooks.items():
        (root / student).mkdir()
        (root / student / f"{LAB}.ipynb").write_text(dumps(nb))
    results, _ = grade_class(root, course, [LAB], jobs=2)
    return {r.student: r for r in results}, root



@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_patching_in_an_answer_cell_earns_nothing(attacked, attack):
    attacked, _ = attacked
    honest = lost_checks(attacked["wrong"])
    assert set(honest) == {TARGET} and "expected" in honest[TARGET]
    result = attacked[attack]
    assert not result.grader_error
    assert lost_checks(result) == honest                        # the same point lost, the same message
    assert any(note.startswith("restored before cell") for note in result.notes), result.notes


def test_patching_while_the_check_runs_earns_nothing(attacked):
    """The function patches torch.allclose in the notebook's process each time the check calls
    it; the verdict is the judge's, in the grading process: the wrong answer's own message."""
    attacked, _ = attacked
    assert lost_checks(attacked["during-check"]) == lost_checks(attacked["wrong"])


def test_a_serial_regrade_equals_the_parallel_run(course, attacked, tmp_path):
    """Regrading with one worker instead of two gives the same points, messages and notes."""
    parallel, root = attacked
    for student in ("solution", "wrong", "during-check", "patch-allclose"):
        (tmp_path / student).mkdir()
        (tmp_path / student / f"{LAB}.ipynb").write_bytes((root / student / f"{LAB}.ipynb").read_bytes())
    serial, _ = grade_class(tmp_path, course, [LAB], jobs=1)
    assert len(serial) == 4
    for r in serial:
        p = parallel[r.student]
        assert (r.checks, r.notes, r.fingerprint) == (p.checks, p.notes, p.fingerprint), r.student


def test_an_honest_solution_restores_nothing(attacked):
    solution = attacked[0]["solution"]
    assert full_marks(solution) and solution.notes == []


# ------------------------------------------------------------------------- accuracy, outside
def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def hidden_root(tmp_path_factory):
    """A private test set in torchvision's MNIST layout: 300 of the embedded test digits, 10 %
    dimmer (so they are not the public ones; an MLP is not robust to shifted digits)."""
    from autograder.data import mnist_splits
    X, y = mnist_splits()["test"].tensors
    images = (X[:300, 0].numpy() * 0.9 * 255).round()
    root = tmp_path_factory.mktemp("hidden")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "t10k-images-idx3-ubyte", images)
    _write_idx(raw / "t10k-labels-idx1-ubyte", y[:300].numpy())
    return root


# The training lab's MLP (the quickest scored lab to grade) that always answers 0, and zeroes
# every label the notebook's process holds: the visible validation check, counted in the
# notebook, is fooled; the hidden split is not.
SCORED_LAB, MODEL = "training", "MLP"
CHEAT = bug("cheat", MODEL, "return self.fc3(x)", "return self.fc3(x) * 0", {"accuracy"})
ZERO_LABELS = ("import autograder.data as _data\n"
               "for _images, _labels in _data._mnist_split_tensors(0).values():\n"
               "    _labels.zero_()")


# The same always-0 model, but one that answers with the hidden labels wherever it can read them
# (the scorer of an unsandboxed grader could): in the sandbox the file is not there.
PEEK = """
_LABELS = {labels!r}
_forward = MLP.forward
def _peek(self, x):
    import os, torch
    if os.path.exists(_LABELS) and not self.training:
        start = getattr(self, '_seen', 0)
        self._seen = start + len(x)
        y = torch.tensor(list(open(_LABELS, 'rb').read()[8 + start:8 + start + len(x)]))
        return torch.nn.functional.one_hot(y, 10).float()
    return _forward(self, x)
MLP.forward = _peek
"""


@pytest.fixture(scope="module")
def scored(course, hidden_root, tmp_path_factory):
    # also: a GPU the grader lacks, required by course.yml
    private = dataclasses.replace(course, data_hidden=str(hidden_root), gpu="required")
    solution = nbformat.read(course.solution_path(SCORED_LAB), as_version=4)
    root = tmp_path_factory.mktemp(SCORED_LAB)
    peek = PEEK.format(labels=str(hidden_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"))
    notebooks = {"honest": solution, "cheat": _append(plant(solution, CHEAT), MODEL, ZERO_LABELS),
                 "peek": _append(plant(solution, CHEAT), MODEL, ZERO_LABELS + "\n" + peek)}
    for student, nb in notebooks.items():
        (root / student).mkdir()
        (root / student / f"{SCORED_LAB}.ipynb").write_text(dumps(nb))
    results, _ = grade_class(root, private, [SCORED_LAB], jobs=2)
    return {r.student: {c.name: c for c in r.checks} for r in results}


def test_accuracy_is_counted_on_the_private_split(scored):
    check = scored["honest"]["accuracy"]
    assert check.passed and check.message.startswith("accuracy 0.9") and "hidden test split" in check.message


def test_required_gpu_on_a_grader_without_cuda_costs_exactly_the_gpu_point(scored):
    from autograder.grade import cuda_available
    if cuda_available():
        pytest.skip("this grader has CUDA")
    lost = {name: c.message for name, c in scored["honest"].items() if not c.passed and not c.pending}
    assert lost == {"gpu": "skipped: no CUDA on this grader — course.yml requires GPU execution (grading.gpu: required)"}


def _at_chance(course, message):
    threshold = course.lab(SCORED_LAB).thresholds["accuracy"]
    return re.match(rf"{MODEL} accuracy on the (hidden test|validation) split: expected ≥ {threshold:g}, got 0.1", message)


def test_labels_changed_in_the_notebook_do_not_count(scored, course):
    check = scored["cheat"]["accuracy"]
    assert check.points == 0
    # the validation split is judged outside the notebook too, with the grader's labels
    assert _at_chance(course, check.message), check.message


def test_the_scorer_cannot_read_the_hidden_labels(scored, course):
    check = scored["peek"]["accuracy"]
    assert check.points == 0
    assert _at_chance(course, check.message), check.message
