"""reference.losses against the seed's numbers (LABS.md, lab 05) and PyTorch as the oracle."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from reference.losses import (
    cross_entropy,
    cross_entropy_from_logits,
    focal_loss,
    logit_gradient,
    softmax,
    train_digits,
)

SEED_PROBS = torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.6, 0.2], [0.3, 0.4, 0.3]])
SEED_LABELS = torch.tensor([2, 1, 0])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- softmax ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,dim", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((7,), 0), ((2, 3, 4), -1)])
def test_softmax_matches_torch(shape, dim):
    z = 3 * torch.randn(*shape, generator=gen())
    before = z.clone()
    out = softmax(z, dim) if dim != -1 else softmax(z)
    torch.testing.assert_close(out, torch.softmax(z, dim=dim))
    torch.testing.assert_close(out.sum(dim=dim), torch.ones(out.sum(dim=dim).shape))
    assert torch.equal(z, before)


def test_softmax_classic_example():
    assert [round(v, 3) for v in softmax(torch.tensor([2.0, 1.0, 0.1])).tolist()] == [0.659, 0.242, 0.099]


def test_softmax_is_stable_at_1000():
    z = torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, 0.0, 1000.0], [-1000.0, -1001.0, -1002.0]])
    naive = torch.exp(z) / torch.exp(z).sum(dim=1, keepdim=True)
    assert torch.isnan(naive).any()  # what the lab warns about
    out = softmax(z)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(z, dim=1))
    assert out[1].tolist() == [0.0, 0.0, 1.0]


def test_softmax_gradient_matches_torch():
    z = torch.randn(3, 4, generator=gen(1), dtype=torch.float64)
    w = torch.randn(3, 4, generator=gen(2), dtype=torch.float64)
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    (softmax(a) * w).sum().backward()
    (torch.softmax(b, dim=-1) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


# --- cross_entropy ------------------------------------------------------------------------------


def test_cross_entropy_reproduces_the_seed_table():
    onehot = F.one_hot(SEED_LABELS, 3).float()
    per_sample = [float(cross_entropy(SEED_PROBS[i : i + 1], onehot[i : i + 1])) for i in range(3)]
    assert [round(v, 2) for v in per_sample] == [0.51, 0.51, 1.20]
    loss = cross_entropy(SEED_PROBS, onehot)
    assert loss.shape == ()
    assert round(float(loss), 2) == 0.74
    assert float(loss) == pytest.approx((-2 * math.log(0.6) - math.log(0.3)) / 3, rel=1e-6)  # 0.7419
    assert float(loss) == pytest.approx(sum(per_sample) / 3, rel=1e-6)


def test_the_seeds_other_example_used_log10():
    # H = -(1.0 log 0.7 + 0 log 0.2 + 0 log 0.1) "= 0.154901": that is log10; ln gives 0.3567
    loss = cross_entropy(torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert round(float(loss), 4) == 0.3567
    assert round(float(loss) / math.log(10), 6) == 0.154902  # -log10(0.7) = 0.15490196
    assert round(-math.log10(0.7), 4) == 0.1549


def test_cross_entropy_matches_torch_on_probabilities():
    g = gen(3)
    probs = torch.softmax(2 * torch.randn(6, 4, generator=g), dim=1)
    labels = torch.randint(0, 4, (6,), generator=g)
    onehot = F.one_hot(labels, 4).float()
    got = cross_entropy(probs, onehot)
    torch.testing.assert_close(got, F.nll_loss(torch.log(probs), labels))
    torch.testing.assert_close(got, F.cross_entropy(torch.log(probs), onehot))  # probability targets


def test_cross_entropy_counts_zero_probabilities_as_zero():
    probs = torch.tensor([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    onehot = F.one_hot(torch.tensor([2, 0, 1]), 3).float()
    got = cross_entropy(probs, onehot)
    assert torch.isfinite(got)
    assert float(got) == pytest.approx((-math.log(0.75) - math.log(0.5)) / 3, rel=1e-6)


def test_cross_entropy_is_smaller_when_the_prediction_is_right():
    # seed 002's example 8-3: c = 5, one sample; (a) close to the target, (b) wrong
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    right = cross_entropy(torch.tensor([[0.1, 0.7, 0.1, 0.05, 0.05]]), y)
    wrong = cross_entropy(torch.tensor([[0.5, 0.1, 0.2, 0.1, 0.1]]), y)
    assert round(float(right), 4) == 0.3567 and round(float(wrong), 4) == 2.3026
    assert right < wrong


# --- cross_entropy_from_logits ------------------------------------------------------------------


@pytest.mark.parametrize("N,C,scale,seed", [(5, 4, 2.0, 0), (1, 7, 3.0, 1), (64, 10, 5.0, 2), (3, 2, 0.1, 3)])
def test_cross_entropy_from_logits_matches_f_cross_entropy(N, C, scale, seed):
    g = gen(seed)
    logits = scale * torch.randn(N, C, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (N,), generator=g)
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    got, expected = cross_entropy_from_logits(a, labels), F.cross_entropy(b, labels)
    assert got.shape == ()
    torch.testing.assert_close(got, expected)
    got.backward()
    expected.backward()
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(a.grad, (torch.softmax(logits, 1) - F.one_hot(labels, C)) / N)


def test_cross_entropy_from_logits_is_stable_for_large_logits():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 2000.0], [10.0, 10.0, 10.0]])
    labels = torch.tensor([2, 0, 1])
    got = cross_entropy_from_logits(logits, labels)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, F.cross_entropy(logits, labels))
    assert float(got) == pytest.approx((2000 + 2000 + math.log(3)) / 3, rel=1e-6)
    # the two-step way, log of a softmax, underflows to log(0) = -inf
    assert torch.isinf(-torch.log(softmax(logits)[torch.arange(3), labels]).mean())


def test_cross_entropy_from_logits_equals_cross_entropy_of_the_softmax():
    g = gen(4)
    logits, labels = torch.randn(6, 3, generator=g), torch.randint(0, 3, (6,), generator=g)
    torch.testing.assert_close(cross_entropy_from_logits(logits, labels),
                               cross_entropy(softmax(logits), F.one_hot(labels, 3).float()))


# --- focal_loss ---------------------------------------------------------------------------------


def focal_case(seed: int = 0, shape=(4, 3)):
    g = gen(seed)
    x = 2 * torch.randn(*shape, generator=g, dtype=torch.float64)
    y = (torch.rand(*shape, generator=g) < 0.5).to(torch.float64)
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_focal_loss_with_gamma_0_is_binary_cross_entropy(seed):
    x, y = focal_case(seed)
    p = torch.sigmoid(x)
    torch.testing.assert_close(focal_loss(p, y, 0.0), F.binary_cross_entropy(p, y))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_focal_loss_matches_torchvision(gamma):
    x, y = focal_case(5, (8, 6))
    expected = sigmoid_focal_loss(x, y, alpha=-1, gamma=gamma, reduction="mean")  # alpha < 0: no weighting
    got = focal_loss(torch.sigmoid(x), y, gamma)
    assert got.shape == ()
    torch.testing.assert_close(got, expected)


def test_focal_loss_gradient_matches_torchvision():
    x, y = focal_case(6)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    focal_loss(torch.sigmoid(a), y, 2.0).backward()
    sigmoid_focal_loss(b, y, alpha=-1, gamma=2.0, reduction="mean").backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_larger_gamma_down_weights_easy_examples():
    # Lin et al.: with gamma = 2, p_t = 0.9 gives 100x less loss than CE, p_t = 0.968 about 1000x
    one = torch.tensor([1.0])
    ce = lambda p: float(focal_loss(torch.tensor([p]), one, 0.0))  # noqa: E731
    fl = lambda p, g: float(focal_loss(torch.tensor([p]), one, g))  # noqa: E731
    assert ce(0.9) / fl(0.9, 2.0) == pytest.approx(100, rel=1e-4)
    assert ce(0.968) / fl(0.968, 2.0) == pytest.approx(1000, rel=0.03)
    for p in (0.1, 0.5, 0.9):
        losses = [fl(p, g) for g in (0, 0.5, 1, 2, 5)]
        assert losses == sorted(losses, reverse=True)
    # an easy example loses far more than a hard one
    assert fl(0.9, 2.0) / ce(0.9) < 0.02 < 0.5 < fl(0.2, 2.0) / ce(0.2)
    # the label picks p_t: a negative predicted at 0.1 is as easy as a positive at 0.9
    assert fl(0.9, 2.0) == pytest.approx(float(focal_loss(torch.tensor([0.1]), torch.tensor([0.0]), 2.0)))


def test_focal_loss_on_an_imbalanced_batch():
    # 1,000 easy background pixels (p_t = 0.95) and 10 hard object pixels (p_t = 0.3)
    p = torch.cat([torch.full((1000,), 0.05), torch.full((10,), 0.3)])
    y = torch.cat([torch.zeros(1000), torch.ones(10)])

    def object_share(gamma: float) -> float:
        return float(focal_loss(p[1000:], y[1000:], gamma) * 10 / (focal_loss(p, y, gamma) * 1010))

    assert round(object_share(0.0), 2) == 0.19  # under CE the background dominates the loss
    assert object_share(2.0) > 0.97  # under FL (gamma 2) the objects do


# --- the pitfall: nn.Softmax before nn.CrossEntropyLoss ------------------------------------------


def test_logit_gradient_is_softmax_minus_onehot_over_n():
    g = gen(7)
    logits, labels = 3 * torch.randn(8, 10, generator=g), torch.randint(0, 10, (8,), generator=g)
    torch.testing.assert_close(logit_gradient(logits, labels), (torch.softmax(logits, 1) - F.one_hot(labels, 10)) / 8)


def test_extra_softmax_squashes_the_gradient():
    labels = torch.tensor([0])
    for s, ratio in [(0.0, 3.0), (4.0, 30.0), (8.0, 1000.0)]:
        logits = torch.tensor([[0.0, 0.0, s]])  # ever more confidently wrong
        plain, extra = logit_gradient(logits, labels), logit_gradient(logits, labels, extra_softmax=True)
        assert plain.norm() / extra.norm() >= ratio * 0.99
    assert float(logit_gradient(torch.tensor([[0.0, 0.0, 8.0]]), labels).norm()) == pytest.approx(2**0.5, rel=1e-3)
    g = gen(8)
    logits, labels = 3 * torch.randn(100, 10, generator=g), torch.randint(0, 10, (100,), generator=g)
    assert logit_gradient(logits, labels).norm() > 10 * logit_gradient(logits, labels, extra_softmax=True).norm()


def test_extra_softmax_bounds_the_loss():
    # with 10 classes the loss of softmaxed "logits" in [0, 1] lies in [ln(1 + 9/e), ln(e + 9)]
    low, high = math.log(1 + 9 / math.e), math.log(math.e + 9)
    assert (round(low, 4), round(high, 4)) == (1.4612, 2.4612)
    perfect = torch.full((1, 10), -1000.0)
    perfect[0, 3] = 1000.0
    assert float(F.cross_entropy(torch.softmax(perfect, 1), torch.tensor([3]))) == pytest.approx(low, rel=1e-6)
    assert float(F.cross_entropy(torch.softmax(perfect, 1), torch.tensor([4]))) == pytest.approx(high, rel=1e-6)


def test_extra_softmax_learns_much_slower():
    plain = train_digits(extra_softmax=False, epochs=3)
    extra = train_digits(extra_softmax=True, epochs=3)
    assert len(plain) == len(extra) == 3
    assert [round(a, 3) for a in plain] == [0.722, 0.82, 0.864]  # reproducible on CPU
    assert plain[-1] > 0.8 and extra[-1] < 0.5
    assert all(a > b + 0.3 for a, b in zip(plain, extra))
