"""Student-safe runtime: reproducibility, device choice, parameter counting.

Imports nothing of the project; notebooks, `reference` and the grader all use it.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a run repeats exactly on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: `prefer` if given, else $COURSE_DEVICE, else CUDA when available, else CPU."""
    name = prefer or os.environ.get("COURSE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def count_params(model: nn.Module, trainable: bool = False) -> int:
    """Number of parameters of `model`; with `trainable=True` only those with `requires_grad`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
