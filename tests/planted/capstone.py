"""Planted bugs of lab 16 (capstone): the student's CNN, make_model and train_model.

A history in percent or a model with 11 outputs fails interface alone (the model still trains
and classifies); a wide hidden layer fails param_budget alone (it trains as well, a little
slower); a loop without zero_grad trains badly and fails accuracy alone. A first convolution
hard-coded for 3 channels cannot run on the digits: the training cell raises, so the history,
the timing, the accuracy and the record of a training step are all missing — only the
parameter count, taken on the model created before training, still passes.
"""
from tests.planted import bug

BUGS = [
    bug("three-input-channels", "make_model", "in_channels=INPUT_SHAPE[0],", "in_channels=3,",
        {"interface", "time_budget", "accuracy", "gpu"}),
    bug("history-accuracy-in-percent", "train_model", 'history["val_acc"].append(val_acc)',
        'history["val_acc"].append(100 * val_acc)', {"interface"}),
    bug("hidden-layer-4096", "make_model", "widths=widths, hidden=128)", "widths=widths, hidden=4096)",
        {"param_budget"}),
    bug("no-zero-grad", "train_model", "            optimizer.zero_grad()\n", "", {"accuracy"}),
    bug("eleven-outputs", "make_model", "num_classes=NUM_CLASSES,", "num_classes=NUM_CLASSES + 1,", {"interface"}),
]
