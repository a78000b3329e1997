"""The fast engine: run a notebook in a forked child of a warm worker.

A Jupyter kernel per notebook costs seconds before the student's first line runs (the kernel
starts, then `import torch`). Here a worker imports torch & co. once (`warm_up`), then forks one
child per notebook: the child gets a fresh IPython shell (magics, `display`, `get_ipython()`)
in its own process, working directory and process group, runs the cells and reports each
cell's outcome over a pipe. The parent enforces the limits from outside — per cell (SIGINT,
then SIGKILL if ignored), per notebook, and on resident memory — so a submission can loop,
crash, exit or exhaust memory without harming the worker or the class.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import tempfile
import time

from .execute import Outcome

_EVALUE_LIMIT = 2000
_INTERRUPT_GRACE = 5.0      # seconds a cell has to stop after SIGINT before the child is killed
_POLL = 0.1


def warm_up() -> None:
    """Import what notebooks import, once per worker, without running any torch op (a fork
    after torch's thread pools start is unsafe)."""
    os.environ.setdefault("MPLBACKEND", "agg")
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (the first optimizer step imports it: 1.5 s)
    import torch.nn.functional  # noqa: F401
    import torchvision  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401

    import autograder.checks  # noqa: F401
    import autograder.data
    import autograder.runtime  # noqa: F401
    from autograder.integrity import import_checked_modules
    import_checked_modules()   # every check module, so that each child's Guard snapshot is cheap
    # the embedded MNIST split, parsed once per worker (numpy only: no torch op runs here)
    autograder.data._mnist_split_tensors(0)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _child(cells: list[tuple[int, str, str]], write_fd: int, workdir: str, env: dict[str, str], threads: int | None) -> None:
    """Runs in the forked child: execute the cells, report each outcome as a JSON line. Before and
    after each test cell, the Guard puts back what the submission changed (autograder.integrity)."""
    os.setpgid(0, 0)
    os.chdir(workdir)
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)                      # output is not graded: drop it, at any volume
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = os.fdopen(write_fd, "w", buffering=1)
    import warnings
    warnings.simplefilter("ignore")
    if threads:
        import torch
        torch.set_num_threads(threads)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class GradingShell(InteractiveShell):
        def enable_gui(self, gui=None):      # `%matplotlib inline` and friends: stay on agg
            return None

        def enable_matplotlib(self, gui=None):
            return gui, "agg"

    config = Config()
    config.HistoryManager.enabled = False
    shell = GradingShell.instance(config=config)
    from autograder.integrity import Guard
    guard = Guard(shell.user_ns)          # a local: the submission cannot rebind it
    for index, source, kind in cells:
        if kind != "answer":              # course code (given cells, checks) runs unpatched
            restored = _safely(guard.restore)
            if restored:
                out.write(json.dumps({"note": f"restored before cell {index}: {', '.join(restored[:5])} "
                                              "(changed by the submission)"}) + "\n")
        out.write(json.dumps({"start": index}) + "\n")
        t0 = time.monotonic()
        try:
            result = shell.run_cell(source, store_history=False)
            err = result.error_before_exec or result.error_in_exec
        except BaseException as e:  # noqa: BLE001  (a KeyboardInterrupt between cells)
            err = e
        report = {"index": index, "seconds": round(time.monotonic() - t0, 3)}
        if err is not None:
            report.update(ename=type(err).__name__, evalue=str(err)[:_EVALUE_LIMIT])
        if kind == "test":
            tampered = _safely(guard.restore)
            if tampered:
                report.update(ename="TamperingError", evalue=f"the submission replaced {', '.join(tampered[:3])} "
                                                             "while this check ran")
        elif kind == "locked" and err is None:
            _safely(guard.protect_bindings)
        out.write(json.dumps(report) + "\n")
    out.write(json.dumps({"done": True}) + "\n")
    out.flush()
    os._exit(0)


def _safely(step) -> list[str]:
    """A guard step that fails (on an object it cannot handle) must neither end the notebook nor
    cost the student a point: it then reports nothing."""
    try:
        return step() or []
    except Exception:  # noqa: BLE001
        return []


def _kind(cell) -> str:
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution"):
        return "answer"
    return "test" if meta.get("grade") else "locked"


def run_notebook_forked(nb, cell_timeout: float, notebook_timeout: float, env: dict[str, str] | None = None,
                        threads: int | None = None, memory_mb: float | None = None,
                        notes: list[str] | None = None) -> dict[int, Outcome]:
    """Execute the code cells of `nb` in a forked child; return the outcome of each by index and
    append to `notes` what the integrity guard restored. (Outputs are not kept: grading reads
    only whether each cell raised, and what.)"""
    cells = [(i, c.source, _kind(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    outcomes: dict[int, Outcome] = {}
    env = {"MPLBACKEND": "agg", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="course-grade-") as workdir:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover  (runs in the child)
            try:
                os.close(read_fd)
                _child(cells, write_fd, workdir, env, threads)
            finally:
                os._exit(1)
        os.close(write_fd)
        try:
            _watch(pid, read_fd, cells, outcomes, cell_timeout, notebook_timeout, memory_mb,
                   notes if notes is not None else [])
        finally:
            os.close(read_fd)
            try:
                os.killpg(pid, signal.SIGKILL)   # the child and anything it started
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
    return outcomes


def _watch(pid: int, fd: int, cells, outcomes: dict[int, Outcome], cell_timeout: float,
           notebook_timeout: float, memory_mb: float | None, notes: list[str]) -> None:
    """Read the child's reports and enforce the limits until it finishes or is stopped."""
    start = time.monotonic()
    current, cell_start = None, start
    interrupted_at, limit = None, ""    # when we sent SIGINT, and the limit text it enforced
    stopped, buffer = "", b""           # why the remaining cells will not run

    def stop(status: str, evalue: str, reason: str) -> None:
        nonlocal stopped
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if current is not None and current not in outcomes:
            outcomes[current] = Outcome(status, evalue=evalue, seconds=time.monotonic() - cell_start)
        stopped = reason

    while not stopped:
        if select.select([fd], [], [], _POLL)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:                       # the child is gone without saying done
                stop("died", "", "the kernel died in an earlier cell")
                break
            buffer += chunk
            while b"\n" in buffer and not stopped:
                line, buffer = buffer.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("done"):
                    return
                if "note" in msg:
                    notes.append(msg["note"])
                    continue
                if "start" in msg:
                    current, cell_start, interrupted_at = msg["start"], time.monotonic(), None
                    continue
                if interrupted_at is not None and msg.get("ename") == "KeyboardInterrupt":
                    outcomes[msg["index"]] = Outcome("timeout", evalue=limit, seconds=msg["seconds"])
                    if limit.startswith("the notebook"):
                        stop("timeout", limit, limit)
                elif "ename" in msg:
                    outcomes[msg["index"]] = Outcome("error", msg["ename"], msg["evalue"], msg["seconds"])
                else:
                    outcomes[msg["index"]] = Outcome("ok", seconds=msg["seconds"])
                interrupted_at = None
            continue
        now = time.monotonic()
        if memory_mb and _rss_mb(pid) > memory_mb:
            text = f"the notebook used more than {memory_mb:.0f} MB of memory"
            stop("memory", text, text)
        elif interrupted_at is not None:
            if now - interrupted_at > _INTERRUPT_GRACE:
                stop("timeout", limit, limit if limit.startswith("the notebook") else
                     "the kernel stopped answering after a cell timed out")
        elif current is not None and current not in outcomes:
            if now - start > notebook_timeout:
                limit = f"the notebook ran past its {notebook_timeout:g} s limit"
            elif now - cell_start > cell_timeout:
                limit = f"the cell ran past its {cell_timeout:g} s limit"
            else:
                continue
            interrupted_at = now
            os.kill(pid, signal.SIGINT)
    for index, *_ in cells:
        outcomes.setdefault(index, Outcome("not_run", evalue=stopped))
