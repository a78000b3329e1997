"""Lab 09 — Convolution and pooling by hand (seeds 001, 002, 004).

The output-size formula (n + 2p - f)/s + 1 and what PyTorch does when the stride does not fit,
a convolution and two poolings written with nothing but slicing and sums (equal to
`torch.nn.functional` within 1e-5), and the cost of a convolution layer: its parameters and its
multiply-accumulates (the seed 002 example: 256×256×3 input, 64 filters 3×3, stride 2,
padding 1 → 128×128×64, 28 weights per output value with the bias, 28,311,552 MACs), and the
backward pass of a convolution by hand (seed 002's "the kernel is used many times"): the weight
gradient adds up the contributions of every position the filter visited (weight sharing). On the
lecture's 5×5 image and 3×3 filter, with every output gradient 1: grad_w = (6 7 6 / 4 7 7 /
4 6 6), grad_b = 9, and an all-ones 3×3 filter on a 7×7 image gives each pixel the number of
windows that read it (1 2 3 3 3 2 1 along the first row).

Every exercise function is self-contained (it uses only `torch`/`math`), because its source is
what the notebook shows: `conv2d` computes its own output size instead of calling
`conv_output_size`, and `conv2d_backward` does not call `conv2d`, so that a bug in one is not
reported as a bug in the other.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = [
    "conv_output_size",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "conv_params",
    "conv_macs",
    "sobel_kernels",
    "conv2d_backward",
]


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1, strict: bool = True) -> int:
    """Output size of a convolution (or pooling) along one axis: (n + 2p - f) / s + 1.

    n: input size, f: filter (kernel) size, p: zero padding on *each* side, s: stride.
    strict=True:  raise ValueError when (n + 2p - f) / s + 1 is not a whole number, i.e. when the
                  last stride does not fit (n=7, f=3, s=3: 2.33);
    strict=False: floor it, as nn.Conv2d / nn.MaxPool2d do (AlexNet: (224 - 11)/4 + 1 = 54.25 → 54).
    Either way, raise ValueError when the filter is larger than the padded input.
    Returns a Python int.
    """
    span = n + 2 * p - f  # how far the window's first row travels over the padded input
    if span < 0:
        raise ValueError(f"a filter of {f} does not fit in {n} + 2*{p} = {n + 2 * p}")
    if strict and span % s != 0:
        raise ValueError(f"stride {s} does not fit: ({n} + 2*{p} - {f}) / {s} + 1 = {span / s + 1:.4g}")
    return span // s + 1  # floor division: PyTorch drops the positions where the window falls off


def conv2d(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: int = 1, padding: int = 0
) -> torch.Tensor:
    """2-D convolution (cross-correlation, as F.conv2d: the kernel is not flipped), by hand.

    x: [N, C, H, W]; w: [O, C, kh, kw] (O filters, each spanning all C input channels);
    b: [O] or None; stride, padding: ints, the same along both axes (padding zeros on every side).
    Returns [N, O, H_out, W_out] with H_out = (H + 2*padding - kh) // stride + 1 (and W_out alike):
    out[n, o, i, j] = sum over c, u, v of xp[n, c, i*stride + u, j*stride + v] * w[o, c, u, v] + b[o]
    where xp is x padded. Uses no convolution op (no F.conv2d, no nn.Conv2d).
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = F.pad(x, (padding, padding, padding, padding))  # zeros: left, right, top, bottom
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    out = x.new_zeros(N, O, H_out, W_out)
    for i in range(H_out):  # slide the window over every output position
        for j in range(W_out):
            top, left = i * stride, j * stride
            window = xp[:, :, top : top + kh, left : left + kw]  # [N, C, kh, kw]
            # every filter against the window: multiply element-wise, sum over C, kh, kw
            out[:, :, i, j] = (window.unsqueeze(1) * w).sum(dim=(2, 3, 4))  # [N, 1, C, kh, kw] * [O, C, kh, kw] -> [N, O]
    if b is not None:
        out = out + b.view(1, O, 1, 1)  # one bias per filter, added at every position
    return out


def max_pool2d(x: torch.Tensor, k: int, s: int | None = None) -> torch.Tensor:
    """Max pooling over k×k windows with stride s (s=None means s=k: windows side by side), by hand.

    x: [N, C, H, W]. Each channel is pooled on its own: the number of channels stays C.
    Returns [N, C, H_out, W_out] with H_out = (H - k) // s + 1 (floored, as F.max_pool2d).
    Uses no pooling op (no F.max_pool2d, no nn.MaxPool2d).
    """
    s = k if s is None else s
    windows = x.unfold(2, k, s).unfold(3, k, s)  # [N, C, H_out, W_out, k, k]: every window, no copy
    return windows.amax(dim=(-2, -1))  # the largest value of each window


def avg_pool2d(x: torch.Tensor, k: int, s: int | None = None) -> torch.Tensor:
    """Average pooling over k×k windows with stride s (s=None means s=k), by hand.

    x: [N, C, H, W]. Returns [N, C, H_out, W_out] with H_out = (H - k) // s + 1: the mean of the
    k*k values of each window, per channel. Uses no pooling op (no F.avg_pool2d, no nn.AvgPool2d).
    """
    s = k if s is None else s
    windows = x.unfold(2, k, s).unfold(3, k, s)  # [N, C, H_out, W_out, k, k]
    return windows.mean(dim=(-2, -1))  # sum of the k*k values / (k*k)


def conv_params(c_in: int, c_out: int, k: int) -> int:
    """Learnable parameters (weights and biases) of a k×k convolution from c_in to c_out channels,
    as `count_params(nn.Conv2d(c_in, c_out, k))` counts them. Returns a Python int.

    The lecture's step 1 (3 → 64 channels, 3×3) has 1,792.
    """
    # each of the c_out filters spans every input channel (c_in*k*k weights) and has one bias;
    # the image size does not appear: every position shares the same weights
    return c_out * (c_in * k * k + 1)


def conv_macs(c_in: int, c_out: int, k: int, h_out: int, w_out: int) -> int:
    """Multiply-accumulate operations of a k×k convolution from c_in channels producing
    c_out × h_out × w_out values (the bias is an addition, not counted). Returns a Python int.

    The lecture's step 1 (3 → 64 channels, 3×3, output 128×128) takes 28,311,552.
    """
    # every output value is a dot product of c_in*k*k weights with as many inputs
    return c_out * h_out * w_out * c_in * k * k


def sobel_kernels() -> torch.Tensor:
    """The seed's two edge filters as one conv2d weight: [2, 1, 3, 3] (2 filters, 1 input channel).

    Filter 0, Sobel-x, responds to vertical edges (a change from left to right); filter 1,
    Sobel-y, to horizontal edges (a change from top to bottom: its top row is positive).
    """
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0],
                            [-2.0, 0.0, 2.0],
                            [-1.0, 0.0, 1.0]])
    sobel_y = torch.tensor([[1.0, 2.0, 1.0],
                            [0.0, 0.0, 0.0],
                            [-1.0, -2.0, -1.0]])
    return torch.stack([sobel_x, sobel_y]).unsqueeze(1)  # [2, 3, 3] -> [2, 1, 3, 3]


def conv2d_backward(
    x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int = 1, padding: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward pass of `conv2d(x, w, b, stride, padding)`, by hand.

    x: [N, C, H, W]; w: [O, C, kh, kw]; stride, padding as in `conv2d`;
    grad_out: [N, O, H_out, W_out], the gradient of a scalar loss L with respect to conv2d's output.
    Returns (grad_x, grad_w, grad_b): dL/dx [N, C, H, W], dL/dw [O, C, kh, kw] and dL/db [O], the
    gradients autograd would give x, w and b (the bias does not change them, so it is not an
    argument). Where the stride does not fit, the rows and columns conv2d never read get 0.
    Uses no autograd (no .backward, no torch.autograd.grad) and no convolution op (no F.conv2d,
    no F.conv_transpose2d, no torch.nn.grad); x, w and grad_out are left unchanged.
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    H_out, W_out = grad_out.shape[2], grad_out.shape[3]
    xp = F.pad(x, (padding, padding, padding, padding))  # the input conv2d read: [N, C, H + 2p, W + 2p]
    grad_xp = torch.zeros_like(xp)                        # dL/dxp, padding included
    grad_w = torch.zeros_like(w)
    for i in range(H_out):  # every position the window visited in the forward pass
        for j in range(W_out):
            top, left = i * stride, j * stride
            window = xp[:, :, top : top + kh, left : left + kw]  # [N, C, kh, kw]
            g = grad_out[:, :, i, j].reshape(N, O, 1, 1, 1)      # dL/dout[n, o, i, j]
            # out[n, o, i, j] = sum of window[n] * w[o] + b[o]: each weight met this window, and the
            # same weights are used at every position (weight sharing), so their gradients add up
            grad_w += (g * window.unsqueeze(1)).sum(dim=0)       # [N, O, C, kh, kw] -> [O, C, kh, kw]
            # each pixel of the window met every filter: windows overlap, so add (+=) as well
            grad_xp[:, :, top : top + kh, left : left + kw] += (g * w).sum(dim=1)  # [N, C, kh, kw]
    grad_b = grad_out.sum(dim=(0, 2, 3))                  # b[o] is added at every position of every image
    grad_x = grad_xp[:, :, padding : padding + H, padding : padding + W]  # the zeros of the padding are not x
    return grad_x, grad_w, grad_b
