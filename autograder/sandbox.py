"""Where a submission's code runs: a bubblewrap sandbox around one warm grading worker.

Why bubblewrap: it is the small, audited setuid-free tool Flatpak builds on; it gives new PID,
mount, network, IPC and UTS namespaces (and a user namespace for an ordinary user), a root of
our choosing with read-only binds, `--die-with-parent`, `--new-session` and `--clearenv`, from
one Debian/Ubuntu package, with no daemon and no configuration file to keep (nsjail needs a
build from source here; containers need an engine).

Each sandbox sees: the interpreter and its packages (read-only; a non-editable install of this
project's `reference` and grader packages is hidden under an empty tmpfs), the student-safe
runtime (`course release`'s `autograder` files plus the worker's own modules) at /course, the
course's public data root (read-only) at /course-data, and a size-capped tmpfs at /tmp: the only
place it can write, wiped after every notebook. Not `reference/`, `solutions/`, the grader-only
modules, `data.hidden`, other submissions, the output folder or the grader's environment. No
network (a new network namespace holds only loopback).

Identity: as root, bwrap sets the sandbox up as root without a user namespace and the worker
drops at once to an unused uid of this run's own (UID_BASE + slot), with no capabilities and no_new_privs; as an
ordinary user, bwrap makes a user namespace (the user's own uid, no capabilities). Either way
each notebook then gets user, PID and IPC namespaces of its own (autograder.zygote). Each worker gets its own sandbox: with --jobs 2 the two notebooks at a time
cannot see or signal each other. The grading process (outside) talks to the worker over a pipe,
watches its heartbeat, and replaces a worker that dies, stops or hangs.
"""
from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .config import CourseError
from .worker import pack, unpack

UID_BASE = 200000 + (os.getpid() % 10000) * 256   # root mode: slot k runs as UID_BASE + k, a uid of
                                                   # this run's own (no such user needed)
SCRATCH_MB = 512            # the sandbox's /tmp (every file it writes counts here)
START_TIMEOUT = 300.0       # seconds for a worker to import torch & co. and say ready
SILENCE_LIMIT = 30.0        # seconds without a frame (heartbeats come every second) = a stopped worker
WORKER_FILES = ("worker.py", "forked.py", "zygote.py", "integrity.py", "execute.py", "live.py")
RUNTIME = "/course"
DATA = "/course-data"
FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow user namespaces "
       "(sysctl kernel.unprivileged_userns_clone=1), or pass --unsafe-no-sandbox to grade without isolation")


class WorkerLost(Exception):
    """The worker died, stopped answering or broke its protocol: its job gets a grader error."""


@dataclass(frozen=True)
class SandboxOptions:
    sandboxed: bool = True             # False: --unsafe-no-sandbox (a plain subprocess)
    data_root: Path | None = None      # the course's public data sets (COURSE_DATA)
    device: str = "cpu"
    threads: int = 1
    scratch_mb: int = SCRATCH_MB
    warm: tuple[tuple[str, ...], tuple[str, ...]] | None = None   # (labs, heavy imports) its warm-up is for; None: all


def serves(kept: SandboxOptions, wanted: SandboxOptions) -> bool:
    """A worker launched with `kept` can grade what one launched with `wanted` would: the same
    options but its warm-up, which covers the wanted labs and heavy imports (None: everything)."""
    same = replace(kept, warm=None) == replace(wanted, warm=None)
    if not same or kept.warm is None:
        return same
    return wanted.warm is not None and set(wanted.warm[0]) <= set(kept.warm[0]) and set(wanted.warm[1]) <= set(kept.warm[1])


def warm_arguments(options: SandboxOptions) -> list[str]:
    """The worker's warm-up arguments (autograder.worker --labs, --heavy)."""
    if options.warm is None:
        return []
    labs, heavy = options.warm
    return ["--labs", ",".join(labs), "--heavy", ",".join(heavy)]


# --- the runtime the sandbox sees ----------------------------------------------------------

RUNTIME_PREFIX = "course-runtime-"
STALE_RUNTIME_SECONDS = 600.0


class RuntimeFolder:
    """A grader's copy of the student-safe files (`make_runtime`) in a temporary folder, locked
    (an flock on its `.lock`, outside what sandboxes mount) for as long as the grader lives.
    Making one first removes those of graders killed outright (SIGKILL runs no clean-up)."""

    def __init__(self) -> None:
        sweep_runtimes()
        self._tmp = tempfile.TemporaryDirectory(prefix=RUNTIME_PREFIX, ignore_cleanup_errors=True)
        self._lock = os.open(os.path.join(self._tmp.name, ".lock"), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = make_runtime(Path(self._tmp.name))

    def cleanup(self) -> None:
        self._tmp.cleanup()
        os.close(self._lock)


def sweep_runtimes(root: Path | None = None, min_age: float = STALE_RUNTIME_SECONDS) -> int:
    """Remove the runtime folders under `root` (the temporary folder) that no living grader holds:
    older than `min_age` seconds (a folder whose lock is not taken yet is seconds old) and whose
    lock can be taken. Returns how many."""
    removed = 0
    for folder in Path(root or tempfile.gettempdir()).glob(f"{RUNTIME_PREFIX}*"):
        try:
            if time.time() - folder.lstat().st_mtime < min_age or folder.is_symlink():
                continue
            lock = os.open(folder / ".lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue                      # not ours (another user's), or no lock: left alone
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue                      # its grader is alive
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        finally:
            os.close(lock)
    return removed


def make_runtime(folder: Path) -> Path:
    """Copy the student-safe autograder files (STUDENT_FILES) and the worker's modules into
    `folder/autograder`; readable by the sandbox's unprivileged user. Returns `folder`."""
    from .release import PACKAGE_DIR, student_files
    files = student_files() + [PACKAGE_DIR / name for name in WORKER_FILES]
    for path in files:
        dest = folder / "autograder" / path.relative_to(PACKAGE_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    (folder / "etc").mkdir(exist_ok=True)
    (folder / "etc" / "passwd").write_text("".join(f"student{k}:x:{UID_BASE + k}:{UID_BASE + k}::/tmp:/bin/false\n"
                                                   for k in range(256)) + f"user:x:{os.getuid()}:{os.getgid()}::/tmp:/bin/false\n")
    (folder / "etc" / "group").write_text("".join(f"student{k}:x:{UID_BASE + k}:\n" for k in range(256)))
    for root, dirs, names in os.walk(folder):
        os.chmod(root, 0o755)
        for name in names:
            os.chmod(os.path.join(root, name), 0o644)
    return folder


def _hidden_packages(bound: list[str]) -> list[str]:
    """Folders of this project's grader-side packages that lie inside a bound tree (a regular,
    non-editable install puts `reference/` into site-packages): mounted over, empty."""
    import importlib.util
    hidden = []
    for name in ("reference", "autograder"):
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            real = os.path.realpath(loc)
            if any(real == b or real.startswith(b.rstrip("/") + "/") for b in bound):
                hidden.append(real)
    return hidden


def bwrap_command(runtime: Path, slot: int, options: SandboxOptions) -> list[str]:
    """The bwrap command line for worker `slot`."""
    root = os.geteuid() == 0
    cmd = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv"]
    if root:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-user"]       # (each notebook makes a user namespace of its own: autograder.zygote)
    # the writable tmpfs first: a checkout or venv under /tmp is bound on top of it below
    cmd += ["--perms", "1777", "--size", str(options.scratch_mb << 20), "--tmpfs", "/tmp"]
    binds: list[str] = []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            binds.append(d)
    python_dirs = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)))}
    for d in sorted(python_dirs):
        if not any(d == b or d.startswith(b + "/") for b in binds):
            binds.append(d)
    if sys.prefix != os.path.realpath(sys.prefix):          # a venv reached through a symlink
        cmd += ["--symlink", os.path.realpath(sys.prefix), sys.prefix]
    made: set[str] = set()
    for b in binds:
        for parent in reversed(Path(b).parents):
            p = str(parent)
            if p != "/" and p not in made and not any(p == x or p.startswith(x + "/") for x in binds):
                cmd += ["--perms", "0755", "--dir", p]
                made.add(p)
        cmd += ["--ro-bind", b, b]
    for hidden in _hidden_packages(binds):
        cmd += ["--tmpfs", hidden, "--remount-ro", hidden]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts"):
        if os.path.exists(f"/etc/{name}"):
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    cmd += ["--ro-bind", str(runtime / "etc" / "passwd"), "/etc/passwd",
            "--ro-bind", str(runtime / "etc" / "group"), "/etc/group",
            "--perms", "0755", "--dir", RUNTIME, "--ro-bind", str(runtime / "autograder"), f"{RUNTIME}/autograder",
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(options.scratch_mb << 20), "--tmpfs", "/dev/shm"]
    if options.data_root and options.data_root.is_dir():
        cmd += ["--ro-bind", str(options.data_root), DATA]
    if options.device == "cuda":
        for dev in sorted(Path("/dev").glob("nvidia*")):
            cmd += ["--dev-bind", str(dev), str(dev)]
        cmd += ["--ro-bind", "/sys", "/sys"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONPATH": RUNTIME,
           "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "agg", "USER": "student",
           "OMP_NUM_THREADS": str(options.threads), "MKL_NUM_THREADS": str(options.threads),
           "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    if os.environ.get("OMP_WAIT_POLICY", "").upper() in ("ACTIVE", "PASSIVE"):   # the grader's choice reaches its
        env["OMP_WAIT_POLICY"] = os.environ["OMP_WAIT_POLICY"].upper()           # notebooks (PASSIVE: `make test`)
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    # -P: the working folder never joins the import path (a planted /tmp/bdb/ would run in every notebook)
    cmd += ["--chdir", "/", sys.executable, "-P", "-m", "autograder.worker", "--sandboxed", *warm_arguments(options)]
    if root:
        cmd += ["--uid", str(UID_BASE + slot)]
    return cmd


def sandbox_problem() -> str:
    """Why no sandbox can be made on this machine ("" when one can)."""
    if sys.platform != "linux":
        return f"no sandbox on {sys.platform}: grading isolates notebooks with Linux namespaces"
    if not shutil.which("bwrap"):
        return "no sandbox: bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        probe = bwrap_command(make_runtime(Path(tmp)), 0, SandboxOptions())
        probe = probe[:probe.index("--chdir")] + ["/bin/sh", "-c", "exit 0"]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if done.returncode:
        why = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
        return f"no sandbox: bwrap failed ({why})"
    return ""


def require_sandbox() -> None:
    problem = sandbox_problem()
    if problem:
        raise CourseError(f"{problem}; {FIX}")


# --- one worker ---------------------------------------------------------------------------------

def _stopped(root: int) -> bool:
    """Whether the worker under `root` (its bwrap) is stopped (SIGSTOP, a debugger). Only the
    worker itself: a notebook that stops its own processes just runs into its time limit."""
    parents, states = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            states[int(name)], parents[int(name)] = fields[0], int(fields[1])

    def is_worker(pid: int) -> bool:            # the worker or a fork of it, not bwrap
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            return False
        return b"autograder.worker" in argv and not argv[0].endswith(b"bwrap")
    frontier = [root]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        workers = [p for p in kids if is_worker(p) and not is_worker(parents[p])]
        if workers:
            return any(states[p] in ("T", "t") for p in workers)
        frontier = [p for p in kids if not is_worker(p)]
    return False


class Worker:
    """A warm grading worker in its own sandbox (or, unsandboxed, a plain subprocess)."""

    def __init__(self, slot: int, runtime: Path, options: SandboxOptions) -> None:
        self.slot, self.runtime, self.options = slot, runtime, options
        self.proc: subprocess.Popen | None = None
        self.buffer = bytearray()
        self.ready = False
        self.scratch: Path | None = None   # unsandboxed: the worker's folder, made and removed here

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the worker's process; it warms up (imports torch & co.) while the grader goes on."""
        if self.options.sandboxed:
            cmd, env = bwrap_command(self.runtime, self.slot, self.options), None
        else:
            # its folder in the shared /tmp is made and removed here: close() kills it with SIGKILL
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = Path(tempfile.mkdtemp(prefix="course-worker-"))
            cmd = [sys.executable, "-m", "autograder.worker", "--scratch", str(self.scratch), *warm_arguments(self.options)]
            env = {**os.environ, "OMP_NUM_THREADS": str(self.options.threads), "MKL_NUM_THREADS": str(self.options.threads)}
        log = os.environ.get("COURSE_WORKER_LOG")
        stderr = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                     start_new_session=True)
        if log:
            stderr.close()
        self.buffer = bytearray()
        self.ready = False

    def wait_ready(self) -> None:
        """Wait for a launched worker's "ready"; WorkerLost (and the worker closed) if it does not come."""
        header, _ = self._receive(time.monotonic() + START_TIMEOUT, START_TIMEOUT)
        if not header.get("ready"):
            self.close()
            raise WorkerLost(f"the grading worker did not start: {header.get('error', header)}")
        self.ready = True

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)     # bwrap and, with it, the whole sandbox
            except (ProcessLookupError, PermissionError):
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc.wait()
            self.proc = None
        if self.scratch is not None:                         # (also where the start itself failed)
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def _send(self, header: dict, blob: bytes = b"") -> None:
        try:
            self.proc.stdin.write(pack(header, blob))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise WorkerLost("the grading worker died (its channel closed)") from None

    def _receive(self, deadline: float, silence: float) -> tuple[dict, bytes]:
        """The next frame; WorkerLost when the worker dies, is silent for `silence` seconds
        (stopped, or hung) or passes `deadline`."""
        fd = self.proc.stdout.fileno()
        heard = looked = time.monotonic()
        while True:
            try:
                frame = unpack(self.buffer)
            except ValueError as e:
                raise WorkerLost(f"the grading worker broke its protocol ({e})") from None
            if frame is not None:
                header, blob, rest = frame
                self.buffer = bytearray(rest)
                return header, bytes(blob)
            now = time.monotonic()
            if now > deadline:
                raise WorkerLost("the grading worker ran past the notebook's time limit and was stopped")
            if now - heard > silence:
                raise WorkerLost(f"the grading worker stopped answering for {silence:g} s (stopped or hung) and was replaced")
            if now - heard > 5 and now - looked > 2:       # silent while starting (no heartbeat yet): stopped?
                looked = now
                if _stopped(self.proc.pid):
                    raise WorkerLost("the grading worker stopped answering (it was stopped: SIGSTOP) and was replaced")
            if select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise WorkerLost("the grading worker died while grading this notebook")
                self.buffer += chunk
                heard = time.monotonic()

    def run(self, job: dict, images, deadline_s: float) -> tuple[dict, bytes]:
        """Send `job`; answer the worker's requests for test images with `images(dataset)` ->
        float32 numpy array; return its reply (header and blob: the probes' records). WorkerLost
        (and the worker closed) on failure."""
        deadline = time.monotonic() + deadline_s
        try:
            self._send(job)
            while True:
                header, blob = self._receive(deadline, SILENCE_LIMIT)
                if header.get("alive"):
                    continue
                if "images" in header:
                    array = images(str(header["images"]))
                    self._send({"shape": list(array.shape)}, array.tobytes())
                    continue
                if header.get("clean") is False:     # the notebook left what the worker cannot delete
                    self.close()
                return header, blob
        except WorkerLost:
            self.close()
            raise


def launched(worker: Worker) -> Worker:
    """`worker`, launched (it warms up while the grader goes on); where it cannot start now, the
    run starts it again when it needs it: a failure there costs one submission."""
    try:
        worker.launch()
    except OSError:
        pass
    return worker


class WorkerPool:
    """Warm sandboxed workers kept from one grading run of this process to the next: a run
    (autograder.grade.Graders) gives its workers back when it ends, and a later run whose
    workers would be launched with the same SandboxOptions takes them instead of warming up
    new ones (torch & co.: seconds of CPU each). For a process that grades many small classes,
    such as a test suite (tests/conftest.py); `course grade` grades one run and keeps none.

    A kept worker is what the next submission of the same run would have got: every notebook
    is forked from its zygote, made before its first job (nothing of an earlier notebook is in
    that memory), its /tmp is wiped after every notebook, and a worker that died, was stopped
    or left something behind is closed, never kept. The pool owns the runtime folder its
    workers see, and gives each worker a slot (a uid) no other worker of the pool holds."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep                  # idle workers kept at most (the oldest closed first)
        self._lock = threading.Lock()
        self._runtime: RuntimeFolder | None = None
        self._idle: list[Worker] = []     # oldest first
        self._slots: set[int] = set()     # held by this pool's workers, idle or lent to a run

    def worker(self, options: SandboxOptions) -> Worker:
        """An idle worker that serves `options`, else a new one, launched and warming up for every
        lab: the next runs of this process may grade other labs, and one warm-up for all (9 s of
        CPU) costs less than one per kind of run."""
        while True:
            with self._lock:
                kept = next((w for w in self._idle if serves(w.options, options)), None)
                if kept is not None:
                    self._idle.remove(kept)
            if kept is None:
                break
            if self._healthy(kept):
                return kept
            self._close(kept)            # died or was stopped while idle
        with self._lock:
            slot = min(set(range(len(self._slots) + 1)) - self._slots)
            self._slots.add(slot)
        return launched(Worker(slot, self.runtime().path, replace(options, warm=None)))

    def runtime(self) -> RuntimeFolder:
        """The runtime folder this pool's workers see (made on first use)."""
        with self._lock:
            if self._runtime is None:
                self._runtime = RuntimeFolder()
            return self._runtime

    def give_back(self, worker: Worker) -> None:
        """Keep a run's worker for the next run, or close it (dead, stopped, one too many, or
        launched before the pool was last closed: its runtime folder is gone)."""
        current = self._runtime is not None and worker.runtime == self._runtime.path
        if not current or not self._healthy(worker):
            self._close(worker)
            return
        with self._lock:
            self._idle.append(worker)
            cut = max(0, len(self._idle) - self.keep)
            closing, self._idle = self._idle[:cut], self._idle[cut:]
        for w in closing:
            self._close(w)

    @staticmethod
    def _healthy(worker: Worker) -> bool:
        return worker.alive and not _stopped(worker.proc.pid)

    def _close(self, worker: Worker) -> None:
        worker.close()
        with self._lock:
            self._slots.discard(worker.slot)

    def close(self) -> None:
        """Close the idle workers and remove the runtime folder (between runs: a worker lent to
        a run at this moment is closed when it is given back)."""
        with self._lock:
            idle, self._idle = self._idle, []
            runtime, self._runtime = self._runtime, None
        for worker in idle:
            self._close(worker)
        if runtime is not None:
            runtime.cleanup()


POOL: WorkerPool | None = None     # set: grading runs of this process keep their sandboxed workers


def keep_workers(keep: int = 4) -> WorkerPool:
    """From now on, grading runs of this process keep their warm sandboxed workers for the next
    run (WorkerPool); `POOL.close()` and `POOL = None` end it."""
    global POOL
    if POOL is None:
        import atexit
        POOL = WorkerPool(keep)
        atexit.register(POOL.close)
    return POOL
