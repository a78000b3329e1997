"""Planted bugs of lab 02 (forward): each edits one answer cell and fails exactly its own check.

The activations are written independently of each other (tanh does not call sigmoid), so a bug in
one never reaches another's check.
"""
from tests.planted import bug

BUGS = [
    bug("linear-forward-W-not-transposed", "linear_forward", "x @ W.T + b", "x @ W + b", {"linear_forward"}),
    bug("perceptron-step-at-ge", "perceptron", "s > 0, 1.0", "s >= 0, 1.0", {"perceptron"}),
    bug("tanh-overflows-at-1000", "tanh", "return torch.where(pos, t, -t)",
        "return (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))", {"tanh"}),
    bug("sigmoid-naive-nan-gradient", "sigmoid", "return torch.where(pos, 1 / (1 + z), z / (1 + z))",
        "return 1 / (1 + torch.exp(-x))", {"sigmoid"}),
    bug("sigmoid-calls-torch-sigmoid", "sigmoid", "return torch.where(pos, 1 / (1 + z), z / (1 + z))",
        "return torch.sigmoid(x)", {"sigmoid"}),
    bug("relu-abs", "relu", "torch.where(x > 0, x, torch.zeros_like(x))", "torch.where(x > 0, x, -x)", {"relu"}),
    bug("linear-forward-no-bias", "linear_forward", "x @ W.T + b", "x @ W.T", {"linear_forward"}),
]
