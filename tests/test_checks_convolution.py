"""The checks of lab 09 (convolution): the reference passes every one, and every one can fail.

Each check runs on the reference function (must pass) and on buggy variants (must raise an
AssertionError that reads `... expected ..., got ... — hint`). The planted bugs of
tests/planted/convolution.py are applied to the reference source here too, function by function,
to prove each fails exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reference.convolution as R
from autograder.checks import convolution as checks
from tests.planted.convolution import BUGS
from tests.judging import fails

CHECKS = ["conv_output_size", "conv2d", "max_pool2d", "avg_pool2d", "conv_params", "conv_macs", "conv2d_backward"]


# --- buggy variants, per check ------------------------------------------------------------------


def size_plain_floor(n, f, p=0, s=1, strict=True):
    return (n + 2 * p - f) // s + 1


def size_float(n, f, p=0, s=1, strict=True):
    return (n + 2 * p - f) / s + 1


def size_one_side(n, f, p=0, s=1, strict=True):
    return R.conv_output_size(n - p, f, p, s, strict=False) if (n + p - f) % s or not strict else (n + p - f) // s + 1


def size_ceil(n, f, p=0, s=1, strict=True):
    if strict and (n + 2 * p - f) % s:
        raise ValueError("does not fit")
    return math.ceil((n + 2 * p - f) / s) + 1


def size_raises_always(n, f, p=0, s=1, strict=True):
    if (n + 2 * p - f) % s:
        raise ValueError("does not fit")
    return (n + 2 * p - f) // s + 1


def size_wrong_exception(n, f, p=0, s=1, strict=True):
    assert not strict or (n + 2 * p - f) % s == 0, "does not fit"
    return (n + 2 * p - f) // s + 1


def size_no_plus_one(n, f, p=0, s=1, strict=True):
    return R.conv_output_size(n, f, p, s, strict) - 1


def size_no_padding(n, f, p=0, s=1, strict=True):
    return R.conv_output_size(n, f, 0, s, strict=False)


def conv_builtin(x, w, b=None, stride=1, padding=0):
    return F.conv2d(x, w, b, stride=stride, padding=padding)


def conv_module(x, w, b=None, stride=1, padding=0):
    layer = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding, bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
        return layer(x)


def conv_aten(x, w, b=None, stride=1, padding=0):
    return torch.ops.aten.convolution(x, w, b, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1)


def conv_no_bias(x, w, b=None, stride=1, padding=0):
    return R.conv2d(x, w, None, stride, padding)


def conv_all_biases(x, w, b=None, stride=1, padding=0):
    out = R.conv2d(x, w, None, stride, padding)
    return out if b is None else out + b.sum()


def conv_flipped(x, w, b=None, stride=1, padding=0):
    return R.conv2d(x, w.flip(-2, -1), b, stride, padding)


def conv_one_side(x, w, b=None, stride=1, padding=0):
    return R.conv2d(F.pad(x, (padding, 0, padding, 0)), w, b, stride, 0)


def conv_double_one_side(x, w, b=None, stride=1, padding=0):
    return R.conv2d(F.pad(x, (2 * padding, 0, 2 * padding, 0)), w, b, stride, 0)


def conv_ignores_stride(x, w, b=None, stride=1, padding=0):
    return R.conv2d(x, w, b, 1, padding)


def conv_ignores_padding(x, w, b=None, stride=1, padding=0):
    return R.conv2d(x, w, b, stride, 0)


def conv_kernel_axes_swapped(x, w, b=None, stride=1, padding=0):
    return R.conv2d(x, w.transpose(-2, -1), b, stride, padding)


def conv_in_place_pad(x, w, b=None, stride=1, padding=0):
    out = R.conv2d(x, w, b, stride, padding)
    x.relu_()  # "clean up" the caller's tensor afterwards
    return out


def conv_no_channel_sum(x, w, b=None, stride=1, padding=0):
    # one map per filter *and* input channel: [N, O, C, H_out, W_out]
    out = torch.stack([R.conv2d(x[:, c : c + 1], w[:, c : c + 1], None, stride, padding) for c in range(x.shape[1])], dim=2)
    return out if b is None else out + b.view(1, -1, 1, 1, 1)


def maxpool_in_place(x, k, s=None):
    out = R.max_pool2d(x, k, s)
    x.zero_()
    return out


def maxpool_builtin(x, k, s=None):
    return F.max_pool2d(x, k, s)


def maxpool_stride_1(x, k, s=None):
    return R.max_pool2d(x, k, 1 if s is None else s)


def maxpool_is_mean(x, k, s=None):
    return R.avg_pool2d(x, k, s)


def maxpool_from_zero(x, k, s=None):
    return R.max_pool2d(x, k, s).clamp_min(0.0)


def maxpool_across_channels(x, k, s=None):
    return R.max_pool2d(x, k, s).amax(dim=1, keepdim=True)


def maxpool_ceil(x, k, s=None):
    return F.pad(R.max_pool2d(F.pad(x, (0, k, 0, k), value=-1e9), k, s), (0, 0, 0, 0))[..., : -(-(x.shape[2] - k) // (s or k)) + 1, : -(-(x.shape[3] - k) // (s or k)) + 1]


def maxpool_ignores_s(x, k, s=None):
    return R.max_pool2d(x, k)


def avgpool_builtin(x, k, s=None):
    return torch.nn.AvgPool2d(k, s)(x)


def avgpool_divides_by_k(x, k, s=None):
    return R.avg_pool2d(x, k, s) * k


def avgpool_sum(x, k, s=None):
    return R.avg_pool2d(x, k, s) * k * k


def avgpool_stride_1(x, k, s=None):
    return R.avg_pool2d(x, k, 1 if s is None else s)


def avgpool_is_max(x, k, s=None):
    return R.max_pool2d(x, k, s)


def params_no_bias(c_in, c_out, k):
    return c_out * c_in * k * k


def params_one_bias(c_in, c_out, k):
    return c_out * c_in * k * k + 1


def params_no_channels(c_in, c_out, k):
    return c_out * (k * k + 1)


def params_float(c_in, c_out, k):
    return float(c_out * (c_in * k * k + 1))


def params_one_filter(c_in, c_out, k):
    return c_in * k * k + 1


def macs_with_bias(c_in, c_out, k, h_out, w_out):
    return c_out * h_out * w_out * (c_in * k * k + 1)


def macs_no_channels(c_in, c_out, k, h_out, w_out):
    return c_out * h_out * w_out * k * k


def macs_tensor(c_in, c_out, k, h_out, w_out):
    return torch.tensor(c_out * h_out * w_out * c_in * k * k)


def macs_one_filter(c_in, c_out, k, h_out, w_out):
    return h_out * w_out * c_in * k * k


def _autograd_grads(x, w, grad_out, stride, padding):
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    b = torch.zeros(w.shape[0], requires_grad=True)
    return x, w, b, R.conv2d(x, w, b, stride, padding)


def back_autograd(x, w, grad_out, stride=1, padding=0):
    x, w, b, out = _autograd_grads(x, w, grad_out, stride, padding)   # a forward by hand, then autograd
    out.backward(grad_out)
    return x.grad, w.grad, b.grad


def back_autograd_grad(x, w, grad_out, stride=1, padding=0):
    x, w, b, out = _autograd_grads(x, w, grad_out, stride, padding)
    return torch.autograd.grad(out, (x, w, b), grad_out)


def back_torch_nn_grad(x, w, grad_out, stride=1, padding=0):
    return (torch.nn.grad.conv2d_input(x.shape, w, grad_out, stride=stride, padding=padding),
            torch.nn.grad.conv2d_weight(x, w.shape, grad_out, stride=stride, padding=padding), grad_out.sum(dim=(0, 2, 3)))


def _back_loop(x, w, grad_out, stride, padding, *, assign_w=False, assign_x=False, crop=True, flip=False):
    """The reference's loop with the usual slips switched on."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = F.pad(x, (padding,) * 4)
    grad_xp, grad_w = torch.zeros_like(xp), torch.zeros_like(w)
    wk = w.flip(-2, -1) if flip else w
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            top, left = i * stride, j * stride
            window = xp[:, :, top:top + kh, left:left + kw]
            g = grad_out[:, :, i, j].reshape(N, O, 1, 1, 1)
            contribution = (g * window.unsqueeze(1)).sum(dim=0)
            grad_w = contribution if assign_w else grad_w + contribution
            part = (g * wk).sum(dim=1)
            if assign_x:
                grad_xp[:, :, top:top + kh, left:left + kw] = part
            else:
                grad_xp[:, :, top:top + kh, left:left + kw] += part
    grad_x = grad_xp[:, :, padding:padding + H, padding:padding + W] if crop else grad_xp
    return grad_x, grad_w, grad_out.sum(dim=(0, 2, 3))


def back_last_position(x, w, grad_out, stride=1, padding=0):
    return _back_loop(x, w, grad_out, stride, padding, assign_w=True)


def back_x_assigned(x, w, grad_out, stride=1, padding=0):
    return _back_loop(x, w, grad_out, stride, padding, assign_x=True)


def back_no_crop(x, w, grad_out, stride=1, padding=0):
    return _back_loop(x, w, grad_out, stride, padding, crop=False)


def back_flipped(x, w, grad_out, stride=1, padding=0):
    return _back_loop(x, w, grad_out, stride, padding, flip=True)


def back_w_averaged(x, w, grad_out, stride=1, padding=0):
    grad_x, grad_w, grad_b = R.conv2d_backward(x, w, grad_out, stride, padding)
    return grad_x, grad_w / (grad_out.shape[2] * grad_out.shape[3]), grad_b


def back_w_batch_mean(x, w, grad_out, stride=1, padding=0):
    grad_x, grad_w, grad_b = R.conv2d_backward(x, w, grad_out, stride, padding)
    return grad_x, grad_w / x.shape[0], grad_b


def back_b_mean(x, w, grad_out, stride=1, padding=0):
    grad_x, grad_w, _ = R.conv2d_backward(x, w, grad_out, stride, padding)
    return grad_x, grad_w, grad_out.mean(dim=(0, 2, 3))


def back_b_per_position(x, w, grad_out, stride=1, padding=0):
    grad_x, grad_w, _ = R.conv2d_backward(x, w, grad_out, stride, padding)
    return grad_x, grad_w, grad_out.sum(dim=0)


def back_two_results(x, w, grad_out, stride=1, padding=0):
    return R.conv2d_backward(x, w, grad_out, stride, padding)[:2]


def back_writes_grad_out(x, w, grad_out, stride=1, padding=0):
    out = R.conv2d_backward(x, w, grad_out, stride, padding)
    grad_out.zero_()
    return out


BUGGY: dict[str, list[Callable]] = {
    "conv_output_size": [size_plain_floor, size_float, size_one_side, size_ceil, size_raises_always,
                         size_wrong_exception, size_no_plus_one, size_no_padding],
    "conv2d": [conv_builtin, conv_module, conv_aten, conv_no_bias, conv_all_biases, conv_flipped, conv_one_side,
               conv_double_one_side, conv_ignores_stride, conv_ignores_padding, conv_kernel_axes_swapped,
               conv_in_place_pad, conv_no_channel_sum],
    "max_pool2d": [maxpool_in_place, maxpool_builtin, maxpool_stride_1, maxpool_is_mean, maxpool_from_zero, maxpool_across_channels,
                   maxpool_ceil, maxpool_ignores_s],
    "avg_pool2d": [avgpool_builtin, avgpool_divides_by_k, avgpool_sum, avgpool_stride_1, avgpool_is_max],
    "conv_params": [params_no_bias, params_one_bias, params_no_channels, params_float, params_one_filter],
    "conv_macs": [macs_with_bias, macs_no_channels, macs_tensor, macs_one_filter],
    "conv2d_backward": [back_autograd, back_autograd_grad, back_torch_nn_grad, back_last_position, back_x_assigned,
                        back_no_crop, back_flipped, back_w_averaged, back_w_batch_mean, back_b_mean, back_b_per_position,
                        back_two_results, back_writes_grad_out],
}


@pytest.mark.parametrize(
    "name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=lambda v: getattr(v, "__name__", v)
)
def test_check_fails_on_buggy_variant(name, buggy):
    message = fails(getattr(checks, name), buggy)


@pytest.mark.parametrize(
    "buggy,words",
    [
        (size_plain_floor, "raise ValueError"),
        (size_float, "an int"),
        (size_one_side, "both sides"),
        (size_ceil, "floor"),
        (size_raises_always, "floor instead of raising"),
        (size_wrong_exception, "AssertionError"),
        (size_no_plus_one, "+ 1"),
        (size_no_padding, "each side"),
        (conv_builtin, "conv2d"),
        (conv_module, "nn.Conv2d"),
        (conv_aten, "by hand"),
        (conv_no_bias, "add the bias"),
        (conv_all_biases, "channel o only"),
        (conv_flipped, "flip"),
        (conv_one_side, "every side"),
        (conv_double_one_side, "on one side"),
        (conv_ignores_stride, "pixels at a time"),
        (conv_ignores_padding, "every side"),
        (conv_kernel_axes_swapped, "kh runs along H"),
        (conv_in_place_pad, "do not write into x"),
        (conv_no_channel_sum, "all C input channels"),
        (maxpool_in_place, "do not write into x"),
        (maxpool_builtin, "F.max_pool2d"),
        (maxpool_stride_1, "s=None means s=k"),
        (maxpool_is_mean, "not the average"),
        (maxpool_from_zero, "not from 0"),
        (maxpool_across_channels, "each channel"),
        (maxpool_ceil, "floor"),
        (maxpool_ignores_s, "you are given"),
        (avgpool_builtin, "AvgPool2d"),
        (avgpool_divides_by_k, "not by k"),
        (avgpool_sum, "divide the window's sum"),
        (avgpool_stride_1, "s=None means s=k"),
        (avgpool_is_max, "not the maximum"),
        (params_no_bias, "one bias too"),
        (params_one_bias, "not one per layer"),
        (params_no_channels, "spans all c_in"),
        (params_float, "an int"),
        (params_one_filter, "one filter"),
        (macs_with_bias, "bias is an addition"),
        (macs_no_channels, "all c_in"),
        (macs_tensor, "Python int"),
        (macs_one_filter, "its own"),
        (back_autograd, "a call to torch's backward"),
        (back_autograd_grad, "a call to torch's grad"),
        (back_torch_nn_grad, "convolution_backward"),
        (back_last_position, "weight sharing"),
        (back_x_assigned, "windows overlap"),
        (back_no_crop, "crop the padding"),
        (back_flipped, "no flip at all"),
        (back_w_averaged, "do not average them"),
        (back_w_batch_mean, "sum over the batch, do not average"),
        (back_b_mean, "do not average"),
        (back_b_per_position, "sum over every position"),
        (back_two_results, "three tensors"),
        (back_writes_grad_out, "grad_out after the call"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, fns in BUGGY.items() if buggy in fns)
    message = fails(getattr(checks, name), buggy)
    assert words in message, message


def test_seed_numbers_in_the_messages():
    with pytest.raises(AssertionError, match="28,311,552"):
        checks.conv_macs(macs_with_bias)
    with pytest.raises(AssertionError, match="1,792"):
        checks.conv_params(params_no_bias)
    with pytest.raises(AssertionError, match=r"2\.33"):
        checks.conv_output_size(size_plain_floor)
    # the lecture's 5×5 image, every output gradient 1: grad_w = 6 7 6 / 4 7 7 / 4 6 6 (9 positions each)
    with pytest.raises(AssertionError, match="grad_w: expected 6 7 6 / 4 7 7 / 4 6 6, got 1 1 1 / 1 1 0 / 1 0 0 — weight sharing"):
        checks.conv2d_backward(back_last_position)


def test_a_student_error_is_one_clear_line_with_the_original_chained():
    def broken(x, w, b=None, stride=1, padding=0):
        return x @ w  # shapes do not match

    with pytest.raises(AssertionError) as info:
        checks.conv2d(broken)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


def test_a_pooling_built_on_the_students_own_conv2d_is_by_hand():
    # avg pooling as a convolution with 1/k² weights, through a conv2d written by hand: allowed
    def avg_by_conv(x, k, s=None):
        N, C, H, W = x.shape
        w = torch.full((1, 1, k, k), 1.0 / (k * k))
        return R.conv2d(x.reshape(N * C, 1, H, W), w, stride=s or k).reshape(N, C, *R.conv2d(x[:1, :1], w, stride=s or k).shape[2:])

    checks.avg_pool2d(avg_by_conv)


# --- planted bugs, applied to the reference source ----------------------------------------------


def test_at_least_three_planted_bugs_on_distinct_cells():
    assert len(BUGS) >= 3
    assert len({b.name for b in BUGS}) == len(BUGS)
    assert all(b.fails <= set(CHECKS) for b in BUGS)

