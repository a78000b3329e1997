"""Where notebooks and scorers are forked from, inside the sandbox.

The worker forks the zygote right after warm-up, before it has seen any job: every notebook and
scorer is then a fork of the zygote, so none of them finds another student's cells, outcomes or
predictions in the memory it inherits (the worker's heap keeps freed bytes). In a sandbox, each
child also enters user and PID namespaces of its own, drops every capability and may make no
further namespace (seccomp): the worker and the zygote are outside its PID namespace (no pid to
signal, `prlimit` or re-nice), everything it starts dies with it (the namespace's init), and
its keys vanish with it. (The worker removes its System V objects after it: they live in the
sandbox's IPC namespace, where the worker can count them.)

A child is asked for over a socket; the zygote answers with two pipe ends (SCM_RIGHTS): one to
send the child its job (read by the child alone), one the child reports on. The first report
line is the pid (as the worker sees it) of the process that runs the job.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import struct

CLONE_NEWUSER, CLONE_NEWPID = 0x10000000, 0x20000000
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | CLONE_NEWUSER | CLONE_NEWPID | 0x40000000 | 0x80
# syscall numbers (unshare, clone, clone3, setns) and audit arch, per machine
_SYSCALLS = {"x86_64": (0xC000003E, 272, 56, 435, 308), "aarch64": (0xC00000B7, 97, 220, 435, 268)}
_libc = ctypes.CDLL(None, use_errno=True)
ENTRIES: dict = {}      # name -> function(payload: bytes, report_fd: int), never returning
CHECKS_FD: int | None = None   # in a notebook's process: its socket to the check process


class ZygoteLost(Exception):
    pass


class Zygote:
    def __init__(self, sandboxed: bool) -> None:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # pragma: no cover  (the zygote)
            try:
                keep = theirs.fileno()
                os.closerange(3, keep)              # the worker's channel to the grader among them
                os.closerange(keep + 1, 1 << 16)
                _serve(theirs, sandboxed)
            finally:
                os._exit(0)
        theirs.close()
        self.sock, self.pid = ours, pid
        self.helper = 0           # the last child's check process (autograder.live), 0 if none

    def spawn(self, entry: str, payload: bytes, timeout: float = 60.0) -> tuple[int, int]:
        """Fork a child that runs ENTRIES[entry](payload); return (the pid that runs it, the fd
        its reports come on)."""
        try:
            self.sock.sendall(json.dumps({"entry": entry}).encode() + b"\n")
            _, fds, _, _ = socket.recv_fds(self.sock, 64, 2)
        except OSError as e:
            raise ZygoteLost(f"the zygote is gone ({e})") from None
        if len(fds) != 2:
            raise ZygoteLost("the zygote answered without pipes")
        to_child, from_child = fds
        try:
            with os.fdopen(to_child, "wb") as f:
                f.write(struct.pack(">Q", len(payload)) + payload)
        except OSError:
            pass                                   # the child died at once: its report says so
        line = b""
        while not line.endswith(b"\n"):
            if not select.select([from_child], [], [], timeout)[0]:
                os.close(from_child)
                raise ZygoteLost("a child of the zygote did not start")
            chunk = os.read(from_child, 1)
            if not chunk:
                os.close(from_child)
                raise ZygoteLost("a child of the zygote died while starting")
            line += chunk
        started = json.loads(line)
        self.helper = int(started.get("checks") or 0)
        return int(started["pid"]), from_child


def _serve(sock: socket.socket, sandboxed: bool) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)        # children are reaped by the kernel
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)              # PR_SET_PDEATHSIG: die with the worker
    stream = sock.makefile("rb")
    for line in stream:
        entry = json.loads(line)["entry"]
        job_r, job_w = os.pipe()
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            try:
                stream.close()
                sock.close()
                os.close(job_w)
                os.close(report_r)
                _start(entry, job_r, report_w, sandboxed)
            except BaseException:          # to the worker's stderr (COURSE_WORKER_LOG when set)
                import traceback
                traceback.print_exc()
            finally:
                os._exit(1)
        os.close(job_r)
        os.close(report_w)
        socket.send_fds(sock, [b"ok"], [job_w, report_r])
        os.close(job_w)
        os.close(report_r)


def _read_payload(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        size = struct.unpack(">Q", f.read(8))[0]
        return f.read(size)


def _start(entry: str, job_r: int, report_w: int, sandboxed: bool) -> None:
    """In the zygote's child: read the job, enter new namespaces, fork the process that runs it
    (the init of the new PID namespace), say its pid, and wait for it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    _libc.prctl(4, 1, 0, 0, 0)        # PR_SET_DUMPABLE: its /proc/self files are its own again (uid_map)
    payload = _read_payload(job_r)
    checks, helper = _fork_check_process(payload) if entry == "notebook" else (None, 0)
    if sandboxed:
        _enter_namespaces()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (runs the job)
        os.close(go_w)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
        os.read(go_r, 1)                          # wait until our pid is reported first
        os.close(go_r)
        if sandboxed:
            _drop_capabilities()
            _forbid_namespaces()
        global CHECKS_FD
        CHECKS_FD = checks
        ENTRIES[entry](payload, report_w)
        os._exit(0)
    os.close(go_r)
    if checks is not None:
        os.close(checks)
    os.write(report_w, json.dumps({"pid": pid, "checks": helper}).encode() + b"\n")
    os.close(report_w)
    os.close(go_w)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    os._exit(0)


def _fork_check_process(payload: bytes) -> tuple[int, int]:
    """Fork the notebook's check process (autograder.live) before the notebook's namespaces are
    made: it stays outside the notebook's PID namespace (no pid to signal or trace) and is not
    dumpable (its memory and /proc files are not the notebook's to read). It dies with this
    process, which lives as long as the notebook. Returns (the notebook's end of its socket,
    its pid), so that the worker can tell it from the notebook's processes: its memory cannot be
    read (not dumpable), and what it holds is bounded by what it accepts (autograder.live)."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the check process)
        try:
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            job = json.loads(payload)
            from autograder.live import check_plan, run_check_process
            run_check_process(theirs, check_plan(str(job.get("lab", "")), job.get("cells", [])), job.get("threads"),
                              draw=int(job.get("draw", 0)))
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(0)
    theirs.close()
    return ours.detach(), pid


def _enter_namespaces() -> None:
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
        raise OSError(ctypes.get_errno(), "unshare failed: user namespaces are needed inside the sandbox")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _forbid_namespaces() -> None:
    """A seccomp filter: no new namespace (unshare, clone with a CLONE_NEW* flag, setns;
    clone3 answers ENOSYS so that libc falls back to clone). Without it a notebook could make a
    user and mount namespace of its own and fill a private tmpfs that no limit counts."""
    machine = os.uname().machine
    if machine not in _SYSCALLS:
        return
    arch, unshare, clone, clone3, setns = _SYSCALLS[machine]
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    program = [
        (ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, allow),          # another ABI: not ours to judge
        (ld, 0, 0, 0),
        (jeq, 0, 1, clone3), (ret, 0, 0, enosys),
        (jeq, 0, 1, setns), (ret, 0, 0, eperm),
        (jeq, 1, 0, unshare), (jeq, 0, 3, clone),
        (ld, 0, 0, 16), (jset, 0, 1, NAMESPACE_FLAGS), (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    filters = (Filter * len(program))(*[Filter(*f) for f in program])
    prog = Program(len(program), filters)
    _libc.prctl(38, 1, 0, 0, 0)                                      # PR_SET_NO_NEW_PRIVS
    if _libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:            # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "seccomp failed")


def _drop_capabilities() -> None:
    """No capability, even in the process's own user namespace (no raising IPC limits, no
    mounts): capset with every set empty."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)        # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                       # effective, permitted, inheritable (x2) = 0
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
