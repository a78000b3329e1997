"""Run a notebook cell by cell in a fresh kernel, with a per-cell and a per-notebook time limit.

Unlike nbgrader's Execute, a cell that times out or a kernel that dies is recorded on that cell
and never fails the whole notebook: the outcome of every cell is returned for scoring.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync

from .results import MAX_OUTPUTS, NotebookRun, Outcome, capped_outputs, record_path


def _error_output(cell: nbformat.NotebookNode) -> tuple[str, str] | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out.get("ename", "Error"), out.get("evalue", "")
    return None


def _recover_after_timeout(client: NotebookClient, wait: float = 10.0) -> bool:
    """Interrupt the kernel and wait until it answers again; False if it does not."""
    try:
        run_sync(client.km.interrupt_kernel)()
        msg_id = client.kc.execute("pass", store_history=False)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            msg = run_sync(client.kc.shell_channel.get_msg)(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
    except Exception:
        return False
    return False


def run_notebook(nb: nbformat.NotebookNode, cell_timeout: float, notebook_timeout: float,
                 env: dict[str, str] | None = None) -> dict[int, Outcome]:
    """Execute `nb` in place; return the outcome of every code cell by index."""
    outcomes: dict[int, Outcome] = {}
    kernel_env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYTHONWARNINGS": "ignore", **(env or {})}
    start = time.monotonic()
    stopped = ""
    with tempfile.TemporaryDirectory(prefix="course-grade-") as workdir:
        client = NotebookClient(nb, timeout=int(cell_timeout), kernel_name="python3", allow_errors=True,
                                interrupt_on_timeout=False, record_timing=False,
                                resources={"metadata": {"path": workdir}})
        try:
            # the kernel process's own stderr (its start-up banner) is noise; cell output comes over iopub
            with client.setup_kernel(env=kernel_env, stderr=subprocess.DEVNULL):
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    if stopped:
                        outcomes[index] = Outcome("not_run", evalue=stopped)
                        continue
                    left = notebook_timeout - (time.monotonic() - start)
                    if left <= 0:
                        stopped = f"the notebook ran past its {notebook_timeout:g} s limit"
                        outcomes[index] = Outcome("not_run", evalue=stopped)
                        continue
                    client.timeout = max(1, int(min(cell_timeout, left)))
                    t0 = time.monotonic()
                    try:
                        client.execute_cell(cell, index)
                    except CellTimeoutError:
                        outcomes[index] = Outcome("timeout", evalue=f"the cell ran past its {client.timeout} s limit",
                                                  seconds=time.monotonic() - t0)
                        if not _recover_after_timeout(client):
                            stopped = f"the kernel stopped answering after cell {index} timed out"
                        continue
                    except DeadKernelError:
                        outcomes[index] = Outcome("died", seconds=time.monotonic() - t0)
                        stopped = "the kernel died in an earlier cell"
                        continue
                    err = _error_output(cell)
                    seconds = time.monotonic() - t0
                    outcomes[index] = Outcome("error", *err, seconds) if err else Outcome("ok", seconds=seconds)
        except DeadKernelError:
            pass  # died during shutdown: outcomes are already recorded
        except RuntimeError as e:  # the kernel could not start at all
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and index not in outcomes:
                    outcomes[index] = Outcome("not_run", evalue=f"the kernel did not start: {e}")
    return outcomes


def _shown(cell: nbformat.NotebookNode) -> list[list[str]]:
    """A cell's outputs as [kind, text] pairs (autograder.results), as the fork engine reports them."""
    items = []
    for out in cell.get("outputs", []):
        kind, data = out.get("output_type"), out.get("data", {})
        if kind == "stream":
            name = "stderr" if out.get("name") == "stderr" else "stdout"
            if items and items[-1][0] == name:          # one output per run of writes, as the fork engine
                items[-1][1] += out.get("text", "")
            else:
                items.append([name, out.get("text", "")])
        elif kind in ("execute_result", "display_data") and "image/png" in data:
            items.append(["png", data["image/png"]])
        elif kind in ("execute_result", "display_data") and "text/plain" in data:
            items.append(["result" if kind == "execute_result" else "display", data["text/plain"]])
        elif kind == "error":
            items.append(["error", f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"])
    return items


def run_notebook_cells(cells: list[tuple[int, str, str]], run: NotebookRun, notes: list[str] | None = None,
                       heartbeat=None, outputs: dict | None = None) -> dict[int, Outcome]:
    """`run_notebook` on code cells given as (index, source, kind), as the worker receives them
    (the fork engine's signature, `outputs` included); a check cell runs its probe
    (autograder.witness). No memory limit, no guard and no heartbeat here: see the README."""
    nb = nbformat.v4.new_notebook()
    indices = []
    name = f"course-checks-{os.getpid()}-{secrets.token_hex(8)}"      # the check process's socket
    checks = 0
    for index, source, kind in cells:
        if kind == "test" and run.lab and run.probe_dir:
            if not checks:
                from autograder.live import check_plan, check_process_at
                checks = check_process_at(name, check_plan(run.lab, cells), run.draw)
            path = record_path(run.probe_dir, index)
            source = (f"__import__('autograder.live', fromlist=['l']).probe_to_file_at({run.lab!r}, {source!r}, "
                      f"get_ipython().user_ns, {path!r}, {name!r})")
        nb.cells.append(nbformat.v4.new_code_cell(source))
        indices.append(index)
    try:
        outcomes = run_notebook(nb, run.cell_timeout, run.notebook_timeout, {**run.env, "TMPDIR": run.workdir})
    finally:
        if checks:
            try:
                os.kill(checks, signal.SIGKILL)
                os.waitpid(checks, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    if outputs is not None:
        budget = [MAX_OUTPUTS]
        for cell, (index, _, kind) in zip(nb.cells, cells):
            items = capped_outputs(_shown(cell), budget) if kind != "test" else []
            if items:
                outputs[index] = items
    return {indices[i]: o for i, o in outcomes.items()}
