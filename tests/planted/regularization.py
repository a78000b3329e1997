"""Planted bugs of lab regularization: each edits one answer cell and fails exactly its own check.

The four exercises are independent classes and a function, and the notebook's demos that use
them only print and plot: a bug in one never stops another check from passing.
"""
from tests.planted import bug

BUGS = [
    bug("dropout-no-rescale", "Dropout", "return x * keep / (1.0 - self.p)", "return x * keep", {"dropout"}),
    bug("early-stopping-seed-counter", "EarlyStopping", "self.counter += 1", "self.counter = 1", {"early_stopping"}),
    bug("batchnorm-unbiased-variance", "BatchNorm2d", "x.var(dim=(0, 2, 3), unbiased=False)",
        "x.var(dim=(0, 2, 3), unbiased=True)", {"batchnorm"}),
    bug("early-stopping-restore-keeps-no-copy", "EarlyStopping",
        "self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}",
        "self.best_state = model.state_dict()", {"early_stopping"}),
    bug("batchnorm-running-var-biased", "BatchNorm2d", "m * var * n / (n - 1)", "m * var", {"batchnorm"}),
    bug("augment-horizontal-flip", "augment", "return F.grid_sample(x, grid,", "return F.grid_sample(x.flip(-1), grid,",
        {"augment"}),
    bug("dropout-also-in-eval", "Dropout", "if not self.training or self.p == 0.0:", "if self.p == 0.0:", {"dropout"}),
    bug("kfold-no-shuffle", "kfold_indices", "order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))",
        "order = torch.arange(n)", {"kfold"}),
    bug("kfold-validation-fold-also-trained", "kfold_indices", "torch.cat(folds[:i] + folds[i + 1:])", "torch.cat(folds)",
        {"kfold"}),
    bug("cross-validate-scores-the-training-folds", "cross_validate",
        "(model(X[val_idx]).argmax(dim=1) == y[val_idx])", "(model(X[train_idx]).argmax(dim=1) == y[train_idx])",
        {"cross_validate"}),
]
