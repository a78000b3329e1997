"""The fast engine: run a notebook in a forked child of a warm worker (inside the sandbox).

A Jupyter kernel per notebook costs seconds before the student's first line runs (the kernel
starts, then `import torch`). Here the sandboxed worker (autograder.worker) imports torch & co.
once (`warm_up`), then forks one child per notebook: the child gets a fresh IPython shell
(magics, `display`, `get_ipython()`), runs the cells and reports each cell's outcome over a
pipe. The worker enforces the limits from outside the child — per cell (SIGINT, then SIGKILL
if ignored), per notebook, and on the memory of every process the notebook started — and,
in a sandbox, kills everything the notebook started when it ends (`kill_others`).
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from .results import MAX_OUTPUTS, NotebookRun, Outcome, capped_outputs, record_path

_EVALUE_LIMIT = 2000
_LINE_LIMIT = 4 << 20       # a report line longer than this is not the child's honest report (outputs: 2 MB)
_INTERRUPT_GRACE = 5.0      # seconds a cell has to stop after SIGINT before the child is killed
_POLL = 0.1
MAX_FILE = 512 << 20        # bytes in any one file a notebook writes
MAX_PROCESSES = 256         # processes (and threads) of the sandbox's user
MAX_FILES_OPEN = 1024       # descriptors per process (each socket can hold buffers nobody maps)
INODE_BYTES = 1024          # what the kernel keeps per file in a tmpfs, counted even when empty
OWN_UID = False             # the worker runs as a uid of its own (root mode): RLIMIT_NPROC counts only it
ZYGOTE = None               # autograder.zygote.Zygote: what notebooks and scorers are forked from


HEAVY = ("dynamo", "mnist", "sklearn")   # what `warm_up` imports only where a lab needs it (grade.warm_up_plan)


def warm_up(labs: tuple[str, ...] | None = None, heavy: tuple[str, ...] = HEAVY) -> None:
    """Import what notebooks import, once per worker, without running any torch op (a fork
    after torch's thread pools start is unsafe): for `labs` (None: every lab), with the `heavy`
    imports they need."""
    os.environ.setdefault("MPLBACKEND", "agg")
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401
    if "dynamo" in heavy:
        import torch._dynamo  # noqa: F401  (the first optimizer step imports it, and torchvision: 2 s)
        import torchvision  # noqa: F401
    import torch.nn.functional  # noqa: F401
    if "sklearn" in heavy:
        import sklearn.datasets  # noqa: F401  (1.4 s: the tensors and forward labs' data sets)
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401

    import autograder.checks  # noqa: F401
    import autograder.live  # noqa: F401  (a notebook's check process is forked with it)
    import autograder.witness  # noqa: F401
    import autograder.data
    import autograder.runtime  # noqa: F401
    from autograder.integrity import import_checked_modules
    import_checked_modules(labs)   # the labs' check modules, so that each child's Guard snapshot is cheap
    if "mnist" in heavy:
        # the embedded MNIST split, parsed once per worker (numpy only: no torch op runs here)
        autograder.data._mnist_split_tensors(0)


# --- the processes a notebook started, and their memory -------------------------------------

def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def notebook_processes(child: int, sandboxed: bool) -> list[int]:
    """Every live process the notebook started. In a sandbox that is every process but init,
    the worker and the zygote; without one, the child and its descendants."""
    mine = {1, os.getpid(), ZYGOTE.pid if ZYGOTE else 0, ZYGOTE.helper if ZYGOTE else 0}
    if sandboxed:
        return [p for p in _pids() if p not in mine and (_stat(p) or ("Z",))[0] != "Z"]
    parents = {p: s[1] for p in _pids() if (s := _stat(p)) and s[0] != "Z"}
    tree, grew = {child} & parents.keys(), True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sorted(tree)


def _proc_kb(path: str, *keys: str) -> int | None:
    """The sum of the kB figures of the lines `keys` in a /proc file, or None when it is
    unreadable or has none of them."""
    total = None
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(keys):
                    total = (total or 0) + int(line.split()[1])
    except OSError:
        pass
    return total


def _memory_mb(pid: int) -> float:
    """Proportional set size (shared pages split between their users) where readable, else the
    resident size: forks of the worker share torch's pages and must not count them twice. Pages
    swapped out (to swap or zram) still count: a notebook does not shrink by being swapped."""
    kb = _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:", "SwapPss:")
    if kb is None:
        kb = _proc_kb(f"/proc/{pid}/status", "VmRSS:", "VmSwap:")
    return (kb or 0) / 1024


def _sysvipc(table: str) -> list[list[str]]:
    """The rows of /proc/sysvipc/<table> (shm, msg, sem) of this IPC namespace, split."""
    try:
        with open(f"/proc/sysvipc/{table}") as f:
            next(f, None)
            return [line.split() for line in f]
    except OSError:
        return []


HIDE_GRACE = 1.0            # seconds a process may stay non-dumpable before it counts as hiding
_unreadable: dict[int, float] = {}   # pid -> when the worker first failed to read its files


class HiddenMemory(Exception):
    """A process of the notebook made itself non-dumpable: the worker cannot see what it holds."""


def _unmapped_mb(pids: list[int], sandboxed: bool) -> float:
    """Memory that no process maps but the notebook holds: memfd files open in its processes
    and, in a sandbox (whose tmpfs and IPC namespace hold only this notebook's), the files and
    inodes in /tmp and /dev/shm, System V segments and queued messages."""
    total, seen = 0, set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            _unreadable.pop(pid, None)
        except PermissionError:        # a fresh fork is non-dumpable for an instant, as its parent
            if time.monotonic() - _unreadable.setdefault(pid, time.monotonic()) > HIDE_GRACE:
                raise HiddenMemory() from None
            continue
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if os.readlink(path).startswith("/memfd:"):
                    info = os.stat(path)
                    if info.st_ino not in seen:
                        seen.add(info.st_ino)
                        total += info.st_blocks * 512
            except OSError:
                continue
    if sandboxed:
        for mount in ("/tmp", "/dev/shm"):
            try:
                fs = os.statvfs(mount)
                total += (fs.f_blocks - fs.f_bfree) * fs.f_frsize + (fs.f_files - fs.f_ffree) * INODE_BYTES
            except OSError:
                pass
        for table, column in (("shm", 14), ("msg", 3)):      # resident bytes of segments, queued bytes
            total += sum(int(row[column]) for row in _sysvipc(table) if len(row) > column)
    return total / 2**20


def _resident_mb(pid: int) -> float:
    """Resident and swapped size: a bound from above of `_memory_mb`, read in microseconds."""
    return (_proc_kb(f"/proc/{pid}/status", "VmRSS:", "VmSwap:") or 0) / 1024


def over_memory(child: int, sandboxed: bool, limit_mb: float) -> bool:
    """Whether every process of the notebook together, with what it holds unmapped, uses more
    than `limit_mb` (proportional sizes, `_memory_mb`). Polled ten times a second: smaps_rollup
    costs tens of ms for a process that imported torch (a third of a core), so it is read only
    where the resident sizes, which bound it from above, pass the limit."""
    pids = notebook_processes(child, sandboxed)
    unmapped = _unmapped_mb(pids, sandboxed)
    if sum(_resident_mb(p) for p in pids) + unmapped <= limit_mb:
        return False
    return sum(_memory_mb(p) for p in pids) + unmapped > limit_mb


def kill_others(child: int, sandboxed: bool) -> None:
    """End everything the notebook started. In a sandbox that is every process but init, the
    worker and the zygote; killing the notebook's process first (the init of its own PID
    namespace) ends all of its namespace at once, daemons and double forks included."""
    helper = ZYGOTE.helper if ZYGOTE else 0
    for _ in range(200):
        first = [child] if 0 < child != os.getpid() else []
        if helper and _stat(helper) is not None:     # the notebook's check process, gone with it
            first.append(helper)
        for pid in [*first, *notebook_processes(child, sandboxed)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap()
        if not notebook_processes(child, sandboxed):
            if sandboxed:
                remove_ipc()
            return
        time.sleep(0.01)


def remove_ipc() -> None:
    """Remove every System V segment, queue and semaphore set of the sandbox (the notebook's,
    made as the worker's own user): nothing of one notebook reaches the next."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for table, remove in (("shm", lambda i: libc.shmctl(i, 0, None)), ("msg", lambda i: libc.msgctl(i, 0, None)),
                          ("sem", lambda i: libc.semctl(i, 0, 0))):
        for row in _sysvipc(table):
            remove(int(row[1]))


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def set_dumpable(flag: bool) -> None:
    """A worker is not dumpable, so the notebooks it forks (same user) cannot ptrace it or open
    its /proc files; its children become dumpable again so that it can read their memory."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(4, int(flag), 0, 0, 0)   # PR_SET_DUMPABLE


def isolate_child(keep_fd: int, cpu_seconds: float | None = None, sandboxed: bool = False,
                  also_keep: int | None = None) -> None:
    """In a freshly forked child: its own process group, no inherited descriptor but `keep_fd`
    (the worker's channel to the grader stays out of reach), output dropped; and limits that
    every process it starts inherits: CPU seconds per process, file size, and (in a sandbox,
    whose uid is its own) the number of processes."""
    import ctypes
    import resource
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds), int(cpu_seconds) + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE, MAX_FILE))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_FILES_OPEN, MAX_FILES_OPEN))   # socket buffers: bounded
    if sandboxed and OWN_UID:
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    os.setpgid(0, 0)
    set_dumpable(True)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG: die with the worker
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    start = 3
    for fd in sorted({keep_fd, also_keep if also_keep is not None else keep_fd}):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 16)


# --- one notebook ------------------------------------------------------------------------------

def _child(cells: list[tuple[int, str, str]], write_fd: int, workdir: str, env: dict[str, str], threads: int | None,
           cpu_seconds: float, sandboxed: bool, lab: str = "", probe_dir: str = "", checks_fd: int | None = None) -> None:
    """Runs in the forked child: execute the cells, report each outcome as a JSON line. A test
    (check) cell is probed, not run: its check runs in the check process at `checks_fd`
    (autograder.live), which asks this process to run the student's code, and the record goes
    to `probe_dir` for the judge (autograder.witness). Before each cell of the course's, the
    Guard puts back what the submission changed (autograder.integrity), so that the probe sees
    the course's code."""
    isolate_child(write_fd, cpu_seconds, sandboxed, checks_fd)
    os.chdir(workdir)
    os.environ.update(env)
    shown = _Shown()                      # what each cell shows, as Jupyter would (autograded/)
    sys.stdout, sys.stderr = _Stream("stdout", shown), _Stream("stderr", shown)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = os.fdopen(write_fd, "w", buffering=1)
    import warnings
    warnings.simplefilter("ignore")
    if threads:
        import torch
        torch.set_num_threads(threads)
    shell = _grading_shell(shown)
    from autograder.integrity import Guard
    guard = Guard(shell.user_ns, lab or None)   # a local: the submission cannot rebind it
    checks = None                         # the socket to the check process
    for index, source, kind in cells:
        if kind != "answer":              # course code (given cells, checks) runs unpatched
            restored = _safely(guard.restore)
            if restored:
                out.write(json.dumps({"note": f"restored before cell {index}: {', '.join(restored[:5])} "
                                              "(changed by the submission)"}) + "\n")
        out.write(json.dumps({"start": index}) + "\n")
        t0 = time.monotonic()
        try:
            if kind == "test" and lab and probe_dir:
                if checks is None:
                    if checks_fd is None:
                        raise RuntimeError("no check process to probe with")
                    import socket
                    checks = socket.socket(fileno=checks_fd)
                from autograder import live
                live.probe_to_file(lab, source, shell.user_ns, record_path(probe_dir, index), checks)
                err = None
            else:
                result = shell.run_cell(source, store_history=False)
                err = result.error_before_exec or result.error_in_exec
        except BaseException as e:  # noqa: BLE001  (a KeyboardInterrupt between cells)
            err = e
        report = {"index": index, "seconds": round(time.monotonic() - t0, 3)}
        if err is not None:
            report.update(ename=type(err).__name__, evalue=str(err)[:_EVALUE_LIMIT])
        if kind == "locked" and err is None:
            _safely(guard.protect_bindings)
        if kind != "test":                # (a check cell's output is its verdict, the grader's)
            _safely(shown.figures)
            if err is not None:
                shown.add("error", f"{type(err).__name__}: {str(err)[:_EVALUE_LIMIT]}")
            items = shown.take()
            if items:
                out.write(json.dumps({"outputs": index, "items": items}) + "\n")
        else:
            shown.drop()
        out.write(json.dumps(report) + "\n")
    out.write(json.dumps({"done": True}) + "\n")
    out.flush()
    os._exit(0)


class _Shown:
    """The outputs of the cell running now, as [kind, text] pairs (autograder.results), capped:
    past MAX_OUTPUTS characters in one cell the rest is counted out, not kept."""

    def __init__(self) -> None:
        self.items: list[list] = []           # [kind, [chunks]]
        self.size, self.cut = 0, False
        self.budget = [MAX_OUTPUTS]           # for the whole notebook

    def add(self, kind: str, text: str) -> None:
        if self.size > MAX_OUTPUTS:
            self.cut = True
            return
        self.size += len(text)
        if self.items and kind in ("stdout", "stderr") and self.items[-1][0] == kind:
            self.items[-1][1].append(text)    # one stream output per run of writes, as Jupyter shows
        else:
            self.items.append([kind, [text]])

    def figures(self) -> None:
        """The figures the cell left open, as PNG, then closed (Jupyter's inline backend does so)."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        import base64
        import io
        for number in plt.get_fignums():
            buffer = io.BytesIO()
            plt.figure(number).savefig(buffer, format="png", dpi=60, bbox_inches="tight")
            self.add("png", base64.b64encode(buffer.getvalue()).decode())
        plt.close("all")

    def take(self) -> list[list[str]]:
        """The cell's outputs, capped (the notebook's budget pays for them); the next cell starts empty."""
        items = [[kind, "".join(chunks)] for kind, chunks in self.items]
        if self.cut:
            items.append(["stderr", "[… output cut]\n"])
        self.drop()
        return capped_outputs(items, self.budget)

    def drop(self) -> None:
        """Forget what the cell showed (a check cell's own prints: its verdict is the grader's)."""
        self.items, self.size, self.cut = [], 0, False


class _Stream:
    """sys.stdout / sys.stderr of a notebook: what it writes goes to `shown`."""
    encoding = "utf-8"

    def __init__(self, name: str, shown: _Shown) -> None:
        self.name, self.shown = name, shown

    def write(self, text) -> int:
        text = str(text)
        if text:
            self.shown.add(self.name, text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:              # C-level writes (and faulthandler) go to /dev/null
        return 1 if self.name == "stdout" else 2


def _grading_shell(shown: _Shown):
    """A fresh IPython shell whose displays and results go to `shown` (text and PNG), whose
    tracebacks are not printed (the error is reported, one line), and whose matplotlib stays on agg."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, *args, **kwargs):
            if isinstance(data, dict) and isinstance(data.get("image/png"), str):
                shown.add("png", data["image/png"])
            elif isinstance(data, dict) and "text/plain" in data:
                shown.add("display", str(data["text/plain"]) + "\n")

    class Hook(DisplayHook):
        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            shown.add("result", str(format_dict.get("text/plain", "")))

    class GradingShell(InteractiveShell):
        display_pub_class = Type(Publisher)
        displayhook_class = Type(Hook)

        def enable_gui(self, gui=None):      # `%matplotlib inline` and friends: stay on agg
            return None

        def enable_matplotlib(self, gui=None):
            return gui, "agg"

        def _showtraceback(self, etype, evalue, stb):
            pass

    config = Config()
    config.HistoryManager.enabled = False
    return GradingShell.instance(config=config)


def _safely(step) -> list[str]:
    """A guard step that fails (on an object it cannot handle) must neither end the notebook nor
    cost the student a point: it then reports nothing."""
    try:
        return step() or []
    except Exception:  # noqa: BLE001
        return []


def run_notebook_forked(cells: list[tuple[int, str, str]], run: NotebookRun, notes: list[str] | None = None,
                        heartbeat=None, outputs: dict | None = None) -> dict[int, Outcome]:
    """Execute `cells` ((index, source, kind) with kind answer | test | locked) in a forked child
    working in `workdir`; return the outcome of each by index and append to `notes` what the
    integrity guard restored, and to `outputs` what each cell showed ({index: [[kind, text]]},
    capped). When it returns, every process the notebook started is gone. `heartbeat()` is
    called about once a second while the notebook runs."""
    outcomes: dict[int, Outcome] = {}
    cell_timeout, notebook_timeout, sandboxed = run.cell_timeout, run.notebook_timeout, run.sandboxed
    env = {"MPLBACKEND": "agg", **run.env}
    job = {"cells": cells, "workdir": run.workdir, "env": env, "threads": run.threads, "sandboxed": sandboxed,
           "lab": run.lab, "probe_dir": run.probe_dir, "cpu_seconds": cpu_budget(notebook_timeout, run.threads),
           "draw": run.draw}
    pid, read_fd = zygote(sandboxed).spawn("notebook", json.dumps(job).encode())
    try:
        _watch(pid, read_fd, cells, outcomes, cell_timeout, notebook_timeout, run.memory_mb,
               notes if notes is not None else [], sandboxed, heartbeat, outputs if outputs is not None else {})
    finally:
        end_child(pid, read_fd, sandboxed)
    return outcomes


def cpu_budget(wall_seconds: float, threads: int | None) -> float:
    """CPU seconds per process (RLIMIT_CPU) for a run allowed `wall_seconds` on `threads` threads."""
    return wall_seconds * max(1, threads or 1) + 10


def end_child(pid: int, read_fd: int, sandboxed: bool) -> None:
    """Close our end of the child's pipe and end it and everything it started."""
    os.close(read_fd)
    kill_others(pid, sandboxed)


def zygote(sandboxed: bool):
    """The zygote children are forked from (made on first use outside the worker)."""
    global ZYGOTE
    if ZYGOTE is None:
        from .zygote import Zygote
        ZYGOTE = Zygote(sandboxed)
    return ZYGOTE


def _notebook_entry(payload: bytes, report_fd: int) -> None:
    job = json.loads(payload)
    cells = [(int(i), str(src), str(kind)) for i, src, kind in job["cells"]]
    from .zygote import CHECKS_FD
    _child(cells, report_fd, job["workdir"], job["env"], job["threads"], job["cpu_seconds"], job["sandboxed"],
           str(job.get("lab", "")), str(job.get("probe_dir", "")), CHECKS_FD)


def _watch(pid: int, fd: int, cells, outcomes: dict[int, Outcome], cell_timeout: float,
           notebook_timeout: float, memory_mb: float | None, notes: list[str], sandboxed: bool,
           heartbeat, outputs: dict) -> None:
    """Read the child's reports and enforce the limits until it finishes or is stopped."""
    start = last_beat = last_memory = time.monotonic()
    budget = [MAX_OUTPUTS]              # what the child may show in all, whatever it claims
    known = {index for index, *_ in cells}
    current, cell_start = None, start
    interrupted_at, limit = None, ""    # when we sent SIGINT, and the limit text it enforced
    stopped, buffer = "", b""           # why the remaining cells will not run

    def stop(status: str, evalue: str, reason: str) -> None:
        nonlocal stopped
        kill_others(pid, sandboxed)
        if current is not None and current not in outcomes:
            outcomes[current] = Outcome(status, evalue=evalue, seconds=time.monotonic() - cell_start)
        stopped = reason

    while not stopped:
        now = time.monotonic()
        if heartbeat and now - last_beat > 1.0:
            heartbeat()
            last_beat = now
        if select.select([fd], [], [], _POLL)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:                       # the child is gone without saying done
                stop("died", "", "the kernel died in an earlier cell")
                break
            buffer += chunk
            if len(buffer) > _LINE_LIMIT and b"\n" not in buffer[-_LINE_LIMIT:]:
                stop("died", "", "the notebook wrote garbage to the grader's channel")
                break
            while b"\n" in buffer and not stopped:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError
                except ValueError:
                    stop("died", "", "the notebook wrote garbage to the grader's channel")
                    break
                if msg.get("done"):
                    return
                if "note" in msg:
                    if len(notes) < 20:
                        notes.append(str(msg["note"])[:500])
                    continue
                if "outputs" in msg:
                    if msg["outputs"] in known and msg["outputs"] not in outputs:
                        outputs[msg["outputs"]] = capped_outputs(msg.get("items"), budget)
                    continue
                if "start" in msg:
                    current, cell_start, interrupted_at = msg["start"], time.monotonic(), None
                    continue
                index, seconds = msg.get("index"), msg.get("seconds", 0.0)
                if index not in known or index in outcomes:      # only the cells it was given, once each
                    continue
                if interrupted_at is not None and msg.get("ename") == "KeyboardInterrupt":
                    outcomes[index] = Outcome("timeout", evalue=limit, seconds=seconds)
                    if limit.startswith("the notebook"):
                        stop("timeout", limit, limit)
                elif "ename" in msg:
                    outcomes[index] = Outcome("error", str(msg["ename"])[:100], str(msg["evalue"])[:_EVALUE_LIMIT], seconds)
                else:
                    outcomes[index] = Outcome("ok", seconds=seconds)
                interrupted_at = None
            if stopped:
                break
        now = time.monotonic()
        too_big = hidden = False
        if memory_mb and now - last_memory >= _POLL:
            last_memory = now
            try:
                too_big = over_memory(pid, sandboxed, memory_mb)
            except HiddenMemory:
                hidden = True
        if too_big or hidden:
            text = (f"the notebook used more than {memory_mb:.0f} MB of memory" if too_big else
                    "a process of the notebook hid its memory from the grader (PR_SET_DUMPABLE 0)")
            stop("memory", text, text)
        elif interrupted_at is not None:
            if now - interrupted_at > _INTERRUPT_GRACE:
                stop("timeout", limit, limit if limit.startswith("the notebook") else
                     "the kernel stopped answering after a cell timed out")
        elif now - start > notebook_timeout and (current is None or current in outcomes):
            text = f"the notebook ran past its {notebook_timeout:g} s limit"
            stop("timeout", text, text)
        elif current is not None and current not in outcomes:
            if now - start > notebook_timeout:
                limit = f"the notebook ran past its {notebook_timeout:g} s limit"
            elif now - cell_start > cell_timeout:
                limit = f"the cell ran past its {cell_timeout:g} s limit"
            else:
                continue
            interrupted_at = now
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for index, *_ in cells:
        outcomes.setdefault(index, Outcome("not_run", evalue=stopped))


def _register() -> None:
    from .zygote import ENTRIES
    ENTRIES["notebook"] = _notebook_entry


_register()
