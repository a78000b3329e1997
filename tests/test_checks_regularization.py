"""The checks of lab regularization: the reference passes every one, and every one can fail.

Each check runs on the reference object (must pass) and on buggy variants (must raise an
AssertionError that reads `... expected ..., got ... — hint`). The planted bugs of
tests/planted/regularization.py are applied to the reference source here too, cell by cell, to
prove each fails exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

import reference.regularization as R
from autograder.checks import regularization as checks
from tests.planted.regularization import BUGS
from tests.judging import fails, passes


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_reference_passes_the_hidden_cases():
    checks.dropout(R.Dropout, p=0.5)
    checks.batchnorm(R.BatchNorm2d, num_features=5, seed=1)
    checks.augment(R.augment, size=32, channels=3)


@pytest.mark.parametrize("method", ["forward", "step", "restore"])
def test_an_unfilled_method_propagates_not_implemented(method):
    cls = R.Dropout if method == "forward" else R.EarlyStopping
    blank = type("Blank", (cls,), {method: lambda self, *a, **k: (_ for _ in ()).throw(NotImplementedError())})
    with pytest.raises(NotImplementedError):
        (checks.dropout if method == "forward" else checks.early_stopping)(blank)


# --- buggy variants: dropout --------------------------------------------------------------------


class DropoutNoScale(R.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype)


class DropoutKeepsP(R.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) < self.p).to(x.dtype) / (1 - self.p)


class DropoutMultipliesByKeep(R.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1 - self.p)


class DropoutAlsoInEval(R.Dropout):
    def forward(self, x):
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)


class DropoutScalesInEval(R.Dropout):
    def forward(self, x):
        return super().forward(x) if self.training else x * (1 - self.p)


class DropoutFixedMask(R.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        g = torch.Generator().manual_seed(0)
        return x * (torch.rand(x.shape, generator=g) >= self.p).to(x.dtype) / (1 - self.p)


class DropoutNoGrad(R.Dropout):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


class DropoutInPlace(R.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        return x.mul_((torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p))


class DropoutHalf(R.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= 0.5).to(x.dtype) * 2


class DropoutNotAModule:
    def __init__(self, p=0.5):
        self.p, self.training = p, True

    def __call__(self, x):
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)


# --- buggy variants: early stopping -------------------------------------------------------------


class StopSeedCounter(R.EarlyStopping):
    def step(self, val_loss, model=None):
        if val_loss < self.best - self.min_delta:
            self.best, self.counter = val_loss, 0
        else:
            self.counter = 1  # the seed's converge_cnt = 1
        return self.counter >= self.patience


class StopOneLate(R.EarlyStopping):
    def step(self, val_loss, model=None):
        super().step(val_loss, model)
        return self.counter > self.patience


class StopTieImproves(R.EarlyStopping):
    def step(self, val_loss, model=None):
        if val_loss <= self.best - self.min_delta:
            self.best, self.counter = val_loss, 0
            if model is not None:
                self.best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            self.counter += 1
        return self.counter >= self.patience


class StopNoReset(R.EarlyStopping):
    def step(self, val_loss, model=None):
        if val_loss < self.best - self.min_delta:
            self.best = val_loss
        else:
            self.counter += 1
        return self.counter >= self.patience


class StopIgnoresMinDelta(R.EarlyStopping):
    def step(self, val_loss, model=None):
        if val_loss < self.best:
            self.best, self.counter = val_loss, 0
        else:
            self.counter += 1
        return self.counter >= self.patience


class StopBestAlwaysUpdated(R.EarlyStopping):
    def step(self, val_loss, model=None):
        improved = val_loss < self.best - self.min_delta
        self.best = min(self.best, val_loss)
        self.counter = 0 if improved else self.counter + 1
        return self.counter >= self.patience


class StopReturnsCounter(R.EarlyStopping):
    def step(self, val_loss, model=None):
        super().step(val_loss, model)
        return self.counter


class StopShallowState(R.EarlyStopping):
    def step(self, val_loss, model=None):
        improved = val_loss < self.best - self.min_delta
        stop = super().step(val_loss, None)
        if improved and model is not None:
            self.best_state = model.state_dict()  # the model's own tensors
        return stop


class StopSavesEveryEpoch(R.EarlyStopping):
    def step(self, val_loss, model=None):
        stop = super().step(val_loss, None)
        if model is not None:
            self.best_state = {k: v.clone() for k, v in model.state_dict().items()}
        return stop


class StopSavesFirstOnly(R.EarlyStopping):
    def step(self, val_loss, model=None):
        had = self.best_state
        stop = super().step(val_loss, model)
        if had is not None:
            self.best_state = had
        return stop


class StopSavesParametersOnly(R.EarlyStopping):
    def step(self, val_loss, model=None):
        improved = val_loss < self.best - self.min_delta
        stop = super().step(val_loss, None)
        if improved and model is not None:
            self.best_state = {k: v.detach().clone() for k, v in model.named_parameters()}
        return stop

    def restore(self, model):
        model.load_state_dict(self.best_state, strict=False)
        return model


class StopRestoreDoesNothing(R.EarlyStopping):
    def restore(self, model):
        return model


# --- buggy variants: batch normalization --------------------------------------------------------


class _BN(R.BatchNorm2d):
    """The reference's forward with switches for the usual mistakes."""

    unbiased_norm = False
    running_unbiased = True
    momentum_swapped = False
    eval_batch_stats = False
    eps_used = True
    affine = True
    detach_stats = False
    update_in_eval = False
    dims = (0, 2, 3)

    def forward(self, x):
        use_batch = self.training or self.eval_batch_stats
        if use_batch:
            mean = x.mean(dim=self.dims, keepdim=True)
            var = x.var(dim=self.dims, unbiased=self.unbiased_norm, keepdim=True)
            if self.detach_stats:
                mean, var = mean.detach(), var.detach()
        if self.training or self.update_in_eval:
            bmean, bvar = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=self.running_unbiased)
            m = 0.9 if self.momentum_swapped else self.momentum
            with torch.no_grad():
                self.running_mean.mul_(1 - m).add_(m * bmean)
                self.running_var.mul_(1 - m).add_(m * bvar)
        if not use_batch:
            mean, var = self.running_mean[None, :, None, None], self.running_var[None, :, None, None]
        x_hat = (x - mean) / torch.sqrt(var + (self.eps if self.eps_used else 0.0))
        if not self.affine:
            return x_hat
        return self.weight[None, :, None, None] * x_hat + self.bias[None, :, None, None]


def _bn(**switches):
    return type("BuggyBN", (_BN,), switches)


BNUnbiasedNorm = _bn(unbiased_norm=True)
BNRunningBiased = _bn(running_unbiased=False)
BNMomentumSwapped = _bn(momentum_swapped=True)
BNEvalBatchStats = _bn(eval_batch_stats=True)
BNNoEps = _bn(eps_used=False)
BNNoAffine = _bn(affine=False)
BNDetachedStats = _bn(detach_stats=True)
BNUpdatesInEval = _bn(update_in_eval=True)
BNPerSample = _bn(dims=(2, 3))


class BNRunningAsParameters(R.BatchNorm2d):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        nn.Module.__init__(self)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.running_mean = nn.Parameter(torch.zeros(num_features), requires_grad=False)
        self.running_var = nn.Parameter(torch.ones(num_features), requires_grad=False)
        self.register_buffer("num_batches_tracked", torch.tensor(0))


class BNGammaBeta(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        return x


# --- buggy variants: augment --------------------------------------------------------------------


def aug_identity(x):
    return x.clone()


def aug_flip(x):
    return R.augment(x).flip(-1)


def aug_flip_half(x):
    y = R.augment(x, 0.05, 5.0)
    flip = torch.rand(len(x)) < 0.5
    y[flip] = y[flip].flip(-1)
    return y


def aug_vflip(x):
    return R.augment(x).flip(-2)


def aug_rot90(x):
    return torch.rot90(x, 1, (2, 3))


def aug_crop(x):
    i, j = torch.randint(0, 5, (2,)).tolist()
    return x[:, :, i:i + 24, j:j + 24]


def aug_in_place(x):
    x.copy_(R.augment(x))
    return x


def aug_float64(x):
    return R.augment(x).double()


def aug_fixed_roll(x):
    return torch.roll(x, shifts=(2, -1), dims=(2, 3))


def aug_brighter(x):
    return 2.5 * R.augment(x)


def aug_huge(x):
    return R.augment(x, max_shift=0.2, max_degrees=180.0)


BUGGY: dict[str, list[Callable]] = {
    "dropout": [DropoutNoScale, DropoutKeepsP, DropoutMultipliesByKeep, DropoutAlsoInEval, DropoutScalesInEval,
                DropoutFixedMask, DropoutNoGrad, DropoutInPlace, DropoutHalf, DropoutNotAModule],
    "early_stopping": [StopSeedCounter, StopOneLate, StopTieImproves, StopNoReset, StopIgnoresMinDelta,
                       StopBestAlwaysUpdated, StopReturnsCounter, StopShallowState, StopSavesEveryEpoch,
                       StopSavesFirstOnly, StopSavesParametersOnly, StopRestoreDoesNothing],
    "batchnorm": [BNUnbiasedNorm, BNRunningBiased, BNMomentumSwapped, BNEvalBatchStats, BNNoEps, BNNoAffine,
                  BNDetachedStats, BNUpdatesInEval, BNPerSample, BNRunningAsParameters, BNGammaBeta],
    "augment": [aug_identity, aug_flip, aug_flip_half, aug_vflip, aug_rot90, aug_crop, aug_in_place, aug_float64,
                aug_fixed_roll, aug_brighter, aug_huge],
}


@pytest.mark.parametrize(
    "name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=lambda v: getattr(v, "__name__", v)
)
def test_check_fails_on_buggy_variant(name, buggy):
    message = fails(getattr(checks, name), buggy)


@pytest.mark.parametrize(
    "buggy,words",
    [
        (DropoutNoScale, "not scaled"),
        (DropoutKeepsP, "1 - p"),
        (DropoutMultipliesByKeep, "divide by 1 - p"),
        (DropoutAlsoInEval, "eval mode"),
        (DropoutScalesInEval, "inverted dropout already scaled"),
        (DropoutFixedMask, "new random mask"),
        (DropoutNoGrad, "no .data"),
        (DropoutInPlace, "in place"),
        (DropoutNotAModule, "nn.Module"),
        (StopSeedCounter, "counter += 1"),
        (StopOneLate, "counter >= patience"),
        (StopTieImproves, "equal to the best"),
        (StopRestoreDoesNothing, "nothing was loaded"),
        (StopNoReset, "reset the counter to 0"),
        (StopIgnoresMinDelta, "min_delta"),
        (StopBestAlwaysUpdated, "keep `best`"),
        (StopReturnsCounter, "Python bool"),
        (StopShallowState, "shares its tensors"),
        (StopSavesEveryEpoch, "best epoch, not the last"),
        (StopSavesFirstOnly, "not only the first"),
        (StopSavesParametersOnly, "buffers"),
        (BNUnbiasedNorm, "biased variance (unbiased=False"),
        (BNRunningBiased, "running_var with the unbiased variance"),
        (BNMomentumSwapped, "momentum weighs the new statistic"),
        (BNEvalBatchStats, "use the running statistics"),
        (BNNoEps, "eps"),
        (BNNoAffine, "weight * x_hat + bias"),
        (BNDetachedStats, "do not detach"),
        (BNUpdatesInEval, "only in training mode"),
        (BNPerSample, "over N, H and W"),
        (BNRunningAsParameters, "buffers"),
        (BNGammaBeta, "weight, bias"),
        (aug_flip, "no horizontal flip"),
        (aug_flip_half, "no horizontal flip"),
        (aug_identity, "shift and rotate"),
        (aug_crop, "shape"),
        (aug_in_place, "leave the input"),
        (aug_fixed_roll, "at every call"),
        (aug_brighter, "do not rescale"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, fns in BUGGY.items() if buggy in fns)
    message = fails(getattr(checks, name), buggy)
    assert words in message, message


def test_a_student_error_is_one_clear_line_with_the_original_chained():
    class Crashes(R.Dropout):
        def forward(self, x):
            return x @ torch.ones(3, 3)

    with pytest.raises(AssertionError) as info:
        checks.dropout(Crashes)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


# --- planted bugs, applied to the reference source ----------------------------------------------


def test_the_first_two_planted_bugs_are_the_clearest():
    assert [b.name for b in BUGS[:2]] == ["dropout-no-rescale", "early-stopping-seed-counter"]


# --- other correct answers pass -----------------------------------------------------------------


class DropoutBernoulli(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * torch.bernoulli(torch.full_like(x, 1 - self.p)) / (1 - self.p)


class StopDeepcopy:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta, self.best, self.bad, self.state = patience, min_delta, None, 0, None

    def step(self, val_loss, model=None):
        import copy

        if self.best is None or self.best - val_loss > self.min_delta:
            self.best, self.bad = val_loss, 0
            if model is not None:
                self.state = copy.deepcopy(model.state_dict())
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, model):
        model.load_state_dict(self.state)


class BNKeepdim(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        shape = (1, -1, 1, 1)
        if self.training:
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
            n = x.shape[0] * x.shape[2] * x.shape[3]
            self.running_mean = 0.9 * self.running_mean + 0.1 * mean.detach().flatten()
            self.running_var = 0.9 * self.running_var + 0.1 * var.detach().flatten() * n / (n - 1)
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        return (x - mean) / (var + 1e-5).sqrt() * self.weight.view(shape) + self.bias.view(shape)


def aug_torchvision(x):
    import torchvision.transforms.v2 as T

    t = T.RandomAffine(degrees=20, translate=(0.2, 0.2), scale=(0.9, 1.1))
    return torch.stack([t(image) for image in x])


def aug_roll(x):
    out = torch.empty_like(x)
    for i in range(len(x)):
        dy, dx = torch.randint(-3, 4, (2,)).tolist()
        out[i] = torch.roll(x[i], (dy, dx), dims=(1, 2))
    return out


def aug_seed_ranges(x):
    return R.augment(x, max_shift=0.2, max_degrees=20.0)


@pytest.mark.parametrize("name,answer", [("dropout", DropoutBernoulli), ("early_stopping", StopDeepcopy),
                                         ("batchnorm", BNKeepdim), ("augment", aug_torchvision),
                                         ("augment", aug_roll), ("augment", aug_seed_ranges)],
                         ids=lambda v: getattr(v, "__name__", v))
def test_other_correct_answers_pass(name, answer):
    passes(getattr(checks, name), answer)
    if name == "augment":
        passes(checks.augment, answer, size=32, channels=3)
