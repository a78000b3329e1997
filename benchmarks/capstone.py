"""Lab capstone: parameters, training time and accuracy of the reference CNN, as the notebook trains it.

For each seed: the reference `make_model()` trained by `train_model` on the loaders of the
notebook's locked training cell (`make_loaders(splits, TRAIN_SETTINGS["batch_size"])`), on this
machine's capstone data set (`capstone_dataset()`: the embedded digits unless COURSE_DATA holds
Fashion-MNIST or CIFAR-10), on CPU unless --device says otherwise. Prints the wall time of the
training call (what the time budget measures), its CPU time, and the validation and test
accuracy. course.yml's thresholds for the capstone come from these figures, with margins.

    .venv/bin/python benchmarks/capstone.py [--seeds 0 1 2 3 4] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from reference.capstone import (
    DATASET,
    TRAIN_SETTINGS,
    count_params,
    dataset_splits,
    evaluate,
    make_loaders,
    make_model,
    seed_everything,
    train_model,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = dataset_splits(DATASET)
    test = DataLoader(splits["test"], batch_size=500)
    print(f"data set {DATASET}: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; "
          f"{count_params(make_model()):,} parameters; {TRAIN_SETTINGS}; {args.threads} threads, "
          f"device {args.device}, torch {torch.__version__}")
    print(f"{'seed':>4} {'wall s':>7} {'cpu s':>7} {'val acc':>8} {'test acc':>9}")
    tests, walls = [], []
    for seed in args.seeds:
        seed_everything(seed)
        model = make_model()
        train_loader, val_loader = make_loaders(splits, TRAIN_SETTINGS["batch_size"])
        wall, cpu = time.perf_counter(), time.process_time()
        history = train_model(model, train_loader, val_loader, args.device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        test_acc = evaluate(model, test, args.device)[1]
        tests.append(test_acc)
        walls.append(wall)
        print(f"{seed:>4} {wall:>7.1f} {cpu:>7.1f} {history['val_acc'][-1]:>8.3f} {test_acc:>9.3f}", flush=True)
    print(f"test accuracy: min {min(tests):.3f}, mean {sum(tests) / len(tests):.3f}, max {max(tests):.3f}; "
          f"training wall time: max {max(walls):.1f} s")


if __name__ == "__main__":
    main()
