"""What a submission's code may not change before a check runs.

A student controls only the answer cells, but that code runs in the process that also runs the
checks. `Guard` (used by the fork engine's child) snapshots, before the first cell, the
namespaces the checks rely on — builtins, torch (`torch.allclose`, `torch.Tensor.eq`, ...),
`torch.nn.functional`, numpy, math, time, and every `autograder` module, including the code of
their functions — and the names that locked cells bind (`checks`, `torch`, `mnist_splits`).
Before each check cell and each locked cell (given code, such as a timed training cell) it puts
back whatever the submission replaced, added or deleted, so that the probe of a check
(autograder.witness) runs the course's code as an honest notebook would. It decides nothing: the
verdict is the judge's, in the grading process.
"""
from __future__ import annotations

import builtins
import importlib
import math
import pkgutil
import sys
import time
import types

_MISSING = object()
_CACHES = {"__slotnames__"}   # what pickling caches on a class (copyreg): not a change


def _namespaces(labs: tuple[str, ...] | None = None) -> list[object]:
    """What the guard protects: the modules above, and every autograder module imported, with
    the check modules of `labs` (None: of every lab) among them."""
    import numpy
    import torch
    import torch.nn.functional

    import autograder
    import autograder.checks
    names = [info.name for info in pkgutil.iter_modules(autograder.checks.__path__)]
    for name in names if labs is None else [n for n in names if n in labs]:
        importlib.import_module(f"autograder.checks.{name}")
    ours = [m for name, m in sorted(sys.modules.items()) if name == "autograder" or name.startswith("autograder.")]
    return [builtins, math, time, numpy, torch, torch.Tensor, torch._C.TensorBase, torch.nn.Module,
            torch.nn.functional, torch.linalg, torch.testing, *ours]


def import_checked_modules(labs: tuple[str, ...] | None = None) -> None:
    """Import the modules the guard protects for `labs` (the worker does this once, before forking)."""
    _namespaces(labs)


class Guard:
    def __init__(self, user_ns: dict, lab: str | None = None) -> None:
        self.user_ns = user_ns
        self.saved = [(obj, dict(vars(obj))) for obj in _namespaces(None if lab is None else (lab,))]
        self.modules = {name: m for name, m in sys.modules.items()
                        if name in ("torch", "numpy", "math", "time") or name.split(".")[0] == "autograder"}
        self.code = {}
        for obj, names in self.saved:
            if isinstance(obj, types.ModuleType) and obj.__name__.split(".")[0] == "autograder":
                for value in names.values():
                    if isinstance(value, types.FunctionType) and value.__module__ == obj.__name__:
                        self.code[value] = (value.__code__, value.__defaults__, value.__kwdefaults__)
        self.bindings: dict[str, object] = {}

    def protect_bindings(self) -> None:
        """After a locked cell: keep the modules and autograder objects it bound in the notebook."""
        for name, value in self.user_ns.items():
            if name.startswith("_"):
                continue
            module = getattr(value, "__module__", None)
            if isinstance(value, types.ModuleType) or (isinstance(module, str) and module.startswith("autograder")):
                self.bindings.setdefault(name, value)

    def restore(self) -> list[str]:
        """Put back everything changed since the snapshot; return what was changed."""
        changed = []
        for obj, saved in self.saved:
            current = vars(obj)
            label = getattr(obj, "__name__", type(obj).__name__)
            for name, value in saved.items():
                if current.get(name, _MISSING) is not value:
                    changed.append(f"{label}.{name}")
                    try:
                        setattr(obj, name, value)
                    except (AttributeError, TypeError):
                        pass
            for name in [n for n in current if n not in saved]:
                if isinstance(current[name], types.ModuleType) or name in _CACHES:
                    continue            # a submodule imported since (torch loads some lazily)
                changed.append(f"{label}.{name}")
                try:
                    delattr(obj, name)
                except (AttributeError, TypeError):
                    pass
        for fn, (code, defaults, kwdefaults) in self.code.items():
            if fn.__code__ is not code or fn.__defaults__ is not defaults or fn.__kwdefaults__ is not kwdefaults:
                changed.append(f"{fn.__module__}.{fn.__name__}")
                fn.__code__, fn.__defaults__, fn.__kwdefaults__ = code, defaults, kwdefaults
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                changed.append(f"sys.modules[{name!r}]")
                sys.modules[name] = module
        for name, value in self.bindings.items():
            if self.user_ns.get(name, _MISSING) is not value:
                changed.append(name)
                self.user_ns[name] = value
        return changed
