"""Planted bugs of lab 03 (backprop): each edits one answer cell and fails exactly its own check.

mlp_backward recomputes the forward pass itself, so a bug in mlp_forward fails mlp_forward only;
worked_example writes its SGD step out instead of calling sgd_step, so neither drags the other.
"""
from tests.planted import bug

BUGS = [
    bug("worked-example-error-sign", "worked_example", "error = tar - pred  # 0.69", "error = pred - tar  # 0.69",
        {"worked_example"}),
    bug("sgd-step-adds-the-gradient", "sgd_step", "params - lr * grads", "params + lr * grads", {"sgd_step"}),
    bug("mlp-forward-no-sigmoid", "mlp_forward", 'h = torch.sigmoid(x @ params["W1"].T + params["b1"])',
        'h = x @ params["W1"].T + params["b1"]', {"mlp_forward"}),
    bug("mlp-backward-sign-error", "mlp_backward", "2 * (out - y)", "2 * (y - out)", {"mlp_backward"}),
    bug("mlp-backward-sigmoid-derivative", "mlp_backward", "d_h * h * (1 - h)", "d_h * h", {"mlp_backward"}),
    bug("mlp-backward-mean-over-samples-only", "mlp_backward", "/ out.numel()", "/ out.shape[0]", {"mlp_backward"}),
    bug("numerical-gradient-forgets-the-2", "numerical_gradient", "/ (2 * h)", "/ h", {"numerical_gradient"}),
    bug("numerical-gradient-no-restore", "numerical_gradient", "flat_x[k] = old  # restore", "pass",
        {"numerical_gradient"}),
    bug("rel-error-no-floor", "rel_error", ".clamp(min=1e-8)", "", {"rel_error"}),
    bug("sigmoid-grad-of-x", "sigmoid_grad", "return s * (1 - s)", "return x * (1 - x)", {"sigmoid_grad"}),
]
