"""Planted bugs of lab 09 (convolution): each edits one answer cell and fails exactly its own check.

conv2d computes its output size itself (it does not call conv_output_size) and the poolings do
not call conv2d, so no bug drags another exercise's check down. The second bug goes through real
notebooks (tests/test_grading.py): a by-hand rule the judge must see from the record.
"""
from tests.planted import bug

BUGS = [
    # the bug: floor division where the stride does not fit; strict=True must raise
    bug("conv-output-size-floors-when-strict", "conv_output_size",
        "    if strict and span % s != 0:\n", "    if strict and span < 0:\n", {"conv_output_size"}),
    # the built-in op gives the right numbers: only the by-hand rule, recorded where the student's
    # code runs, can fail it (the judge sees the names of the torch functions called)
    bug("conv2d-calls-f-conv2d", "conv2d", "    if b is not None:\n        out = out + b.view(1, O, 1, 1)",
        "    out = F.conv2d(x, w, b, stride=stride, padding=padding)", {"conv2d"}),
    bug("conv2d-forgets-the-bias", "conv2d", "out = out + b.view(1, O, 1, 1)", "out = out", {"conv2d"}),
    bug("conv2d-pads-one-side", "conv2d", "F.pad(x, (padding, padding, padding, padding))",
        "F.pad(x, (padding, 0, padding, 0))", {"conv2d"}),
    bug("max-pool-stride-defaults-to-1", "max_pool2d", "s = k if s is None else s", "s = 1 if s is None else s",
        {"max_pool2d"}),
    bug("avg-pool-divides-by-k", "avg_pool2d", "windows.mean(dim=(-2, -1))", "windows.sum(dim=(-2, -1)) / k",
        {"avg_pool2d"}),
    bug("conv-params-no-bias", "conv_params", "return c_out * (c_in * k * k + 1)", "return c_out * c_in * k * k", {"conv_params"}),
    bug("conv-macs-counts-the-bias", "conv_macs", "return c_out * h_out * w_out * c_in * k * k",
        "return c_out * h_out * w_out * (c_in * k * k + 1)", {"conv_macs"}),
    bug("conv2d-flips-the-kernel", "conv2d", "* w).sum(dim=(2, 3, 4))", "* w.flip(-2, -1)).sum(dim=(2, 3, 4))",
        {"conv2d"}),
    bug("max-pool-calls-f-max-pool2d", "max_pool2d", "return windows.amax(dim=(-2, -1))",
        "return F.max_pool2d(x, k, s)", {"max_pool2d"}),
    # weight sharing forgotten: each position overwrites the weight gradient, the last one wins
    bug("conv2d-backward-weight-from-last-position", "conv2d_backward", "grad_w += (g * window.unsqueeze(1))",
        "grad_w = (g * window.unsqueeze(1))", {"conv2d_backward"}),
    bug("conv2d-backward-bias-averaged", "conv2d_backward", "grad_b = grad_out.sum(dim=(0, 2, 3))",
        "grad_b = grad_out.mean(dim=(0, 2, 3))", {"conv2d_backward"}),
]
