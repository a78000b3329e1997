"""The check in a process of its own (autograder.live): what the check holds never reaches the
student's process, the record it leaves is the one the judge replays, and the check process is
bounded and ends with its socket. Every lab's checks run this way in tests/test_contract.py;
through the sandbox, in tests/test_judge.py and tests/test_grading.py."""
from __future__ import annotations

import json
import os
import socket

import nbformat
import pytest

from autograder import live, witness
from tests.test_judge import STEAL


@pytest.fixture(scope="module")
def checks_process():
    sock = live.spawn_check_process()
    yield sock
    sock.close()


def _verdict(lab: str, source: str, header: dict, blob: bytes) -> str:
    try:
        witness.judge_cell(lab, source, json.loads(json.dumps(header)), blob)
    except (AssertionError, NotImplementedError) as err:
        return f"{type(err).__name__}: {err}"
    return "pass"


def _stealing_namespace() -> dict:
    namespace: dict = {}
    exec(STEAL.split("get_ipython()")[0], namespace)     # the attack, without its IPython hook
    namespace.update({name: namespace["_steal"] for name in namespace["_NAMES"]})
    return namespace


def test_what_the_check_holds_is_not_in_the_notebooks_process(course, checks_process):
    """The same stealing answers earn points when the check runs in the notebook's process
    (witness.probe_cell: its frames hold the expected values), none when it runs in the check
    process."""
    nb = nbformat.read(course.solution_path("backprop"), as_version=4)
    cells = [c.source for c in nb.cells
             if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
             and not c.metadata["nbgrader"].get("solution")]
    namespace = _stealing_namespace()
    here = [_verdict("backprop", s, *witness.probe_cell("backprop", s, namespace)) for s in cells]
    apart = [_verdict("backprop", s, *live.probe_cell("backprop", s, namespace, checks_process)) for s in cells]
    assert here.count("pass") >= 1, here           # the attack has teeth
    assert apart.count("pass") == 0, apart


def test_the_record_is_what_the_in_process_probe_records(checks_process):
    """One check call, probed both ways: the judge reads the same calls, handles and values."""
    import torch

    def sigmoid_grad(x):
        s = torch.sigmoid(x)
        return s * (1 - s)
    source = "checks.sigmoid_grad(sigmoid_grad)"
    here, here_blob = witness.probe_cell("backprop", source, {"sigmoid_grad": sigmoid_grad})
    apart, apart_blob = live.probe_cell("backprop", source, {"sigmoid_grad": sigmoid_grad}, checks_process)
    for header in (here, apart):
        for call in header["calls"]:
            call.pop("end", None)
    assert here == apart and here_blob == apart_blob
    assert _verdict("backprop", source, apart, apart_blob) == "pass"


def test_the_check_process_bounds_what_it_accepts(monkeypatch):
    """A notebook's process that answers with more data than a record may hold stops its check
    (the check process's memory is not the notebook's to grow)."""
    monkeypatch.setattr(witness, "MAX_BYTES", 1000)
    a, b = socket.socketpair()
    try:
        prober = live.Prober(live.Channel(a))
        prober._take({}, [bytearray(600)])
        with pytest.raises(witness.ProbeError, match="exceed"):
            prober._take({}, [bytearray(600)])
    finally:
        a.close()
        b.close()


def test_the_check_process_ends_with_its_socket():
    sock = live.spawn_check_process()
    header, blob = live.probe_cell("backprop", "checks.rel_error(rel_error)", {"rel_error": lambda a, b: 0.0}, sock)
    assert "rel_error" in _verdict("backprop", "checks.rel_error(rel_error)", header, blob)
    sock.close()
    pid, status = os.wait()          # the check process, the only child this test started
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_each_check_call_of_the_notebook_runs_once():
    """Red team: the student's code shares the notebook's end of the socket and could run a
    check again and again, learning from the touches it asks for which comparisons passed.
    The check process runs each call of the notebook's check cells once, in order."""
    import torch

    def rel_error(x, y):
        return float(((x - y).abs() / torch.maximum(torch.tensor(1e-8), x.abs() + y.abs())).max())
    source = "checks.rel_error(rel_error)"
    plan = live.check_plan("backprop", [(0, "x = 1", "answer"), (1, source, "test")])
    assert plan == [("backprop", "rel_error")]
    sock = live.spawn_check_process(plan=plan)
    try:
        first = live.probe_cell("backprop", source, {"rel_error": rel_error}, sock)
        again = live.probe_cell("backprop", source, {"rel_error": rel_error}, sock)
        other = live.probe_cell("backprop", "checks.sigmoid_grad(rel_error)", {"rel_error": rel_error}, sock)
    finally:
        sock.close()
        os.wait()
    assert _verdict("backprop", source, *first) == "pass"
    with pytest.raises(witness.ReplayMismatch):
        _verdict("backprop", source, *again)
    with pytest.raises(witness.ReplayMismatch):
        _verdict("backprop", "checks.sigmoid_grad(rel_error)", *other)


def test_a_check_on_the_meta_device_leaves_the_notebooks_torch_as_it_was(checks_process):
    """The check process builds the student's models under `with torch.device("meta")`; the
    notebook's process follows it for the call, then goes back to torch's own default device with
    no mode left on the torch-function stack (every later torch call of the notebook, its
    training included, would go through it)."""
    import torch

    import reference.vgg as R
    before = torch._C._len_torch_function_stack()
    source = "checks.param_counts(AlexNet, vgg11, vgg16)"
    header, blob = live.probe_cell("vgg", source, {"AlexNet": R.AlexNet, "vgg11": R.vgg11, "vgg16": R.vgg16},
                                   checks_process)
    assert _verdict("vgg", source, header, blob) == "pass"
    assert torch._C._len_torch_function_stack() == before == 0
    assert torch.get_default_device() == torch.device("cpu") and torch.empty(1).device.type == "cpu"
