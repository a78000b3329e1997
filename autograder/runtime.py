"""Student-safe runtime: reproducibility, device choice, parameter counting, and a record of
where training ran.

Imports nothing of the project; notebooks, `reference` and the grader all use it. Importing it
installs one global forward hook (`torch.nn.modules.module.register_module_forward_hook`) that
records the device types of the parameters and the inputs of every training-mode forward pass
with gradients enabled: the GPU execution check reads it (`training_devices()`).
"""
from __future__ import annotations

import os
import random
import weakref

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


# ------------------------------------------------------------------ where training ran
_TRAINING_DEVICES: dict[str, set[str]] = {"parameters": set(), "batches": set()}
_TRAINED: "weakref.WeakKeyDictionary[nn.Module, set[str]]" = weakref.WeakKeyDictionary()  # layer → batch devices


def _record_training_forward(module: nn.Module, args: tuple, output) -> None:
    """Global forward hook: a layer with its own parameters, in training mode, with gradients on."""
    if not module.training or not module._parameters or not torch.is_grad_enabled():
        return None
    for p in module._parameters.values():
        if p is not None:
            _TRAINING_DEVICES["parameters"].add(p.device.type)
            break
    for a in args:
        if isinstance(a, torch.Tensor):
            _TRAINING_DEVICES["batches"].add(a.device.type)
            _TRAINED.setdefault(module, set()).add(a.device.type)
            break
    return None  # a forward hook that returns a value would replace the output


def training_devices(model: nn.Module | None = None) -> dict[str, set[str]]:
    """Device types ("cpu", "cuda", ...) of the parameters and of the batches seen by training-mode
    forward passes (with gradients) since this module was imported or `reset_training_devices()`:
    of every model, or of `model`'s layers only (its parameters: where they are now)."""
    if model is None:
        return {key: set(value) for key, value in _TRAINING_DEVICES.items()}
    batches = set().union(*(_TRAINED.get(m, set()) for m in model.modules()))
    parameters = {p.device.type for p in model.parameters()} if batches else set()
    return {"parameters": parameters, "batches": batches}


def reset_training_devices() -> None:
    for value in _TRAINING_DEVICES.values():
        value.clear()
    _TRAINED.clear()


_HOOK = torch.nn.modules.module.register_module_forward_hook(_record_training_forward)
