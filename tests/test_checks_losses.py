"""The checks of lab 05 (losses): the reference passes every one, and every one can fail.

Buggy variants are the reference module with one edit (or a stand-in function); each must fail
its check with an AssertionError that reads `... expected ..., got ... — hint`. The planted bugs
of tests/planted/losses.py are applied to the reference source here too, to prove each fails
exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import pytest
import torch

import reference.losses as R
from autograder.checks import losses as checks
from tests.planted.losses import BUGS
from tests.judging import fails, passes

CHECKS = ["softmax", "cross_entropy", "cross_entropy_from_logits", "focal_loss"]


# --- buggy variants, per check ------------------------------------------------------------------


def variant(*edits: tuple[str, str, str]) -> dict:
    """The reference module executed with edits (function, old, new): its namespace, as a notebook's."""
    source = inspect.getsource(R)
    for name, old, new in edits:
        fn_source = inspect.getsource(getattr(R, name))
        assert fn_source.count(old) == 1, f"{old!r} occurs {fn_source.count(old)} times in {name}"
        source = source.replace(fn_source, fn_source.replace(old, new))
    namespace = {"__name__": "notebook"}
    exec(compile(source, "<variant>", "exec"), namespace)  # noqa: S102
    return namespace


def failing(namespace: dict) -> set[str]:
    """Names of the checks that fail on the functions of `namespace`."""
    failed = set()
    for name in CHECKS:
        try:
            getattr(checks, name)(namespace[name])
        except AssertionError:
            failed.add(name)
    return failed


def _softmax_in_place(z, dim=-1):
    z -= z.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_numpy(z, dim=-1):
    a = z.detach().numpy()
    e = np.exp(a - a.max(axis=dim, keepdims=True))
    return torch.from_numpy(e / e.sum(axis=dim, keepdims=True))


def _softmax_global_max(z, dim=-1):
    e = torch.exp(z - z.max())
    return e / e.sum(dim=dim, keepdim=True)


def _ce_argmax_float(probs, onehot):
    return float(R.cross_entropy(probs, onehot))


def _ce_pick_true_class(probs, onehot):
    """-log p[true class] (no clamp needed here) — correct, so its check must pass."""
    return -torch.log((probs * onehot).sum(dim=1)).mean()


def _ce_log_softmax_of_probs(probs, onehot):
    return torch.nn.functional.cross_entropy(probs, onehot.argmax(dim=1))  # softmaxes the probabilities again


def _from_logits_via_softmax(logits, labels):
    p = torch.softmax(logits, dim=1)
    return -torch.log(p[torch.arange(len(labels)), labels]).mean()


def _from_logits_detached(logits, labels):
    return torch.tensor(torch.nn.functional.cross_entropy(logits, labels).item())


def _from_logits_torch(logits, labels):
    """torch's own logsumexp — correct, so its check must pass."""
    return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(labels)), labels]).mean()


def _focal_alpha(p, y, gamma=2.0):
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = y * 0.25 + (1 - y) * 0.75
    return (-alpha_t * (1 - p_t) ** gamma * torch.log(p_t)).mean()


def _focal_numpy(p, y, gamma=2.0):
    return torch.tensor(float(R.focal_loss(p.detach(), y, gamma)))


VARIANTS = {
    "softmax": [
        ("no max subtraction", ("softmax", "shifted = z - z.amax(dim=dim, keepdim=True)", "shifted = z")),
        ("mean subtraction", ("softmax", "z.amax(dim=dim, keepdim=True)", "z.mean(dim=dim, keepdim=True)")),
        ("sum over everything", ("softmax", "e / e.sum(dim=dim, keepdim=True)", "e / e.sum()")),
        ("hard-coded last dim", ("softmax", "e / e.sum(dim=dim, keepdim=True)", "e / e.sum(dim=-1, keepdim=True)")),
        ("no normalisation", ("softmax", "e / e.sum(dim=dim, keepdim=True)", "e")),
        ("in place", _softmax_in_place),
        ("numpy", _softmax_numpy),
        ("global max", _softmax_global_max),
    ],
    "cross_entropy": [
        ("log10", ("cross_entropy", "torch.log(probs", "torch.log10(probs")),
        ("log2", ("cross_entropy", "torch.log(probs", "torch.log2(probs")),
        ("sum over samples", ("cross_entropy", "return per_sample.mean()", "return per_sample.sum()")),
        ("mean over every entry", ("cross_entropy", "per_sample = -(onehot * log_p).sum(dim=1)", "per_sample = -(onehot * log_p).mean(dim=1)")),
        ("no minus", ("cross_entropy", "per_sample = -(onehot * log_p)", "per_sample = (onehot * log_p)")),
        ("no floor: NaN at 0", ("cross_entropy", "torch.log(probs.clamp_min(1e-12))", "torch.log(probs)")),
        ("a float", _ce_argmax_float),
        ("softmax again", _ce_log_softmax_of_probs),
    ],
    "cross_entropy_from_logits": [
        ("no max subtraction", ("cross_entropy_from_logits", "m.squeeze(1) + torch.log(torch.exp(logits - m)", "torch.log(torch.exp(logits)")),
        ("sum over samples", ("cross_entropy_from_logits", "(log_sum_exp - true_logit).mean()", "(log_sum_exp - true_logit).sum()")),
        ("sign", ("cross_entropy_from_logits", "(log_sum_exp - true_logit).mean()", "(true_logit - log_sum_exp).mean()")),
        ("forgets the true logit", ("cross_entropy_from_logits", "(log_sum_exp - true_logit).mean()", "log_sum_exp.mean()")),
        ("log of the softmax", _from_logits_via_softmax),
        ("detached", _from_logits_detached),
    ],
    "focal_loss": [
        ("p to the gamma", ("focal_loss", "weight = (1 - p_t) ** gamma", "weight = p ** gamma")),
        ("p_t to the gamma", ("focal_loss", "weight = (1 - p_t) ** gamma", "weight = p_t ** gamma")),
        ("1 - p for every label", ("focal_loss", "weight = (1 - p_t) ** gamma", "weight = (1 - p) ** gamma")),
        ("no power", ("focal_loss", "weight = (1 - p_t) ** gamma", "weight = 1 - p_t")),
        ("sum", ("focal_loss", "(-weight * torch.log(p_t)).mean()", "(-weight * torch.log(p_t)).sum()")),
        ("ignores the label", ("focal_loss", "p_t = y * p + (1 - y) * (1 - p)", "p_t = p")),
        ("alpha-balanced", _focal_alpha),
        ("detached", _focal_numpy),
    ],
}


def _function(edit) -> Callable:
    if callable(edit):
        return edit
    return variant(edit)[edit[0]]


@pytest.mark.parametrize(
    "name,label,edit", [(name, label, edit) for name, vs in VARIANTS.items() for label, edit in vs],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_check_fails_on_buggy_variant(name, label, edit):
    message = fails(getattr(checks, name), _function(edit))


def test_every_check_has_at_least_two_variants():
    assert all(len(VARIANTS[name]) >= 2 for name in CHECKS)


@pytest.mark.parametrize("name,fn", [("cross_entropy", _ce_pick_true_class),
                                     ("cross_entropy_from_logits", _from_logits_torch)])
def test_other_correct_answers_pass(name, fn):
    passes(getattr(checks, name), fn)


@pytest.mark.parametrize(
    "name,label,words",
    [
        ("softmax", "no max subtraction", "subtract the maximum"),
        ("softmax", "mean subtraction", "subtract the maximum"),
        ("softmax", "hard-coded last dim", "dim=1 here"),
        ("softmax", "sum over everything", "not over the whole tensor"),
        ("softmax", "global max", "subtract the maximum along dim"),
        ("softmax", "no normalisation", "divide each exponential"),
        ("softmax", "in place", "modified in place"),
        ("softmax", "numpy", "autograd"),
        ("cross_entropy", "log10", "0.1549"),
        ("cross_entropy", "sum over samples", "not their sum"),
        ("cross_entropy", "mean over every entry", "sum over the 3 classes"),
        ("cross_entropy", "no minus", "minus sign"),
        ("cross_entropy", "no floor: NaN at 0", "0 * log(0)"),
        ("cross_entropy", "a float", "0-d tensor"),
        ("cross_entropy_from_logits", "no max subtraction", "log-sum-exp"),
        ("cross_entropy_from_logits", "sum over samples", "not their sum"),
        ("cross_entropy_from_logits", "forgets the true logit", "true class's logit"),
        ("cross_entropy_from_logits", "log of the softmax", "log(0)"),
        ("cross_entropy_from_logits", "detached", "autograd"),
        ("focal_loss", "p to the gamma", "not p**gamma"),
        ("focal_loss", "p_t to the gamma", "not p_t**gamma"),
        ("focal_loss", "1 - p for every label", "not 1 - p"),
        ("focal_loss", "no power", "power gamma"),
        ("focal_loss", "sum", "not their sum"),
        ("focal_loss", "alpha-balanced", "alpha"),
        ("focal_loss", "ignores the label", "binary_cross_entropy"),
        ("focal_loss", "detached", "autograd"),
    ],
)
def test_failure_hints_name_the_bug(name, label, words):
    edit = dict(VARIANTS[name])[label]
    message = fails(getattr(checks, name), _function(edit))
    assert words in message, message


def test_a_student_error_is_one_clear_line_with_the_original_chained():
    def broken(z, dim=-1):
        return z @ torch.ones(7)

    with pytest.raises(AssertionError) as info:
        checks.softmax(broken)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


# --- planted bugs, applied to the reference source ----------------------------------------------


def test_there_are_enough_planted_bugs():
    assert len(BUGS) >= 3
    assert {b.cell for b in BUGS} == set(CHECKS)


def test_a_failing_check_shows_one_line_in_a_notebook(tmp_path):
    """In a real kernel, a wrong answer's check prints its expected / got / hint line alone — not at
    the foot of a traceback through the check's own code — and is still an AssertionError."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from autograder.checks import losses as checks\n"
        "try:\n"
        "    checks.softmax(lambda z, dim=-1: z)\n"
        "except AssertionError:\n"
        "    print('an AssertionError')\n"
        "checks.softmax(lambda z, dim=-1: z)")])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    stream, error = nb.cells[0].outputs
    assert stream.text == "an AssertionError\n"
    assert error.ename == "CheckFailed" and len(error.traceback) == 1
    assert error.traceback[0].startswith("\x1b[0;31mCheck failed\x1b[0m: softmax(") and " expected " in error.traceback[0]
