"""The checks of lab 01 (tensors): the reference passes every one, and every one can fail.

Each check runs on the reference function (must pass) and on buggy variants (must raise an
AssertionError that reads `... expected ..., got ... — hint`). The planted bugs of
tests/planted/tensors.py are applied to the reference source here too, function by function,
to prove each fails exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_iris

import reference.tensors as R
from autograder.checks import tensors as checks
from tests.judging import fails


# --- buggy variants, per check ------------------------------------------------------------------


def iris_x_float64():
    iris = load_iris()
    return torch.from_numpy(iris["data"]), torch.from_numpy(iris["target"]).long()


def iris_y_float():
    X, y = R.iris_tensors()
    return X, y.float()


def iris_y_int32():
    X, y = R.iris_tensors()
    return X, y.int()


def iris_numpy():
    iris = load_iris()
    return iris["data"].astype(np.float32), iris["target"]


def iris_shuffled():
    X, y = R.iris_tensors()
    perm = torch.randperm(150, generator=torch.Generator().manual_seed(0))
    return X[perm], y[perm]


def iris_only_x():
    return R.iris_tensors()[0]


def iris_y_column():
    X, y = R.iris_tensors()
    return X, y.unsqueeze(1)


def iris_standardized():
    X, y = R.iris_tensors()
    return R.standardize(X), y


def to_tensor_plain(obj):
    return torch.tensor(obj)  # int64 for a list of ints, float64 for arrays, fails on a DataFrame


def to_tensor_from_numpy(obj):
    if isinstance(obj, pd.DataFrame):
        obj = obj.to_numpy()
    return torch.from_numpy(np.asarray(obj))  # keeps float64 and int64


def to_tensor_float64(obj):
    if isinstance(obj, pd.DataFrame):
        obj = obj.to_numpy()
    return torch.tensor(np.asarray(obj), dtype=torch.float64)


def to_tensor_numpy(obj):
    if isinstance(obj, pd.DataFrame):
        obj = obj.to_numpy()
    return np.asarray(obj, dtype=np.float32)


def to_tensor_with_index(obj):
    if isinstance(obj, pd.DataFrame):
        obj = obj.reset_index().to_numpy()  # the index becomes a column
    return torch.tensor(np.asarray(obj), dtype=torch.float32)


def to_tensor_in_place(obj):
    out = R.to_tensor(obj)
    if isinstance(obj, np.ndarray):
        obj[0] = 0  # modifies the caller's array
    return out


def to_tensor_reinterprets_in_place(obj):
    out = R.to_tensor(obj)
    if isinstance(obj, np.ndarray) and obj.dtype == np.float64:
        obj.dtype = np.int64  # the caller's array, its bytes read as integers (the judge must see it too)
    return out


def to_tensor_reshapes_in_place(obj):
    out = R.to_tensor(obj)
    if isinstance(obj, np.ndarray) and obj.ndim == 2:
        obj.shape = (obj.size,)  # the caller's array, flattened
    return out


def standardize_sample_std(X):
    std = X.std(dim=0)  # divides by N - 1
    return (X - X.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))


def standardize_no_guard(X):
    return (X - X.mean(dim=0)) / X.std(dim=0, correction=0)


def standardize_rows(X):
    std = X.std(dim=1, keepdim=True, correction=0)
    return (X - X.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))


def standardize_global(X):
    return (X - X.mean()) / X.std(correction=0)


def standardize_in_place(X):
    std = X.std(dim=0, correction=0)
    X -= X.mean(dim=0)
    X /= torch.where(std > 0, std, torch.ones_like(std))
    return X


def standardize_float64(X):
    return R.standardize(X.double())


def standardize_no_centering(X):
    std = X.std(dim=0, correction=0)
    return X / torch.where(std > 0, std, torch.ones_like(std))


BUGGY: dict[str, list[Callable]] = {
    "iris_tensors": [iris_x_float64, iris_y_float, iris_y_int32, iris_numpy, iris_shuffled, iris_only_x,
                     iris_y_column, iris_standardized],
    "to_tensor": [to_tensor_plain, to_tensor_from_numpy, to_tensor_float64, to_tensor_numpy, to_tensor_with_index,
                  to_tensor_in_place, to_tensor_reinterprets_in_place, to_tensor_reshapes_in_place],
    "standardize": [standardize_sample_std, standardize_no_guard, standardize_rows, standardize_global,
                    standardize_in_place, standardize_float64, standardize_no_centering],
}


@pytest.mark.parametrize(
    "name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=lambda v: getattr(v, "__name__", v)
)
def test_check_fails_on_buggy_variant(name, buggy):
    message = fails(getattr(checks, name), buggy)


@pytest.mark.parametrize(
    "buggy,words",
    [
        (iris_x_float64, ".float()"),
        (iris_y_float, ".long()"),
        (iris_y_int32, "int32"),
        (iris_numpy, "torch.from_numpy"),
        (iris_shuffled, "order"),
        (iris_only_x, "X, y"),
        (to_tensor_plain, "dtype=torch.float32"),
        (to_tensor_from_numpy, "int64"),
        (to_tensor_numpy, "torch.Tensor"),
        (to_tensor_with_index, "index"),
        (to_tensor_in_place, "leave the input alone"),
        (to_tensor_reinterprets_in_place, "leave the input alone"),
        (to_tensor_reshapes_in_place, "leave the input alone"),
        (standardize_sample_std, "correction=0"),
        (standardize_no_guard, "0 / 0 = NaN"),
        (standardize_rows, "dim=0"),
        (standardize_global, "per column"),
        (standardize_in_place, "changes the caller's data"),
        (standardize_float64, "float32"),
        (standardize_no_centering, "subtract the column mean"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, fns in BUGGY.items() if buggy in fns)
    message = fails(getattr(checks, name), buggy)
    assert words in message, message


def test_dataframe_error_is_one_clear_line_with_the_original_chained():
    def to_tensor_df_fails(obj):
        if isinstance(obj, pd.DataFrame):
            return torch.tensor(obj, dtype=torch.float32)  # the seed's error
        return R.to_tensor(obj)

    with pytest.raises(AssertionError) as info:
        checks.to_tensor(to_tensor_df_fails)
    assert "to_numpy()" in str(info.value) and info.value.__cause__ is not None


# --- planted bugs, applied to the reference source ----------------------------------------------



def test_the_checks_read_scikit_learns_iris_without_importing_it():
    """The checks read iris from scikit-learn's CSV file (importing scikit-learn costs 1.2 s in
    each check process and judge): the same numbers as load_iris()."""
    from autograder.checks import tensors as T
    iris, ours = load_iris(), T._iris()
    assert np.array_equal(ours["data"], iris["data"]) and ours["data"].dtype == iris["data"].dtype
    assert np.array_equal(ours["target"], iris["target"]) and ours["target"].dtype == iris["target"].dtype
    assert ours["feature_names"] == iris["feature_names"]
