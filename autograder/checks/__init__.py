"""Checks: plain functions that raise AssertionError with expected / got / hint.

One module per lab (`autograder/checks/<lab>.py`); each public function that does not start
with `_` is one check, named as in course.yml. Helpers here keep every message in one shape:
`<what>: expected <expected>, got <got> — <hint>`.

Every message is made in the course's language (autograder.i18n): the words here through the
shared catalog (`_`), a lab's own through its catalog (`_ = Domain("<lab>").gettext` in its module).
"""
from __future__ import annotations

import builtins
import contextlib
import dis
import functools
import hashlib
import inspect
import json
import math
import os
import re
import types
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from autograder.i18n import gettext as _

__all__ = ["CheckFailed", "fail", "expect", "expect_close", "expect_equal", "expect_shape", "rel_error", "golden", "fmt",
           "model_device", "error_line", "at_least", "expect_split_accuracy", "call_student", "Scored",
           "submit_model", "Skipped", "expect_gpu_execution", "count_params", "state_shapes", "given", "case", "PartialCredit", "float64_tensor", "worst",
           "close", "shape_text", "as_number", "expect_module", "keeps_rng", "drawn", "torch_calls", "lazy_parameters",
           "names_in_code", "library_use", "expect_own_code"]


def fmt(value: Any) -> str:
    """A short, readable rendering of a value for a failure message."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            return str([round(v, 4) if isinstance(v, float) else v for v in value.detach().cpu().flatten().tolist()])
        return _("tensor of shape {shape}").format(shape=tuple(value.shape))
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, torch.Size):
        return str(tuple(value))
    return repr(value)


class CheckFailed(AssertionError):
    """A check's verdict. In a notebook IPython shows it as its one line (`_render_traceback_`),
    not at the foot of a traceback through the check's own code; it is still an AssertionError."""

    def _render_traceback_(self) -> list[str]:
        return ["\x1b[0;31m" + _("Check failed") + f"\x1b[0m: {self}"]


# the files IPython compiles notebook cells into: plain IPython's, and ipykernel's
_CELL_FILE = re.compile(r"^<ipython-input-\d+-[0-9a-f]+>$|/ipykernel_\d+/\d+\.py$")


def answer_behind(tb: Any) -> str | None:
    """The function, defined in another cell, that an error raised in the running cell came
    from: of the cells other than the running one on the traceback, the deepest, and the function
    through which it was entered (None if there is none)."""
    cells = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if _CELL_FILE.search(code.co_filename):
            cells.append(code)
        tb = tb.tb_next
    behind = [c for c in cells[1:] if c.co_filename != cells[0].co_filename and c.co_name != "<module>"]
    if not behind:
        return None
    entry = next(c for c in behind if c.co_filename == behind[-1].co_filename)   # where the deepest cell was entered
    return entry.co_qualname.split(".<locals>")[0]


def _point_to_the_answer(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> Any:
    """IPython's handler for errors in a cell: the usual traceback, plus one line naming the answer
    (a function from an earlier cell) the error came from — a locked demo cell that fails after
    a wrong answer says which answer to fix."""
    try:
        name = answer_behind(tb)
        note = _("→ This error comes from `{name}`, written in an earlier cell: fix that answer, run its cell, "
                 "then run this one again.").format(name=name)
        if name and not isinstance(value, CheckFailed) and note not in getattr(value, "__notes__", ()):
            value.add_note(note)
    except Exception:  # noqa: BLE001 — a pointer is a courtesy: never in the way of the traceback
        pass
    return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def _install_answer_pointer() -> None:
    import builtins
    shell = getattr(builtins, "get_ipython", lambda: None)()    # IPython puts it there while a cell runs
    if shell is not None and not getattr(shell, "custom_exceptions", True):
        shell.set_custom_exc((Exception,), _point_to_the_answer)


_install_answer_pointer()


def fail(what: str, expected: Any, got: Any, hint: str = "") -> None:
    """Raise the one-line failure every check uses."""
    exp = expected if isinstance(expected, str) else fmt(expected)
    gt = got if isinstance(got, str) else fmt(got)
    message = _("{what}: expected {expected}, got {got}").format(what=what, expected=exp, got=gt)
    raise CheckFailed(message + (f" — {hint}" if hint else ""))


def expect(condition: bool, what: str, expected: Any, got: Any, hint: str = "") -> None:
    if not condition:
        fail(what, expected, got, hint)


def rel_error(a: Any, b: Any) -> float:
    """CS231n relative error: max over elements of |a-b| / max(1e-8, |a|+|b|)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.numel() == 0:
        return 0.0
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-8)).max())


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        fail(what, _("a tensor or number"), f"{type(value).__name__}", _("return a torch.Tensor"))
        raise  # unreachable


def expect_shape(value: Any, shape: tuple, what: str, hint: str = "") -> None:
    """`value` is a tensor of exactly `shape`."""
    if not isinstance(value, torch.Tensor):
        fail(what, _("a tensor of shape {shape}").format(shape=tuple(shape)), type(value).__name__,
             hint or _("return a torch.Tensor"))
    if tuple(value.shape) != tuple(shape):
        fail(what, _("shape {shape}").format(shape=tuple(shape)), _("shape {shape}").format(shape=tuple(value.shape)), hint)


def expect_equal(got: Any, expected: Any, what: str, hint: str = "") -> None:
    """Exact equality (numbers, strings, shapes, integer tensors)."""
    if isinstance(expected, torch.Tensor):
        g = _as_tensor(got, what)
        ok = g.shape == expected.shape and bool(torch.equal(g.to(expected.dtype), expected.cpu()))
    else:
        ok = got == expected
    if not ok:
        fail(what, expected, got, hint)


def expect_close(got: Any, expected: Any, what: str, atol: float = 1e-6, rtol: float = 1e-5, hint: str = "") -> None:
    """Same shape and every element within atol + rtol·|expected|; NaN never passes."""
    g = _as_tensor(got, what).to(torch.float64)
    e = torch.as_tensor(expected, dtype=torch.float64).cpu()
    if g.shape != e.shape:
        fail(what, _("shape {shape}").format(shape=tuple(e.shape)), _("shape {shape}").format(shape=tuple(g.shape)), hint)
    if not torch.isfinite(g).all():
        fail(what, _("finite values"), _("NaN or inf"), hint or _("look for a division by zero or an overflow"))
    if not torch.allclose(g, e, atol=atol, rtol=rtol):
        if g.numel() > 8:
            i = int(((g - e).abs() - (atol + rtol * e.abs())).flatten().argmax())
            fail(what, _("{value} at flat index {index}").format(value=f"{float(e.flatten()[i]):.6g}", index=i),
                 f"{float(g.flatten()[i]):.6g}", hint)
        fail(what, e if e.numel() > 1 else float(e), g if g.numel() > 1 else float(g), hint)


def float64_tensor(value: Any, what: str, shape: tuple, hint: str = "") -> torch.Tensor:
    """`value` is a tensor of exactly `shape` (else a failure); returned detached, in float64."""
    expect_shape(value, shape, what, hint)
    return value.detach().to(torch.float64)


def worst(got: torch.Tensor, expected: torch.Tensor, relative: bool = False, whole: int = 4,
          inputs: torch.Tensor | None = None, flat: bool = False) -> tuple[str, str]:
    """(expected, got) for a message: whole tensors up to `whole` elements, else the element with
    the largest (absolute, or CS231n `relative`) error and where: `x = <input>` when the inputs
    are given, the flat index with `flat`, else the index per dimension."""
    g, e = got.to(torch.float64), expected.to(torch.float64)
    if e.numel() <= whole:
        return fmt(e), fmt(g)
    err = (g - e).abs()
    if relative:
        err = err / (g.abs() + e.abs()).clamp_min(1e-8)
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))
    k = int(err.flatten().argmax())
    if inputs is not None:
        at = f"x = {float(inputs.flatten()[k]):g}"
    elif flat:
        at = _("flat index {index}").format(index=k)
    else:
        at = str([int(i) for i in np.unravel_index(k, tuple(e.shape))])   # (torch's imports sympy: 0.8 s)
    return _("{value} at {where}").format(value=f"{float(e.flatten()[k]):.6g}", where=at), f"{float(g.flatten()[k]):.6g}"


def close(got: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Same shape, finite, and every element within atol + rtol·|expected|, in float64: numbers,
    lists of numbers and tensors alike (a test for a hint or a branch, never a failure)."""
    g = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got, dtype=torch.float64).cpu()
    e = torch.as_tensor(expected.detach() if isinstance(expected, torch.Tensor) else expected, dtype=torch.float64).cpu()
    return g.shape == e.shape and bool(torch.isfinite(g).all()) and bool(torch.allclose(g, e, rtol=rtol, atol=atol))


def shape_text(value: Any, brackets: str = "()") -> str:
    """A shape for a message: a tensor's or a sequence of dims (names such as "N" welcome) between
    `brackets`, "(2, 3)"; anything else by its type's name."""
    if isinstance(value, torch.Tensor):
        value = value.shape
    if not isinstance(value, (tuple, list, torch.Size)):
        return type(value).__name__
    return brackets[0] + ", ".join(map(str, value)) + brackets[1]


def as_number(value: Any, what: str, hint: str | None = None, tensors: bool = True) -> float:
    """A Python number (with `tensors`, also a one-element tensor) as a float; else a failure
    (`hint` by default: convert with float(...) or .item())."""
    if tensors and isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().cpu())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    shown = (_("a tensor of shape {shape}").format(shape=tuple(value.shape)) if isinstance(value, torch.Tensor)
             else type(value).__name__)
    fail(what, _("a number") if tensors else _("a Python float"), shown,
         _("convert with float(...) or .item()") if hint is None else hint)
    raise AssertionError  # unreachable


def expect_module(obj: Any, what: str, hint: str = "") -> nn.Module:
    """`obj` is an nn.Module (else a failure); returned."""
    if not isinstance(obj, nn.Module):
        fail(what, _("an nn.Module"), type(obj).__name__, hint)
    return obj


def keeps_rng(check: Any) -> Any:
    """Decorator: run the check inside torch.random.fork_rng, so that whatever it or the student's
    code draws (a DataLoader's seed, a dropout mask), the notebook's random state is the same
    afterwards."""
    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)
    return wrapper


def drawn(seed: int) -> torch.Generator:
    """A private generator for a check's random cases, seeded with `seed` where a student runs the
    check; when it is graded, with `seed` and the grading run's draw (a secret of the grader's,
    the same in the probe and the judge: autograder.witness.draw). The graded cases are then not
    the ones the notebook's own run showed, and no notebook can carry recorded answers to them."""
    from autograder import witness
    draw = witness.draw()
    if draw:
        seed = int.from_bytes(hashlib.blake2b(f"{draw}:{seed}".encode(), digest_size=7).digest(), "big")
    return torch.Generator().manual_seed(seed)


class _TorchCalls(TorchFunctionMode):
    """Records the name of every torch function called while it is active (F.conv2d, Tensor.sum,
    torch.sigmoid, ...: however the student imported it)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types=(), args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", "") or str(func))
        return func(*args, **(kwargs or {}))


LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "math", "jax", "tensorflow", "sklearn", "pycocotools",
             "torchmetrics")
GRADER = "autograder.checks"          # the checks and their helpers: never part of an answer


def from_library(obj: Any) -> bool:
    """True for a library's function or class (torch.sigmoid, F.relu, nn.ReLU, np.tanh,
    torchvision.ops.nms), False for a plain Python function written in the notebook."""
    if inspect.isfunction(obj):
        return (getattr(obj, "__module__", "") or "").split(".")[0] in LIBRARIES
    return obj is not None


def _grader_object(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) if not isinstance(obj, types.ModuleType) else obj.__name__
    return isinstance(module, str) and (module == GRADER or module.startswith(GRADER + "."))


def names_in_code(fn: Any, forbidden: frozenset[str] | set[str], modules: tuple[str, ...] = (),
                  own: frozenset[str] | set[str] = frozenset()) -> list[list[str]]:
    """What the code of `fn` (nested code included) reads that a "write it yourself" rule
    forbids, each as [name, module]: a forbidden name as an attribute ([".nms", ""] of ops.nms,
    x.tanh(), F.relu) or a global bound to a library object of a forbidden name, whatever the
    notebook calls it (["tv_nms", "torchvision.ops.boxes"]); an import of one of `modules` inside
    it (["import torchvision.ops", ""]); a global bound to the grader's checks or their helpers,
    unless its name is one of `own` (the exercise's functions, which a check may replace by
    correct ones while it runs)."""
    found: list[list[str]] = []
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        for ins in dis.get_instructions(code):
            name = ins.argval
            if not isinstance(name, str):
                continue
            if ins.opname == "IMPORT_NAME":
                if any(name == m or name.startswith(m + ".") for m in (*modules, GRADER)):
                    found.append([f"import {name}", ""])
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                if name in forbidden:
                    found.append([f".{name}", ""])     # torch.sigmoid, x.tanh(), ops.nms
            elif ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                obj = fn.__globals__.get(name, getattr(builtins, name, None))
                if _grader_object(obj) and name not in own:
                    found.append([name, getattr(obj, "__module__", None) or getattr(obj, "__name__", "")])
                elif (name in forbidden or getattr(obj, "__name__", None) in forbidden) and from_library(obj):
                    found.append([name, getattr(obj, "__module__", None) or ""])
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def library_use(fn: Any, forbidden: list[str], modules: list[str] = (), own: list[str] = ()) -> list | None:
    """What `fn` is when it is not the student's own code, as facts a check puts into words:
    ["module", class name] for an nn.Module, ["object", "module.name"] for a library's function
    or any other object that is not a Python function of the notebook's, ["names",
    names_in_code(...)] when its code reads what the rule forbids; None when it is the
    student's own code. Run it through witness.boundary("code", ...): in the student's process."""
    if not inspect.isfunction(fn) or from_library(fn) or _grader_object(fn):
        if isinstance(fn, nn.Module):
            return ["module", type(fn).__name__]
        module = (getattr(fn, "__module__", None) or type(fn).__module__ or "").split(".")[0]
        return ["object", f"{module}.{getattr(fn, '__name__', type(fn).__name__)}".lstrip(".")]
    used = names_in_code(fn, frozenset(forbidden), tuple(modules), frozenset(own))
    return ["names", used] if used else None


def expect_own_code(fn: Any, what: str, use: Any, expected: str, hint: str) -> None:
    """`fn` is a Python function of the notebook's whose code reads nothing a rule forbids: `use`
    (a module-level function of autograder's that calls library_use with the rule) runs on it in
    the student's process (witness.boundary: evidence from that process, like the GPU record)."""
    from autograder import witness
    found = witness.boundary("code", use, fn)
    if not found:
        return
    kind, detail = found if isinstance(found, (list, tuple)) and len(found) == 2 else ("object", found)
    if kind == "names" and isinstance(detail, (list, tuple)):
        pairs = [e for e in detail if isinstance(e, (list, tuple)) and len(e) == 2]
        used = {str(n) if str(n).startswith((".", "import ")) else
                _("{name} (from {module})").format(name=n, module=m or _("a library")) for n, m in pairs}
        fail(what, expected, ", ".join(sorted(used)) or str(detail)[:200], hint)
    got = _("a {name}() module").format(name=detail) if kind == "module" else str(detail)[:200]
    fail(what, _("a function you wrote (def ...)"), got, hint)


def torch_calls(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """(fn(*args, **kwargs), the sorted names of the torch functions it called), for a rule such
    as "by hand, no F.conv2d". Call it through `call_student(torch_calls, what, fn, ...)`: while
    grading it then runs where the student's code runs, and the names are part of the record."""
    with _TorchCalls() as calls:
        result = fn(*args, **kwargs)
    return result, sorted(set(calls.names))


def model_device(model: torch.nn.Module) -> torch.device:
    """Where `model`'s parameters live (CPU for a model without parameters). A parameter too
    large to reach a probed check whole (witness.BIG) is a meta tensor that knows where it is."""
    try:
        p = next(model.parameters())
    except StopIteration:
        return torch.device("cpu")
    return torch.device(getattr(p, "recorded_device", "meta")) if p.is_meta else p.device


def error_line(err: BaseException) -> str:
    """`TypeName: first line of the message`, short enough for a failure message."""
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text}"[:200]


def call_student(fn: Any, what: str, *args: Any, hint: str = "", wanted: str | None = None, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) for the student's `fn`. An unfilled cell's NotImplementedError
    propagates unchanged; any other error becomes a one-line failure, "expected `wanted` (by
    default: a result), got the error" (the original chained).
    While grading, a check's own `fn` that runs the student's code (a lambda calling
    `.backward()` on the student's output) runs in the probe, and the judge gets its result
    (autograder.witness)."""
    from autograder import witness
    try:
        if witness.active() and not witness.is_student(fn):
            return witness.boundary("call", fn, *args, **kwargs)
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 — the student's code may raise anything
        try:
            fail(what, _("a result") if wanted is None else wanted, error_line(err), hint)
        except AssertionError as failure:
            raise failure from err


def count_params(model: Any, trainable_only: bool = False) -> int:
    """Parameters of `model` (only those that require grad, with `trainable_only`). While
    grading, the probe reports the parameters' shapes (not every weight of a network of
    millions) and the judge counts."""
    from autograder import witness
    found = (witness.boundary("shapes", param_shapes, model, trainable_only) if witness.is_student(model)
             else param_shapes(model, trainable_only))
    if not isinstance(found, list) or not all(isinstance(s, list) and all(type(n) is int and n >= 0 for n in s) for s in found):
        fail(_("parameters"), _("a list of shapes"), type(found).__name__, _("the probe's record is damaged"))
    return int(sum(math.prod(s) for s in found))


def param_shapes(model: Any, trainable_only: bool = False) -> list[list[int]]:
    """The shapes of `model`'s parameters (those that require grad, with `trainable_only`)."""
    found = []
    for p in model.parameters():
        if p.requires_grad or not trainable_only:
            p.numel()                 # a lazy layer's uninitialised parameter raises ValueError here
            found.append(list(p.shape))
    return found


def state_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """`model.state_dict()`'s keys and shapes, in order (counted in the probe while grading)."""
    from autograder import witness
    return witness.boundary("state_shapes", _state_shapes, model) if witness.is_student(model) else _state_shapes(model)


def _state_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    return {str(k): tuple(int(n) for n in v.shape) for k, v in model.state_dict().items()}


def lazy_parameters(model: Any) -> list[str]:
    """Names of `model`'s lazy parameters (nn.LazyLinear's: no shape before a first forward),
    found where the model is while grading."""
    from autograder import witness
    return witness.boundary("lazy", _lazy_names, model) if witness.is_student(model) else _lazy_names(model)


def _lazy_names(model: Any) -> list[str]:
    return [str(n) for n, p in model.named_parameters() if nn.parameter.is_lazy(p)]


def backward(out: torch.Tensor, weight: torch.Tensor | None = None) -> None:
    """`out.sum().backward()` (of `out * weight` with a weight): run by `call_student` where
    the student's graph is, while grading in the notebook's process."""
    (out if weight is None else out * weight).sum().backward()


def grad_of(out: torch.Tensor, wrt: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """d(out)/d(wrt) (of `(out * weight).sum()` with a weight), as `backward`."""
    return torch.autograd.grad(out if weight is None else (out * weight).sum(), wrt)[0]


class PartialCredit(CheckFailed):
    """Some of a check's independent cases failed: the check scores `passed / total` of its
    points (where course.yml's `partial` lists it), with the first failure's message."""

    def __init__(self, message: str, passed: int, total: int) -> None:
        super().__init__(message + " " + _("({passed} of {total} cases passed)").format(passed=passed, total=total))
        self.passed, self.total = passed, total


class Cases:
    """Collects the outcome of each `case` while a check runs (the judge's, for partial credit)."""
    current: "Cases | None" = None

    def __init__(self) -> None:
        self.passed, self.failures = 0, []


@contextlib.contextmanager
def case(label: str = ""):
    """One independent case of a check: while a check listed in course.yml's `partial` is judged,
    a failing case is counted and the next one runs; otherwise the failure ends the check as
    usual. The probe runs every case, so that the judge has each one's record."""
    from autograder import witness
    cases = Cases.current if witness.judging() else None
    try:
        yield
    except NotImplementedError:
        raise
    except AssertionError as failure:
        if cases is not None:
            cases.failures.append(str(failure))
        elif witness.active() and not witness.judging():
            pass                          # the probe: record the next cases too
        else:
            raise
    else:
        if cases is not None:
            cases.passed += 1


@contextlib.contextmanager
def given(fn: Any, **helpers: Any):
    """While the block runs, the names `helpers` in the module (notebook) of the student's `fn`
    are the correct helpers given: a check of `batched_nms` gives it a correct `nms`, so that one
    mistake costs its own check's points once. Helpers are module-level functions (the
    notebook's process finds them by name); while judging nothing is changed (the probe ran the
    student's code with them)."""
    from autograder import witness
    with witness.giving(fn, helpers):
        yield


def at_least(threshold: float) -> str:
    return f"≥ {threshold:.2f}" if round(threshold, 2) == threshold else f"≥ {threshold:g}"


def _split_name(split: str) -> str:
    return {"test": _("the hidden test split"), "val": _("the validation split"),
            "train": _("the training split")}.get(split, split)


@dataclass(frozen=True)
class Scored:
    """A check whose accuracy the grader computes outside the student's process.

    A check module declares `SCORED = {check_name: Scored(...)}`. While grading, the check's
    hidden call `expect_split_accuracy(model, "test", ...)` only saves the model
    (`submit_model`); after the notebook has run, a separate process rebuilds it, receives the
    test images only and returns its predictions, and the grader, which alone holds the labels,
    compares them with `thresholds[threshold]` of the lab in course.yml.
    """
    model: str            # the model's name in messages; also names the saved file
    threshold: str        # key of the lab's course.yml `thresholds`; "{dataset}" is filled in
    crash_hint: str       # hint when the model cannot run on the images
    low_hint: str         # hint when the accuracy is below the threshold
    dataset: str = "mnist"  # a key of autograder.data.DATASETS, or "capstone" (capstone_dataset())


def submission_stem(name: str, dataset: str) -> str:
    """The file name (without `.pt`) of model `name` submitted for scoring on `dataset`."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.{dataset}"


def submission_path(name: str, dataset: str) -> str | None:
    """Where a model submitted for scoring is saved while grading (None when not grading)."""
    folder = os.environ.get("COURSE_SCORING_DIR")
    if not folder:
        return None
    return os.path.join(folder, submission_stem(name, dataset) + ".pt")


def submit_model(model: torch.nn.Module, name: str, dataset: str, crash_hint: str) -> None:
    """Save `model` (its class by value, with cloudpickle, and its weights) for the grader's
    scorer; while grading, in the probe, from the student's real model."""
    from autograder import witness
    witness.boundary("submit", _save_model, model, name, dataset, crash_hint)


def _save_model(model: torch.nn.Module, name: str, dataset: str, crash_hint: str) -> None:
    import cloudpickle

    path = submission_path(name, dataset)
    what = _("{name} submitted for scoring").format(name=name)
    if path is None:
        fail(what, _("a grading run (COURSE_SCORING_DIR)"), _("none"), _("only the grader scores the hidden split"))
    try:
        torch.save(model, path, pickle_module=cloudpickle)
    except Exception as err:  # noqa: BLE001 — a model that cannot be saved cannot be scored
        fail(what, _("a model that can be saved"), error_line(err), crash_hint)


def expect_split_accuracy(model: torch.nn.Module, split: str, threshold: float, name: str,
                          crash_hint: str, low_hint: str, dataset: str = "mnist") -> None:
    """Accuracy of `model` on `autograder.data.dataset_splits(dataset)[split]` (eval mode, no
    grad, the model's device, counted here) is at least `threshold`; the model's mode is restored.

    While grading (`COURSE_SCORING_DIR` set), the "test" split is not evaluated here: the model
    is submitted and the grader scores it in a separate process (see `Scored`)."""
    from autograder import witness
    from autograder.data import dataset_splits

    what = _("{name} accuracy on {split}").format(name=name, split=_split_name(split))
    if not isinstance(model, torch.nn.Module):
        fail(what, at_least(threshold), type(model).__name__, _("pass the trained model"))
    if split == "test" and (witness.active() or submission_path(name, dataset) is not None):
        submit_model(model, name, dataset, crash_hint)
        return
    X, y = dataset_splits(dataset)[split].tensors
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(y), 500):
                logits = model(X[start:start + 500].to(device))
                correct += int((logits.argmax(dim=1).cpu() == y[start:start + 500]).sum())
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001  (the student's model failed to run)
        fail(what, at_least(threshold), error_line(err), crash_hint)
    finally:
        model.train(was_training)
    acc = correct / len(y)
    expect(acc >= threshold, what, at_least(threshold), f"{acc:.3f}", low_hint)


class Skipped(Exception):
    """A check this machine cannot run (no CUDA): the grader's course.yml policy decides its points."""


def device_record(model: torch.nn.Module | None) -> dict[str, list[str]]:
    """The devices `model`'s training ran on (autograder.runtime), as sorted lists."""
    from autograder.runtime import training_devices
    return {k: sorted(v) for k, v in training_devices(model).items()}


def expect_gpu_execution(what: str, model: torch.nn.Module | None = None) -> None:
    """`model` (or, without one, any model) was trained in this notebook with its parameters and
    batches on the device the grader offers (`get_device()`), as `autograder.runtime` recorded.
    Fails when no training step of it ran; without CUDA, raises `Skipped` while grading and
    prints a note otherwise."""
    from autograder import witness
    from autograder.runtime import get_device

    label = _("{what} device").format(what=what)
    if model is not None and not isinstance(model, torch.nn.Module):
        fail(label, _("the trained model"), type(model).__name__, _("pass the model the training cell trained"))
    # evidence the student's process reports (while grading, recorded by the probe)
    seen = witness.boundary("devices", device_record, model)
    if not isinstance(seen, dict) or not all(isinstance(seen.get(k), list) for k in ("parameters", "batches")):
        fail(label, _("the device record of the training"), _("none"), _("run the training cell above"))
    seen = {k: {str(d) for d in seen[k]} for k in ("parameters", "batches")}
    if not seen["batches"]:
        fail(label, _("a training step of the model in this notebook"), _("none recorded"),
             _("run the training cell above: forward passes in train() mode with gradients"))
    # the grader's device: the judge's own, never what the notebook says
    offered = witness.SESSION.device if witness.judging() else get_device().type
    if offered == "cpu":
        if witness.active() or os.environ.get("COURSE_GRADING"):
            raise Skipped(_("no CUDA on this grader"))
        print(_("{label}: skipped: no CUDA on this machine (the grader checks it where it has a GPU)").format(label=label))
        return
    if seen["parameters"] != {offered} or offered not in seen["batches"]:
        fail(label, _("parameters and batches on {device}").format(device=offered),
             _("parameters on {parameters}, batches on {batches}").format(
                 parameters="/".join(sorted(seen["parameters"])), batches="/".join(sorted(seen["batches"]))),
             _("device = get_device(); move the model with model.to(device) and every batch with .to(device)"))


@lru_cache(maxsize=None)
def golden(lab: str) -> dict:
    """Golden values that `course build` recorded from the reference for `lab` (JSON)."""
    path = resources.files("autograder") / "golden" / f"{lab}.json"
    return json.loads(path.read_text())
