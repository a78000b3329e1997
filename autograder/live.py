"""The check's code in a process of its own: the notebook's process only runs the student's code.

The probe of autograder.witness runs a check with the student's objects wrapped; where it runs
in the notebook's process, the student's code could read what the check holds while it calls
it (its frames, its objects: the expected values a check computed before the call). Here the
check runs in a **check process** that the notebook's process cannot see (outside its PID
namespace, not dumpable: autograder.zygote) and asks the notebook's process, over a socket, to
touch the student's objects for it:

* **check process** (`Prober`, a live `witness.Judge`): the check function runs with a Replay in
  place of each student object; each touch (a call, an attribute, an item) is sent to the
  notebook's process with what the check hands over, and the answer is read as the judge reads
  a record. What it sends: the touch, the check's inputs, the generators' state and the
  check's own changes to what it handed over before, and, when the student's code calls back
  into the check (a hook, a given helper), what the check's function returned. Never an
  expected value or a verdict: the check process's verdict is thrown away.
* **notebook's process** (`Servant`, a `witness.Probe`): the student's code runs on each touch,
  and its result is recorded exactly as the in-process probe records it (JSON and raw arrays,
  handles, changes, call backs); that record, written to the probe folder, is what the grader's
  judge replays. A forged record or a lying answer only changes what the judge is told.

Values cross from the check process to the notebook's with pickle (the notebook's process
trusts the grader's code: it runs it); what crosses back is the record's plain data, which the
check process decodes as the judge does (no pickle). The same objects carry the same numbers on
both sides and in the judge: the check process numbers what it hands over (`_Session.inward`),
the notebook's process adopts each at its number. What the check changes in place in a tensor
the student's code gave it (a model's weights it sets) is written back before the next touch:
a check writes into the student's tensors only what it would hand over, never what it expects.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import io
import itertools
import json
import math
import os
import pickle
import random
import socket
import struct
import sys
import types
from typing import Any

import numpy as np
import torch

from autograder import witness as w
from autograder.results import MAX_HEADER


def _not_here(grad: torch.Tensor) -> None:
    """A check must not differentiate a result of the student's code in the check process (its
    graph is in the notebook's): it uses checks.backward / grad_of, which run there."""
    raise w.ProbeError("the check differentiates a result of the student's code outside the notebook's "
                       "process (use autograder.checks.backward or grad_of)")


class Ended(BaseException):
    """The check ended while the student's code was still running (a check that failed inside
    a call back): the student's code is unwound."""


# --- the channel ------------------------------------------------------------------------------

class Channel:
    """Messages over a stream socket: a JSON header and raw arrays (at most `limit` bytes of
    them in one message: the check process reads the notebook's answers with witness.MAX_BYTES)."""

    def __init__(self, sock: socket.socket, limit: float = math.inf) -> None:
        self.sock, self.limit = sock, limit

    def send(self, header: dict, arrays: list = ()) -> None:
        views = [memoryview(a).cast("B") for a in arrays]
        head = json.dumps({**header, "_n": [v.nbytes for v in views]}).encode()
        if all(v.nbytes < 1 << 16 for v in views):    # one write for a message of small parts
            self.sock.sendall(b"".join([struct.pack(">Q", len(head)), head, *views]))
            return
        self.sock.sendall(struct.pack(">Q", len(head)) + head)
        for view in views:
            self.sock.sendall(view)

    def _read(self, size: int) -> bytearray:
        """`size` bytes, in a buffer of their own (a tensor handed over lives in it, uncopied)."""
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = self.sock.recv_into(view[got:], size - got)
            if n == 0:
                raise w.ProbeError("the other side of the probe is gone")
            got += n
        return buf

    def recv(self) -> tuple[dict, list[bytes]]:
        size = struct.unpack(">Q", self._read(8))[0]
        if size > MAX_HEADER:
            raise w.ProbeError("a message over the header limit")
        head = json.loads(self._read(size))
        sizes = head.pop("_n", []) if isinstance(head, dict) else None
        if not isinstance(sizes, list) or not all(type(n) is int and n >= 0 for n in sizes):
            raise w.ProbeError("a message of an unknown form")
        if sum(sizes) > self.limit:
            raise w.ProbeError(f"a message over {self.limit / 2**20:g} MB")
        return head, [self._read(int(n)) for n in sizes]


# --- values from the check process to the notebook's: pickle, with numbered objects by number --

def _make_tensor(data: Any, dtype: str, shape: list, device: str, requires_grad: bool, parameter: bool,
                 grad: Any) -> torch.Tensor:
    """A tensor the check process handed over (values, flags and gradient)."""
    torch_dtype = w._DTYPES[dtype]
    if data is None:
        t = torch.empty(shape, dtype=torch_dtype, device="meta")
    else:
        t = w.tensor_from_bytes(data, torch_dtype, shape)
        if device != "cpu" and (device != "cuda" or torch.cuda.is_available()):
            t = t.to(device)
    if parameter:
        t = torch.nn.Parameter(t, requires_grad=requires_grad)
    elif requires_grad:
        t.requires_grad_(True)
    if grad is not None:
        t.grad = grad
    return t


def _make_array(data: Any, dtype: str, shape: tuple) -> np.ndarray:
    """An array the check process handed over, writable, in the buffer it arrived in."""
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.dtype(dtype)).reshape(shape)


def _new_module(cls: type) -> torch.nn.Module:
    return cls.__new__(cls)


def _tensor_reduction(t: torch.Tensor) -> tuple:
    with torch._C.DisableTorchFunctionSubclass():
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in w._DTYPES:
            raise w.ProbeError(f"a tensor of dtype {dtype} cannot be handed over")
        grad = t.grad if t.is_leaf else None
        data = None
        if not t.is_meta:
            plain = torch.Tensor.detach(t).cpu().contiguous()
            array = (plain.view(torch.int16) if plain.dtype == torch.bfloat16 else plain).numpy()
            data = pickle.PickleBuffer(array) if array.nbytes else b""     # out of band: sent as it is
        return (_make_tensor, (data, dtype, list(t.shape), t.device.type, bool(t.requires_grad),
                               isinstance(t, torch.nn.Parameter), grad))


class _Pickler(pickle.Pickler):
    """What the check hands over, by value, except what the notebook's process already holds
    (numbered objects, the student's objects, tensors the student's code returned)."""

    def __init__(self, file: io.BytesIO, prober: "Prober", inline: Any = None, buffer_callback=None) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self.prober, self.inline = prober, inline

    def persistent_id(self, obj: Any) -> Any:
        prober = self.prober
        if isinstance(obj, w.Replay):
            return ("H", object.__getattribute__(obj, "_w_handle"))
        if obj is self.inline:
            self.inline = None
            return None
        k = prober.owned_id(obj)
        if k is not None and w._is_check_callable(obj):
            return ("CB", k)
        if isinstance(obj, torch.Tensor):
            origin = prober.origin(obj)
            if origin is not None:
                return ("R", origin)        # the very tensor the student's code returned (its graph)
        if k is not None and k < prober.s_has:
            return ("O", k)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return _tensor_reduction(obj)
        if isinstance(obj, torch.nn.Module):
            state = {key: (type(v)() if "hooks" in key and isinstance(v, dict) else v)
                     for key, v in vars(obj).items() if key != "forward"}
            return (_new_module, (type(obj),), state)
        if type(obj) is np.ndarray and obj.dtype.kind in "biufc" and obj.dtype.byteorder != ">":
            data = np.ascontiguousarray(obj)
            return (_make_array, (pickle.PickleBuffer(data) if data.nbytes else b"", data.dtype.str, data.shape))
        if type(obj) is types.GeneratorType:
            return (iter, (list(obj),))
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, servant: "Servant", arrays: list, indices: list[int]) -> None:
        super().__init__(io.BytesIO(arrays[indices[0]]), buffers=[arrays[i] for i in indices[1:]])
        self.servant = servant

    def persistent_load(self, pid: Any) -> Any:
        servant = self.servant
        kind, n = pid
        if kind == "H":
            return servant.objects[n]
        if kind == "R":
            return servant.recorded[n]
        if kind == "CB":
            if n >= len(servant.owned) or servant.owned[n] is None:
                servant.adopt(n, servant.stub(n))
            return servant._callback(n, servant.owned[n])
        if kind == "O":
            return servant.owned[n]
        raise w.ProbeError(f"an unknown reference {kind!r}")


# --- the check process ------------------------------------------------------------------------

class Prober(w.Judge):
    """A judge whose record is the notebook's process, asked live (see the module docstring)."""
    live = True

    def __init__(self, channel: Channel, device: str = "cpu", draw: int = 0) -> None:
        super().__init__({"arrays": []}, b"", device, {"draw": draw})
        self.deadline = math.inf               # the notebook's own time limit bounds a probe
        self.channel = channel
        self.blob = bytearray()
        self.s_has = 0                         # numbered objects the notebook's process holds
        self.mirror: dict[int, Any] = {}       # each one's state as the notebook's process has it
        self.origins: dict[int, list] = {}     # id(tensor decoded here) -> [it, array number, state]
        self.watched: set[int] = set()
        self.watchable: list[int] = []
        self.looked_at = 0

    # --- the notebook's answers ---
    def _receive(self) -> dict:
        return self._take(*self.channel.recv())

    def _take(self, header: dict, arrays: list[bytes]) -> dict:
        if len(self.blob) + sum(map(len, arrays)) > w.MAX_BYTES:
            raise w.ProbeError(f"the answers exceed {w.MAX_BYTES >> 20} MB")   # what this process holds is bounded
        for data in arrays:
            self.arrays.append((len(self.blob), len(data)))
            self.blob += data
        for spec in header.get("hs", []):
            self._new(spec)
        return header

    def _tensor(self, spec: dict) -> torch.Tensor:
        t = super()._tensor(spec)
        if spec.get("T") is not None:
            self.origins[id(t)] = [t, int(spec["T"]), w._version_key(t)]
            if t.requires_grad:
                t.register_hook(_not_here)
        return t

    def origin(self, t: torch.Tensor) -> int | None:
        """The array number of the student's tensor `t` stands for, while `t` is unchanged here."""
        entry = self.origins.get(id(t))
        if entry is None or entry[0] is not t or entry[2] != w._version_key(t):
            return None
        return entry[1]

    # --- what the check hands over ---
    def _pickle(self, value: Any, arrays: list, inline: Any = None) -> list[int]:
        """Pickle `value` into `arrays` (the stream, then its tensors' data out of band); the
        indices of what it added."""
        buf, buffers = io.BytesIO(), []
        try:
            _Pickler(buf, self, inline, buffers.append).dump(value)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise w.ProbeError(f"the check hands over what cannot cross to the notebook's process ({err})") from None
        start = len(arrays)
        arrays += [buf.getvalue(), *(b.raw() for b in buffers)]
        return list(range(start, len(arrays)))

    def _signature(self, k: int) -> Any:
        """What the check's own code may change in its object `k` (cheap: every object is
        looked at before every touch)."""
        value = self.owned[k]
        if isinstance(value, torch.Tensor):
            return (value._version, id(value.grad) if value.is_leaf else 0, value.requires_grad, value.shape,
                    value.data_ptr())
        if isinstance(value, torch.nn.Module):      # its own state: its numbered children have theirs
            return (value.training, tuple(map(id, value._parameters.values())),
                    tuple(map(id, value._buffers.values())), tuple(map(id, value._modules.values())))
        if type(value) in (list, dict, np.ndarray):
            return w.watched_signature(value)
        return None

    def _watchable(self) -> list[int]:
        """The numbers of the objects the check's own code may change (not its functions)."""
        for k in range(self.looked_at, len(self.owned)):
            if isinstance(self.owned[k], (torch.Tensor, torch.nn.Module)) or type(self.owned[k]) in (list, dict, np.ndarray):
                self.watchable.append(k)
        self.looked_at = len(self.owned)
        return self.watchable

    def _caught_up(self, changes: list) -> None:
        """The notebook's process now holds its numbered objects as they are here: those the
        student's code changed (`changes`, all of them after a module's change) and the new ones."""
        if any("m" in state for _, state in changes):
            self.mirror = {k: self._signature(k) for k in self._watchable()}
        else:
            for k in itertools.chain((int(k) for k, _ in changes), range(self.s_has, len(self.owned))):
                self.mirror[k] = self._signature(k)
        self.s_has = len(self.owned)

    def _send(self, header: dict, payload: Any, rng: bool = False) -> None:
        """Send `payload` pickled with the numbered objects that are new to the notebook's
        process, the check's own changes since to the ones it holds, and with `rng` the global
        generators' state and torch's modes (the student's code starts from the check's)."""
        changed = []
        for k in self._watchable():
            if k >= self.s_has:
                break
            signature = self._signature(k)
            if signature != self.mirror.get(k):
                changed.append(k)
                self.mirror[k] = signature
        new = {k: self.owned[k] for k in range(self.s_has, len(self.owned))}
        watch = [k for k in self.snapshots if k not in self.watched]    # handed over directly: watched there
        self.watched.update(watch)
        arrays: list = []
        header["body"] = self._pickle({"payload": payload, "new": new, "watch": watch}, arrays)
        header["sync"], header["results"] = {}, {}
        for k in changed:
            header["sync"][k] = self._pickle(self.owned[k], arrays, inline=self.owned[k])
        for key, entry in list(self.origins.items()):    # the student's tensors the check changed in place
            t = entry[0]
            if entry[2] != w._version_key(t):
                entry[2] = w._version_key(t)
                header["results"][entry[1]] = self._pickle(t, arrays, inline=t)
            if sys.getrefcount(t) <= 3:             # held here only: the check can change it no more
                del self.origins[key]
            del t
        if rng:
            torch_state, numpy_state, python_state = w._rng_state()
            header["rng"] = [len(arrays), int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4]),
                             python_state[2]]
            arrays += [torch_state.numpy(), numpy_state[1], np.array(python_state[1], dtype=np.uint32)]
            header["modes"] = [str(torch.get_default_dtype()).removeprefix("torch."), torch.is_grad_enabled(),
                               str(torch.get_default_device())]
        self._caught_up([])
        self.channel.send(header, arrays)

    def _replay(self, kind: str, replay: Any, detail: Any, convert=None, payload: Any = None) -> Any:
        header: dict = {"op": kind, "a": detail}
        if replay is not None:
            header["h"] = object.__getattribute__(replay, "_w_handle")
        self._send(header, payload, rng=not self.in_callback)
        while True:
            answer = self._receive()
            if "cb" in answer:
                self._call_back(answer["cb"])
            elif "done" in answer:
                break
            else:
                raise w.ReplayMismatch("an answer of an unknown form")
        record = answer["done"]
        if not isinstance(record, dict):
            raise w.ReplayMismatch("an answer of an unknown form")
        self._apply(record.get("ch", []))
        self._caught_up(record.get("ch", []))
        if "x" in record:
            self._raise(record["x"])
        value = self.decode(record.get("r"))
        if convert is not None and type(value) is not convert:
            raise w.ReplayMismatch(f"{kind} gave a {type(value).__name__}")
        return value

    def _call_back(self, event: dict) -> None:
        """The student's code calls back into the check: run the check's function here and
        send what it returned (a module's own forward runs there too, on its copy)."""
        self.callbacks += 1
        if self.callbacks > w.MAX_CALLBACKS:
            raise w.ReplayMismatch(f"more than {w.MAX_CALLBACKS:,} calls back into the check")
        k = int(event["cb"])
        target = self.owned[k] if 0 <= k < len(self.owned) else None
        if not (w._is_check_callable(target) or isinstance(target, torch.nn.Module)):
            raise w.ReplayMismatch("a call back into the check that it never handed over")
        args, kwargs = self.decode(event.get("args")), self.decode(event.get("kw"))
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise w.ReplayMismatch("a call back with arguments of an unknown form")
        self._apply(event.get("ch", []))
        self._caught_up(event.get("ch", []))
        self.in_callback += 1
        try:
            with torch.set_grad_enabled(bool(event.get("gm", True))):
                result = target(*args, **kwargs)
            reply: dict = {"ret": None if isinstance(target, torch.nn.Module) else result}
        except w.ReplayMismatch:
            raise
        except Exception as err:  # noqa: BLE001 — the check's function raised: so does the call there
            reply = {"raise": w._exception(err)}
        finally:
            self.in_callback -= 1
        self._send(reply, reply.pop("ret", None))

    @contextlib.contextmanager
    def give(self, fn: Any, helpers: dict):
        self._send({"give": True}, (fn, helpers))
        try:
            yield
        finally:
            self.channel.send({"ungive": True})

    def run_check(self, check: Any, arguments: list, held: list) -> None:
        """Run `check` (its verdict is thrown away) with the notebook's crossed arguments."""
        if not isinstance(held, list) or len(held) != len(arguments):
            raise w.ReplayMismatch("other arguments than the check cell has")
        values = [ast.literal_eval(text) if kind == "literal" else self.decode(value)
                  for (_, kind, text), value in zip(arguments, held)]
        w.SESSION = self
        try:
            w._start_check()
            w._call(check, arguments, values)
        finally:
            w.SESSION = None
            torch.set_default_dtype(torch.float32)
            torch.set_grad_enabled(True)


def check_plan(lab: str, cells: list) -> list[tuple[str, str]]:
    """(lab, check) of every call of the notebook's check cells ((index, source, kind) with kind
    "test"), in order: what its check process will run, each once."""
    plan = []
    for _, source, kind in cells:
        if kind == "test":
            try:
                plan += [(lab, name) for name, _, _ in w.check_calls(source)]
            except (SyntaxError, ValueError):
                continue
    return plan


def serve_checks(sock: socket.socket, device: str = "cpu", plan: list | None = None, draw: int = 0) -> None:
    """The check process: probe each check call the notebook's process asks for, until it closes
    the socket. Nothing the check decides goes back. `draw`: the grading run's (the grader's,
    never the notebook's word: witness.draw). With a `plan` (check_plan), each call of
    the notebook's check cells runs once, in order: the student's code, which shares the
    notebook's end of the socket, cannot run a check again and again to learn from the touches
    it asks for which of its comparisons passed (a call it skips ahead to is lost)."""
    channel = Channel(sock, w.MAX_BYTES)
    prober: Prober | None = None
    position = 0
    while True:
        try:
            header, arrays = channel.recv()
        except (w.ProbeError, OSError, ValueError):
            return
        if "cell" in header:
            prober = Prober(channel, device, draw)
            continue
        if "call" not in header or prober is None:
            continue                      # what the notebook's process says after its check ended
        if plan is not None:
            wanted = (str(header.get("lab")), str(header.get("call")))
            found = next((i for i in range(position, len(plan)) if plan[i] == wanted), None)
            if found is None:             # not a call of the notebook's, or one already run
                channel.send({"end": True})
                continue
            position = found + 1
        try:
            prober._take(header, arrays)
            check = w._check_function(str(header.get("lab")), str(header.get("call")))
            arguments = [(k, kind, text) for k, kind, text in header.get("arguments", [])]
            prober.run_check(check, arguments, header.get("args"))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 — the probe's verdict is thrown away; the judge decides
            pass
        try:
            channel.send({"end": True})
        except OSError:
            return


# --- the notebook's process -------------------------------------------------------------------

class Servant(w.Probe):
    """Records the student's side of a check cell whose check runs in the check process."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel
        self.told_arrays = 0
        self.told_handles = 0
        self.ended = False
        self.adopted: list[int] = []
        self.given: list = []

    # --- talking ---
    def send(self, header: dict) -> None:
        arrays = self.arrays[self.told_arrays:]
        self.told_arrays = len(self.arrays)
        new = self.handle_specs[self.told_handles:]
        self.told_handles = len(self.handle_specs)
        if new:
            header["hs"] = new
        self.channel.send(header, arrays)

    def serve(self) -> dict:
        """Answer the check process's touches until it ends the call or returns from a call back."""
        while True:
            header, arrays = self.channel.recv()
            if "op" in header:
                self._serve(header, arrays)
                if self.ended:
                    return {"end": True}
            elif "give" in header:
                fn, helpers = self._unpickle(header, arrays)
                self.given.append(w.patch_globals(fn, helpers))
            elif "ungive" in header:
                if self.given:
                    self.given.pop()()
            else:
                return {**header, "arrays": arrays}

    def _unpickle(self, header: dict, arrays: list[bytes]) -> Any:
        for k, i in dict(header.get("sync", {})).items():
            self._update(self.owned[int(k)], _Unpickler(self, arrays, i).load())
            self.adopted.append(int(k))
        for n, i in dict(header.get("results", {})).items():
            self._update(self.recorded[int(n)], _Unpickler(self, arrays, i).load())
        body = _Unpickler(self, arrays, header["body"]).load()
        for k, value in sorted(body["new"].items()):
            if k >= len(self.owned) or self.owned[k] is None:
                self.adopt(k, value)
        self._settle(body["watch"], bool(header.get("results")))
        return body["payload"]

    # --- the check's objects, here ---
    def adopt(self, k: int, value: Any) -> None:
        if k < len(self.owned) and self.owned[k] is not None and self.owned[k] is not value:
            raise w.ProbeError("the check's objects are out of step")
        self.owned.extend([None] * (k + 1 - len(self.owned)))
        self.owned[k] = value
        self.owned_index[id(value)] = k
        self.adopted.append(k)

    def _settle(self, watch: list[int], header_results: bool) -> None:
        """Watch what was adopted or changed by the check process (tensors; the modules, lists,
        dicts and arrays the check handed over directly, as witness._Session.inward does; a module's
        forwards as calls back)."""
        for k in self.adopted:
            if isinstance(self.owned[k], torch.Tensor):
                self._watch(k, self.owned[k])
        for k in watch:
            value = self.owned[k]
            if isinstance(value, torch.nn.Module) or type(value) in (list, dict, np.ndarray):
                self.snapshots[k] = w.watched_signature(value)
        for k in self.adopted:
            if isinstance(self.owned[k], torch.nn.Module):
                self._instrument(self.owned[k])
        if header_results:          # a tensor of the student's changed: what the check owns may share it
            self._refresh()
        self.adopted = []

    def _update(self, target: Any, new: Any) -> None:
        """The check process changed its copy of `target`: make ours the same, in place."""
        if isinstance(target, torch.Tensor) and isinstance(new, torch.Tensor):
            with torch.no_grad():
                if new.shape == target.shape and new.dtype == target.dtype and not target.is_meta:
                    target.copy_(new.to(target.device))
                else:
                    target.data = new.detach()
            if target.is_leaf:
                target.requires_grad_(new.requires_grad)
                target.grad = new.grad
        elif isinstance(target, torch.nn.Module) and isinstance(new, torch.nn.Module):
            forward = vars(target).get("forward")
            target.__dict__.update(vars(new))
            if forward is not None:
                target.__dict__["forward"] = forward
        elif type(target) is list and type(new) is list:
            target[:] = new
        elif type(target) is dict and type(new) is dict:
            target.clear()
            target.update(new)
        elif type(target) is np.ndarray and type(new) is np.ndarray and new.nbytes == target.nbytes:
            target.dtype, target.shape = new.dtype, new.shape
            np.copyto(target, new)

    def stub(self, k: int) -> Any:
        """Stands for the check's function `k` (what the student's code calls is the call back
        that wraps it); called outside its check (a hook left on a model), it does nothing."""
        def check_function(*args: Any, **kwargs: Any) -> None:
            return None
        return check_function

    def _run_back(self, k: int, fn: Any, record: dict, args: list, kwargs: dict) -> Any:
        if self.ended:
            raise Ended("the check has ended")
        self.send({"cb": {key: record[key] for key in ("cb", "args", "kw", "gm", "ch") if key in record}})
        reply = self.serve()
        if "end" in reply:
            self.ended = True
            raise Ended("the check has ended")
        value = self._unpickle(reply, reply["arrays"])
        if "raise" in reply:
            raise w._rebuild_exception(reply["raise"])
        if isinstance(self.owned[k], torch.nn.Module):
            return fn(*args, **kwargs)             # the module's own forward, on our copy
        return value

    # --- one touch ---
    def _serve(self, header: dict, arrays: list[bytes]) -> None:
        payload = self._unpickle(header, arrays)
        kind, detail, handle = header.get("op"), header.get("a"), header.get("h")
        notebook_device = None
        if "rng" in header:
            first, numpy_pos, has_gauss, cached, gauss = header["rng"]
            torch.set_rng_state(torch.frombuffer(arrays[first], dtype=torch.uint8))
            np.random.set_state(("MT19937", np.frombuffer(arrays[first + 1], dtype=np.uint32), numpy_pos,
                                 has_gauss, cached))
            random.setstate((3, tuple(np.frombuffer(arrays[first + 2], dtype=np.uint32).tolist()), gauss))
            dtype, grad, device = header["modes"]
            torch.set_default_dtype(w._DTYPES[dtype])
            torch.set_grad_enabled(bool(grad))
            if device != str(torch.get_default_device()):     # the check's `with torch.device("meta"):`
                notebook_device = torch.get_default_device()
                _set_default_device(device)
        obj = self.objects[handle] if isinstance(handle, int) and 0 <= handle < len(self.objects) else None
        record: dict = {"op": kind}
        if handle is not None:
            record["h"] = handle
        if detail is not None:
            record["a"] = detail
        try:
            self._record(record, _operation(kind, obj, detail, payload), kind not in w._READS,
                         student=kind != "boundary")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 — recorded ("x")
            pass
        finally:
            if notebook_device is not None:
                _set_default_device(notebook_device)
        self.send({"done": {key: record[key] for key in ("r", "x", "ch") if key in record}})

    def probe_cell(self, lab: str, source: str, namespace: dict) -> tuple[dict, bytes]:
        """As witness.probe_cell, with the check in the check process."""
        self.channel.send({"cell": True})
        return w.probe_cell(lab, source, namespace, self)

    def probe_call(self, lab: str, name: str, check: Any, arguments: list, crossed: list) -> dict:
        """Ask the check process to run the call, and answer its touches until it ends."""
        self.ended = False
        lost: list[w.ProbeError] = []

        def call() -> None:
            try:
                self.send({"call": name, "lab": lab, "arguments": arguments,
                           "args": [held for held, _ in crossed]})
                self.serve()
            except w.ProbeError as err:            # the check process is gone: no record of this call
                lost.append(err)
            finally:
                while self.given:
                    self.given.pop()()
        record = self.run(call)
        if lost:
            raise lost[0]
        return record


def _set_default_device(device: Any) -> None:
    """torch.set_default_device, with the CPU as torch's own default (None): setting "cpu" would
    leave a DeviceContext on the torch-function mode stack, through which every later torch call
    of the notebook would go."""
    device = torch.device(device)
    torch.set_default_device(None if device.type == "cpu" else device)


def _operation(kind: str, obj: Any, detail: Any, payload: Any):
    """The touch `kind` of the student's `obj`, as a function (see witness.Tap)."""
    if kind == "get":
        return lambda: getattr(obj, detail)
    if kind == "set":
        return lambda: setattr(obj, detail, payload[0])
    if kind == "call":
        return lambda: obj(*payload[0], **payload[1])
    if kind == "iter":
        return lambda: list(itertools.islice(iter(obj), w.MAX_ITEMS))
    if kind == "len":
        return lambda: int(len(obj))
    if kind == "bool":
        return lambda: bool(obj)
    if kind == "getitem":
        return lambda: obj[payload[0]]
    if kind == "setitem":
        def setitem() -> None:
            obj[payload[0]] = payload[1]
        return setitem
    if kind == "contains":
        return lambda: bool(payload[0] in obj)
    if kind == "repr":
        return lambda: str(repr(obj))[:2000]
    if kind == "str":
        return lambda: str(str(obj))[:2000]
    if kind == "deepcopy":
        return lambda: copy.deepcopy(obj)
    if kind == "boundary":
        fn, args, kwargs = payload
        return lambda: fn(*args, **kwargs)
    raise w.ProbeError(f"an unknown touch {kind!r}")


def probe_cell(lab: str, source: str, namespace: dict, sock: socket.socket) -> tuple[dict, bytes]:
    """Probe a check cell in `namespace` with its check in the check process at `sock`."""
    return Servant(Channel(sock)).probe_cell(lab, source, namespace)


def probe_to_file(lab: str, source: str, namespace: dict, path: str, sock: socket.socket) -> None:
    """Probe a check cell with its check in the check process at `sock`; write its record to `path`."""
    w.write_record(path, *probe_cell(lab, source, namespace, sock))


def run_check_process(sock: socket.socket, plan: list | None = None, threads: int | None = None,
                      device: str | None = None, draw: int = 0) -> None:
    """In a freshly forked child: become a check process (not dumpable: its memory and /proc
    files are not the notebook's to read; dies with its parent) and serve_checks on `sock`.
    `device`: where the check's tensors go (None: cuda when there is one)."""
    import ctypes
    import signal
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)              # PR_SET_PDEATHSIG
    libc.prctl(4, 0, 0, 0, 0)                           # PR_SET_DUMPABLE: no
    # one thread unless told (the zygote forks before torch ever ran a parallel op): a process
    # forked after OpenMP ran in its parent hangs in its first parallel op with more
    torch.set_num_threads(int(threads) if threads else 1)
    serve_checks(sock, device or ("cuda" if torch.cuda.is_available() else "cpu"), plan, draw)


def check_process_at(name: str, plan: list | None = None, draw: int = 0) -> int:
    """Fork a check process that waits for one connection on the abstract Unix socket `name`
    (the kernel engine: the notebook's kernel is not our child, so it connects); its pid. It is
    not dumpable, dies with this process, and is ended by the caller after the notebook."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the check process)
        try:
            conn, _ = listener.accept()
            listener.close()
            run_check_process(conn, plan, draw=draw)
        finally:
            os._exit(0)
    listener.close()
    return pid


_CONNECTED: dict[str, socket.socket] = {}


def probe_to_file_at(lab: str, source: str, namespace: dict, path: str, name: str) -> None:
    """probe_to_file with the check process listening at `name` (check_process_at), connected
    on the first check cell."""
    if name not in _CONNECTED:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect("\0" + name)
        _CONNECTED[name] = sock
    probe_to_file(lab, source, namespace, path, _CONNECTED[name])


def spawn_check_process(device: str = "cpu", threads: int | None = None, plan: list | None = None,
                        draw: int = 0) -> socket.socket:
    """Fork a check process (the tests'): the notebook's end of its socket."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the check process)
        try:
            ours.close()
            run_check_process(theirs, plan, threads, device, draw)
        finally:
            os._exit(0)
    theirs.close()
    return ours
