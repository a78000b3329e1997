"""Planted bugs of lab 01 (tensors): each edits one answer cell and fails exactly its own check.

iris_tensors builds its tensors itself instead of calling to_tensor, so neither drags the other.
"""
from tests.planted import bug

BUGS = [
    bug("standardize-sample-std", "standardize", "correction=0", "correction=1", {"standardize"}),
    bug("to-tensor-keeps-float64", "to_tensor", ", dtype=torch.float32)", ")", {"to_tensor"}),
    bug("standardize-no-constant-guard", "standardize", "std = torch.where(std > 0, std, torch.ones_like(std))",
        "std = std", {"standardize"}),
    bug("iris-X-float64", "iris_tensors", 'torch.from_numpy(iris["data"]).float()', 'torch.from_numpy(iris["data"])',
        {"iris_tensors"}),
    bug("iris-y-float", "iris_tensors", ".long()", ".float()", {"iris_tensors"}),
]
