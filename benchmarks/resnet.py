"""Lab resnet: training time and accuracy of SmallResNet, and the degradation experiment, with
the notebook's settings.

Prints, for each seed, the seconds to train the reference SmallResNet on the 3,500 embedded
training digits (reference.resnet.TRAIN_SETTINGS, CPU, 1 thread as in the notebook) and its
accuracy on the validation and hidden test splits (course.yml's `thresholds.accuracy` for
resnet comes from these test accuracies, minus a margin); then, per seed, the mean training loss
of the last epoch of the degradation experiment (DEGRADATION_SETTINGS): a shallow plain net, a
deep plain net and the same deep net with skip connections (the notebook's narrative quotes
these ranges).

    .venv/bin/python benchmarks/resnet.py [--seeds 0 1 2] [--threads 1] [--skip-accuracy]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import TensorDataset

from reference.resnet import (
    DEGRADATION_SETTINGS,
    TRAIN_SETTINGS,
    BasicBlock,
    PlainBlock,
    SmallResNet,
    accuracy,
    count_params,
    deep_net,
    mnist_splits,
    seed_everything,
    train_classifier,
)


def accuracy_rows(seeds: list[int], splits) -> None:
    print(f"\nSmallResNet ({count_params(SmallResNet()):,} parameters), {TRAIN_SETTINGS}")
    print(f"{'seed':>4} {'train s':>8} {'val acc':>8} {'test acc':>9}")
    tests = []
    for seed in seeds:
        seed_everything(seed)
        model = SmallResNet()
        start = time.perf_counter()
        train_classifier(model, splits["train"], device="cpu", **TRAIN_SETTINGS)
        seconds = time.perf_counter() - start
        val, test = accuracy(model, splits["val"]), accuracy(model, splits["test"])
        tests.append(test)
        print(f"{seed:>4} {seconds:>8.2f} {val:>8.3f} {test:>9.3f}", flush=True)
    print(f"test accuracy: min {min(tests):.3f}, mean {sum(tests) / len(tests):.3f}, max {max(tests):.3f}")


def degradation_rows(seeds: list[int], splits) -> None:
    d = DEGRADATION_SETTINGS
    X, y = splits["train"].tensors
    small = TensorDataset(X[:d["n_train"]], y[:d["n_train"]])
    nets = ((f"plain {2 * d['shallow_blocks'] + 2}", PlainBlock, d["shallow_blocks"]),
            (f"plain {2 * d['deep_blocks'] + 2}", PlainBlock, d["deep_blocks"]),
            (f"residual {2 * d['deep_blocks'] + 2}", BasicBlock, d["deep_blocks"]))
    print(f"\ndegradation experiment, {d}: mean training loss of the last epoch (seconds)")
    print(f"{'seed':>4} " + " ".join(f"{label:>20}" for label, _, _ in nets))
    for seed in seeds:
        cells = []
        for _, block, n in nets:
            seed_everything(seed)
            net = deep_net(block, n, width=d["width"])
            start = time.perf_counter()
            losses = train_classifier(net, small, epochs=d["epochs"], lr=d["lr"], batch_size=d["batch_size"], device="cpu")
            cells.append(f"{losses[-1]:.3f} ({time.perf_counter() - start:.1f} s)")
        print(f"{seed:>4} " + " ".join(f"{c:>20}" for c in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = mnist_splits()
    print(f"{args.threads} thread(s), torch {torch.__version__}")
    if not args.skip_accuracy:
        accuracy_rows(args.seeds, splits)
    degradation_rows(args.seeds, splits)


if __name__ == "__main__":
    main()
