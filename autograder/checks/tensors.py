"""Checks of lab 01, Tensors and data (course.yml: lab `tensors`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from scikit-learn's iris data, numpy and pandas, never from `reference`.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/tensors.po).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from autograder.checks import drawn, call_student as _call
from autograder.checks import expect, expect_close, expect_shape, fail
from autograder.i18n import Domain

_ = Domain("tensors").gettext
ngettext = Domain("tensors").ngettext

__all__ = ["iris_tensors", "to_tensor", "standardize"]


# --- helpers (private) --------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return _("a {dtype} tensor of shape {shape}").format(dtype=value.dtype, shape=tuple(value.shape))
    if isinstance(value, np.ndarray):
        return _("a numpy array ({dtype})").format(dtype=value.dtype)
    return type(value).__name__


def _expect_tensor(value: Any, what: str) -> None:
    if isinstance(value, np.ndarray):
        fail(what, _("a torch.Tensor"), _kind(value),
             _("turn the array into a tensor: torch.tensor(array) or torch.from_numpy(array)"))
    expect(isinstance(value, torch.Tensor), what, _("a torch.Tensor"), _kind(value), _("return a torch.Tensor"))


def _first_difference(got: torch.Tensor, expected: torch.Tensor) -> tuple[str, str]:
    """(expected, got) at the first element that differs, with its index."""
    diff = (got.to(torch.float64) != expected.to(torch.float64)).nonzero()
    at = tuple(int(i) for i in diff[0]) if len(diff) else ()
    e, g = expected[at].item(), got[at].item()
    index = "[" + ", ".join(map(str, at)) + "]"
    return _("{value} at {index}").format(value=f"{e:.6g}", index=index), f"{g:.6g}"


def _iris() -> dict[str, np.ndarray]:
    """load_iris()'s data (float64 [150, 4]), target (int [150]) and feature_names, read from
    the CSV file that scikit-learn ships, without importing scikit-learn: its import (scipy's)
    costs 1.2 s in every check process and judge."""
    from importlib.util import find_spec

    origin = find_spec("sklearn").origin            # finds the package without running it
    table = np.loadtxt(Path(origin).parent / "datasets" / "data" / "iris.csv", delimiter=",", skiprows=1)
    return {"data": table[:, :4], "target": table[:, 4].astype(int),
            "feature_names": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]}


# --- iris_tensors -------------------------------------------------------------------------------


def iris_tensors(iris_tensors: Callable) -> None:
    """(X float32 [150, 4], y int64 [150]) holding load_iris()'s data and target, in order."""
    what = "iris_tensors()"
    out = _call(iris_tensors, what)
    expect(isinstance(out, (tuple, list)) and len(out) == 2, what, _("a pair (X, y)"),
           _("{kind} of length {n}").format(kind=_kind(out), n=len(out)) if isinstance(out, (tuple, list)) else _kind(out),
           _("return X, y"))
    X, y = out
    iris = _iris()

    _expect_tensor(X, f"{what} X")
    expect_shape(X, (150, 4), f"{what} X", _("150 flowers, 4 measurements each: iris['data']"))
    hint = _("numpy's default is float64 and torch.from_numpy keeps it: add .float() (nn layers are float32)")
    expect(X.dtype == torch.float32, f"{what} X dtype", "torch.float32", str(X.dtype), hint)
    expected_X = torch.from_numpy(iris["data"]).float()
    if not torch.equal(X.detach().cpu(), expected_X):
        e, g = _first_difference(X.detach().cpu(), expected_X)
        fail(f"{what} X", e, g, _("X is iris['data'] as it is: every row in its order, the columns as feature_names"))

    _expect_tensor(y, f"{what} y")
    expect_shape(y, (150,), f"{what} y", _("one label per flower: iris['target'], a flat [150] tensor"))
    if y.dtype.is_floating_point:
        hint = _("the labels are class indices, integers: .long() (nn.CrossEntropyLoss wants int64)")
    else:
        hint = _("numpy's integer is int32 on some systems: .long() makes the labels int64 everywhere")
    expect(y.dtype == torch.int64, f"{what} y dtype", "torch.int64", str(y.dtype), hint)
    expected_y = torch.from_numpy(iris["target"]).long()
    if not torch.equal(y.cpu(), expected_y):
        e, g = _first_difference(y.cpu(), expected_y)
        fail(f"{what} y", e, g, _("y is iris['target'] as it is: 0, 1 or 2, in the order of the rows of X"))


# --- to_tensor ----------------------------------------------------------------------------------


def _to_tensor_cases() -> list[tuple[str, Any, np.ndarray]]:
    """(what, obj, expected values in float64): literal lists, then drawn flowers and integers
    (autograder.checks.drawn: a grading run's draw gives cases no notebook saw)."""
    iris = _iris()
    gen = drawn(104)
    rows = [int(50 * species + torch.randint(0, 50, (), generator=gen)) for species in (0, 1, 2, 0, 1)]
    data = iris["data"][rows]  # float64
    df = pd.DataFrame(data, columns=iris["feature_names"], index=[10, 20, 30, 40, 50])
    df["label"] = iris["target"][rows]  # an int64 column next to float64 ones
    ints = torch.randint(0, 10, (4,), generator=gen).numpy().astype(np.int64)
    return [
        ("to_tensor([[1, 2, 3], [4, 5, 6]])", [[1, 2, 3], [4, 5, 6]], np.array([[1.0, 2, 3], [4, 5, 6]])),
        ("to_tensor([0.5, 1.5, 2.5])", [0.5, 1.5, 2.5], np.array([0.5, 1.5, 2.5])),
        (_("to_tensor(float64 array [5, 4])"), data.copy(), data.copy()),
        (_("to_tensor(int64 array [4])"), ints.copy(), ints.astype(np.float64)),
        (_("to_tensor(DataFrame, 5 rows x 5 columns)"), df, df.to_numpy(dtype=np.float64)),
    ]


def _dtype_hint(dtype: torch.dtype) -> str:
    if dtype == torch.float64:
        return _("float64 (numpy's default, and Python's float) is kept by torch.tensor and torch.from_numpy: "
                 "ask for dtype=torch.float32")
    if not dtype.is_floating_point:
        return _("integers give an integer tensor: ask for dtype=torch.float32")
    return _("ask for dtype=torch.float32")


def to_tensor(to_tensor: Callable) -> None:
    """float32 tensors with the values and shape of a list of ints, a list of floats, float64 and
    int arrays and a DataFrame (mixed float/int columns, a custom index); the input left alone."""
    for what, obj, expected in _to_tensor_cases():
        before = copy.deepcopy(obj)
        is_df = isinstance(obj, pd.DataFrame)
        hint = _("torch.tensor(df) does not take a DataFrame: take its values with df.to_numpy() first") if is_df else ""
        out = _call(to_tensor, what, obj, hint=hint)
        if is_df:
            unchanged = obj.equals(before)
        elif isinstance(obj, np.ndarray):
            unchanged = bool(np.array_equal(obj, before)) and obj.dtype == before.dtype
        else:
            unchanged = obj == before
        expect(unchanged, _("{what}: the object given").format(what=what), _("unchanged"), _("modified"),
               _("convert a copy, leave the input alone"))
        _expect_tensor(out, what)
        expect(out.dtype == torch.float32, f"{what} dtype", "torch.float32", str(out.dtype), _dtype_hint(out.dtype))
        e = torch.from_numpy(expected).float()
        hint = (_("the shape of the data: one row per row of the DataFrame, one column per column (the index is not data)")
                if is_df else _("the shape of the data: a list of rows gives [rows, columns]"))
        expect_shape(out, tuple(e.shape), what, hint)
        expect_close(out.detach(), e, what, atol=0.0, rtol=0.0,
                     hint=hint if is_df else _("the same values, converted to float32"))


# --- standardize --------------------------------------------------------------------------------


def _standardized(X: torch.Tensor, dim: int | None = 0, correction: int = 0) -> torch.Tensor:
    """(X - mean) / std in float64, a zero std replaced by 1 (and variants, for hints)."""
    X = X.to(torch.float64)
    mean = X.mean() if dim is None else X.mean(dim=dim, keepdim=True)
    std = X.std(correction=correction) if dim is None else X.std(dim=dim, correction=correction, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (X - mean) / std


def _standardize_hint(got: torch.Tensor, X: torch.Tensor) -> str | None:
    """The hint for a known wrong variant that `got` matches, else None."""
    X64 = X.to(torch.float64)
    std = X64.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    variants = [
        (_standardized(X, correction=1), _("population std: X.std(dim=0, correction=0) divides by N; "
                                           "torch's default (correction=1, like pandas) divides by N - 1")),
        (_standardized(X, dim=1), _("column-wise: the statistics run over the rows, dim=0 (one mean per feature)")),
        (_standardized(X, dim=None), _("one mean and one std per column (dim=0), not one for the whole tensor")),
        (X64 / std, _("subtract the column mean before dividing by the std")),
        (X64 - X64.mean(dim=0), _("divide by the column std after subtracting the mean")),
    ]
    for variant, text in variants:
        if variant.shape == got.shape and torch.allclose(got, variant, atol=1e-4, rtol=1e-4, equal_nan=False):
            return text
    return None


def standardize(standardize: Callable) -> None:
    """(X - mean) / population std per column, a constant column → 0 (not NaN), float32 out, X
    unchanged: on a 2 x 2 example with a constant column, on iris, and on [6, 3] with two constant
    columns."""
    iris = torch.from_numpy(_iris()["data"]).float()
    g = drawn(1)
    rand = torch.randn(6, 3, generator=g)
    rand[:, 1] = 2.5  # constant columns: std 0
    rand[:, 2] = 0.0
    cases = [
        ("standardize([[1, 10], [3, 10]])", torch.tensor([[1.0, 10.0], [3.0, 10.0]])),
        ("standardize(iris X [150, 4])", iris),
        (_("standardize(X [6, 3] with constant columns 2.5 and 0)"), rand),
    ]
    for what, X in cases:
        before = X.clone()
        out = _call(standardize, what, X)
        expect(bool(torch.equal(X, before)), _("{what}: X after the call").format(what=what), _("unchanged"), _("modified"),
               _("compute a new tensor: X -= mean or X /= std changes the caller's data"))
        _expect_tensor(out, what)
        expect_shape(out, tuple(X.shape), what, _("the shape of X: every value standardized within its column"))
        expect(out.dtype == X.dtype, f"{what} dtype", str(X.dtype), str(out.dtype), _("return the dtype of X (float32)"))
        got = out.detach().to(torch.float64)
        constant = (X.max(dim=0).values == X.min(dim=0).values).nonzero().flatten().tolist()
        if not bool(torch.isfinite(got).all()):
            bad = sorted({int(j) for j in (~torch.isfinite(got)).nonzero()[:, 1]})
            hint = _("a constant column has std 0 and 0 / 0 = NaN: divide by 1 where the std is 0, so the column becomes 0")
            if not set(bad) <= set(constant):
                hint = _("look for a division by zero")
            fail(what, _("finite values"), ngettext("NaN or inf in column {columns}", "NaN or inf in columns {columns}",
                                                   len(bad)).format(columns=", ".join(map(str, bad))), hint)
        expected = _standardized(X)
        if not torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
            hint = _standardize_hint(got, X)
            if hint is None and constant and not torch.allclose(got[:, constant], expected[:, constant], atol=1e-5):
                hint = _("a constant column (std 0) becomes 0: divide by 1 where the std is 0")
            hint = hint or _("one mean and one population std per column: (X - X.mean(dim=0)) / X.std(dim=0, correction=0)")
            err = (got - expected).abs()
            r, c = divmod(int(err.argmax()), X.shape[1])
            fail(what, _("{value} at {index}").format(value=f"{float(expected[r, c]):.6g}", index=f"[{r}, {c}]"),
                 f"{float(got[r, c]):.6g}", hint)
