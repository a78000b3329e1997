"""reference.regularization against PyTorch as the oracle (nn.Dropout, nn.BatchNorm2d,
torchvision's rotate/affine) and against the numbers of LABS.md (lab 08)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from reference.regularization import MLP, BatchNorm2d, Dropout, EarlyStopping, augment, cross_validate, kfold_indices, run_epoch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is as fast, and never waits for a core another process holds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- Dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.3, 0.5, 0.8])
def test_dropout_statistics_match_nn_dropout(p):
    x = torch.ones(200, 500)  # 100,000 elements
    torch.manual_seed(0)
    mine = Dropout(p).train()(x)
    theirs = nn.Dropout(p).train()(x)
    for y in (mine, theirs):
        assert abs(float((y == 0).float().mean()) - p) < 0.01
        torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
        assert abs(float(y.mean()) - 1.0) < 0.03  # inverted dropout keeps the expected value
    assert mine.shape == x.shape and mine.dtype == x.dtype


def test_dropout_eval_is_identity_as_nn_dropout():
    x = torch.randn(4, 3, 5, 5)
    for layer in (Dropout(0.5), nn.Dropout(0.5)):
        assert torch.equal(layer.eval()(x), x)


def test_dropout_new_mask_each_call_and_leaves_x_alone():
    torch.manual_seed(0)
    layer, x = Dropout(0.5).train(), torch.ones(50, 50)
    a, b = layer(x), layer(x)
    assert not torch.equal(a, b)
    assert torch.equal(x, torch.ones(50, 50))


def test_dropout_gradient_is_the_scaled_mask():
    torch.manual_seed(0)
    x = torch.randn(32, 16, requires_grad=True)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.75)


def test_dropout_edge_probabilities():
    x = torch.randn(10, 10)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert torch.equal(nn.Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_the_seed_dropout_with_a_comma_drops_nothing():
    seed_dropout = nn.Dropout(0, 2)  # the seed's nn.Dropout(0,2), meant as 0.2
    assert seed_dropout.p == 0 and seed_dropout.inplace == 2
    x = torch.ones(100, 100)
    assert torch.equal(seed_dropout.train()(x), torch.ones(100, 100))


# --- EarlyStopping ------------------------------------------------------------------------------


def test_early_stopping_labs_sequence():
    stopper = EarlyStopping(patience=2)
    assert [stopper.step(v) for v in (1.0, 0.9, 0.95, 0.96)] == [False, False, False, True]


def test_early_stopping_resets_and_ties_do_not_improve():
    stopper = EarlyStopping(patience=2)
    assert [stopper.step(v) for v in (1.0, 1.1, 0.9, 1.0, 0.9)] == [False, False, False, False, True]
    stopper = EarlyStopping(3)
    assert [stopper.step(v) for v in (1.0, 1.0, 1.0, 1.0)] == [False, False, False, True]


def test_early_stopping_min_delta():
    assert [EarlyStopping(1, min_delta=0.1).step(v) for v in (1.0,)] == [False]
    stopper = EarlyStopping(1, min_delta=0.1)
    assert [stopper.step(v) for v in (1.0, 0.95)] == [False, True]
    stopper = EarlyStopping(2, min_delta=0.1)
    assert [stopper.step(v) for v in (1.0, 0.95, 0.89, 0.85, 0.84)] == [False, False, False, False, True]
    assert stopper.best == 0.89


def _seed_stopping_epoch(losses, patience_comment=2):
    """The seed's loop as written: converge_cnt = 1 where it meant += 1, and `> 2`."""
    best, converge_cnt = 100, 0
    for epoch, loss in enumerate(losses, 1):
        if loss < best:
            best, converge_cnt = loss, 0
        else:
            converge_cnt = 1
        if converge_cnt > patience_comment:
            return epoch
    return None


def test_the_seed_counter_never_stops_where_early_stopping_does():
    losses = [1.0, 0.9] + [0.95 + 0.01 * k for k in range(50)]  # never improves again
    assert _seed_stopping_epoch(losses) is None
    stopper = EarlyStopping(patience=2)
    assert next(epoch for epoch, v in enumerate(losses, 1) if stopper.step(v)) == 4


def test_early_stopping_restores_a_copy_of_the_best_weights_while_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    stopper = EarlyStopping(patience=2)
    best_state, stopped = None, None
    for epoch, val_loss in enumerate([1.0, 0.7, 0.8, 0.6, 0.65, 0.9, 0.5], 1):
        model.train()
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()  # changes the parameters (and BatchNorm's buffers) in place
        if val_loss == 0.6:
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if stopper.step(val_loss, model):
            stopped = epoch
            break
    assert stopped == 6
    fresh = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    for target in (fresh, model):
        assert stopper.restore(target) is target
        for k, v in target.state_dict().items():
            assert torch.equal(v, best_state[k]), k


def test_early_stopping_restore_without_a_model_raises():
    stopper = EarlyStopping(2)
    stopper.step(1.0)
    with pytest.raises(RuntimeError):
        stopper.restore(nn.Linear(2, 2))


# --- BatchNorm2d --------------------------------------------------------------------------------


def test_batchnorm_names_initial_values_and_state_dict_both_ways():
    mine, theirs = BatchNorm2d(4), nn.BatchNorm2d(4)
    assert {n for n, _ in mine.named_parameters()} == {"weight", "bias"}
    assert {"running_mean", "running_var"} <= {n for n, _ in mine.named_buffers()}
    for k, v in theirs.state_dict().items():
        assert torch.equal(mine.state_dict()[k], v), k
    assert (mine.eps, mine.momentum) == (theirs.eps, theirs.momentum) == (1e-5, 0.1)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5), theirs.bias.normal_(), theirs.running_mean.normal_(), theirs.running_var.uniform_(0.5, 2)
    mine.load_state_dict(theirs.state_dict())  # strict
    nn.BatchNorm2d(4).load_state_dict(mine.state_dict())  # and back


@pytest.mark.parametrize("shape,dtype,atol", [((8, 3, 5, 5), torch.float32, 1e-5), ((2, 6, 7, 3), torch.float32, 1e-5),
                                              ((4, 2, 4, 4), torch.float64, 1e-12)])
def test_batchnorm_matches_nn_batchnorm2d_in_train_and_eval(shape, dtype, atol):
    g = torch.Generator().manual_seed(0)
    C = shape[1]
    theirs = nn.BatchNorm2d(C).to(dtype)
    with torch.no_grad():
        theirs.weight.copy_(1 + torch.randn(C, generator=g, dtype=dtype))
        theirs.bias.copy_(torch.randn(C, generator=g, dtype=dtype))
    mine = BatchNorm2d(C).to(dtype)
    mine.load_state_dict(theirs.state_dict())
    for step in range(5):  # several steps: the running statistics follow torch's
        x = (1 + step) * torch.randn(shape, generator=g, dtype=dtype) + torch.randn(1, C, 1, 1, generator=g, dtype=dtype)
        xm, xt = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ym, yt = mine(xm), theirs(xt)
        torch.testing.assert_close(ym, yt, atol=atol, rtol=0)
        torch.testing.assert_close(mine.running_mean, theirs.running_mean, atol=atol, rtol=0)
        torch.testing.assert_close(mine.running_var, theirs.running_var, atol=atol, rtol=0)
        w = torch.randn(shape, generator=g, dtype=dtype)
        (ym * w).sum().backward(), (yt * w).sum().backward()
        torch.testing.assert_close(xm.grad, xt.grad, atol=100 * atol, rtol=1e-4)
    torch.testing.assert_close(mine.weight.grad, theirs.weight.grad, atol=100 * atol, rtol=1e-4)
    torch.testing.assert_close(mine.bias.grad, theirs.bias.grad, atol=100 * atol, rtol=1e-4)
    assert int(mine.num_batches_tracked) == int(theirs.num_batches_tracked) == 5
    mine.eval(), theirs.eval()
    x = torch.randn(1, C, shape[2], shape[3], generator=g, dtype=dtype)  # one image: eval mode needs no batch
    torch.testing.assert_close(mine(x), theirs(x), atol=atol, rtol=0)
    stats = mine.running_mean.clone(), mine.running_var.clone()
    mine(x)
    assert torch.equal(mine.running_mean, stats[0]) and torch.equal(mine.running_var, stats[1])


def test_batchnorm_normalises_with_the_biased_and_keeps_the_unbiased_variance():
    x = torch.randn(2, 1, 2, 2)  # n = 8 values in the channel
    mine = BatchNorm2d(1)
    y = mine(x)
    biased, unbiased = x.var(unbiased=False), x.var(unbiased=True)
    torch.testing.assert_close(y, (x - x.mean()) / torch.sqrt(biased + 1e-5))
    torch.testing.assert_close(mine.running_var, 0.9 * torch.ones(1) + 0.1 * unbiased.reshape(1))
    torch.testing.assert_close(unbiased, biased * 8 / 7)


# --- augment ------------------------------------------------------------------------------------


def test_augment_keeps_shape_dtype_and_input_and_is_random():
    x = torch.rand(6, 3, 32, 32)
    before = x.clone()
    torch.manual_seed(0)
    a = augment(x)
    b = augment(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(x, before)
    assert not torch.equal(a, b) and not torch.equal(a, x)
    torch.manual_seed(0)
    assert torch.equal(augment(x), a)  # reproducible under a seed
    assert augment(x.double()).dtype == torch.float64


def test_augment_without_shift_or_rotation_is_the_identity():
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(augment(x, max_shift=0.0, max_degrees=0.0), x, atol=1e-5, rtol=0)


def test_augment_rotation_matches_torchvision_rotate():
    x = torch.rand(5, 2, 28, 28)
    torch.manual_seed(3)
    got = augment(x, max_shift=0.0, max_degrees=15.0)
    torch.manual_seed(3)
    degrees = ((torch.rand(5) * 2 - 1) * math.radians(15.0)) * 180 / math.pi  # the angles augment drew
    assert degrees.abs().max() <= 15.0
    expected = torch.stack([TF.rotate(x[i], angle=float(degrees[i]), interpolation=InterpolationMode.BILINEAR)
                            for i in range(5)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_augment_shift_matches_torchvision_affine():
    x = torch.rand(5, 1, 28, 28)
    torch.manual_seed(4)
    got = augment(x, max_shift=0.1, max_degrees=0.0)
    torch.manual_seed(4)
    torch.rand(5)  # the angles
    shift = (torch.rand(5, 2) * 2 - 1) * 2 * 0.1  # in grid units: the image spans 2
    assert (shift.abs() * 28 / 2).max() <= 2.8  # at most 10% of 28 pixels
    expected = torch.stack([
        TF.affine(x[i], angle=0.0, translate=[-float(shift[i, 0]) * 14, -float(shift[i, 1]) * 14], scale=1.0,
                  shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
        for i in range(5)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_augment_moves_a_dot_by_at_most_the_shift_and_rotates_it_on_a_circle():
    x = torch.zeros(64, 1, 41, 41)
    x[:, 0, 20, 30] = 1.0  # a dot 10 pixels right of the centre
    coords = torch.arange(41, dtype=torch.float32)

    def centroid(img):
        m = img[:, 0]
        total = m.sum(dim=(1, 2))
        return (m.sum(1) * coords).sum(1) / total, (m.sum(2) * coords).sum(1) / total  # x, y

    torch.manual_seed(0)
    cx, cy = centroid(augment(x, max_shift=0.0, max_degrees=15.0))
    radius = ((cx - 20) ** 2 + (cy - 20) ** 2).sqrt()
    assert (radius - 10).abs().max() < 0.3
    angle = torch.rad2deg(torch.atan2(cy - 20, cx - 20)).abs()
    assert angle.max() <= 15.5 and angle.max() > 10  # small rotations, spread over ±15°
    cx, cy = centroid(augment(x, max_shift=0.1, max_degrees=0.0))
    assert (cx - 30).abs().max() <= 4.1 + 0.05 and (cy - 20).abs().max() <= 4.1 + 0.05  # 10% of 41


def test_augment_never_flips():
    x = torch.zeros(32, 1, 28, 28)
    x[:, 0, 6:22, 6:9] = 1.0  # an "L": a bar on the left ...
    x[:, 0, 19:22, 6:18] = 1.0  # ... and a foot to the right
    torch.manual_seed(0)
    y = augment(x)
    cols = torch.arange(28, dtype=torch.float32)
    left_mass = (y[:, 0].sum(1) * (cols < 14)).sum(1) / y[:, 0].sum((1, 2))
    assert (left_mass > 0.5).all()  # the bar stays on the left


# --- given code ---------------------------------------------------------------------------------


def test_mlp_is_the_seed_network():
    model = MLP()
    assert sum(p.numel() for p in model.parameters()) == 235_146  # 784-256-128-10
    assert MLP(0.5, Dropout)(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(isinstance(m, Dropout) for m in MLP(0.5, Dropout).modules()) == 2


def test_run_epoch_averages_per_sample_with_a_short_last_batch():
    torch.manual_seed(0)
    X, y = torch.rand(70, 1, 28, 28), torch.randint(0, 10, (70,))
    model = MLP()
    loss, acc = run_epoch(model, DataLoader(TensorDataset(X, y), batch_size=32))
    with torch.no_grad():
        logits = model(X)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert not model.training


def test_run_epoch_trains():
    torch.manual_seed(0)
    X, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    loader = DataLoader(TensorDataset(X, y), batch_size=16)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first, _ = run_epoch(model, loader, optimizer)
    for _ in range(5):
        last, _ = run_epoch(model, loader, optimizer, transform=lambda t: t)
    assert last < first


def test_global_average_pooling_head_counts():
    # the notebook's figures: flatten of [N, 64, 7, 7] into Linear(3136, 10) vs GAP into Linear(64, 10)
    assert sum(p.numel() for p in nn.Linear(64 * 7 * 7, 10).parameters()) == 31_370
    assert sum(p.numel() for p in nn.Linear(64, 10).parameters()) == 650
    f = torch.randn(2, 64, 7, 7)
    torch.testing.assert_close(nn.AdaptiveAvgPool2d(1)(f).flatten(1), f.mean(dim=(2, 3)))


# --- k-fold cross-validation ----------------------------------------------------------------------

@pytest.mark.parametrize("n, k", [(10, 3), (3500, 5), (7, 7)])
def test_kfold_is_scikit_learns_kfold_on_the_shuffled_samples(n, k):
    """scikit-learn's KFold (unshuffled) applied to the seeded permutation gives the same folds:
    the same sizes (the first n % k one larger), and every sample validated exactly once."""
    import numpy as np
    from sklearn.model_selection import KFold

    splits = kfold_indices(n, k, seed=3)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    expected = [(order[train], order[val]) for train, val in KFold(k).split(np.arange(n))]
    assert len(splits) == k
    for (train, val), (exp_train, exp_val) in zip(splits, expected):
        assert train.dtype == val.dtype == torch.int64
        assert torch.equal(val, exp_val) and torch.equal(train, exp_train)
    assert sorted(torch.cat([val for _, val in splits]).tolist()) == list(range(n))
    assert kfold_indices(n, k, seed=3)[0][1].tolist() == splits[0][1].tolist()          # repeatable
    assert n < 8 or kfold_indices(n, k, seed=4)[0][1].tolist() != splits[0][1].tolist()  # seeded


def test_kfold_rejects_impossible_k():
    for n, k in ((5, 1), (5, 6)):
        with pytest.raises(ValueError, match="k must be between 2 and n"):
            kfold_indices(n, k)


def test_cross_validate_trains_a_fresh_model_per_fold_and_scores_the_unseen_fold():
    """On the embedded digits' validation split (500, k = 5): each model is new, trains on the
    400 others, and its score is its accuracy on the 100 it never saw, as a manual loop gives."""
    from torch.utils.data import TensorDataset
    from autograder.data import mnist_splits
    from autograder.runtime import seed_everything

    data = mnist_splits()["val"]
    seen, made = [], []

    def make_model():
        made.append(MLP())
        return made[-1]

    def train(model, subset):
        seen.append(len(subset))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):
            run_epoch(model, torch.utils.data.DataLoader(subset, batch_size=50, shuffle=True), optimizer)

    seed_everything(0)
    scores = cross_validate(make_model, data, 5, train, seed=0)
    assert seen == [400] * 5 and len({id(m) for m in made}) == 5
    X, y = data.tensors
    for model, (_, val), score in zip(made, kfold_indices(500, 5, seed=0), scores):
        with torch.no_grad():
            assert score == pytest.approx((model.eval()(X[val]).argmax(1) == y[val]).double().mean().item())
    assert all(0.5 < s < 1.0 for s in scores) and isinstance(scores[0], float)
