"""The grading worker: the only grader code that runs inside a sandbox (autograder.sandbox).

It starts as `python -m autograder.worker [--uid UID] [--sandboxed]`, drops to an unprivileged
user, makes itself non-dumpable (a notebook it forks, as the same user, can then neither ptrace
it nor read its memory), imports torch & co. once, says "ready", and then serves one job at a
time over its stdin/stdout: run a notebook in a forked child (autograder.forked), end every
process the notebook started, then score each model the notebook saved in a fresh fork that
holds the test images (asked of the grader) and never the labels. It answers with plain data:
the outcome of each cell, notes, and the predicted classes.

Frames on the channel: 8 bytes (header length, blob length, big-endian) + JSON header + blob.
"""
from __future__ import annotations

import gc
import json
import os
import select
import shutil
import struct
import sys
import time
from pathlib import Path

MAX_HEADER = 64 << 20
MAX_BLOB = 1 << 30
MAX_MODELS = 4           # saved models scored per submission (a submission cannot flood the scorer)
BATCH = 250
SCRATCH = Path("/tmp")   # the sandbox's only writable place (a tmpfs, wiped after every job)
KEEP: set[str] = set()   # what /tmp held when the worker started: folders of read-only binds
BASELINE: set[str] = set()  # every path under /tmp and /dev/shm then (mount points not entered)


# --- the channel ---------------------------------------------------------------------------

def pack(header: dict, blob: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return struct.pack(">II", len(data), len(blob)) + data + blob


def _sizes(prefix: bytes) -> tuple[int, int]:
    """Header and blob sizes from a frame's first 8 bytes; ValueError over the limits."""
    size, blob_size = struct.unpack(">II", prefix)
    if size > MAX_HEADER or blob_size > MAX_BLOB:
        raise ValueError(f"a frame of {size} + {blob_size} bytes is over the limit")
    return size, blob_size


def _header(data: bytes) -> dict:
    header = json.loads(data)
    if not isinstance(header, dict):
        raise ValueError("a frame header that is not an object")
    return header


def unpack(buffer: bytes) -> tuple[dict, bytes, bytes] | None:
    """(header, blob, the rest) of the first frame in `buffer`, or None while it is incomplete;
    ValueError for a frame over the limits or a header that is not a JSON object."""
    if len(buffer) < 8:
        return None
    size, blob_size = _sizes(buffer[:8])
    end = 8 + size + blob_size
    if len(buffer) < end:
        return None
    return _header(buffer[8:8 + size]), buffer[8 + size:end], buffer[end:]


def send(stream, header: dict, blob: bytes = b"") -> None:
    stream.write(pack(header, blob))
    stream.flush()


def _read_exactly(stream, n: int) -> bytes:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError("the channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive(stream) -> tuple[dict, bytes]:
    size, blob_size = _sizes(_read_exactly(stream, 8))
    return _header(_read_exactly(stream, size)), _read_exactly(stream, blob_size)


# --- the worker ------------------------------------------------------------------------------

def drop_privileges(uid: int | None) -> None:
    """Root inside the sandbox (given only CAP_SETUID/CAP_SETGID) becomes `uid`, losing every
    capability; no process here may gain privileges again (no_new_privs) or be dumped."""
    import ctypes
    from . import forked
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        forked.OWN_UID = True
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)                  # PR_SET_NO_NEW_PRIVS
    forked.set_dumpable(False)


def _tree(roots: list[Path]) -> set[str]:
    """Every path under `roots`, not descending into mount points (the read-only binds)."""
    found = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(folder, d))]
            found.update(os.path.join(folder, n) for n in dirs + files)
    return found


def _wipe(sandboxed: bool, job_dir: Path) -> bool:
    """Delete everything the notebook wrote (a folder it made read-only included); True when
    nothing is left but what was there when the worker started."""
    targets = [*(p for p in SCRATCH.iterdir() if p.name not in KEEP), *Path("/dev/shm").iterdir()] if sandboxed else [job_dir]
    for path in targets:
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, _ in os.walk(path):
                for d in [folder, *(os.path.join(folder, d) for d in dirs)]:
                    try:
                        os.chmod(d, 0o700)
                    except OSError:
                        pass
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                pass
    return not sandboxed or _tree([SCRATCH, Path("/dev/shm")]) <= BASELINE


def run_job(job: dict, channel_in, channel_out, sandboxed: bool, scratch: Path) -> dict:
    from .forked import kill_others, run_notebook_forked
    from .results import NotebookRun
    job_dir = scratch / "job"
    work, home, scoring, probes = job_dir / "work", job_dir / "home", job_dir / "scoring", job_dir / "probe"
    for d in (work, home, scoring, probes):
        d.mkdir(parents=True, exist_ok=True)
    env = {**job.get("env", {}), "HOME": str(home), "TMPDIR": str(work), "MPLCONFIGDIR": str(home / ".matplotlib"),
           "COURSE_SCORING_DIR": str(scoring)}
    cells = [(int(i), str(src), str(kind)) for i, src, kind in job["cells"]]
    notes: list[str] = []

    def beat() -> None:
        send(channel_out, {"alive": True})

    run = NotebookRun(float(job["cell_timeout"]), float(job["notebook_timeout"]), str(work), env,
                      str(job.get("lab", "")), str(probes), job.get("threads"), job.get("memory_mb"), sandboxed,
                      int(job.get("draw", 0)))
    started = time.monotonic()
    if job.get("engine") == "kernel":
        from .execute import run_notebook_cells as engine
    else:
        engine = run_notebook_forked
    shown: dict[int, list] = {}
    outcomes = engine(cells, run, notes, beat, shown)
    if sandboxed and job.get("engine") == "kernel":   # the kernel and anything it started (the
        kill_others(0, sandboxed)                      # fork engine ends its own notebook's)
    notebook_seconds = time.monotonic() - started    # on the worker's clock, not the notebook's
    predictions = {}
    for path in sorted(scoring.glob("*.pt"))[:MAX_MODELS]:
        dataset = path.stem.rsplit(".", 1)[-1]
        if dataset not in job.get("datasets", ()):
            continue
        send(channel_out, {"images": dataset})
        header, blob = receive(channel_in)
        predictions[path.stem] = _predict(path, header, blob, job, sandboxed, beat)
    index, blob = _records(probes, {i for i, _, kind in cells if kind == "test"})
    clean = _wipe(sandboxed, job_dir)
    return {"clean": clean, "outcomes": [[i, o.status, o.ename, o.evalue, round(o.seconds, 3)] for i, o in outcomes.items()],
            "notes": notes, "predictions": predictions, "records": index, "outputs": sorted(shown.items()),
            "notebook_seconds": round(notebook_seconds, 3)}, blob


def _records(folder: Path, tests: set[int]) -> tuple[list[list[int]], bytes]:
    """The probes' records the notebook wrote (untrusted bytes: the judge reads them as data)."""
    from .results import record_path
    index, chunks, total = [], [], 0
    for cell in sorted(tests):
        path = record_path(str(folder), cell)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_BLOB - total + 1)
        if total + len(data) > MAX_BLOB:
            break
        index.append([cell, total, len(data)])
        chunks.append(data)
        total += len(data)
    return index, b"".join(chunks)


def _predict(path: Path, header: dict, blob: bytes, job: dict, sandboxed: bool, beat) -> list[int] | str:
    """Predict the test images with the saved model in a child of the zygote (fresh namespaces;
    nothing of the notebook's processes is left); the worker enforces the time and memory limits."""
    import numpy as np

    from .forked import HiddenMemory, cpu_budget, end_child, over_memory, zygote
    timeout, memory_mb = job["cell_timeout"], job.get("memory_mb")
    count = int(np.prod(header["shape"][:1]))
    task = {"path": str(path), "shape": header["shape"], "device": job.get("device", "cpu"),
            "threads": job.get("threads"), "sandboxed": sandboxed,
            "cpu_seconds": cpu_budget(timeout, job.get("threads"))}
    pid, read_fd = zygote(sandboxed).spawn("scorer", pack(task, blob))
    chunks, start, error, last_beat = [], time.monotonic(), "", time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now - last_beat > 1.0:
                beat()
                last_beat = now
            if now - start > timeout:
                error = f"scoring ran past its {timeout:g} s limit"
                break
            try:
                over = bool(memory_mb) and over_memory(pid, sandboxed, memory_mb)
            except HiddenMemory:
                error = "the model hid its memory from the grader (PR_SET_DUMPABLE 0)"
                break
            if over:
                error = f"scoring used more than {memory_mb:.0f} MB of memory"
                break
            if select.select([read_fd], [], [], 0.1)[0]:
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                if sum(map(len, chunks)) > 8 * count + 1024:
                    error = "the scorer wrote more than the predictions"
                    break
    finally:
        end_child(pid, read_fd, sandboxed)
    data = b"".join(chunks)
    if error:
        return error
    if data.startswith(b"OK") and (len(data) - 2) % 8 == 0:
        return np.frombuffer(data[2:], dtype=np.int64).tolist()
    if data.startswith(b"ER"):
        return data[2:302].decode(errors="replace")
    return "the scorer died while running the model (a crash, or out of memory)"


def _scorer_entry(payload: bytes, write_fd: int) -> None:
    """Runs in the scorer, a child of the zygote: rebuild the model, predict the images, write
    the classes."""
    import warnings

    import numpy as np

    from .forked import isolate_child
    task, blob, _ = unpack(payload)
    isolate_child(write_fd, task["cpu_seconds"], task["sandboxed"])
    warnings.simplefilter("ignore")
    import torch
    device, path = task["device"], Path(task["path"])
    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    try:
        x = torch.from_numpy(np.frombuffer(blob, dtype=np.float32).reshape(task["shape"]).copy())
        model = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"the saved object is a {type(model).__name__}, not an nn.Module")
        model.eval()
        classes = []
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                batch = x[start:start + BATCH]
                logits = model(batch.to(device))
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(batch):
                    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ValueError(f"logits of shape ({len(batch)}, classes) expected, got {got}")
                classes.append(logits.argmax(dim=1).cpu().numpy().astype(np.int64))
        payload = b"OK" + np.concatenate(classes).tobytes()
    except BaseException as err:  # noqa: BLE001 — the student's model may raise anything
        text = (str(err).strip().splitlines() or [""])[0]
        payload = b"ER" + f"{type(err).__name__}: {text}"[:300].encode()
    with os.fdopen(write_fd, "wb") as out:
        out.write(payload)


def serve(sandboxed: bool, uid: int | None, scratch: Path | None = None, labs: tuple[str, ...] | None = None,
          heavy: tuple[str, ...] | None = None) -> int:
    """Serve jobs from stdin until it closes. `scratch`: an unsandboxed worker's own folder in the
    shared /tmp (its grader makes and removes it); a sandboxed one has the sandbox's /tmp.
    `labs`, `heavy`: what it warms up for (autograder.forked.warm_up; None: every lab, everything)."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)   # no buffer that would keep a job's bytes
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)                     # nothing printed while importing reaches the channel
    if sandboxed and (os.getpid() > 3 or (os.getuid() == 0 and uid is None)):
        send(channel_out, {"error": "not in a PID namespace of its own, or root without --uid: refusing --sandboxed"})
        return 2
    drop_privileges(uid)
    if sandboxed:
        scratch = SCRATCH
    elif scratch is None or not scratch.is_dir():
        send(channel_out, {"error": "an unsandboxed worker needs --scratch, a folder of its own"})
        return 2
    if sandboxed:
        KEEP.update(p.name for p in SCRATCH.iterdir())
        BASELINE.update(_tree([SCRATCH, Path("/dev/shm")]))
    from . import forked
    forked.warm_up(labs, forked.HEAVY if heavy is None else heavy)
    gc.collect()
    gc.freeze()      # what warm-up made is permanent: the per-job collection below scans only the job's objects
    from .zygote import ENTRIES, Zygote
    ENTRIES["scorer"] = _scorer_entry
    forked.ZYGOTE = Zygote(sandboxed)     # before any job: what it forks holds no student's data
    send(channel_out, {"ready": True, "uid": os.getuid(), "pid": os.getpid()})
    while True:
        try:
            job, _ = receive(channel_in)
        except EOFError:
            return 0
        blob = b""
        try:
            reply, blob = run_job(job, channel_in, channel_out, sandboxed, scratch)
        except Exception as e:  # noqa: BLE001 — a grader bug on this job: say so, keep serving
            reply = {"error": f"{type(e).__name__}: {e}"[:500]}
        send(channel_out, reply, blob)
        if reply.get("clean") is False:
            return 0                  # something survived the wipe: the grader starts a fresh sandbox
        del job, reply, blob          # the next notebook is a fork of this process: it must find
        gc.collect()                  # nothing of this one (cells, outcomes, predictions) in memory


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m autograder.worker")
    p.add_argument("--uid", type=int)
    p.add_argument("--sandboxed", action="store_true")
    p.add_argument("--scratch", type=Path, help="unsandboxed: the folder for the jobs' files")
    p.add_argument("--labs", help="the labs it grades, comma-separated (warm-up: every lab if not given)")
    p.add_argument("--heavy", help="the heavy imports they need, comma-separated (with --labs)")
    args = p.parse_args(argv)
    names = lambda text: tuple(filter(None, text.split(","))) if text is not None else None  # noqa: E731
    return serve(args.sandboxed, args.uid, args.scratch, names(args.labs), names(args.heavy))


if __name__ == "__main__":
    sys.exit(main())
