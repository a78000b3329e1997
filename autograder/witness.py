"""Probe in the sandbox, judge in the grader: the student's process is a witness, never a judge.

A graded check cell is a list of calls `checks.<name>(arg, ...)` (the source decides which). The
same check function runs twice:

* **Probe** (in the sandbox, after the submission's cells): the arguments that are not literals
  are evaluated in the notebook's namespace; every object the student made (a function, a model,
  an optimizer) reaches the check wrapped in a `Tap`. Each time the check's code touches a Tap
  (calls it, reads an attribute, iterates it), the student's code runs and the *result* is
  recorded as plain data: JSON numbers and strings, tensors and arrays as raw bytes with dtype
  and shape (never pickle), other objects as numbered handles. So are the changes the student's
  code made to what the check gave it (tensors, torch modules), exceptions (type name and
  message), and calls the student's code made back into the check (forward hooks). The probe's
  own verdict is thrown away. Here (`probe_cell`, the tests' and a Probe's reference) the check
  runs in the notebook's process; grading runs it in a check process of its own instead
  (autograder.live, both engines), which asks the notebook's process for each touch and leaves
  the same record.
* **Judge** (in the grading process, `judge_cell`): the check function runs again on the same
  inputs (literals from the source, the check's own seeded data), with a `Replay` in place of
  each student object: every touch returns what the probe recorded, nothing of the student's
  code runs here. The judge's assertions decide pass or fail and write the message.

A forged record only changes what the judge is told the student's code returned; to pass, it
must hold the right results for the check's inputs, which is solving the exercise. A record that
does not follow the judge's own path (the check asks for something the probe never recorded)
fails the check with a grader message. Random numbers: both sides seed the global generators
the same way before each check; the student's code draws from them as the check left them (a
check that seeds them before building the student's model gets its weights), and afterwards
both sides reseed from the state the call began with — so a check's own draws never depend on
what the student's code drew, and the notebook goes on from its own state.
"""
from __future__ import annotations

import ast
import collections
import contextlib
import functools
import hashlib
import itertools
import json
import math
import random
import struct
import sys
import time
import types
from typing import Any, Callable

import numpy as np
import torch

from .results import JUDGE_SECONDS

SESSION: "Probe | Judge | None" = None   # the probe or judge of the check being run, else None
MAX_BYTES = 512 << 20      # of tensor data in one cell's record
MAX_ITEMS = 100_000        # items of one iterator, elements of one container
BIG = 1 << 20              # elements: a larger result reaches the judge as its shape only (a meta
                           # tensor: full-size networks' weights, whose values no check reads)
MAX_DEPTH = 32
ARRAY_COPY_BYTES = 8 << 20  # an array the check handed over is watched through a copy up to this size
MAX_DECODED = 256 << 20    # bytes the judge may make from one cell's record, repeats counted
MAX_DECODED_ITEMS = 2_000_000   # values and container items the judge may make from one record
MAX_CALLBACKS = 20_000     # calls back into the check the judge replays for one cell
SEED = 20_251_206          # the global generators' seed before each check call (both sides)
_TRUSTED = ("builtins", "torch", "torchvision", "numpy", "collections")
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}
_EXCEPTIONS = {e.__name__: e for e in (
    ArithmeticError, AssertionError, AttributeError, IndexError, KeyError, LookupError, NameError,
    NotImplementedError, OverflowError, RecursionError, RuntimeError, StopIteration, TypeError, ValueError,
    ZeroDivisionError, MemoryError, ImportError, ModuleNotFoundError, UnboundLocalError)}


_READS = ("get", "len", "bool", "contains", "repr", "str")   # no change to what the check owns is looked for
_CONVERT = {"len": int, "bool": bool, "contains": bool}


class ProbeError(Exception):
    """The probe could not record a value (too large, too deep): the check fails with this."""


class ReplayMismatch(BaseException):
    """The judge asked for something the probe did not record, or the record is over a bound.
    A BaseException: a check's `except Exception` around the student's call must not swallow it."""


def active() -> bool:
    """Whether a graded check is being probed or judged (False in a student's own notebook)."""
    return SESSION is not None


def judging() -> bool:
    """Whether a check is being judged, in the grading process (not probed: autograder.live's
    check process asks the notebook's process live, as the probe)."""
    return isinstance(SESSION, Judge) and not SESSION.live


def draw() -> int:
    """The grading run's draw (a secret of the grader's: autograder.pipeline.grading_draw) while a
    check is probed in its check process or judged, else 0: which random cases a check's
    `autograder.checks.drawn` generators give (the same on both sides)."""
    value = SESSION.facts.get("draw") if isinstance(SESSION, Judge) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def measured(name: str) -> float | None:
    """A figure the grader measured outside the sandbox (while judging), else None."""
    value = SESSION.facts.get(name) if judging() else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def real(obj: Any) -> Any:
    """The student's object behind a Tap (in the probe); anything else unchanged."""
    return object.__getattribute__(obj, "_w_obj") if isinstance(obj, Tap) else obj


def is_student(obj: Any) -> bool:
    return isinstance(obj, (Tap, Replay))


def boundary(kind: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` where it must run on the student's real objects: in the notebook's
    process (a student's object among the arguments is the real one there), its result
    recorded and replayed to the judge. `fn` is a module-level function of autograder's, so
    that the notebook's process can find it by name (the check's own code never runs there).
    Outside grading, simply the call."""
    if SESSION is None:
        return fn(*args, **kwargs)
    return SESSION.boundary(kind, fn, args, kwargs)


@contextlib.contextmanager
def giving(fn: Any, helpers: dict[str, Callable]):
    """See autograder.checks.given: the student's `fn` finds `helpers` among its globals while
    the block runs (in the notebook's process; the judge changes nothing)."""
    for helper in helpers.values():
        function_path(helper)
    if isinstance(SESSION, Judge):
        if SESSION.live:
            with SESSION.give(fn, helpers):
                yield
        else:
            yield
        return
    restore = patch_globals(real(fn), helpers)
    try:
        yield
    finally:
        restore()


GIVEN_OVER: dict[str, Any] = {}   # while helpers are given: the student's own, by name


def given_over(name: str) -> Any:
    """The student's own function `name` while a given helper stands in for it (a helper may
    fall back on it for inputs it does not know), else None."""
    return GIVEN_OVER.get(name)


def patch_globals(fn: Any, helpers: dict[str, Any]) -> Callable[[], None]:
    """Bind `helpers` in `fn`'s globals; returns what puts the old bindings back."""
    names = getattr(fn, "__globals__", None)
    if not isinstance(names, dict):
        return lambda: None
    saved = {k: names[k] for k in helpers if k in names}
    names.update(helpers)
    GIVEN_OVER.update(saved)

    def restore() -> None:
        for k in helpers:
            GIVEN_OVER.pop(k, None)
            if k in saved:
                names[k] = saved[k]
            else:
                names.pop(k, None)
    return restore


def tensor_from_bytes(data: Any, dtype: torch.dtype, shape: list) -> torch.Tensor:
    """A CPU tensor of `shape` on the bytes of `data` (writable; kept alive by the tensor), as a
    tensor of its own and not a view: as the other side made it (`._base` None, in-place
    operations on a leaf that requires grad fail with the same error)."""
    data = memoryview(data).cast("B")
    if not data.nbytes:
        return torch.empty(shape, dtype=dtype)
    base = torch.frombuffer(data, dtype=torch.uint8)
    return torch.empty(0, dtype=dtype).set_(base.untyped_storage(), 0, list(shape))


def function_path(fn: Any) -> str:
    """`module:qualname` of a module-level function of autograder's, torch's or torchvision's
    (what a boundary or a given helper may name); TypeError for anything else."""
    path = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
    if not (isinstance(fn, types.FunctionType | types.BuiltinFunctionType) and "<" not in path
            and path.split(".")[0].split(":")[0] in ("autograder", "torch", "torchvision")
            and resolve_function(path) is fn):
        raise TypeError(f"not a module-level function of autograder, torch or torchvision: {path}")
    return path


def resolve_function(path: Any) -> Any:
    """The function `function_path` named (importing its module), or None."""
    import importlib
    if not isinstance(path, str) or path.count(":") != 1:
        return None
    module_name, qualname = path.split(":")
    if module_name.split(".")[0] not in ("autograder", "torch", "torchvision"):
        return None
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError:
        return None
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value if callable(value) else None


def _trusted_class(cls: type) -> type:
    """The nearest class in `cls`'s MRO that belongs to torch, numpy or the builtins."""
    for base in cls.__mro__:
        if _resolve_class(_class_path(base)) is base:    # the library's own class, not a namesake
            return base
    return object


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(path: Any) -> type:
    """A class named by the probe, if torch/numpy/builtins already define it; else object."""
    if not isinstance(path, str) or ":" not in path:
        return object
    module_name, qualname = path.split(":", 1)
    if module_name.split(".")[0] not in _TRUSTED or module_name not in sys.modules:
        return object
    value: Any = sys.modules[module_name]
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value if isinstance(value, type) else object


def _is_check_callable(value: Any) -> bool:
    """A function of the grader's (a hook a check registers) that the student's code may call."""
    if isinstance(value, functools.partial):
        return True
    if isinstance(value, types.MethodType):
        value = value.__func__
    return isinstance(value, types.FunctionType)


def _is_torch_module(value: Any) -> bool:
    return isinstance(value, torch.nn.Module) and type(value).__module__.split(".")[0] in ("torch", "torchvision")


def _is_course_module(value: Any) -> bool:
    """A module the check made: of torch's, torchvision's or the checks' own classes."""
    return isinstance(value, torch.nn.Module) and (
        _is_torch_module(value) or type(value).__module__.startswith("autograder.checks"))


def _start_check() -> None:
    """The same start for a check on both sides: seeded generators, torch's default dtype and
    gradients on (whatever the notebook set)."""
    torch.manual_seed(SEED)
    random.seed(SEED)
    np.random.seed(SEED % (1 << 32))
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)


# --- the shared walk over what a check hands to the student's code ----------------------------

class _Session:
    def __init__(self) -> None:
        self.owned: list[Any] = []          # objects of the check's handed to the student's code
        self.owned_index: dict[int, int] = {}
        self.snapshots: dict[int, Any] = {}  # modules, lists and dicts handed over directly (and,
                                             # in the probe, every tensor): their state then

    def owned_id(self, value: Any) -> int | None:
        k = self.owned_index.get(id(value))
        return k if k is not None and self.owned[k] is value else None

    def _own(self, value: Any) -> int:
        """Number `value` (and a module's submodules, parameters and buffers): both sides
        number the same objects in the same order."""
        k = self.owned_id(value)
        if k is not None:
            return k
        k = len(self.owned)
        self.owned.append(value)
        self.owned_index[id(value)] = k
        if isinstance(value, torch.Tensor):
            self._watch(k, value)
        elif isinstance(value, torch.nn.Module):
            for t in itertools.chain(value._parameters.values(), value._buffers.values()):
                if t is not None:
                    self._own(t)
            for child in value._modules.values():
                if child is not None and _is_course_module(child):
                    self._own(child)
        return k

    def inward(self, value: Any, depth: int = 0) -> Any:
        """Register what the check hands over (the same order on both sides); in the probe,
        unwrap Taps and wrap the check's callables."""
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, (Tap, Replay)):
            return self._unwrap(value)
        if isinstance(value, torch.Tensor):
            self._own(value)
            return value
        if _is_course_module(value):
            k = self._own(value)
            if k not in self.snapshots:
                self.snapshots[k] = _module_signature(value)
                self._instrument(value)
            return value
        if _is_check_callable(value):
            return self._callback(self._own(value), value)
        if type(value) is np.ndarray:
            k = self._own(value)
            if k not in self.snapshots:
                self.snapshots[k] = _array_signature(value)   # written into? recorded
            return value
        if type(value) is types.GeneratorType:      # model.parameters(): read once, here
            return (item for item in self.inward(list(itertools.islice(value, MAX_ITEMS)), depth + 1))
        if type(value) in (list, tuple, dict):
            k = self._own(value) if type(value) is not tuple else None
            if type(value) is dict:
                items: Any = {key: self.inward(v, depth + 1) for key, v in value.items()}
                same = all(items[key] is value[key] for key in value)
            else:
                items = [self.inward(v, depth + 1) for v in value]
                same = all(a is b for a, b in zip(items, value))
            if not same:                  # in the probe: Taps unwrapped, the check's functions wrapped
                return items if type(value) is not tuple else tuple(items)
            if k is not None and k not in self.snapshots:
                self.snapshots[k] = _container_signature(value)   # changed in place? recorded
            return value
        return value

    def args(self, args: tuple, kwargs: dict) -> tuple[list, dict]:
        """A call's arguments, handed over one by one (the argument list itself is nobody's)."""
        return [self.inward(a) for a in args], {k: self.inward(v) for k, v in kwargs.items()}

    def _instrument(self, module: torch.nn.Module) -> None:
        """Each module of the check's that the student's code may run: its forward is a call
        back into the check, which the judge replays by calling the module itself (so that the
        check's forward hooks on it, and modules that record how they are called, see in the
        judge what they saw in the probe)."""
        for sub in module.modules():
            if _is_course_module(sub) and "forward" not in vars(sub):
                object.__setattr__(sub, "forward", self._callback(self._own(sub), sub.forward))

    def _watch(self, k: int, tensor: torch.Tensor) -> None:
        """A tensor of the check's is handed over (the probe watches it for changes)."""

    def _unwrap(self, value: Any) -> Any:
        return value

    def _callback(self, k: int, fn: Any) -> Any:
        return fn


def _tensor_state(t: torch.Tensor) -> tuple:
    data = None if t.is_meta else t.detach().clone()
    grad = _grad(t)
    grad = grad.detach().clone() if isinstance(grad, torch.Tensor) and not grad.is_meta else None
    return data, t.requires_grad, grad, tuple(t.shape), t.dtype, _version_key(t)


def _grad(t: torch.Tensor) -> Any:
    """`t.grad`, without torch's warning for a tensor that is not a leaf (it has none)."""
    return t.grad if t.is_leaf or t.retains_grad else None


def _version_key(t: torch.Tensor) -> tuple:
    """Changes whenever `t` or its gradient is changed in place (not through `.data`)."""
    grad = _grad(t)
    return (t._version, id(grad), grad._version if isinstance(grad, torch.Tensor) else -1,
            t.requires_grad, tuple(t.shape))


def _unchanged(t: torch.Tensor, snapshot: tuple) -> bool:
    """Whether `t` still holds the values, flags and gradient of `snapshot` (_tensor_state)."""
    data, requires_grad, grad, shape, dtype, _ = snapshot
    if (t.requires_grad, tuple(t.shape), t.dtype) != (requires_grad, shape, dtype):
        return False
    current_grad = _grad(t)
    current_grad = current_grad if isinstance(current_grad, torch.Tensor) and not current_grad.is_meta else None
    return _same(None if t.is_meta else t.detach(), data) and _same(current_grad, grad)


def _container_signature(c: list | dict) -> tuple:
    items = c.items() if type(c) is dict else enumerate(c)
    return tuple((k if type(k) in (str, int, float, bool) else id(k), id(v)) for k, v in items)


def _array_signature(a: np.ndarray) -> tuple:
    """An array's dtype, shape and values (a student's code may write into it): a copy of its
    bytes, compared at memcmp speed (it is taken before and after every call of the student's
    code, for every array the check handed over), or a digest of them for a large array."""
    data = np.ascontiguousarray(a).tobytes()
    if len(data) > ARRAY_COPY_BYTES:
        data = hashlib.blake2b(data, digest_size=16).digest()
    return a.dtype.str, a.shape, data


def watched_signature(value: Any) -> Any:
    """What changes in an object the check handed over directly, other than a tensor: a
    module's state, a list's or dict's items, an array's values."""
    if isinstance(value, torch.nn.Module):
        return _module_signature(value)
    if type(value) is np.ndarray:
        return _array_signature(value)
    return _container_signature(value)


def _plain_attributes(m: torch.nn.Module) -> dict:
    """A module's settings that are plain values (in_features, p, stride, ...)."""
    out = {}
    for key, v in vars(m).items():
        if key.startswith("_") or key == "training":
            continue
        if type(v) in (bool, int, float, str) or (type(v) is tuple and all(type(x) in (bool, int, float, str) for x in v)):
            out[key] = v
    return out


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


def _module_signature(m: torch.nn.Module) -> tuple:
    return tuple((name, type(sub), sub.training, tuple(id(p) for p in sub._parameters.values()),
                  tuple(id(b) for b in sub._buffers.values())) for name, sub in m.named_modules())


# --- the probe (in the sandbox) --------------------------------------------------------------

class _Proxy:
    """What Tap and Replay share: identity is the object's, formatting its str()."""
    __slots__ = ()

    def __format__(self, spec: str) -> str:
        return str(self)

    def __eq__(self, other: Any) -> bool:
        return self is other

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __reduce_ex__(self, protocol: int):
        raise TypeError("a student's object cannot be pickled by a check")


class Tap(_Proxy):
    """A student's object, as the check sees it in the probe: every touch is recorded."""
    __slots__ = ("_w_probe", "_w_handle", "_w_obj", "__weakref__")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_w_"):
            raise AttributeError(name)
        obj = object.__getattribute__(self, "_w_obj")
        return _probe(self).op("get", self, name, lambda: getattr(obj, name))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_w_probe", "_w_handle", "_w_obj"):
            object.__setattr__(self, name, value)
            return
        probe, obj = _probe(self), object.__getattribute__(self, "_w_obj")
        value = probe.inward(value)
        probe.op("set", self, name, lambda: setattr(obj, name, value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        probe, obj = _probe(self), object.__getattribute__(self, "_w_obj")
        args, kwargs = probe.args(args, kwargs)
        return probe.op("call", self, None, lambda: obj(*args, **kwargs))

    def __iter__(self):
        obj = object.__getattribute__(self, "_w_obj")
        return iter(_probe(self).op("iter", self, None, lambda: list(itertools.islice(iter(obj), MAX_ITEMS))))

    def __len__(self) -> int:
        obj = object.__getattribute__(self, "_w_obj")
        return _probe(self).op("len", self, None, lambda: int(len(obj)))

    def __bool__(self) -> bool:
        obj = object.__getattribute__(self, "_w_obj")
        return _probe(self).op("bool", self, None, lambda: bool(obj))

    def __getitem__(self, key: Any) -> Any:
        probe, obj = _probe(self), object.__getattribute__(self, "_w_obj")
        key = probe.inward(key)
        return probe.op("getitem", self, _plain(key), lambda: obj[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        probe, obj = _probe(self), object.__getattribute__(self, "_w_obj")
        key, value = probe.inward(key), probe.inward(value)

        def setitem() -> None:
            obj[key] = value
        probe.op("setitem", self, _plain(key), setitem)

    def __contains__(self, item: Any) -> bool:
        probe, obj = _probe(self), object.__getattribute__(self, "_w_obj")
        item = probe.inward(item)
        return probe.op("contains", self, _plain(item), lambda: bool(item in obj))

    def __repr__(self) -> str:
        obj = object.__getattribute__(self, "_w_obj")
        return _probe(self).op("repr", self, None, lambda: str(repr(obj))[:2000])

    def __str__(self) -> str:
        obj = object.__getattribute__(self, "_w_obj")
        return _probe(self).op("str", self, None, lambda: str(str(obj))[:2000])

    def __deepcopy__(self, memo: dict) -> Any:
        import copy
        obj = object.__getattribute__(self, "_w_obj")
        return _probe(self).op("deepcopy", self, None, lambda: copy.deepcopy(obj))


def _plain(value: Any) -> Any:
    """A key or item the check passes, as recorded so that the judge can see it asks the same."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    return type(value).__name__


def _probe(tap: Tap) -> "Probe":
    return object.__getattribute__(tap, "_w_probe")


_HEAPTYPE = 1 << 9


def _handle_base(cls: type) -> type:
    """What a handle may claim to be: `cls`, unless a class in its MRO is one of torch's or
    numpy's written in C (a tensor, a generator, a storage), whose C code takes an object that
    says it is one for one and reads its memory (a forged record claiming `torch:Tensor`
    crashed the grader): then a plain object. Tensors and arrays never cross as handles."""
    for c in cls.__mro__:
        if c is not object and not c.__flags__ & _HEAPTYPE and c.__module__.split(".")[0] in ("torch", "numpy"):
            return object
    return cls


def _handle_class(base: type, proxy: type, name: str, cache: dict) -> type:
    """A subclass of Tap/Replay named like the student's type, whose `__class__` is `base`
    (so `isinstance(obj, nn.Module)` and `type(obj).__name__` read as for the real object)."""
    base = _handle_base(base)
    key = (base, name)
    if key not in cache:
        cache[key] = type(name, (proxy,), {"__slots__": (), "__class__": property(lambda self: base)})
    return cache[key]


class Probe(_Session):
    """Records one check cell's calls (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrays: list[bytes] = []
        self.nbytes = 0
        self.objects: list[Any] = []
        self.handles: dict[int, Tap] = {}
        self.handle_of: dict[int, int] = {}
        self.stack: list[list] = []
        self.sent: dict[int, tuple] = {}   # id → (tensor, version, array): each sent once
        self.by_shape: dict[tuple, list[int]] = {}   # tensors of the check's, by shape and dtype
        self.opaque = 0
        self.in_module = 0          # inside the forward of a module of the check's
        self.in_student = 0
        self.saved_rng: tuple | None = None
        self.saved_modes: tuple = (torch.float32, True)
        self.student_rng = _rng_state()
        self._classes: dict = {}
        self.handle_specs: list[dict] = []
        self.recorded: dict[int, torch.Tensor] = {}   # array number -> the tensor recorded there

    # --- values crossing from the student's code to the check's ---
    def _array(self, data: bytes) -> int:
        self.nbytes += len(data)
        if self.nbytes > MAX_BYTES:
            raise ProbeError(f"the results to record exceed {MAX_BYTES >> 20} MB")
        self.arrays.append(data)
        return len(self.arrays) - 1

    def _tensor(self, t: torch.Tensor, with_grad: bool = True, whole: bool = False) -> dict:
        with torch._C.DisableTorchFunctionSubclass():
            dtype = str(t.dtype).removeprefix("torch.")
            if dtype not in _DTYPES:
                raise ProbeError(f"a tensor of dtype {dtype}")
            out = {"T": None, "dt": dtype, "sh": list(t.shape), "rg": bool(t.requires_grad),
                   "p": isinstance(t, torch.nn.Parameter), "dv": str(t.device.type)}
            if t.is_meta or (t.numel() > BIG and not whole):
                return out                # shape and dtype only: a meta tensor for the judge
            known = self.sent.get(id(t))
            if known is not None and known[0] is t and known[1] == t._version:
                out["T"] = known[2]       # the same tensor, unchanged since it was recorded
            else:
                same = self._equal_owned(t)
                if same is not None:
                    out["E"] = same       # equal to a tensor the check handed over
                    out.pop("T")
                else:
                    data = torch.Tensor.detach(t).cpu().contiguous()
                    if data.dtype == torch.bfloat16:
                        data = data.view(torch.int16)
                    out["T"] = self._array(data.numpy().tobytes())
                    self.sent[id(t)] = (t, t._version, out["T"])
                    self.recorded[out["T"]] = t
            grad = t.grad if with_grad and t.is_leaf else None
            if isinstance(grad, torch.Tensor) and not grad.is_meta:
                out["g"] = self._tensor(grad, False)
        return out

    def _watch(self, k: int, tensor: torch.Tensor) -> None:
        self.snapshots[k] = _tensor_state(tensor)
        self.by_shape.setdefault((tuple(tensor.shape), tensor.dtype), []).append(k)

    def _equal_owned(self, t: torch.Tensor) -> int | None:
        """The number of a tensor of the check's equal to `t` (a model that loaded the check's
        weights gives them back): its values need not be sent."""
        if t.numel() < 4096:
            return None
        for k in self.by_shape.get((tuple(t.shape), t.dtype), ()):
            owned = self.owned[k]
            if owned is not t and owned.device == t.device and not owned.is_meta and torch.equal(owned.detach(), t.detach()):
                return k
        return None

    def cross(self, value: Any, depth: int = 0) -> tuple[Any, Any]:
        """(what to record, what the check sees here) for a value the student's code gave."""
        if depth > MAX_DEPTH:
            raise ProbeError("a result nested too deeply")
        t = type(value)
        if value is None or t in (bool, int, float, str):
            if t is str and len(value) > 1_000_000:
                raise ProbeError("a string over 1 MB")
            return value, value
        k = self.owned_id(value)
        if k is not None:
            return {"O": k}, value
        if isinstance(value, Tap):
            return {"H": object.__getattribute__(value, "_w_handle")}, value
        if isinstance(value, torch.Tensor):
            return self._tensor(value), value
        if t in (list, tuple, set, frozenset, torch.Size) or t.__module__ == "torch.return_types":
            items = list(itertools.islice(value, MAX_ITEMS + 1))
            if len(items) > MAX_ITEMS:
                raise ProbeError(f"a container of more than {MAX_ITEMS} items")
            pairs = [self.cross(v, depth + 1) for v in items]
            tag = {list: "l", tuple: "t", set: "s", frozenset: "fs", torch.Size: "S"}.get(t, "RT:" + t.__name__)
            view = [b for _, b in pairs]
            return {tag: [a for a, _ in pairs]}, (view if t is list else t(view))
        if t in (dict, collections.OrderedDict):
            if len(value) > MAX_ITEMS:
                raise ProbeError(f"a dict of more than {MAX_ITEMS} items")
            pairs = [(self.cross(k, depth + 1), self.cross(v, depth + 1)) for k, v in list(value.items())]
            view = t((kv[1], vv[1]) for kv, vv in pairs)
            return {"d" if t is dict else "od": [[kv[0], vv[0]] for kv, vv in pairs]}, view
        if t is types.GeneratorType or t.__name__ in ("map", "filter", "zip", "list_iterator", "dict_itemiterator",
                                                        "dict_keyiterator", "dict_valueiterator", "tuple_iterator"):
            items = list(itertools.islice(value, MAX_ITEMS + 1))
            if len(items) > MAX_ITEMS:
                raise ProbeError(f"an iterator of more than {MAX_ITEMS} items")
            pairs = [self.cross(v, depth + 1) for v in items]
            return {"G": [a for a, _ in pairs]}, (b for _, b in pairs)
        if t is torch.dtype:
            return {"DT": str(value).removeprefix("torch.")}, value
        if isinstance(value, type) and _trusted_class(value) is value:
            return {"K": _class_path(value)}, value
        if t is torch.device:
            return {"DV": str(value)}, value
        if t is slice:
            parts = [self.cross(v, depth + 1) for v in (value.start, value.stop, value.step)]
            return {"SL": [a for a, _ in parts]}, value
        if t is np.ndarray:
            if value.dtype.kind not in "biufc" or value.dtype.byteorder == ">":
                raise ProbeError(f"an array of dtype {value.dtype}")
            return {"A": self._array(np.ascontiguousarray(value).tobytes()), "dt": value.dtype.str,
                    "sh": list(value.shape)}, value
        if isinstance(value, np.generic) and t.__module__ == "numpy" and value.dtype.kind in "biufc":
            return {"N": value.dtype.str, "v": value.item()}, value
        if t is complex:
            return {"C": [value.real, value.imag]}, value
        for base in (float, int, str):      # a subclass that may lie: its true value, as the base type
            if isinstance(value, base):
                plain = base.__float__(value) if base is float else base.__int__(value) if base is int else base.__str__(value)
                return self.cross(plain, depth + 1)
        n = self._handle(value)
        return {"H": n}, self.handles[n]

    def _handle(self, obj: Any) -> int:
        n = self.handle_of.get(id(obj))
        if n is not None:          # objects are kept alive here, so an id is never reused
            return n
        n = len(self.objects)
        self.handle_of[id(obj)] = n
        self.objects.append(obj)
        base = _trusted_class(type(obj))
        cls = _handle_class(base, Tap, _name(type(obj)), self._classes)
        tap = object.__new__(cls)
        for slot, v in (("_w_probe", self), ("_w_handle", n), ("_w_obj", obj)):
            object.__setattr__(tap, slot, v)
        self.handles[n] = tap
        spec = {"new": n, "c": _class_path(base), "n": _name(type(obj))}
        self.handle_specs.append(spec)
        self.top().append(spec)
        return n

    def top(self) -> list:
        return self.stack[-1]

    # --- the student's code runs here ---
    def _enter(self) -> None:
        """Into the student's code, which draws from the global generators as the check left
        them (a check that seeds them before building the student's model gets its weights)."""
        if self.in_student == 0:
            self.saved_rng = _rng_state()
            self.saved_modes = (torch.get_default_dtype(), torch.is_grad_enabled())
        self.in_student += 1

    def _leave(self) -> None:
        """Back in the check's code, as the judge is: the generators in a state that follows
        from the one the student's code started with (never from what it drew), the default
        dtype and grad mode as they were (whatever the student's code set globally)."""
        self.in_student -= 1
        if self.in_student == 0:
            _advance_rng(self.saved_rng)
            dtype, grad = self.saved_modes
            if torch.get_default_dtype() != dtype:
                torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad)

    def op(self, kind: str, tap: Tap | None, detail: Any, fn: Callable[[], Any]) -> Any:
        if self.opaque:
            return fn()
        record: dict = {"op": kind}
        if tap is not None:
            record["h"] = object.__getattribute__(tap, "_w_handle")
        if detail is not None:
            record["a"] = detail
        return self._record(record, fn, kind not in _READS, student=True)

    def boundary(self, kind: str, fn: Callable, args: tuple, kwargs: dict) -> Any:
        if self.opaque:
            return fn(*[real(a) for a in args], **{k: real(v) for k, v in kwargs.items()})
        function_path(fn)
        args, kwargs = self.args(args, kwargs)     # handed over, as to a student's function
        return self._record({"op": "boundary", "a": kind}, lambda: fn(*args, **kwargs), True, student=False)

    def _refresh(self) -> None:
        """Snapshots of what the check owns as they are now: the check's own code may have
        changed them since (model.train(), p.grad = g) exactly as it does in the judge."""
        for k, snapshot in self.snapshots.items():
            value = self.owned[k]
            if isinstance(value, torch.Tensor):
                if snapshot[5] != _version_key(value):
                    self.snapshots[k] = _tensor_state(value)
            else:
                self.snapshots[k] = watched_signature(value)

    def _record(self, record: dict, fn: Callable[[], Any], changes: bool, student: bool) -> Any:
        """Run `fn` (the student's code, or a boundary), recording its result, the calls back
        into the check it made, the handles its result needs, and what it changed."""
        if changes:
            self._refresh()
        self.top().append(record)
        events: list = []
        self.stack.append(events)
        self._enter()
        if not student:
            self.opaque += 1
        try:
            try:
                value = fn()
            finally:
                if not student:
                    self.opaque -= 1
                self._leave()
            if record["op"] in _CONVERT:
                value = _CONVERT[record["op"]](value)
            record["r"], view = self.cross(value)
            return view
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 — the student's code may raise anything
            record.pop("r", None)
            record["x"] = _exception(err)
            raise
        finally:
            if changes:
                self._changes(record)
            self.stack.pop()
            if events:
                record["ev"] = events

    def _changes(self, record: dict, thorough: bool = True) -> None:
        """Record what the student's code changed in what the check handed it. Tensors are
        compared value by value (a write through `.data` leaves no version behind), except
        large ones, and any while the student's code calls back (`thorough` False), which are
        compared by their version counters."""
        changed = []
        for k in range(len(self.owned)):
            value = self.owned[k]
            if isinstance(value, torch.Tensor):
                before = self.snapshots[k]
                if (not thorough or value.numel() > BIG) and before[5] == _version_key(value):
                    continue
                if not _unchanged(value, before):
                    self.snapshots[k] = now = _tensor_state(value)
                    change: dict = {"rg": bool(value.requires_grad)}
                    if not _same(now[0], before[0]):
                        change["v"] = self._tensor(value, False, True) if not value.is_meta else None
                    if not _same(now[2], before[2]):
                        grad = _grad(value)
                        change["g"] = self._tensor(grad, False, True) if isinstance(grad, torch.Tensor) else None
                    changed.append([k, change])
            elif type(value) in (list, dict) and k in self.snapshots:
                signature = _container_signature(value)
                if signature != self.snapshots[k]:
                    self.snapshots[k] = signature
                    contents = list(value.items()) if type(value) is dict else list(value)
                    changed.append([k, {"c": self.cross(contents)[0]}])
            elif type(value) is np.ndarray and k in self.snapshots:
                signature = _array_signature(value)
                if signature != self.snapshots[k]:
                    self.snapshots[k] = signature
                    changed.append([k, {"a": self.cross(value.copy())[0]}])
            elif isinstance(value, torch.nn.Module) and k in self.snapshots:
                signature = _module_signature(value)
                if signature != self.snapshots[k]:
                    self.snapshots[k] = signature
                    changed.append([k, {"m": self._module(value)}])
        if changed:
            record["ch"] = changed

    def _module(self, m: torch.nn.Module) -> dict:
        """A module the check owns, after the student's code changed it: its tree, with the
        modules and tensors the check knows by number, new ones by value (then numbered)."""
        k = self.owned_id(m)
        if not _is_course_module(m):
            return {"H": self._handle(m)}
        out: dict = {"tr": m.training, "c": _class_path(type(m))}
        if k is not None:
            out["O"] = k
        tensors = {}
        for kind, table in (("p", m._parameters), ("b", m._buffers)):
            for name, t in table.items():
                if t is None:
                    tensors[f"{kind}:{name}"] = None
                elif self.owned_id(t) is not None:
                    tensors[f"{kind}:{name}"] = {"O": self.owned_id(t)}
                else:
                    tensors[f"{kind}:{name}"] = {"new": self._tensor(t, True, True)}
                    self._own(t)
        out["t"] = tensors
        out["attrs"] = _plain_attributes(m)
        out["kids"] = {name: self._module(child) for name, child in m._modules.items() if child is not None}
        if k is None:
            self._own(m)
        return out

    # --- values crossing from the check's code to the student's ---
    def inward(self, value: Any, depth: int = 0) -> Any:
        if self.opaque:             # inside a boundary nothing is recorded: only unwrap
            if isinstance(value, Tap):
                return real(value)
            if type(value) in (list, tuple) and depth < MAX_DEPTH:
                return type(value)(self.inward(v, depth + 1) for v in value)
            if type(value) is dict and depth < MAX_DEPTH:
                return {k: self.inward(v, depth + 1) for k, v in value.items()}
            return value
        return super().inward(value, depth)

    def _unwrap(self, value: Any) -> Any:
        return real(value) if isinstance(value, Tap) else value

    def _callback(self, k: int, fn: Any) -> Any:
        probe = self

        module = isinstance(probe.owned[k], torch.nn.Module)

        def callback(*args: Any, **kwargs: Any) -> Any:
            if SESSION is not probe or probe.opaque or not probe.in_student or (module and probe.in_module):
                return fn(*args, **kwargs)     # a module inside one being recorded: the judge runs it
            record: dict = {"cb": k}
            probe.top().append(record)
            events: list = []
            probe.stack.append(events)      # handles its arguments need, then the check's touches
            try:
                (record["args"], view_args), (record["kw"], view_kwargs) = probe.cross(list(args)), probe.cross(dict(kwargs))
                record["gm"] = torch.is_grad_enabled()
                probe._changes(record, thorough=False)   # what the student's code changed before calling back
                probe.in_module += module
                try:
                    return probe._run_back(k, fn, record, view_args, view_kwargs)
                finally:
                    probe.in_module -= module
            finally:
                probe._refresh()
                probe.stack.pop()
                if events:
                    record["ev"] = events
        return callback

    def probe_call(self, lab: str, name: str, check: Callable, arguments: list, crossed: list) -> dict:
        """The record of one check call; `crossed`: (what the record holds, what the check
        sees) per argument."""
        return self.run(lambda: _call(check, arguments, [view for _, view in crossed]))

    def _run_back(self, k: int, fn: Any, record: dict, args: list, kwargs: dict) -> Any:
        """The call back itself, once recorded: here the check's own function runs in this process."""
        return fn(*args, **kwargs)

    def run(self, check: Callable[[], None]) -> dict:
        """Probe `check()` (a check call whose student objects have crossed); return the record."""
        global SESSION
        events: list = []
        self.stack = [events]
        outcome: Any = None
        notebook_modes = (torch.get_default_dtype(), torch.is_grad_enabled())
        SESSION = self
        try:
            _start_check()
            check()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 — the probe's verdict is only a hint
            outcome = _exception(err)
        finally:
            SESSION = None
            self.in_student = 0
            _set_rng_state(self.student_rng)          # the notebook goes on with its own state
            torch.set_default_dtype(notebook_modes[0])
            torch.set_grad_enabled(notebook_modes[1])
        return {"ev": events, "end": outcome}


def _name(cls: type) -> str:
    name = str(getattr(cls, "__name__", "object"))
    return name if name.isidentifier() and len(name) <= 80 else "object"


def _exception(err: BaseException, depth: int = 0) -> dict:
    try:
        text = str(err)
    except Exception:  # noqa: BLE001 — a student's exception whose str() raises
        text = ""
    cause = err.__cause__
    kind = next((c.__name__ for c in type(err).__mro__ if _EXCEPTIONS.get(c.__name__) is c), "")
    return {"e": str(getattr(type(err), "__name__", "Exception"))[:200], "m": text[:2000],
            "base": not isinstance(err, Exception), "kind": kind, "ni": isinstance(err, NotImplementedError),
            "ae": isinstance(err, AssertionError),
            "cause": _exception(cause, depth + 1) if cause is not None and cause is not err and depth < 3 else None}


def _rng_state() -> tuple:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


@functools.lru_cache(maxsize=1)
def _cuda() -> bool:
    return torch.cuda.is_available()


def _advance_rng(state: tuple) -> None:
    """Seed the global generators from `state` (the one a call into the student's code began
    with): probe and judge continue the check's draws alike, whatever the student's code drew."""
    seed = int.from_bytes(hashlib.blake2b(state[0].numpy().tobytes(), digest_size=8).digest(), "big")
    if _cuda():
        torch.manual_seed(seed)                    # CUDA's generators too
    else:        # torch.manual_seed formats three stack traces (lazy devices): 0.7 ms a touch
        torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))


def _set_rng_state(state: tuple | None) -> None:
    if state is not None:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])


# --- a check cell: which calls, and their arguments ----------------------------------------

def check_calls(source: str) -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str, str]]]]:
    """[(check name, [(kind, source) per positional arg], [(name, kind, source) per keyword])]
    of a check cell, kind "literal" or "student". ValueError when the cell is anything else."""
    tree = ast.parse(source)
    calls = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "checks"):
            raise ValueError(f"a check cell holds only calls checks.<name>(...); line {stmt.lineno} is not one")

        def arg(node: ast.AST) -> tuple[str, str]:
            text = ast.unparse(node)
            try:
                ast.literal_eval(node)
                return "literal", text
            except ValueError:
                return "student", text
        calls.append((call.func.attr, [arg(a) for a in call.args],
                      [(k.arg, *arg(k.value)) for k in call.keywords if k.arg]))
    return calls


def _check_function(lab: str, name: str) -> Callable:
    import importlib
    module = importlib.import_module(f"autograder.checks.{lab}")
    fn = getattr(module, name, None)
    if name.startswith("_") or name not in getattr(module, "__all__", ()) or not callable(fn):
        raise ValueError(f"autograder.checks.{lab} has no check {name!r}")
    return fn


def _arguments(args: list, kwargs: list) -> list[tuple[str | None, str, str]]:
    """(keyword or None, kind, source) of each argument of a check call, positional first."""
    return [*((None, kind, text) for kind, text in args), *kwargs]


def _call(check: Callable, arguments: list, values: list) -> None:
    """check(...) with `values` given as `arguments` says (positionally or by keyword)."""
    positional = [v for (key, _, _), v in zip(arguments, values) if key is None]
    check(*positional, **{key: v for (key, _, _), v in zip(arguments, values) if key is not None})


def probe_cell(lab: str, source: str, namespace: dict, probe: "Probe | None" = None) -> tuple[dict, bytes]:
    """Probe every call of a check cell in the notebook's `namespace`: (header, blob). `probe`:
    how each call runs (a Probe: the check in this process; autograder.live's Servant: in the
    check process)."""
    results, probe = [], probe if probe is not None else Probe()
    for name, args, kwargs in check_calls(source):
        check, arguments = _check_function(lab, name), _arguments(args, kwargs)
        probe.stack = [[]]
        record: dict = {"name": name}
        crossed = []                   # (what the record holds, what the check gets) per argument
        try:
            for _, kind, text in arguments:
                if kind == "literal":          # the source's own value; the judge reads it there too
                    crossed.append((None, ast.literal_eval(text)))
                else:                           # evaluated in the student's namespace
                    crossed.append(probe.cross(eval(compile(text, "<check argument>", "eval"), namespace)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 — a NameError, the stub's NotImplementedError, ...
            results.append({**record, "arg_error": _exception(err)})
            break
        record["args"] = [held for held, _ in crossed]
        record["new"] = probe.stack[0]
        probe.student_rng = _rng_state()   # the notebook goes on from here: its arguments drew, the check does not
        try:
            record.update(probe.probe_call(lab, name, check, arguments, crossed))
        except ProbeError as err:
            record["arg_error"] = _exception(err)
        results.append(record)      # every call is probed: the judge, not the probe, stops at a failure
    offsets, position = [], 0
    for data in probe.arrays:
        offsets.append([position, len(data)])
        position += len(data)
    return {"calls": results, "arrays": offsets}, b"".join(probe.arrays)


# --- the judge (in the grader) ---------------------------------------------------------------

class Replay(_Proxy):
    """A student's object, as the check sees it in the judge: every touch is answered from the
    probe's record; nothing of the student's runs."""
    __slots__ = ("_w_judge", "_w_handle", "__weakref__")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_w_"):
            raise AttributeError(name)
        return _judge(self).replay("get", self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_w_judge", "_w_handle"):
            object.__setattr__(self, name, value)
            return
        judge = _judge(self)
        value = judge.inward(value)
        judge.replay("set", self, name, payload=(value,))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _judge(self).args(args, kwargs)
        return _judge(self).replay("call", self, None, payload=(args, kwargs))

    def __iter__(self):
        return iter(_judge(self).replay("iter", self, None))

    def __len__(self) -> int:
        return _judge(self).replay("len", self, None, int)

    def __bool__(self) -> bool:
        return _judge(self).replay("bool", self, None, bool)

    def __getitem__(self, key: Any) -> Any:
        judge = _judge(self)
        key = judge.inward(key)
        return judge.replay("getitem", self, _plain(key), payload=(key,))

    def __setitem__(self, key: Any, value: Any) -> None:
        judge = _judge(self)
        key = judge.inward(key)
        value = judge.inward(value)
        judge.replay("setitem", self, _plain(key), payload=(key, value))

    def __contains__(self, item: Any) -> bool:
        judge = _judge(self)
        item = judge.inward(item)
        return judge.replay("contains", self, _plain(item), bool, payload=(item,))

    def __repr__(self) -> str:
        return _judge(self).replay("repr", self, None, str)

    def __str__(self) -> str:
        return _judge(self).replay("str", self, None, str)

    def __deepcopy__(self, memo: dict) -> Any:
        return _judge(self).replay("deepcopy", self, None)



def _judge(replay: Replay) -> "Judge":
    return object.__getattribute__(replay, "_w_judge")


class Judge(_Session):
    """Runs a check against a probe's record (see the module's docstring)."""
    live = False

    def __init__(self, header: dict, blob: bytes, device: str = "cpu", facts: dict | None = None) -> None:
        super().__init__()
        self.header, self.blob, self.device = header, blob, device
        self.facts = dict(facts or {})     # what the grader measured itself (the notebook's wall time)
        self.arrays = [(int(o), int(n)) for o, n in header.get("arrays", [])]
        if any(o < 0 or n < 0 or o + n > len(blob) for o, n in self.arrays):
            raise ReplayMismatch("the probe's record points outside its data")
        self.handles: dict[int, Replay] = {}
        self.cursor: list[list] = []       # [events, next index] per nesting level
        self.in_callback = 0
        self.callbacks = 0
        self.decoded = self.items = 0
        left = self.facts.get("judge_left")    # what is left of the submission's judging budget
        self.started = time.monotonic()
        self.deadline = self.started + (left[0] if isinstance(left, list) else JUDGE_SECONDS)
        self._classes: dict = {}

    # --- reading the record ---
    def _next(self) -> dict:
        self._spend(items=0)
        if not self.cursor:
            raise ReplayMismatch("the check asked for more than the probe recorded")
        level = self.cursor[-1]
        events, i = level
        while i < len(events) and isinstance(events[i], dict) and "new" in events[i] and "op" not in events[i]:
            self._new(events[i])
            i += 1
        if i >= len(events) or not isinstance(events[i], dict):
            raise ReplayMismatch("the check asked for more than the probe recorded")
        level[1] = i + 1
        return events[i]

    def _new(self, event: dict) -> None:
        n = int(event["new"])
        if n != len(self.handles):
            raise ReplayMismatch("handles out of order")
        cls = _handle_class(_resolve_class(event.get("c")), Replay, _name_of(event.get("n")), self._classes)
        replay = object.__new__(cls)
        object.__setattr__(replay, "_w_judge", self)
        object.__setattr__(replay, "_w_handle", n)
        self.handles[n] = replay

    def _drain_new(self, events: list) -> None:
        for event in events:
            if isinstance(event, dict) and "new" in event and "op" not in event:
                self._new(event)

    def _spend(self, nbytes: int = 0, items: int = 1) -> None:
        """Count what the judge makes from the record; a record that would make more (one array
        pointed to a thousand times, say) or take longer fails its check, not the grader."""
        self.decoded += nbytes
        self.items += items
        if self.decoded > MAX_DECODED or self.items > MAX_DECODED_ITEMS:
            raise ReplayMismatch(f"the record decodes to more than {MAX_DECODED >> 20} MB or "
                                 f"{MAX_DECODED_ITEMS:,} values")
        if time.monotonic() > self.deadline:
            raise ReplayMismatch(f"judging the submission took more than {JUDGE_SECONDS:g} s")

    def charge(self) -> None:
        """Take this cell's judging time off the submission's budget."""
        left = self.facts.get("judge_left")
        if isinstance(left, list):
            left[0] -= time.monotonic() - self.started

    def _tensor(self, spec: dict) -> torch.Tensor:
        dtype = _DTYPES.get(spec.get("dt"))
        shape = [int(s) for s in spec.get("sh", [])]
        if dtype is None or any(s < 0 for s in shape) or len(shape) > 16:
            raise ReplayMismatch("a tensor of an unknown dtype")
        if spec.get("T") is not None or "E" in spec:
            self._spend(math.prod(shape) * torch.empty(0, dtype=dtype).element_size())
        if "E" in spec:
            k = int(spec["E"])
            if not 0 <= k < len(self.owned) or not isinstance(self.owned[k], torch.Tensor):
                raise ReplayMismatch("a reference to a tensor the check never handed over")
            t = self.owned[k].detach().clone()
            if list(t.shape) != shape or t.dtype != dtype:
                raise ReplayMismatch("a reference to a tensor of another shape")
        elif spec.get("T") is None:
            t = torch.empty(shape, dtype=dtype, device="meta")
        else:
            offset, size = self.arrays[int(spec["T"])]
            storage = torch.int16 if dtype == torch.bfloat16 else dtype
            count = math.prod(shape)
            if count * torch.empty(0, dtype=storage).element_size() != size:
                raise ReplayMismatch("a tensor whose data does not match its shape")
            t = tensor_from_bytes(bytearray(self.blob[offset:offset + size]), dtype, shape)
            if spec.get("dv") == "cuda" and self.device == "cuda" and torch.cuda.is_available():
                t = t.cuda()
        if spec.get("p"):
            t = torch.nn.Parameter(t, requires_grad=bool(spec.get("rg")))
        elif spec.get("rg") and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        if isinstance(spec.get("g"), dict):
            try:
                t.grad = self._tensor({**spec["g"], "g": None, "p": False, "rg": False})
            except RuntimeError as err:
                raise ReplayMismatch(f"a gradient that does not fit its tensor ({err})") from None
        if t.is_meta:                         # shape only (BIG): where the student's tensor is, as a
            dv = spec.get("dv")               # recorded one would be here (checks.model_device)
            cuda = dv == "cuda" and self.device == "cuda" and torch.cuda.is_available()
            t.recorded_device = "meta" if dv == "meta" else "cuda" if cuda else "cpu"
        return t

    def decode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ReplayMismatch("a value nested too deeply")
        self._spend()
        if value is None or type(value) in (bool, int, float, str):
            return value
        if not isinstance(value, dict) or len(value) == 0:
            raise ReplayMismatch("a value of an unknown form")
        if "O" in value:
            k = int(value["O"])
            if not 0 <= k < len(self.owned):
                raise ReplayMismatch("a reference to an object the check never handed over")
            return self.owned[k]
        if "H" in value:
            n = int(value["H"])
            if n not in self.handles:
                raise ReplayMismatch("a reference to an unknown object")
            return self.handles[n]
        if "T" in value or "E" in value:
            return self._tensor(value)
        tag, items = next(iter(value.items()))
        if tag in ("l", "t", "s", "fs", "S", "G") or tag.startswith("RT:"):
            decoded = [self.decode(v, depth + 1) for v in items]
            if tag.startswith("RT:"):
                cls = getattr(torch.return_types, tag[3:], None)
                return cls(decoded) if isinstance(cls, type) else tuple(decoded)
            return {"l": list, "t": tuple, "s": set, "fs": frozenset, "S": lambda v: torch.Size(v),
                    "G": lambda v: (item for item in v)}[tag](decoded)
        if tag in ("d", "od"):
            pairs = [(self.decode(k, depth + 1), self.decode(v, depth + 1)) for k, v in items]
            return dict(pairs) if tag == "d" else collections.OrderedDict(pairs)
        if tag == "DT":
            dtype = _DTYPES.get(items)
            if dtype is None:
                raise ReplayMismatch("an unknown dtype")
            return dtype
        if tag == "DV":
            return torch.device(str(items)[:20])
        if tag == "K":
            return _resolve_class(items)
        if tag == "SL":
            return slice(*(self.decode(v, depth + 1) for v in items))
        if tag == "A":
            dtype = np.dtype(str(value["dt"]))
            if dtype.kind not in "biufc" or dtype.hasobject:
                raise ReplayMismatch("an array of an unsafe dtype")
            offset, size = self.arrays[int(items)]
            self._spend(size)
            return np.frombuffer(self.blob[offset:offset + size], dtype=dtype).reshape([int(s) for s in value["sh"]]).copy()
        if tag == "N":
            dtype = np.dtype(str(items))
            if dtype.kind not in "biufc":
                raise ReplayMismatch("a number of an unsafe dtype")
            return dtype.type(value["v"])
        if tag == "C":
            return complex(float(items[0]), float(items[1]))
        raise ReplayMismatch(f"a value of an unknown form ({tag!r})")

    def _raise(self, spec: dict) -> None:
        err = _rebuild_exception(spec)
        raise err

    # --- what the check hands over, and the record's answers ---
    def replay(self, kind: str, replay: Replay | None, detail: Any, convert=None, payload: Any = None) -> Any:
        """The answer to the check's touch of a student's object (`payload`: what the check
        hands over with it, for autograder.live)."""
        if self.in_callback:              # inside a call back: the probe's generators were the student's
            return self._replay(kind, replay, detail, convert, payload)
        state = _rng_state()
        try:
            return self._replay(kind, replay, detail, convert, payload)
        finally:
            _advance_rng(state)           # as the probe did after the student's code ran

    def _replay(self, kind: str, replay: Replay | None, detail: Any, convert=None, payload: Any = None) -> Any:
        record = self._next()
        handle = object.__getattribute__(replay, "_w_handle") if replay is not None else None
        if record.get("op") != kind or record.get("h") != handle or record.get("a") != detail:
            raise ReplayMismatch(f"the check did {kind} {detail or ''} on object {handle}, the probe recorded "
                                 f"{record.get('op')} {record.get('a') or ''} on object {record.get('h')}")
        events = record.get("ev", [])
        if not isinstance(events, list):
            raise ReplayMismatch("a record of an unknown form")
        for event in events:
            if isinstance(event, dict) and "cb" in event:
                self._replay_callback(event)
            elif isinstance(event, dict) and "new" in event:
                self._new(event)
        self._apply(record.get("ch", []))
        if "x" in record:
            self._raise(record["x"])
        value = self.decode(record.get("r"))
        if convert is not None:
            if type(value) is not convert:
                raise ReplayMismatch(f"{kind} gave a {type(value).__name__}")
        return value

    def boundary(self, kind: str, fn: Callable, args: tuple, kwargs: dict) -> Any:
        function_path(fn)
        args, kwargs = self.args(args, kwargs)
        return self.replay("boundary", None, kind, payload=(fn, args, kwargs))

    def _instrument(self, module: torch.nn.Module) -> None:
        """The judge calls the check's modules itself: they are only numbered."""
        for sub in module.modules():
            if _is_course_module(sub):
                self._own(sub)

    def _replay_callback(self, event: dict) -> None:
        self.callbacks += 1
        if self.callbacks > MAX_CALLBACKS:
            raise ReplayMismatch(f"more than {MAX_CALLBACKS:,} calls back into the check")
        self._spend()
        k = int(event["cb"])
        if not 0 <= k < len(self.owned) or not (_is_check_callable(self.owned[k])
                                                  or isinstance(self.owned[k], torch.nn.Module)):
            raise ReplayMismatch("a call back into the check that it never handed over")
        nested = event.get("ev", [])
        self.cursor.append([nested if isinstance(nested, list) else [], 0])
        self.in_callback += 1
        try:
            self._drain_pending_new(event)
            args, kwargs = self.decode(event.get("args")), self.decode(event.get("kw"))
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ReplayMismatch("a call back with arguments of an unknown form")
            self._apply(event.get("ch", []))
            try:
                with torch.set_grad_enabled(bool(event.get("gm", True))):
                    self.owned[k](*args, **kwargs)
            except ReplayMismatch:
                raise
            except Exception:  # noqa: BLE001 — the probe's record already says how the call ended
                pass
        finally:
            self.in_callback -= 1
            self.cursor.pop()

    def _drain_pending_new(self, event: dict) -> None:
        """Handles made while the call back's arguments crossed come first in its events."""
        level = self.cursor[-1]
        events, i = level
        while i < len(events) and isinstance(events[i], dict) and "new" in events[i] and "op" not in events[i]:
            self._new(events[i])
            i += 1
        level[1] = i

    def _apply(self, changes: Any) -> None:
        if not isinstance(changes, list):
            raise ReplayMismatch("changes of an unknown form")
        for k, state in changes:
            k = int(k)
            if not 0 <= k < len(self.owned):
                raise ReplayMismatch("a change to an object the check never handed over")
            target = self.owned[k]
            if isinstance(target, torch.Tensor) and isinstance(state, dict) and "rg" in state:
                with torch.no_grad():
                    if state.get("v") is not None:
                        value = self._tensor({**state["v"], "g": None, "p": False, "rg": False})
                        if value.shape != target.shape or value.dtype != target.dtype:
                            target.data = value.to(target.device)
                        else:
                            target.copy_(value)
                try:
                    if target.is_leaf and (target.is_floating_point() or target.is_complex()):
                        target.requires_grad_(bool(state["rg"]))
                    if "g" in state:
                        grad = state["g"]
                        target.grad = None if grad is None else self._tensor({**grad, "g": None, "p": False, "rg": False})
                except RuntimeError as err:
                    raise ReplayMismatch(f"a change that does not fit its tensor ({err})") from None
            elif type(target) in (list, dict) and isinstance(state, dict) and "c" in state:
                contents = self.decode(state["c"])
                if not isinstance(contents, list):
                    raise ReplayMismatch("a change of an unknown form")
                if type(target) is dict:
                    if not all(isinstance(kv, tuple) and len(kv) == 2 for kv in contents):
                        raise ReplayMismatch("a change of an unknown form")
                    target.clear()
                    target.update(contents)
                else:
                    target[:] = contents
            elif type(target) is np.ndarray and isinstance(state, dict) and "a" in state:
                value = self.decode(state["a"])
                if type(value) is not np.ndarray or value.nbytes != target.nbytes:
                    raise ReplayMismatch("a change of an unknown form")
                try:
                    if value.dtype != target.dtype or value.shape != target.shape:
                        target.dtype, target.shape = value.dtype, value.shape   # as `a.dtype = ...` did there
                    np.copyto(target, value)
                except (ValueError, TypeError, AttributeError) as err:
                    raise ReplayMismatch(f"a change that does not fit its array ({err})") from None
            elif isinstance(target, torch.nn.Module) and "m" in state:
                self._rebuild(target, state["m"])
            else:
                raise ReplayMismatch("a change of an unknown form")

    def _rebuild(self, module: torch.nn.Module, spec: dict) -> None:
        """Make `module` what the probe recorded (see Probe._module), numbering what is new in
        the probe's order."""
        if not isinstance(spec, dict):
            raise ReplayMismatch("a module of an unknown form")
        module.training = bool(spec.get("tr"))
        for key, entry in dict(spec.get("t", {})).items():
            kind, name = str(key).split(":", 1)
            table = module._parameters if kind == "p" else module._buffers
            if entry is None:
                table[name] = None
            elif "O" in entry:
                table[name] = self.decode(entry)
            else:
                t = self._tensor(entry["new"])
                table[name] = t
                self._own(t)
        for attr, v in dict(spec.get("attrs", {})).items():
            if type(v) in (bool, int, float, str, list) and not str(attr).startswith("_"):
                object.__setattr__(module, str(attr), tuple(v) if type(v) is list else v)
        kids = dict(spec.get("kids", {}))
        for name in [n for n in module._modules if n not in kids]:
            del module._modules[name]
        for name, child in kids.items():
            if not isinstance(child, dict):
                raise ReplayMismatch("a module of an unknown form")
            if "H" in child:
                module._modules[name] = self.decode({"H": child["H"]})
                continue
            if "O" in child:
                current = self.decode({"O": child["O"]})
                if not isinstance(current, torch.nn.Module):
                    raise ReplayMismatch("a module that is not one")
            else:
                cls = _resolve_class(child.get("c"))
                if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
                    raise ReplayMismatch("a module of an unknown class")
                current = cls.__new__(cls)
                torch.nn.Module.__init__(current)
            module._modules[name] = current
            self._rebuild(current, child)
        if "O" not in spec:
            self._own(module)

    def run(self, check: Callable, call: dict, arguments: list) -> None:
        """Run `check` against the record of one call; raises as the check does."""
        global SESSION
        if "arg_error" in call:
            self._raise(call["arg_error"])
        self._drain_new(call.get("new", []))
        held = call.get("args", [])
        if not isinstance(held, list) or len(held) != len(arguments):
            raise ReplayMismatch("the probe recorded other arguments than the check cell has")
        values = [ast.literal_eval(text) if kind == "literal" else self.decode(value)
                  for (_, kind, text), value in zip(arguments, held)]
        self.cursor = [[call.get("ev", []), 0]]
        SESSION = self
        try:
            _start_check()
            _call(check, arguments, values)
        finally:
            SESSION = None
            torch.set_default_dtype(torch.float32)
            torch.set_grad_enabled(True)


def _name_of(value: Any) -> str:
    return value if isinstance(value, str) and value.isidentifier() and len(value) <= 80 else "object"


def _rebuild_exception(spec: Any) -> BaseException:
    if not isinstance(spec, dict):
        return ReplayMismatch("an exception of an unknown form")
    name, message = str(spec.get("e", "Exception"))[:200] or "Exception", str(spec.get("m", ""))[:2000]
    if spec.get("ni"):
        cls: type = NotImplementedError
    elif spec.get("ae"):
        cls = AssertionError
    else:   # named as the student's was (messages quote it), a subclass of the builtin it derived from
        base = _EXCEPTIONS.get(str(spec.get("kind"))) or (BaseException if spec.get("base") else Exception)
        cls = _EXCEPTIONS.get(name) or type(name, (base,), {})
    err = cls(message) if cls is not KeyError else KeyError(message.strip("'\""))
    if spec.get("cause"):
        err.__cause__ = _rebuild_exception(spec["cause"])
    return err


def judge_cell(lab: str, source: str, header: Any, blob: bytes, device: str = "cpu", facts: dict | None = None,
               partial: bool = False) -> None:
    """Judge one check cell from its probe's record: returns when every call passes; raises the
    check's AssertionError (or NotImplementedError, Skipped, ReplayMismatch) otherwise; with
    `partial`, PartialCredit when some of its cases (`autograder.checks.case`) fail. `facts`:
    what the grader measured from outside (`notebook_seconds`)."""
    from autograder.checks import Cases, PartialCredit
    if not isinstance(header, dict) or not isinstance(header.get("calls"), list):
        raise ReplayMismatch("the probe left no record of this check")
    judge = Judge(header, blob, device, facts)
    calls = check_calls(source)
    records = header["calls"]
    cases = Cases() if partial else None
    try:
        _judge_calls(lab, judge, calls, records, cases)
    finally:
        judge.charge()
    if cases is not None and cases.failures:
        raise PartialCredit(cases.failures[0], cases.passed, cases.passed + len(cases.failures))


def _judge_calls(lab: str, judge: Judge, calls: list, records: list, cases: Any) -> None:
    from autograder.checks import Cases
    for i, (name, args, kwargs) in enumerate(calls):
        if i >= len(records) or not isinstance(records[i], dict) or records[i].get("name") != name:
            raise ReplayMismatch(f"the probe left no record of checks.{name}")
        Cases.current = cases
        try:
            judge.run(_check_function(lab, name), records[i], _arguments(args, kwargs))
        finally:
            Cases.current = None


def write_record(path: str, header: dict, blob: bytes) -> None:
    """A probe's record as a file: 8-byte sizes, the JSON header, the data."""
    data = json.dumps(header).encode()
    with open(path, "wb") as out:
        out.write(struct.pack(">II", len(data), len(blob)))
        out.write(data)
        out.write(blob)
