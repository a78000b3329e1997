"""reference.tensors against scikit-learn, numpy and pandas as the oracles (LABS.md, lab 01)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from reference.tensors import iris_tensors, standardize, to_tensor


@pytest.fixture(scope="module")
def iris():
    return load_iris()


# --- iris_tensors -------------------------------------------------------------------------------


def test_iris_tensors_shapes_dtypes_and_values(iris):
    X, y = iris_tensors()
    assert X.shape == (150, 4) and X.dtype == torch.float32
    assert y.shape == (150,) and y.dtype == torch.int64
    np.testing.assert_array_equal(X.numpy(), iris["data"].astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), iris["target"])
    assert torch.bincount(y).tolist() == [50, 50, 50]  # three species, 50 flowers each


def test_iris_tensors_do_not_share_memory_with_a_later_call():
    X1, _ = iris_tensors()
    X1[0, 0] = -1.0
    X2, _ = iris_tensors()
    assert X2[0, 0] == pytest.approx(5.1)


# --- to_tensor ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, shape",
    [
        ([1, 2, 3], (3,)),
        ([[1, 2, 3], [4, 5, 6]], (2, 3)),
        ([0.5, 1.5], (2,)),
        (np.arange(6).reshape(2, 3), (2, 3)),
        (np.linspace(0, 1, 5), (5,)),
        (np.ones((2, 2), dtype=np.float32), (2, 2)),
    ],
)
def test_to_tensor_lists_and_arrays(obj, shape):
    out = to_tensor(obj)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == shape
    np.testing.assert_array_equal(out.numpy(), np.asarray(obj, dtype=np.float32))


def test_to_tensor_dataframe_where_torch_tensor_fails(iris):
    df = pd.DataFrame(iris["data"], columns=iris["feature_names"])
    df["label"] = iris["target"]  # the seed's iris_df: four float64 columns and the label
    with pytest.raises((TypeError, ValueError)):
        torch.tensor(df)  # the seed's error: torch does not read a DataFrame
    out = to_tensor(df)
    assert out.dtype == torch.float32 and out.shape == (150, 5)
    np.testing.assert_array_equal(out.numpy(), df.to_numpy().astype(np.float32))


def test_to_tensor_drops_the_index():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]}, index=["x", "y"])
    assert to_tensor(df).tolist() == [[1.0, 3.0], [2.0, 4.0]]


def test_to_tensor_copies():
    a = np.zeros(3, dtype=np.float32)
    out = to_tensor(a)
    out[0] = 1.0
    assert a[0] == 0.0


def test_from_numpy_shares_memory_and_torch_tensor_copies():
    # what the notebook teaches: from_numpy is a view of the array, torch.tensor a copy
    a = np.zeros(3)
    shared, copied = torch.from_numpy(a), torch.tensor(a)
    a[0] = 7.0
    assert shared[0] == 7.0 and copied[0] == 0.0
    assert shared.dtype == torch.float64  # numpy's float64 is kept
    with pytest.raises(RuntimeError):
        torch.nn.Linear(3, 1)(shared)  # float64 input, float32 weights
    assert torch.nn.Linear(3, 1)(shared.float()).dtype == torch.float32


# --- standardize --------------------------------------------------------------------------------


def test_standardize_matches_sklearn_standard_scaler(iris):
    X = torch.from_numpy(iris["data"]).float()
    out = standardize(X)
    expected = StandardScaler().fit_transform(iris["data"])  # population std, as the contract
    assert out.dtype == torch.float32 and out.shape == X.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    torch.testing.assert_close(out.mean(dim=0), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.std(dim=0, correction=0), torch.ones(4), atol=1e-6, rtol=0)


def test_standardize_uses_the_population_std():
    X = torch.tensor([[1.0, 10.0], [3.0, 10.0]])
    assert standardize(X).tolist() == [[-1.0, 0.0], [1.0, 0.0]]  # sample std would give ±0.7071
    x = np.array([1.0, 3.0])
    assert np.std(x) == 1.0 and pd.Series(x).std() == pytest.approx(2**0.5)  # numpy ddof=0, pandas ddof=1
    assert torch.tensor(x).std().item() == pytest.approx(2**0.5)  # torch's default divides by N - 1 too


@pytest.mark.parametrize("value", [0.0, 2.5, 5.1, 0.1, 3.3])
def test_a_constant_column_becomes_zero(value):
    X = torch.stack([torch.full((150,), value), torch.arange(150.0)], dim=1)
    out = standardize(X)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, 0], torch.zeros(150))  # exactly 0, also where float32's mean rounds
    expected = StandardScaler().fit_transform(X.numpy().astype(np.float64))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_float32_rounding_makes_a_constant_column_look_variable():
    # why standardize computes its statistics in float64: in float32 the mean of 150 copies of
    # 5.1 is not exactly 5.1, so the column's std is not exactly 0
    column = torch.full((150,), 5.1)
    assert column.std(correction=0).item() > 0
    assert column.double().std(correction=0).item() == 0.0


def test_standardize_leaves_x_alone():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 3, generator=g) * 5 + 2
    before = X.clone()
    standardize(X)
    assert torch.equal(X, before)
