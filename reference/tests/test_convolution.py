"""reference.convolution against the seeds' numbers (LABS.md, lab 09) and torch.nn.functional as the oracle."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from reference.convolution import (
    avg_pool2d,
    conv2d,
    conv2d_backward,
    conv_macs,
    conv_output_size,
    conv_params,
    max_pool2d,
    sobel_kernels,
)
from autograder.data import mnist_splits


class TorchCalls(TorchFunctionMode):
    """Records the name of every torch function called inside it."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


FORBIDDEN = re.compile(r"conv\d|convolution|conv_transpose|pool")
# and what a backward pass by hand must not lean on: autograd
AUTOGRAD = re.compile(r"^(backward|grad)$")


def macs_of(layer: nn.Conv2d, out: torch.Tensor) -> int:
    """Multiply-accumulates of one sample through `layer`, from torch's own shapes: every output
    value (out[0]) multiplies each weight of its filter (layer.weight[0]) once."""
    return out[0].numel() * layer.weight[0].numel()


# --- conv_output_size ---------------------------------------------------------------------------


def test_output_size_seed_001():
    # 7×7 input, 3×3 filter: 5 at stride 1, 3 at stride 2, and stride 3 does not fit (2.33)
    assert conv_output_size(7, 3) == 5
    assert conv_output_size(7, 3, s=2) == 3
    with pytest.raises(ValueError):
        conv_output_size(7, 3, s=3)
    assert conv_output_size(7, 3, s=3, strict=False) == 2  # PyTorch floors 2.33 to 2
    # (4 + 2*1 - 3) / 1 + 1 = 4: padding 1 keeps a 4×4 input at 4×4
    assert conv_output_size(4, 3, p=1) == 4
    assert type(conv_output_size(7, 3)) is int and type(conv_output_size(7, 3, s=3, strict=False)) is int


def test_output_size_seed_alexnet_floors_like_pytorch():
    # the seed AlexNet's first layer: (224 - 11) / 4 + 1 = 54.25 -> 54
    assert (224 - 11) / 4 + 1 == 54.25
    with pytest.raises(ValueError):
        conv_output_size(224, 11, s=4)
    assert conv_output_size(224, 11, s=4, strict=False) == 54
    out = nn.Conv2d(1, 1, kernel_size=11, stride=4)(torch.zeros(1, 1, 224, 224))
    assert out.shape[-2:] == (54, 54)


@pytest.mark.parametrize("k,p", [(3, 1), (5, 2), (7, 3)])
def test_same_padding_rule_seed_004(k, p):
    # "same" padding: p = (k - 1) / 2 keeps the size at stride 1 (seed 004: a 7×7 input)
    assert p == (k - 1) // 2
    for n in (7, 28):
        assert conv_output_size(n, k, p=p) == n
        assert F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), padding=p).shape[-1] == n


def test_output_size_matches_nn_conv2d_and_strict_raises_exactly_when_it_does_not_fit():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        n, f, p, s = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 40), (1, 8), (0, 4), (1, 5)))
        if f > n + 2 * p:
            with pytest.raises(ValueError):
                conv_output_size(n, f, p, s, strict=False)
            continue
        expected = F.conv2d(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, f, 1), stride=s, padding=(p, 0)).shape[2]
        assert conv_output_size(n, f, p, s, strict=False) == expected
        assert F.max_pool2d(torch.zeros(1, 1, n + 2 * p, 1), (f, 1), (s, 1)).shape[2] == expected
        if (n + 2 * p - f) % s == 0:
            assert conv_output_size(n, f, p, s) == expected == (n + 2 * p - f) / s + 1
        else:
            with pytest.raises(ValueError):
                conv_output_size(n, f, p, s)


def test_output_size_filter_larger_than_input_raises():
    with pytest.raises(ValueError):
        conv_output_size(2, 3)
    with pytest.raises(ValueError):
        conv_output_size(2, 3, strict=False)
    assert conv_output_size(1, 3, p=1) == 1


# --- the seed 002 example: cost of a convolution layer -----------------------------------------


def test_seed_002_first_layer():
    # 256×256×3 input, 64 filters 3×3, stride 2, padding 1 -> 128×128×64
    with pytest.raises(ValueError):  # (256 + 2 - 3)/2 + 1 = 128.5: the stride does not fit exactly
        conv_output_size(256, 3, p=1, s=2)
    assert conv_output_size(256, 3, p=1, s=2, strict=False) == 128
    layer = nn.Conv2d(3, 64, 3, stride=2, padding=1)
    out = layer(torch.zeros(1, 3, 256, 256))
    assert out.shape == (1, 64, 128, 128)
    # 28 weights per output value, bias included; 64 filters of 28 = 1,792 parameters
    assert conv_params(3, 64, 3) == sum(p.numel() for p in layer.parameters()) == 1792
    assert conv_params(3, 64, 3) // 64 == 3 * 3 * 3 + 1 == 28
    # 28,311,552 multiply-accumulates (the bias is an addition): one per weight per output value
    assert conv_macs(3, 64, 3, 128, 128) == 28_311_552 == macs_of(layer, out)
    # the seed counts the bias as a multiplication: 128 × 128 × 28 × 64
    assert 128 * 128 * 28 * 64 == 29_360_128 == conv_macs(3, 64, 3, 128, 128) + 128 * 128 * 64


def test_seed_002_second_layer():
    # 128×128×64 input, 128 filters 5×5, stride 2: 5·5·64 + 1 = 1601 weights per output value
    assert conv_params(64, 128, 5) == 128 * 1601 == sum(p.numel() for p in nn.Conv2d(64, 128, 5).parameters())
    assert conv_output_size(128, 5, p=2, s=2, strict=False) == 64
    assert conv_macs(64, 128, 5, 64, 64) == 64 * 64 * 128 * 1600 == 838_860_800


@pytest.mark.parametrize("c_in,c_out,k,n,s,p", [(1, 6, 5, 28, 1, 2), (6, 16, 5, 14, 1, 0), (3, 8, 3, 9, 2, 1), (2, 5, 1, 6, 1, 0)])
def test_params_and_macs_match_torch(c_in, c_out, k, n, s, p):
    layer = nn.Conv2d(c_in, c_out, k, stride=s, padding=p)
    assert conv_params(c_in, c_out, k) == sum(q.numel() for q in layer.parameters())
    assert conv_params(c_in, c_out, k) - c_out == sum(q.numel() for q in nn.Conv2d(c_in, c_out, k, bias=False).parameters())
    out = layer(torch.zeros(1, c_in, n, n))
    h = conv_output_size(n, k, p, s, strict=False)
    assert out.shape == (1, c_out, h, h)
    assert conv_macs(c_in, c_out, k, h, h) == macs_of(layer, out)
    assert type(conv_params(c_in, c_out, k)) is int and type(conv_macs(c_in, c_out, k, h, h)) is int


# --- conv2d -------------------------------------------------------------------------------------


def _seed_001() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 001's 5×5 image and 3×3 filter (1 0 1 / 0 1 0 / 1 0 1), as [1, 1, H, W] tensors."""
    image = torch.tensor([[1, 1, 1, 0, 0],
                          [0, 1, 1, 1, 0],
                          [0, 0, 1, 1, 1],
                          [0, 0, 1, 1, 0],
                          [0, 1, 1, 0, 0]], dtype=torch.float32).view(1, 1, 5, 5)
    kernel = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float32).view(1, 1, 3, 3)
    return image, kernel


def test_conv2d_seed_001_feature_map():
    # the 5×5 image and the 3×3 filter (1 0 1 / 0 1 0 / 1 0 1) of seed 001: the first value is 4
    image, kernel = _seed_001()
    out = conv2d(image, kernel)
    assert out.tolist() == [[[[4, 3, 4], [2, 4, 3], [2, 3, 4]]]]
    torch.testing.assert_close(out, F.conv2d(image, kernel))


def test_conv2d_counts_seed_001_coverage():
    # why padding (seed 001): a 3×3 filter at stride 1 visits the corners of a 7×7 image once,
    # the centre 9 times; the gradient of sum(conv) w.r.t. the input counts the visits
    x = torch.zeros(1, 1, 7, 7, requires_grad=True)
    conv2d(x, torch.ones(1, 1, 3, 3)).sum().backward()
    per_axis = torch.tensor([1.0, 2, 3, 3, 3, 2, 1])
    torch.testing.assert_close(x.grad[0, 0], torch.outer(per_axis, per_axis))


CONV_CASES = [
    # N, C, H, W, O, kh, kw, stride, padding, bias
    (2, 3, 7, 7, 4, 3, 3, 1, 0, True),
    (2, 3, 9, 8, 5, 3, 2, 2, 1, True),
    (1, 2, 7, 7, 3, 3, 3, 3, 0, False),  # the seed's stride 3: PyTorch floors 2.33 to 2
    (3, 1, 6, 10, 2, 5, 5, 1, 2, False),  # "same" padding for k = 5
    (2, 4, 11, 9, 6, 4, 3, 3, 2, True),
    (1, 3, 5, 5, 2, 3, 3, 2, 1, True),  # CS231n's demo (seed 002): 5×5×3, two 3×3×3 filters -> 3×3×2
]


@pytest.mark.parametrize("N,C,H,W,O,kh,kw,stride,padding,bias", CONV_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_matches_F_conv2d(N, C, H, W, O, kh, kw, stride, padding, bias, dtype):
    g = torch.Generator().manual_seed(N * 100 + C * 10 + H)
    x = torch.randn(N, C, H, W, generator=g, dtype=dtype)
    w = torch.randn(O, C, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(O, generator=g, dtype=dtype) if bias else None
    before = x.clone()
    out = conv2d(x, w, b, stride=stride, padding=padding)
    expected = F.conv2d(x, w, b, stride=stride, padding=padding)
    assert out.shape == expected.shape
    assert out.shape[2] == conv_output_size(H, kh, padding, stride, strict=False)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, before)


def test_conv2d_gradients_match_F_conv2d():
    g = torch.Generator().manual_seed(1)
    x, w, b = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((2, 3, 8, 7), (4, 3, 3, 3), (4,)))
    ours = [t.clone().requires_grad_(True) for t in (x, w, b)]
    theirs = [t.clone().requires_grad_(True) for t in (x, w, b)]
    (conv2d(*ours, stride=2, padding=1) ** 2).sum().backward()
    (F.conv2d(*theirs, stride=2, padding=1) ** 2).sum().backward()
    for a, t in zip(ours, theirs):
        torch.testing.assert_close(a.grad, t.grad)


def test_conv2d_equals_nn_conv2d_module():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(conv2d(x, layer.weight, layer.bias, stride=2, padding=1), layer(x), atol=1e-5, rtol=1e-5)


# --- pooling ------------------------------------------------------------------------------------

POOL_CASES = [
    # N, C, H, W, k, s
    (2, 3, 8, 8, 2, None),
    (2, 3, 7, 9, 2, None),  # floors: 7 -> 3
    (1, 4, 7, 7, 3, 2),  # AlexNet's overlapping pooling
    (3, 2, 6, 10, 3, None),
    (2, 1, 9, 9, 2, 1),
    (1, 2, 5, 8, 4, 3),
]


@pytest.mark.parametrize("N,C,H,W,k,s", POOL_CASES)
def test_pooling_matches_F(N, C, H, W, k, s):
    g = torch.Generator().manual_seed(H * 10 + W)
    x = torch.randn(N, C, H, W, generator=g) - 2.0  # mostly negative: a max that starts at 0 is wrong
    before = x.clone()
    for ours, theirs in ((max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)):
        out = ours(x, k) if s is None else ours(x, k, s)
        expected = theirs(x, k) if s is None else theirs(x, k, s)
        assert out.shape == expected.shape and out.shape[1] == C
        assert out.shape[2] == conv_output_size(H, k, 0, s or k, strict=False)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
        assert torch.equal(x, before)


def test_pooling_default_stride_is_k():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert max_pool2d(x, 2).tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    assert avg_pool2d(x, 2).tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]
    assert max_pool2d(x, 2, 1).shape == (1, 1, 3, 3)


# --- by hand, and the Sobel filters on a digit --------------------------------------------------


def test_by_hand_uses_no_convolution_or_pooling_op():
    x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    for call in (lambda: conv2d(x, w, b, stride=2, padding=1), lambda: max_pool2d(x, 2), lambda: avg_pool2d(x, 3, 2)):
        with TorchCalls() as calls:
            call()
        assert not [n for n in calls.names if FORBIDDEN.search(n)], calls.names
    with TorchCalls() as calls:
        F.conv2d(x, w), F.max_pool2d(x, 2), F.avg_pool2d(x, 2), nn.Conv2d(3, 1, 3)(x)
    assert sum(bool(FORBIDDEN.search(n)) for n in calls.names) == 4


def test_sobel_on_a_digit():
    kernels = sobel_kernels()
    assert kernels.shape == (2, 1, 3, 3)
    assert kernels[0, 0].tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert kernels[1, 0].tolist() == [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    digit = mnist_splits()["train"][0][0].unsqueeze(0)  # [1, 1, 28, 28]
    edges = conv2d(digit, kernels, padding=1)  # "same" padding: 28 × 28 in, 28 × 28 out
    assert edges.shape == (1, 2, 28, 28)
    torch.testing.assert_close(edges, F.conv2d(digit, kernels, padding=1), atol=1e-5, rtol=1e-5)
    # a dark-to-bright step from left to right: Sobel-x sees it (+4), Sobel-y does not
    step = torch.zeros(1, 1, 5, 5)
    step[..., 3:] = 1.0
    response = conv2d(step, kernels)
    assert response[0, 0].tolist() == [[0, 4, 4]] * 3 and response[0, 1].abs().sum() == 0
    # and transposed, bright on top: Sobel-y sees it (+4 where the rows change), Sobel-x does not
    response = conv2d(step.transpose(2, 3).flip(2), kernels)
    assert response[0, 1].tolist() == [[4, 4, 4], [4, 4, 4], [0, 0, 0]] and response[0, 0].abs().sum() == 0


# --- conv2d_backward: the backward pass by hand, against autograd ------------------------------


def _autograd(x, w, b, grad_out, stride, padding):
    """dL/dx, dL/dw, dL/db through F.conv2d, for L with dL/d(out) = grad_out (the oracle)."""
    x, w, b = (t.detach().clone().requires_grad_(True) for t in (x, w, b))
    F.conv2d(x, w, b, stride=stride, padding=padding).backward(grad_out)
    return x.grad, w.grad, b.grad


def test_conv2d_backward_seed_001_feature_map():
    # L = sum of the lecture's feature map (4 3 4 / 2 4 3 / 2 3 4 = 29): every output gradient is 1.
    # Weight sharing: w[u, v] met 9 pixels, one per position, and its gradient is their sum
    image, kernel = _seed_001()
    grad_x, grad_w, grad_b = conv2d_backward(image, kernel, torch.ones(1, 1, 3, 3))
    assert grad_w[0, 0].tolist() == [[6, 7, 6], [4, 7, 7], [4, 6, 6]]
    assert grad_w[0, 0, 0, 0] == image[0, 0, 0:3, 0:3].sum() == 6
    assert grad_b.tolist() == [9]                     # b was added at all 9 positions
    assert grad_x[0, 0].tolist() == [[1, 1, 2, 1, 1], [1, 2, 3, 2, 1], [2, 3, 5, 3, 2], [1, 2, 3, 2, 1], [1, 1, 2, 1, 1]]
    for ours, theirs in zip((grad_x, grad_w, grad_b), _autograd(image, kernel, torch.zeros(1), torch.ones(1, 1, 3, 3), 1, 0)):
        torch.testing.assert_close(ours, theirs)


def test_conv2d_backward_counts_seed_001_coverage():
    # an all-ones 3×3 filter on a 7×7 image: each pixel's gradient is the number of windows that read it
    grad_x, grad_w, grad_b = conv2d_backward(torch.zeros(1, 1, 7, 7), torch.ones(1, 1, 3, 3), torch.ones(1, 1, 5, 5))
    per_axis = torch.tensor([1.0, 2, 3, 3, 3, 2, 1])
    torch.testing.assert_close(grad_x[0, 0], torch.outer(per_axis, per_axis))
    assert grad_b.tolist() == [25] and grad_w.abs().sum() == 0


@pytest.mark.parametrize("N,C,H,W,O,kh,kw,stride,padding,bias", CONV_CASES)
def test_conv2d_backward_matches_autograd(N, C, H, W, O, kh, kw, stride, padding, bias):
    g = torch.Generator().manual_seed(N * 100 + C * 10 + H + 7)
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    w = torch.randn(O, C, kh, kw, generator=g, dtype=torch.float64)
    b = torch.randn(O, generator=g, dtype=torch.float64)
    H_out, W_out = conv_output_size(H, kh, padding, stride, strict=False), conv_output_size(W, kw, padding, stride, strict=False)
    grad_out = torch.randn(N, O, H_out, W_out, generator=g, dtype=torch.float64)
    before = [t.clone() for t in (x, w, grad_out)]
    grads = conv2d_backward(x, w, grad_out, stride=stride, padding=padding)
    for ours, theirs in zip(grads, _autograd(x, w, b, grad_out, stride, padding)):
        assert ours.shape == theirs.shape and ours.dtype == torch.float64
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)
    # torch's own helpers for the two convolution gradients agree
    torch.testing.assert_close(grads[0], torch.nn.grad.conv2d_input(x.shape, w, grad_out, stride=stride, padding=padding))
    torch.testing.assert_close(grads[1], torch.nn.grad.conv2d_weight(x, w.shape, grad_out, stride=stride, padding=padding))
    assert all(torch.equal(t, u) for t, u in zip((x, w, grad_out), before))


def test_conv2d_backward_float32_and_a_stride_that_does_not_fit():
    # stride 3 on 7 columns reads columns 0..5 only: column 6 gets no gradient (seed 001's 2.33)
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 2, 7, 7, generator=g), torch.randn(3, 2, 3, 3, generator=g)
    grad_out = torch.randn(2, 3, 2, 2, generator=g)
    grad_x, grad_w, grad_b = conv2d_backward(x, w, grad_out, stride=3)
    assert grad_x.dtype == grad_w.dtype == grad_b.dtype == torch.float32
    assert grad_x[..., 6, :].abs().sum() == 0 and grad_x[..., :, 6].abs().sum() == 0
    for ours, theirs in zip((grad_x, grad_w, grad_b), _autograd(x, w, torch.zeros(3), grad_out, 3, 0)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_seed_002_the_gradients_are_convolutions_at_stride_1_only():
    # seed 002: the partial derivatives "come out as convolutions". At stride 1, dL/dw is the input
    # correlated with dL/dout, and dL/dx is dL/dout correlated with the flipped kernel ("full" padding)
    g = torch.Generator().manual_seed(5)
    x, w = torch.randn(1, 1, 6, 6, generator=g, dtype=torch.float64), torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    grad_out = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64)
    grad_x, grad_w, _ = conv2d_backward(x, w, grad_out)
    torch.testing.assert_close(grad_w, F.conv2d(x, grad_out))
    torch.testing.assert_close(grad_x, F.conv2d(grad_out, w.flip(-2, -1), padding=2))
    # at stride 2 the same formulas are wrong: grad_out must first be spread out (s - 1 zeros between values)
    grad_out2 = torch.randn(1, 1, 2, 2, generator=g, dtype=torch.float64)
    grad_x2, grad_w2, _ = conv2d_backward(x, w, grad_out2, stride=2)
    assert F.conv2d(x, grad_out2).shape != grad_w2.shape
    spread = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    spread[..., ::2, ::2] = grad_out2
    torch.testing.assert_close(grad_w2, F.conv2d(x, spread)[..., :3, :3])
    torch.testing.assert_close(grad_x2, F.pad(F.conv2d(spread, w.flip(-2, -1), padding=2), (0, 1, 0, 1)))


def test_conv2d_backward_uses_no_convolution_op_and_no_autograd():
    x, w, grad_out = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(2, 4, 4, 4)
    with TorchCalls() as calls:
        conv2d_backward(x, w, grad_out, stride=2, padding=1)
    assert not [n for n in calls.names if FORBIDDEN.search(n) or AUTOGRAD.search(n)], calls.names
    # what the rule sees: autograd and torch's own gradient helpers
    xr = x.clone().requires_grad_(True)
    with TorchCalls() as calls:
        torch.autograd.grad((xr * 2).sum(), xr)
        (xr * 2).sum().backward()
        torch.nn.grad.conv2d_weight(x, w.shape, grad_out, stride=2, padding=1)
    seen = {n for n in calls.names if FORBIDDEN.search(n) or AUTOGRAD.search(n)}
    assert seen == {"grad", "backward", "convolution_backward"}, calls.names
