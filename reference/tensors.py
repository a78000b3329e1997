"""Lab 01 — Tensors and data (seed 000).

numpy arrays, pandas DataFrames and torch tensors, and moving between them. The lecture loads
the iris flowers with scikit-learn, shows them as a numpy array, as a DataFrame with column
names and as a torch tensor — and `torch.tensor(DataFrame)` failing. The working conversions:
`df.to_numpy()`, then `torch.from_numpy` (shares memory with the array) or `torch.tensor`
(copies); and numpy's default float64 has to become torch's float32 before it meets a layer.

Every exercise function is self-contained (it uses only torch, numpy, pandas and load_iris),
because its source is what the notebook shows.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_iris

__all__ = ["iris_tensors", "to_tensor", "standardize"]


def iris_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The iris data set (scikit-learn's `load_iris`) as tensors, rows in the data set's order.

    Returns (X, y):
      X: float32 [150, 4], the four measurements in cm (sepal length, sepal width,
         petal length, petal width);
      y: int64 [150], the species as a class index 0, 1 or 2.
    """
    iris = load_iris()
    X = torch.from_numpy(iris["data"]).float()  # numpy float64 -> float32, the dtype of nn layers
    y = torch.from_numpy(iris["target"]).long()  # int64 class indices (numpy's int is int32 on Windows)
    return X, y


def to_tensor(obj: Any) -> torch.Tensor:
    """A float32 tensor with the values of `obj`: a (nested) list, a numpy array or a DataFrame.

    The result has the shape of the data: [N] for a flat list, [N, D] for a list of rows, an
    array of shape [N, D] or a DataFrame of N rows and D columns (its index and column names
    are dropped).
    """
    if isinstance(obj, pd.DataFrame):
        obj = obj.to_numpy()  # torch.tensor(df) raises: torch reads arrays and lists, not DataFrames
    return torch.tensor(np.asarray(obj), dtype=torch.float32)  # a copy, in float32 whatever came in


def standardize(X: torch.Tensor) -> torch.Tensor:
    """Column-wise standardization: every column gets mean 0 and standard deviation 1.

    X: [N, D] float32. Returns [N, D] of the dtype of X: (X - mean) / std with one mean and
    one *population* standard deviation (divide by N, not N - 1) per column. A constant column
    (std 0) becomes 0, never NaN. X itself is left unchanged.
    """
    X64 = X.double()  # float64 statistics: a constant column's mean is then exactly its value
    mean = X64.mean(dim=0)  # [D]
    std = X64.std(dim=0, correction=0)  # [D], population std: divide by N
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant column: 0 / 1 = 0, not 0 / 0 = NaN
    return ((X64 - mean) / std).to(X.dtype)  # [N, D], broadcast over the rows
