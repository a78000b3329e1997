"""Planted bugs of lab 07 (training): the MLP, the training loop, evaluation and fit.

The checks of train_one_epoch, evaluate and fit run on a probe model of their own, so a bug in
MLP fails only the MLP checks (and accuracy when the model then trains badly). fit's check gives
it stand-ins for train_one_epoch and evaluate (autograder.checks.training), so their bugs fail
their own checks only. accuracy scores the model
trained in the notebook (seed 0, 5 epochs of Adam 1e-3, threshold 0.85; benchmarks/training.py):
test accuracy 0.914 for the reference, 0.821 without zero_grad, 0.113 with SGD at lr 1e-3, and
still 0.870 with a softmax at the end.
"""
from tests.planted import bug

BUGS = [
    bug("evaluate-averages-per-batch", "evaluate",
        'total_loss += F.cross_entropy(logits, y, reduction="sum").item()  # a sum, not a mean\n'
        "            correct += (logits.argmax(dim=1) == y).sum().item()\n"
        "            count += len(y)",
        "total_loss += F.cross_entropy(logits, y).item()\n"
        "            correct += (logits.argmax(dim=1) == y).float().mean().item()\n"
        "            count += 1",
        {"evaluate"}),
    bug("train-one-epoch-no-zero-grad", "train_one_epoch",
        "optimizer.zero_grad()               # gradients accumulate otherwise", "pass",
        {"train_one_epoch", "accuracy"}),
    bug("mlp-softmax-output", "MLP", "return self.fc3(x)        # [N, 10] logits",
        "return F.softmax(self.fc3(x), dim=1)", {"mlp"}),
    bug("evaluate-divides-by-batches", "evaluate", "count += len(y)", "count += 1", {"evaluate"}),
    bug("train-one-epoch-mean-of-batch-losses", "train_one_epoch",
        "total += loss.item() * len(y)       # back to a sum over the batch's samples\n        count += len(y)",
        "total += loss.item()\n        count += 1", {"train_one_epoch"}),
    bug("train-one-epoch-no-train-mode", "train_one_epoch", "    model.train()\n", "", {"train_one_epoch"}),
    bug("evaluate-no-eval-mode", "evaluate", "    model.eval()\n", "", {"evaluate"}),
    bug("mlp-hidden-64", "MLP",
        "nn.Linear(256, 128)      # 256·128 + 128 =  32,896\n        self.fc3 = nn.Linear(128, 10)",
        "nn.Linear(256, 64)\n        self.fc3 = nn.Linear(64, 10)", {"param_count"}),
    bug("fit-sgd-instead-of-adam", "fit", "torch.optim.Adam(model.parameters(), lr=lr)",
        "torch.optim.SGD(model.parameters(), lr=lr)", {"fit", "accuracy"}),
    bug("fit-fixed-lr", "fit", "lr=lr)", "lr=1e-3)", {"fit"}),
    bug("confusion-rows-are-predictions", "confusion_matrix", "torch.bincount(y * num_classes + predicted",
        "torch.bincount(predicted * num_classes + y", {"confusion_matrix"}),
    bug("confusion-no-eval-mode", "confusion_matrix", "    model.eval()\n", "", {"confusion_matrix"}),
    bug("confusion-last-batch-only", "confusion_matrix", "counts += torch.bincount", "counts = torch.bincount",
        {"confusion_matrix"}),
    bug("per-class-divides-by-columns", "per_class_accuracy", "confusion.sum(dim=1)", "confusion.sum(dim=0)",
        {"per_class_accuracy"}),
    bug("per-class-empty-class-zero", "per_class_accuracy", "return confusion.diagonal() / confusion.sum(dim=1)",
        "return confusion.diagonal() / confusion.sum(dim=1).clamp(min=1)", {"per_class_accuracy"}),
]
