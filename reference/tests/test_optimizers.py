"""reference.optimizers against torch.optim as the oracle (LABS.md, lab 06): 100 steps on the
quadratic bowl and on Rosenbrock from (-1.5, 2.0) within 1e-6 in float64, and a small network with
other hyper-parameters."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from reference.optimizers import (
    SGD,
    AdaGrad,
    Adam,
    Optimizer,
    RMSProp,
    quadratic_bowl,
    rosenbrock,
    trajectory,
)

START = (-1.5, 2.0)  # LABS.md: every run starts here

# LABS.md: lr 1e-3 for SGD and RMSProp, 5e-2 for AdaGrad, 1e-2 for Adam; momentum 0.9, Nesterov off/on
LAB_CASES = [
    (SGD, torch.optim.SGD, {"lr": 1e-3}),
    (SGD, torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
    (SGD, torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    (AdaGrad, torch.optim.Adagrad, {"lr": 5e-2}),
    (RMSProp, torch.optim.RMSprop, {"lr": 1e-3}),
    (Adam, torch.optim.Adam, {"lr": 1e-2}),
]
IDS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


@pytest.mark.parametrize("f", [quadratic_bowl, rosenbrock], ids=["bowl", "rosenbrock"])
@pytest.mark.parametrize("ours,theirs,hyper", LAB_CASES, ids=IDS)
def test_100_steps_match_torch_optim(ours, theirs, hyper, f):
    path = trajectory(ours, f, steps=100, **hyper)
    expected = trajectory(theirs, f, steps=100, **hyper)
    assert path.shape == (101, 2) and path.dtype == torch.float64
    assert path[0].tolist() == [-1.5, 2.0]
    assert (path - expected).abs().max() < 1e-6
    assert bool(torch.isfinite(path).all()) and not torch.equal(path[-1], path[0])


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Linear(2, 2)).double()
    net[3].requires_grad_(False)  # frozen: no gradient; skipped
    net[3].weight.requires_grad_(True)  # requires grad but is never reached: .grad stays None
    return net


OTHER_CASES = [
    (SGD, torch.optim.SGD, {"lr": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.5}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.5, "nesterov": True}),
    (AdaGrad, torch.optim.Adagrad, {"lr": 0.1, "eps": 1e-2}),
    (RMSProp, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-2}),
    (Adam, torch.optim.Adam, {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-2}),
]


@pytest.mark.parametrize("ours,theirs,hyper", OTHER_CASES, ids=IDS)
def test_a_network_with_other_hyper_parameters_matches_torch_optim(ours, theirs, hyper):
    """Several parameters of different shapes, one whose .grad stays None, a real loss: 20 steps."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)
    a, b = _net(0), _net(0)
    b[3].weight.grad = None
    opt_a, opt_b = ours(a.parameters(), **hyper), theirs(b.parameters(), **hyper)  # generators, as in practice
    for _ in range(20):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            nn.functional.mse_loss(net[:3](x), y).backward()  # net[3] is never used: its .grad stays None
            opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-10, msg=name)
    assert not torch.equal(a[0].weight, _net(0)[0].weight)
    assert torch.equal(a[3].weight, _net(0)[3].weight)  # no gradient: left alone


def test_defaults_are_torchs():
    pairs = [(AdaGrad, torch.optim.Adagrad, ("lr", "eps")), (RMSProp, torch.optim.RMSprop, ("lr", "alpha", "eps")),
             (Adam, torch.optim.Adam, ("lr", "betas", "eps")), (SGD, torch.optim.SGD, ("momentum", "nesterov"))]
    for ours, theirs, names in pairs:
        mine, torchs = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
        for name in names:
            assert mine[name].default == torchs[name].default, (ours.__name__, name)
    assert inspect.signature(SGD).parameters["lr"].default is inspect.Parameter.empty  # lr is required


def test_sgd_velocity_is_torchs_momentum_buffer():
    """torch starts the buffer at the first gradient; ours starts at 0 and adds it: the same tensor."""
    p = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    q = p.detach().clone().requires_grad_(True)
    ours, theirs = SGD([p], lr=1e-3, momentum=0.9), torch.optim.SGD([q], lr=1e-3, momentum=0.9)
    for step in range(5):
        for t, opt in ((p, ours), (q, theirs)):
            opt.zero_grad()
            rosenbrock(t).backward()
            opt.step()
        assert torch.equal(ours.velocity[0], theirs.state[q]["momentum_buffer"]), step
    # the first step of momentum SGD is a plain SGD step
    assert torch.equal(trajectory(SGD, rosenbrock, 1, lr=1e-3, momentum=0.9), trajectory(SGD, rosenbrock, 1, lr=1e-3))


def test_the_first_steps_by_hand():
    # gradient of Rosenbrock at (-1.5, 2.0): (-155, -50)
    assert trajectory(SGD, rosenbrock, 1, lr=1e-3)[1].tolist() == pytest.approx([-1.345, 2.05])
    # Nesterov's first step: lr·(g + 0.9·g) = 1.9× the SGD step
    nesterov = trajectory(SGD, rosenbrock, 1, lr=1e-3, momentum=0.9, nesterov=True)
    assert nesterov[1].tolist() == pytest.approx([-1.2055, 2.095])
    # AdaGrad's and Adam's first steps are lr·sign(g): √(g²) = |g|, and the bias correction undoes the 0.1 and 0.001
    assert trajectory(AdaGrad, rosenbrock, 1, lr=5e-2)[1].tolist() == pytest.approx([-1.45, 2.05])
    assert trajectory(Adam, rosenbrock, 1, lr=1e-2)[1].tolist() == pytest.approx([-1.49, 2.01])
    # RMSProp's first step: lr·g / √(0.01·g²) = 10·lr·sign(g)
    assert trajectory(RMSProp, rosenbrock, 1, lr=1e-3)[1].tolist() == pytest.approx([-1.49, 2.01])


def test_zero_grad_sets_none_and_accepts_a_generator():
    model = nn.Linear(3, 2)
    opt = Optimizer(model.parameters())
    assert isinstance(opt.params, list) and len(opt.params) == 2
    for _ in range(2):  # a generator would be empty the second time
        model(torch.randn(4, 3)).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("cls,hyper", [(SGD, {"lr": 0.1, "momentum": 0.9}), (AdaGrad, {}), (RMSProp, {}), (Adam, {})])
def test_step_is_in_place_and_builds_no_graph(cls, hyper):
    p = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = cls([p], **hyper)
    before = p.detach().clone()
    rosenbrock(p).backward()
    opt.step()
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert not torch.equal(p.detach(), before)


def test_test_functions():
    assert float(rosenbrock(torch.tensor([1.0, 1.0]))) == 0.0
    assert float(quadratic_bowl(torch.tensor([0.0, 0.0]))) == 0.0
    assert float(rosenbrock(torch.tensor(START))) == pytest.approx(2.5**2 + 100 * 0.25**2)  # 12.5
    assert float(quadratic_bowl(torch.tensor(START))) == pytest.approx(2.25 + 40)
    grid = torch.stack(torch.meshgrid(torch.linspace(-2, 2, 5), torch.linspace(-1, 3, 4), indexing="xy"), dim=-1)
    assert rosenbrock(grid).shape == (4, 5) and quadratic_bowl(grid).shape == (4, 5)
    xy = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    rosenbrock(xy).backward()
    assert xy.grad.tolist() == pytest.approx([-155.0, -50.0])
